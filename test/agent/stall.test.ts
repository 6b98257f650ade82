// /healthz when the agent's event loop stalls. The health server runs on
// that loop, so while it is stalled (here: the process frozen, as a paused
// VM or a starved CPU would leave it) a probe gets no answer at all and its
// own timeout fails it; once the loop runs again, the requests that waited
// and those in the next 2 s get 503 naming the stall, and then 200 again.
import { afterAll, beforeAll, expect, test } from "bun:test";
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
async function healthz(maxSeconds: number): Promise<{ status: number; body: string } | null> {
  const p = Bun.spawn(["ip", "netns", "exec", lab.host("n1").ns, "curl", "-s", "--max-time", String(maxSeconds), "-w", "\n%{http_code}", `http://127.0.0.1:${PORT}/healthz`], {
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
  expect(log).toMatch(/event loop stalled for \d+ ms \(process frozen, or starved of CPU\)/);
}, 60_000);
