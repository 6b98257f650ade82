// /healthz when the agent's event loop stalls. The health server runs on
// that loop, so while it is stalled (here: the process frozen, as a paused
// VM or a starved CPU would leave it) a probe gets no answer at all and its
// own timeout fails it; once the loop runs again, the requests that waited
// and those in the next 2 s get 503 naming the stall, and then 200 again.
// And the log line each stall over 100 ms gets, with its cause: a process
// stopped, and one busy on its own CPU with a task it names.
import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import { parsePrometheusText, sampleValue } from "../../src/health/prom-text.ts";
import { SmallLab, stopVipd } from "../lab/small-lab.ts";
import { sleep, waitFor } from "../lab/sh.ts";

const VIP = "192.0.2.131";
const PORT = 18131;
let lab: SmallLab;

beforeAll(async () => {
  lab = await SmallLab.start(["n1"]);
}, 60_000);

afterAll(async () => {
  await lab?.close();
});

/** GET /healthz from inside n1's namespace: status and body, or null when curl timed out. */
async function healthz(maxSeconds: number, path = "/healthz"): Promise<{ status: number; body: string } | null> {
  const p = Bun.spawn(["ip", "netns", "exec", lab.host("n1").ns, "curl", "-s", "--max-time", String(maxSeconds), "-w", "\n%{http_code}", `http://127.0.0.1:${PORT}${path}`], {
    stdout: "pipe",
    stderr: "ignore",
  });
  const out = await new Response(p.stdout).text();
  const code = await p.exited;
  if (code === 28) return null; // curl: operation timed out
  expect(code).toBe(0);
  const cut = out.lastIndexOf("\n");
  return { status: Number(out.slice(cut + 1)), body: out.slice(0, cut).trim() };
}

test("a stalled loop answers no probe; afterwards /healthz names the stall, then recovers", async () => {
  const n1 = lab.host("n1");
  const vipd = lab.vipd(n1, ["--config", lab.vipConfig("vip.yaml", VIP), "--node-name", "n1", "--etcd-endpoints", "http://127.0.0.1:2379",
    "--health-listen", `127.0.0.1:${PORT}`, "--log-format", "json"]);
  await waitFor("n1 to hold the VIP and report healthy", async () => (await lab.seg.has(n1, VIP)) && (await healthz(1))?.status === 200, 15_000);

  vipd.kill("SIGSTOP");
  const frozenAt = performance.now();
  try {
    // During the stall: nothing answers, so a probe's timeout fails it.
    expect(await healthz(1)).toBeNull();
    // A probe with a longer timeout waits through the rest of the stall.
    const waiting = healthz(15);
    await sleep(3000 - (performance.now() - frozenAt));
    vipd.kill("SIGCONT");
    const after = await waiting;
    expect(after?.status).toBe(503);
    const stalledMs = Number(/^event loop stalled for (\d+) ms/.exec(after?.body ?? "")?.[1]);
    // At least the freeze less one tick of the loop timer (1 s), at most what the probe waited.
    expect(stalledMs).toBeGreaterThanOrEqual(3000 - 1000);
    expect(stalledMs).toBeLessThan(15_000);
  } finally {
    vipd.kill("SIGCONT");
  }
  // Then healthy again once the loop has run for 2 s and the session caught up.
  await waitFor("/healthz 200 again", async () => (await healthz(1))?.status === 200, 15_000);
  await waitFor("n1 to hold the VIP again", () => lab.seg.has(n1, VIP), 10_000);

  const { log } = await stopVipd(vipd);
  const stopped = stallLines(log).filter((l) => l.cause === "stopped");
  expect(stopped.length, log).toBeGreaterThan(0);
  expect(Number(stopped[0]!.stalledMs)).toBeGreaterThanOrEqual(3000 - 1000);
}, 60_000);

/** The agent's stall lines (JSON log): message and fields. */
function stallLines(log: string): Record<string, unknown>[] {
  return log.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => String(l.msg).startsWith("event loop stalled for "));
}

