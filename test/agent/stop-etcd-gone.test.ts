// Graceful stop with etcd gone (README, deploy/vipd.service: "vipd gives its
// VIPs up and leaves etcd within about 1.2 s of SIGTERM, even with etcd
// gone"). Each etcd call on the way out has its own short deadline
// (agent.ts STOP_RPC_MS), so neither a frozen member (no answer at all) nor a
// stopped one (connection refused) holds the exit back. At exit the VIP's
// address is gone from the kernel and no nftables table of vipd is left.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { sh, waitFor } from "../lab/sh.ts";
import { SmallLab, readLog } from "../lab/small-lab.ts";
import type { Host } from "../lab/netns.ts";

const VIP = "192.0.2.172";
/** The promise of README (deploy section): within about 1.2 s of SIGTERM. */
const EXIT_BOUND_MS = 1200;

let lab: SmallLab;
let n1: Host;

beforeAll(async () => {
  lab = await SmallLab.start(["n1"]);
  n1 = lab.host("n1");
}, 60_000);

afterAll(async () => {
  await lab?.close();
}, 30_000);

const vipd = (port: number) =>
  lab.vipd(n1, ["--config", lab.vipConfig("vip.yaml", VIP), "--node-name", "n1", "--etcd-endpoints", "http://127.0.0.1:2379",
    "--health-listen", `127.0.0.1:${port}`, "--log-format", "json"]);

/** The nftables tables in n1's namespace that are vipd's, as `family name`. */
async function vipdTables(): Promise<string[]> {
  const out = await lab.seg.exec(n1, ["nft", "list", "tables"]);
  return out.split("\n").map((l) => l.trim()).filter((l) => /^table \S+ vipd$/.test(l));
}

/** Starts vipd, waits for it to hold the VIP with its fence, takes etcd away with `cut`, sends SIGTERM: the time to exit. */
async function stopWithEtcdGone(port: number, cut: () => Promise<void>): Promise<{ code: number; exitMs: number; log: string }> {
  const p = vipd(port);
  try {
    await waitFor("n1 to hold the VIP", () => lab.seg.has(n1, VIP), 15_000);
    // The fence is up, so "no table left" below says vipd removed it.
    expect((await vipdTables()).length).toBeGreaterThan(0);
    await cut();
    const t0 = performance.now();
    p.kill("SIGTERM");
    const code = await p.exited;
    const exitMs = performance.now() - t0;
    return { code, exitMs, log: await readLog(p) };
  } finally {
    if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
  }
}

test("etcd frozen (no answer at all): vipd exits 0 within 1.2 s of SIGTERM, the address and every vipd table gone", async () => {
  let frozen = false;
  try {
    const { code, exitMs, log } = await stopWithEtcdGone(18172, async () => {
      lab.etcd.signal("n1", "SIGSTOP");
      frozen = true;
    });
    // Checked while etcd is still frozen: the address's own backstop lifetime
    // (more than a second) has not run out, so vipd removed it.
    const stillThere = await lab.seg.has(n1, VIP);
    const tables = await vipdTables();
    console.log(`etcd frozen: exit ${code} ${Math.round(exitMs)} ms after SIGTERM; address present ${stillThere}; vipd tables ${JSON.stringify(tables)}`);
    expect(code).toBe(0);
    expect(exitMs).toBeLessThan(EXIT_BOUND_MS);
    expect(stillThere).toBe(false);
    expect(tables).toEqual([]);
    expect(log).toContain("leaving etcd cleanly failed; our keys expire with the lease");
  } finally {
    if (frozen) lab.etcd.signal("n1", "SIGCONT");
  }
}, 60_000);

test("etcd stopped (connections refused): vipd exits 0 within 1.2 s of SIGTERM, the address and every vipd table gone", async () => {
  let stopped = false;
  try {
    const { code, exitMs } = await stopWithEtcdGone(18173, async () => {
      await lab.etcd.stopMember("n1");
      stopped = true;
      // The member is really gone: nothing listens on the client port.
      await waitFor("etcd's client port closed", async () =>
        (await sh(["ip", "netns", "exec", n1.ns, "curl", "-s", "--max-time", "1", "http://127.0.0.1:2379/health"], { allowFail: true })) === "", 5000);
    });
    const stillThere = await lab.seg.has(n1, VIP);
    const tables = await vipdTables();
    console.log(`etcd stopped: exit ${code} ${Math.round(exitMs)} ms after SIGTERM; address present ${stillThere}; vipd tables ${JSON.stringify(tables)}`);
    expect(code).toBe(0);
    expect(exitMs).toBeLessThan(EXIT_BOUND_MS);
    expect(stillThere).toBe(false);
    expect(tables).toEqual([]);
  } finally {
    if (stopped) await lab.etcd.startMember("n1");
  }
}, 60_000);
