// Keys under vipd's prefix that vipd did not write: a foreign writer, a typo
// with etcdctl, a half-restored backup, or a newer vipd whose values this one
// cannot read. They must never crash an agent or give anyone a VIP, and each
// is reported once per run. What cannot be read is taken at its most
// cautious (design.md I8): a heartbeat claims every VIP, and a node without a
// readable record has the longest hold time, 30 s. So a garbage heartbeat
// holds back the next acquisition for that long, and a garbage key heading
// a queue is a candidate that never speaks, taken over after 30 s of
// silence, never sooner. Seen from the kernel (the recorder's ip/nft
// monitors, `ip -j addr`) and from etcd.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { MAX_HOLD_MS } from "../../src/config/fields.ts";
import { silenceWindow } from "../../src/election/proof.ts";
import { labNow, spawnInNetns } from "../lab/cluster.ts";
import { etcdPut, etcdRange } from "../lab/etcd-admin.ts";
import type { Host } from "../lab/netns.ts";
import { OwnershipRecorder } from "../lab/recorder.ts";
import { sh, sleep, waitFor } from "../lab/sh.ts";
import { SmallLab, stopVipd } from "../lab/small-lab.ts";

const VIP = "192.0.2.165";
const VIP2 = "192.0.2.166";
const PREFIX = "/vipd/";
const HOLD_MS = 2500;
/** How long what an unreadable heartbeat or queue key stands for can last. */
const UNREADABLE_MS = silenceWindow(MAX_HOLD_MS);

let lab: SmallLab;
let n1: Host;
let n2: Host;

const site = () => ({ nodes: [{ name: "n1", host: n1 }, { name: "n2", host: n2 }] });
const queue = async (vip: string) =>
  (await etcdRange(site(), "n1", `${PREFIX}elections/${vip}/`)).sort((a, b) => a.createRevision - b.createRevision).map((kv) => kv.key.slice(kv.key.lastIndexOf("/") + 1));
const healthz = (host: Host, port: number) =>
  sh(["ip", "netns", "exec", host.ns, "curl", "-s", "--max-time", "1", "-w", " %{http_code}", `http://127.0.0.1:${port}/healthz`], { allowFail: true });
const start = (host: Host, vip: string, port: number) =>
  lab.vipd(host, ["--config", lab.vipConfig(`${host.name}-${vip}.yaml`, vip), "--node-name", host.name, "--etcd-endpoints", "http://127.0.0.1:2379",
    "--health-listen", `127.0.0.1:${port}`, "--log-format", "json"]);
/** The keys an agent's log says it ignored, with how often each was reported. */
function ignored(log: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of log.split("\n")) {
    if (!line.startsWith("{")) continue;
    const o = JSON.parse(line) as { msg?: string; key?: string };
    if (o.msg === "ignoring a key under vipd's prefix" && o.key) out[o.key] = (out[o.key] ?? 0) + 1;
  }
  return out;
}

beforeAll(async () => {
  lab = await SmallLab.start(["n1", "n2"]);
  [n1, n2] = [lab.host("n1"), lab.host("n2")];
}, 60_000);

afterAll(async () => {
  await lab?.close();
}, 30_000);