/** The agent a test started, stopped after it whatever happened (the stall tests stop it themselves to read its log). */
let started: ReturnType<SmallLab["vipd"]> | null = null;
afterEach(async () => {
  if (started && started.exitCode === null && started.signalCode === null) await stopVipd(started);
  started = null;
});

function startN1() {
  return started = lab.vipd(lab.host("n1"), ["--config", lab.vipConfig("vip.yaml", VIP), "--node-name", "n1", "--etcd-endpoints", "http://127.0.0.1:2379",
    "--health-listen", `127.0.0.1:${PORT}`, "--log-format", "json"]);
}

async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const r = await healthz(5, "/metrics");
  // healthz() trims the body; the exposition ends with a newline.
  return sampleValue(parsePrometheusText(`${r?.body ?? ""}\n`), name, labels) ?? NaN;
}

test("a stop of 1.5 s, under /healthz's 2 s: logged as a stall whose cause is a stopped process", async () => {
  const n1 = lab.host("n1");
  const vipd = startN1();
  await waitFor("n1 to hold the VIP and report healthy", async () => (await lab.seg.has(n1, VIP)) && (await healthz(1))?.status === 200, 15_000);
  // Past the start's own work, so the CPU figures of the stall's window are the stop's.
  await sleep(2000);
  const before = await metric("vipd_event_loop_stall_seconds_count");
  // Longer than the loop timer's 1 s, so the stop spans one of its ticks, which then runs at least 500 ms late.
  vipd.kill("SIGSTOP");
  try {
    await sleep(1500);
  } finally {
    vipd.kill("SIGCONT");
  }
  await waitFor("the stall counted", async () => (await metric("vipd_event_loop_stall_seconds_count")) > before, 10_000);
  const { log } = await stopVipd(vipd);
  const lines = stallLines(log).filter((l) => l.cause === "stopped");
  expect(lines.length, log).toBe(1);
  const line = lines[0]!;
  expect(Number(line.stalledMs)).toBeGreaterThanOrEqual(500);
  expect(Number(line.stalledMs)).toBeLessThanOrEqual(1500 + 1000);
  expect(String(line.msg)).toContain("neither on CPU");
  expect(String(line.msg)).toContain("stopped or frozen");
  // Its figures are the scheduler's: the process got far less than the stall, on a CPU or waiting for one.
  expect(Number(line.cpuMs) + Number(line.waitMs)).toBeLessThan(Number(line.stalledMs) / 2);
}, 60_000);

test("a reload that re-reads an oversized configuration busies the loop: logged on CPU, naming the task 'reload'", async () => {
  const n1 = lab.host("n1");
  const vipd = startN1();
  await waitFor("n1 to hold the VIP and report healthy", async () => (await lab.seg.has(n1, VIP)) && (await healthz(1))?.status === 200, 15_000);
  // 5000 VIP documents: parsed and validated in one synchronous task (hundreds of ms), then refused (at most 100 VIPs).
  const docs = Array.from({ length: 5000 }, (_, i) => `apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: 10.77.${i >> 8}.${i & 255}\nlink: eth0\n`);
  lab.write("vip.yaml", docs.join("---\n"));
  vipd.kill("SIGHUP");
  await waitFor("the reload refused as invalid", async () => (await metric("vipd_config_reloads_total", { result: "invalid" })) === 1, 30_000);
  await waitFor("a stall counted", async () => (await metric("vipd_event_loop_stall_seconds_count")) >= 1, 10_000);
  const { log } = await stopVipd(vipd);
  const lines = stallLines(log).filter((l) => l.task === "reload");
  expect(lines.length, log).toBe(1);
  const line = lines[0]!;
  expect(Number(line.taskMs)).toBeGreaterThan(100);
  expect(Number(line.stalledMs)).toBeGreaterThanOrEqual(Number(line.taskMs));
  // The thread ran (its CPU time grew by a good part of the task), on a CPU or,
  // on a loaded machine, waiting for one: not stopped.
  expect(Number(line.cpuMs)).toBeGreaterThan(50);
  expect(["cpu", "starved"]).toContain(line.cause as string);
  expect(String(line.msg)).toContain("longest task 'reload'");
}, 60_000);
