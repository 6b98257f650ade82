// /metrics output read back with a strict text-format parser: every family
// vipd defines is well-formed and holds the values of what was reported.
import { describe, expect, test } from "bun:test";
import { parsePrometheusText, sampleValue } from "./prom-text.ts";
import { VipdMetrics } from "./vipd-metrics.ts";

const V4 = "192.0.2.15";
const V6 = "2001:db8::15";

describe("VipdMetrics", () => {
  test("every family is present, typed and documented before anything happens", async () => {
    const m = new VipdMetrics();
    const fams = parsePrometheusText(await m.render());
    const want: Record<string, string> = {
      vipd_vip_held: "gauge",
      vipd_ownership_transitions_total: "counter",
      vipd_last_transition_timestamp_seconds: "gauge",
      vipd_failover_seconds: "histogram",
      vipd_heartbeat_rtt_seconds: "histogram",
      vipd_proof_remaining_seconds: "gauge",
      vipd_announcements_total: "counter",
      vipd_build_info: "gauge",
      process_cpu_seconds_total: "counter",
      process_resident_memory_bytes: "gauge",
      process_open_fds: "gauge",
      process_start_time_seconds: "gauge",
      vipd_etcd_up: "gauge",
      vipd_heartbeats_total: "counter",
      vipd_takeovers_total: "counter",
      vipd_etcd_reconnects_total: "counter",
      vipd_hook_runs_total: "counter",
      vipd_hook_duration_seconds: "histogram",
      vipd_drained: "gauge",
      vipd_drains_total: "counter",
      vipd_handovers_total: "counter",
      vipd_config_reloads_total: "counter",
      vipd_config_last_reload_successful: "gauge",
      vipd_address_conflict: "gauge",
      vipd_event_loop_stall_seconds: "histogram",
    };
    for (const [name, type] of Object.entries(want)) {
      expect(fams.get(name)?.type, name).toBe(type as never);
      expect(fams.get(name)?.help?.length ?? 0, name).toBeGreaterThan(10);
    }
    expect(m.contentType).toBe("text/plain; version=0.0.4; charset=utf-8");
  });

  test("no gate configured: no vipd_gate_ series at all; the first gate() brings both", async () => {
    const m = new VipdMetrics();
    let fams = parsePrometheusText(await m.render());
    expect([...fams.keys()].filter((name) => name.startsWith("vipd_gate_"))).toEqual([]);
    m.gate(true);
    fams = parsePrometheusText(await m.render());
    expect(fams.get("vipd_gate_open")?.type).toBe("gauge");
    expect(fams.get("vipd_gate_probe_seconds")?.type).toBe("histogram");
    expect(sampleValue(fams, "vipd_gate_open")).toBe(1);
    // Registering once: a second call must not throw "already registered".
    m.gate(false);
    expect(sampleValue(parsePrometheusText(await m.render()), "vipd_gate_open")).toBe(0);
  });

  test("build info names the version and commit; process series read this process", async () => {
    const m = new VipdMetrics({ build: { version: "1.2.3", commit: "abc1234" } });
    const before = process.cpuUsage();
    const fams = parsePrometheusText(await m.render());
    expect(sampleValue(fams, "vipd_build_info", { version: "1.2.3", commit: "abc1234" })).toBe(1);
    expect(fams.get("vipd_build_info")?.samples.length).toBe(1);
    const rss = sampleValue(fams, "process_resident_memory_bytes")!;
    // Bun alone keeps tens of MB resident; well under the machine's memory.
    expect(rss).toBeGreaterThan(10 * 2 ** 20);
    expect(rss).toBeLessThan(4 * 2 ** 30);
    const cpu = sampleValue(fams, "process_cpu_seconds_total")!;
    expect(cpu).toBeGreaterThan(0);
    expect(cpu).toBeLessThanOrEqual((before.user + before.system) / 1e6 + 5);
    const start = sampleValue(fams, "process_start_time_seconds")!;
    expect(start).toBeLessThanOrEqual(Date.now() / 1000);
    expect(start).toBeGreaterThan(Date.now() / 1000 - process.uptime() - 2);
    // Opening a file shows up as one more descriptor.
    const fds = sampleValue(fams, "process_open_fds")!;
    const { openSync, closeSync } = await import("node:fs");
    const fd = openSync("/proc/self/status", "r");
    try {
      expect(sampleValue(parsePrometheusText(await m.render()), "process_open_fds")).toBe(fds + 1);
    } finally {
      closeSync(fd);
    }
  });

  test("a holder's life: declared, acquired, announced, released; values match", async () => {
    let wall = 1_700_000_000_000;
    const m = new VipdMetrics({ wallClock: () => wall });
    m.declareVip(V4, "eth0");
    m.declareVip(V6, "eth0");
    let fams = parsePrometheusText(await m.render());
    expect(sampleValue(fams, "vipd_vip_held", { vip: V4, link: "eth0" })).toBe(0);
    expect(sampleValue(fams, "vipd_announcements_total", { vip: V6 })).toBe(0);
    expect(sampleValue(fams, "vipd_failover_seconds_count", { vip: V4 })).toBe(0);

    m.ownership(V4, "eth0", true, "elected");
    m.failover(V4, 1234);
    m.announced(V4, 3);
    m.announced(V4);
    wall += 5500;
    m.ownership(V4, "eth0", false, "gate-closed");
    m.ownership(V4, "eth0", true, "elected", 1_700_000_010_250);
    fams = parsePrometheusText(await m.render());
    expect(sampleValue(fams, "vipd_vip_held", { vip: V4, link: "eth0" })).toBe(1);
    expect(sampleValue(fams, "vipd_vip_held", { vip: V6, link: "eth0" })).toBe(0);
    const t = (direction: string, reason: string) =>
      sampleValue(fams, "vipd_ownership_transitions_total", { vip: V4, direction, reason });
    expect(t("acquired", "elected")).toBe(2);
    expect(t("released", "gate-closed")).toBe(1);
    expect(sampleValue(fams, "vipd_last_transition_timestamp_seconds", { vip: V4 })).toBe(1_700_000_010.25);
    expect(sampleValue(fams, "vipd_announcements_total", { vip: V4 })).toBe(4);
    expect(sampleValue(fams, "vipd_failover_seconds_count", { vip: V4 })).toBe(1);
    expect(sampleValue(fams, "vipd_failover_seconds_sum", { vip: V4 })).toBe(1.234);
    expect(sampleValue(fams, "vipd_failover_seconds_bucket", { vip: V4, le: "1" })).toBe(0);
    expect(sampleValue(fams, "vipd_failover_seconds_bucket", { vip: V4, le: "2" })).toBe(1);
    expect(sampleValue(fams, "vipd_failover_seconds_bucket", { vip: V4, le: "+Inf" })).toBe(1);
  });

  test("event-loop stalls: a histogram in seconds whose count is the stalls, zero before any", async () => {
    const m = new VipdMetrics();
    let fams = parsePrometheusText(await m.render());
    expect(sampleValue(fams, "vipd_event_loop_stall_seconds_count")).toBe(0);
    m.loopStall(180);
    m.loopStall(4200);
    fams = parsePrometheusText(await m.render());
    expect(sampleValue(fams, "vipd_event_loop_stall_seconds_count")).toBe(2);
    expect(sampleValue(fams, "vipd_event_loop_stall_seconds_sum")).toBeCloseTo(4.38, 9);
    expect(sampleValue(fams, "vipd_event_loop_stall_seconds_bucket", { le: "0.25" })).toBe(1);
    expect(sampleValue(fams, "vipd_event_loop_stall_seconds_bucket", { le: "2" })).toBe(1);
    expect(sampleValue(fams, "vipd_event_loop_stall_seconds_bucket", { le: "5" })).toBe(2);
  });

  test("heartbeats, proof, takeovers, reconnects, gate and etcd", async () => {
    const m = new VipdMetrics();
    m.declareVip(V4, "eth0");
    m.heartbeat("committed", 3);
    m.heartbeat("committed", 40);
    m.heartbeat("failed");
    m.heartbeat("deposed");
    m.proofRemaining(2300);
    m.tookOver(V4);
    m.reconnected(2);
    m.gate(false);
    m.gateProbe(12);
    m.etcdUp(true);
    let fams = parsePrometheusText(await m.render());
    expect(sampleValue(fams, "vipd_heartbeats_total", { result: "committed" })).toBe(2);
    expect(sampleValue(fams, "vipd_heartbeats_total", { result: "failed" })).toBe(1);
    expect(sampleValue(fams, "vipd_heartbeats_total", { result: "deposed" })).toBe(1);
    expect(sampleValue(fams, "vipd_heartbeat_rtt_seconds_count")).toBe(2);
    expect(sampleValue(fams, "vipd_heartbeat_rtt_seconds_sum")).toBeCloseTo(0.043, 9);
    expect(sampleValue(fams, "vipd_heartbeat_rtt_seconds_bucket", { le: "0.005" })).toBe(1);
    expect(sampleValue(fams, "vipd_heartbeat_rtt_seconds_bucket", { le: "0.05" })).toBe(2);
    expect(sampleValue(fams, "vipd_proof_remaining_seconds")).toBe(2.3);
    expect(sampleValue(fams, "vipd_takeovers_total", { vip: V4 })).toBe(1);
    expect(sampleValue(fams, "vipd_etcd_reconnects_total")).toBe(2);
    expect(sampleValue(fams, "vipd_gate_open")).toBe(0);
    expect(sampleValue(fams, "vipd_gate_probe_seconds_count")).toBe(1);
    expect(sampleValue(fams, "vipd_etcd_up")).toBe(1);

    m.etcdUp(false);
    m.gate(true);
    m.proofRemaining(-5);
    fams = parsePrometheusText(await m.render());
    expect(sampleValue(fams, "vipd_proof_remaining_seconds")).toBe(0);
    expect(sampleValue(fams, "vipd_etcd_up")).toBe(0);
    expect(sampleValue(fams, "vipd_gate_open")).toBe(1);
    m.proofRemaining(null);
    fams = parsePrometheusText(await m.render());
    expect(sampleValue(fams, "vipd_proof_remaining_seconds")).toBe(0);
  });

  test("drains count each time the node becomes drained; hand-overs by direction", async () => {
    const m = new VipdMetrics();
    m.declareVip(V4, "eth0");
    let fams = parsePrometheusText(await m.render());
    expect(sampleValue(fams, "vipd_drained")).toBe(0);
    expect(sampleValue(fams, "vipd_drains_total")).toBe(0);
    expect(sampleValue(fams, "vipd_handovers_total", { vip: V4, direction: "in" })).toBe(0);
    m.drained(true);
    m.drained(true);
    m.handover(V4, "out");
    fams = parsePrometheusText(await m.render());
    expect(sampleValue(fams, "vipd_drained")).toBe(1);
    expect(sampleValue(fams, "vipd_drains_total")).toBe(1);
    expect(sampleValue(fams, "vipd_handovers_total", { vip: V4, direction: "out" })).toBe(1);
    m.drained(false);
    m.drained(true);
    m.handover(V4, "in");
    fams = parsePrometheusText(await m.render());
    expect(sampleValue(fams, "vipd_drains_total")).toBe(2);
    expect(sampleValue(fams, "vipd_handovers_total", { vip: V4, direction: "in" })).toBe(1);
  });

  test("hook runs by event and result, every pair present from the start; durations by event", async () => {
    const m = new VipdMetrics();
    let fams = parsePrometheusText(await m.render());
    for (const event of ["acquired", "released", "fenced"]) {
      for (const result of ["ok", "failed", "timeout", "missing"]) expect(sampleValue(fams, "vipd_hook_runs_total", { event, result })).toBe(0);
      expect(sampleValue(fams, "vipd_hook_duration_seconds_count", { event })).toBe(0);
    }
    m.hookRan("acquired", "ok", 40);
    m.hookRan("acquired", "ok", 60);
    m.hookRan("fenced", "timeout", 10_000);
    m.hookRan("released", "missing", 0);
    fams = parsePrometheusText(await m.render());
    expect(sampleValue(fams, "vipd_hook_runs_total", { event: "acquired", result: "ok" })).toBe(2);
    expect(sampleValue(fams, "vipd_hook_runs_total", { event: "fenced", result: "timeout" })).toBe(1);
    expect(sampleValue(fams, "vipd_hook_runs_total", { event: "released", result: "missing" })).toBe(1);
    expect(sampleValue(fams, "vipd_hook_runs_total", { event: "released", result: "failed" })).toBe(0);
    expect(sampleValue(fams, "vipd_hook_duration_seconds_sum", { event: "acquired" })).toBeCloseTo(0.1, 9);
    expect(sampleValue(fams, "vipd_hook_duration_seconds_bucket", { event: "acquired", le: "0.05" })).toBe(1);
    expect(sampleValue(fams, "vipd_hook_duration_seconds_bucket", { event: "fenced", le: "5" })).toBe(0);
    expect(sampleValue(fams, "vipd_hook_duration_seconds_bucket", { event: "fenced", le: "10" })).toBe(1);
  });

  test("an address conflict is 1 while it lasts, 0 from declaration and after it clears", async () => {
    const m = new VipdMetrics();
    m.declareVip(V4, "eth0");
    m.declareVip(V6, "eth0");
    m.addressConflict(V6, true);
    let fams = parsePrometheusText(await m.render());
    expect(sampleValue(fams, "vipd_address_conflict", { vip: V4 })).toBe(0);
    expect(sampleValue(fams, "vipd_address_conflict", { vip: V6 })).toBe(1);
    m.addressConflict(V6, false);
    fams = parsePrometheusText(await m.render());
    expect(sampleValue(fams, "vipd_address_conflict", { vip: V6 })).toBe(0);
  });

  test("a VIP removed by a reload leaves no series behind; the others keep theirs", async () => {
    const m = new VipdMetrics();
    m.declareVip(V4, "eth0");
    m.declareVip(V6, "eth0");
    for (const ip of [V4, V6]) {
      m.ownership(ip, "eth0", true, "elected");
      m.announced(ip, 2);
      m.failover(ip, 10);
      m.tookOver(ip);
    }
    m.ownership(V4, "eth0", false, "removed");
    m.forgetVip(V4, "eth0");
    const text = await m.render();
    expect(text).not.toContain(`vip="${V4}"`);
    const fams = parsePrometheusText(text);
    expect(sampleValue(fams, "vipd_vip_held", { vip: V6, link: "eth0" })).toBe(1);
    expect(sampleValue(fams, "vipd_announcements_total", { vip: V6 })).toBe(2);
    expect(sampleValue(fams, "vipd_ownership_transitions_total", { vip: V6, direction: "acquired", reason: "elected" })).toBe(1);
  });

  test("reloads by result, every result present from the start; the last one's success", async () => {
    const m = new VipdMetrics();
    let fams = parsePrometheusText(await m.render());
    for (const result of ["reloaded", "invalid", "failed"]) expect(sampleValue(fams, "vipd_config_reloads_total", { result })).toBe(0);
    expect(sampleValue(fams, "vipd_config_last_reload_successful", {})).toBe(1);
    m.configReload("invalid");
    fams = parsePrometheusText(await m.render());
    expect(sampleValue(fams, "vipd_config_reloads_total", { result: "invalid" })).toBe(1);
    expect(sampleValue(fams, "vipd_config_last_reload_successful", {})).toBe(0);
    m.configReload("reloaded");
    fams = parsePrometheusText(await m.render());
    expect(sampleValue(fams, "vipd_config_reloads_total", { result: "reloaded" })).toBe(1);
    expect(sampleValue(fams, "vipd_config_last_reload_successful", {})).toBe(1);
  });

  test("label values are escaped: quotes, backslashes and newlines survive the round trip", async () => {
    const m = new VipdMetrics();
    const odd = 'a"b\\c\nd';
    m.ownership(V4, odd, true, odd);
    const fams = parsePrometheusText(await m.render());
    expect(sampleValue(fams, "vipd_vip_held", { vip: V4, link: odd })).toBe(1);
    expect(sampleValue(fams, "vipd_ownership_transitions_total", { vip: V4, direction: "acquired", reason: odd })).toBe(1);
  });

  test("two instances never share series (no global registry)", async () => {
    const a = new VipdMetrics();
    const b = new VipdMetrics();
    a.announced(V4, 5);
    expect(sampleValue(parsePrometheusText(await b.render()), "vipd_announcements_total", { vip: V4 })).toBeUndefined();
  });
});

describe("parsePrometheusText (the test's parser is strict)", () => {
  const ok = "# HELP x_total Things.\n# TYPE x_total counter\nx_total{a=\"1\"} 2\n";
  test("accepts a well-formed family", () => {
    expect(sampleValue(parsePrometheusText(ok), "x_total", { a: "1" })).toBe(2);
  });
  test.each([
    ["garbage", "x_total{a=\"1\n"],
    ["no newline at the end", "x 1"],
    ["bad escape", "x{a=\"\\t\"} 1\n"],
    ["bad value", "x 1,5\n"],
    ["duplicate series", "x 1\nx 2\n"],
    ["TYPE after samples", "x 1\n# TYPE x gauge\n"],
    ["non-contiguous family", "x 1\ny 1\nx{a=\"b\"} 2\n"],
    ["a bare sample in a histogram", "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nh_sum 1\nh 1\n"],
    ["histogram without +Inf", "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 1\nh_sum 1\n"],
    ["non-cumulative buckets", "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nh_sum 1\n"],
    ["_count differs from +Inf", "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 2\nh_sum 1\n"],
  ])("rejects %s", (_, text) => {
    expect(() => parsePrometheusText(text)).toThrow();
  });
});
