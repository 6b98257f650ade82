// /metrics output read back with a strict text-format parser: every family
// vipd defines is well-formed and holds the values of what was reported.
import { describe, expect, test } from "bun:test";
import { parsePrometheusText, sampleValue } from "../../test/lab/prom-text.ts";
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
      vipd_gate_open: "gauge",
      vipd_gate_probe_seconds: "histogram",
      vipd_etcd_up: "gauge",
      vipd_heartbeats_total: "counter",
      vipd_takeovers_total: "counter",
      vipd_etcd_reconnects_total: "counter",
    };
    for (const [name, type] of Object.entries(want)) {
      expect(fams.get(name)?.type, name).toBe(type as never);
      expect(fams.get(name)?.help?.length ?? 0, name).toBeGreaterThan(10);
    }
    expect(m.contentType).toBe("text/plain; version=0.0.4; charset=utf-8");
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