test("garbage under the prefix: no crash, no ownership change, each key reported once; the next holder waits out the garbage heartbeat's claim", async () => {
  const a = start(n1, VIP, 18165);
  await waitFor("n1 holding the VIP", () => lab.seg.has(n1, VIP), 20_000);
  const b = start(n2, VIP, 18166);
  await waitFor("n2 queued behind n1", async () => (await queue(VIP)).join(",") === "n1,n2", 20_000);
  const recorder = await OwnershipRecorder.start({ vip: VIP, dir: lab.dir, nodes: site().nodes, spawnIn: spawnInNetns });
  try {
    const t0 = labNow();
    const garbage: [string, string | Uint8Array][] = [
      [`${PREFIX}agents/ghost`, "not json"],
      [`${PREFIX}heartbeats/ghost`, "{"],
      [`${PREFIX}heartbeats/n2`, Uint8Array.from([0xff, 0xfe, 0x00, 0x7b])],
      [`${PREFIX}elections/${VIP}/ghost`, Uint8Array.from([0x00, 0xff])],
      [`${PREFIX}handovers/${VIP}`, "[1,2,3]"],
      [`${PREFIX}macs/ghost`, "zz:zz"],
      [`${PREFIX}unknown/thing`, "x"],
      [`${PREFIX}elections`, "a key where a folder should be"],
    ];
    // The ghost's claim counts from when n2 received its heartbeat: after this.
    const written = labNow();
    for (const [key, value] of garbage) await etcdPut(site(), "n1", key, value);

    // Past a whole hold window: the ghost's heartbeat, read as claiming every
    // VIP, has run out, and n2 has written its own heartbeat over the garbage.
    await sleep(HOLD_MS + 500);
    expect(recorder.edges.filter((e) => e.t >= t0)).toEqual([]);
    expect(recorder.holders()).toEqual(["n1"]);
    expect(recorder.problems).toEqual([]);
    expect([a.exitCode, b.exitCode]).toEqual([null, null]);
    expect(await healthz(n1, 18165)).toBe("ok\n 200");
    expect(await healthz(n2, 18166)).toBe("ok\n 200");
    // The ghost joined the back of the queue, behind the agents.
    expect(await queue(VIP)).toEqual(["n1", "n2", "ghost"]);

    // A graceful stop: n1 lets go at once, and n2, first in line, takes the
    // VIP only once the ghost's unreadable heartbeat (a claim on every VIP,
    // for the longest hold) has run out.
    const first = await stopVipd(a);
    expect(first.code).toBe(0);
    expect(recorder.holders()).toEqual([]);
    await waitFor("n2 holding the VIP", () => recorder.isHeld("n2"), UNREADABLE_MS + 5000, 10);
    const heldAt = labNow() - written;
    console.log(`n2 took the VIP ${Math.round(heldAt)} ms after the garbage heartbeat was written (its claim: ${Math.round(UNREADABLE_MS)} ms)`);
    expect(heldAt).toBeGreaterThanOrEqual(UNREADABLE_MS);
    expect(heldAt).toBeLessThan(UNREADABLE_MS + 2000);
    expect(recorder.holders()).toEqual(["n2"]);

    const second = await stopVipd(b);
    expect(second.code).toBe(0);
    // Each foreign key reported once per run, by both agents; vipd's own keys never.
    const reported = ["agents/ghost", "heartbeats/ghost", "heartbeats/n2", `handovers/${VIP}`, "macs/ghost", "unknown/thing", "elections"].map((k) => `${PREFIX}${k}`);
    for (const log of [first.log, second.log]) {
      const seen = ignored(log);
      for (const key of reported) expect([key, seen[key]]).toEqual([key, 1]);
      expect(Object.keys(seen).filter((k) => !reported.includes(k))).toEqual([]);
      expect(log).not.toContain("internal error");
    }
  } finally {
    await recorder.close();
  }
}, 90_000);

test("a garbage key heading a queue: the agent behind it takes the VIP over after the longest silence window, not before", async () => {
  await etcdPut(site(), "n1", `${PREFIX}elections/${VIP2}/ghost`, "not a run");
  const started = labNow();
  const p = start(n1, VIP2, 18167);
  try {
    await waitFor("n1 queued behind the ghost", async () => (await queue(VIP2)).join(",") === "ghost,n1", 10_000);
    expect(await lab.seg.has(n1, VIP2)).toBe(false);
    await waitFor("n1 holding VIP2", () => lab.seg.has(n1, VIP2), UNREADABLE_MS + 10_000, 10);
    const heldAfter = labNow() - started;
    // The ghost never sent a heartbeat and has no record: n1 counts its
    // silence from when it first saw it, with the longest hold time.
    console.log(`n1 took VIP2 over from the ghost ${Math.round(heldAfter)} ms after it started (window ${Math.round(UNREADABLE_MS)} ms)`);
    expect(heldAfter).toBeGreaterThanOrEqual(UNREADABLE_MS);
    expect(heldAfter).toBeLessThan(UNREADABLE_MS + 5000);
    // The takeover removed the ghost's key in the same transaction.
    expect(await queue(VIP2)).toEqual(["n1"]);
  } finally {
    const r = await stopVipd(p);
    expect(r.code).toBe(0);
  }
  expect(await lab.seg.has(n1, VIP2)).toBe(false);
}, 90_000);
