// An operator (or a script) deletes the holder's election key, or revokes its
// lease, behind the holder's back. README and design.md §4 say this cannot
// make two owners: the holder learns it from its next heartbeat and lets go
// first, and the other node waits out the holder's claim before it takes the
// VIP. The witness is the recorder's `ip monitor` / `nft monitor` in each
// node namespace, not vipd's own reports; the keys are read from etcd.
import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import { labNow, spawnInNetns } from "../lab/cluster.ts";
import { etcdDelete, etcdRange, etcdRevoke } from "../lab/etcd-admin.ts";
import type { Host } from "../lab/netns.ts";
import { OwnershipRecorder } from "../lab/recorder.ts";
import { waitFor } from "../lab/sh.ts";
import { SmallLab, stopVipd } from "../lab/small-lab.ts";
import { overlap } from "../lab/stats.ts";

const VIP = "192.0.2.160";
const PREFIX = "/vipd/";

let lab: SmallLab;
let n1: Host;
let n2: Host;
let recorder: OwnershipRecorder | null = null;
let running: ReturnType<SmallLab["vipd"]>[] = [];

const site = () => ({ nodes: [{ name: "n1", host: n1 }, { name: "n2", host: n2 }] });
/** The VIP's queue as etcd holds it: its keys in the order they were created. */
const queue = async () =>
  (await etcdRange(site(), "n1", `${PREFIX}elections/${VIP}/`)).sort((a, b) => a.createRevision - b.createRevision).map((kv) => kv.key.slice(kv.key.lastIndexOf("/") + 1));

beforeAll(async () => {
  lab = await SmallLab.start(["n1", "n2"]);
  [n1, n2] = [lab.host("n1"), lab.host("n2")];
}, 60_000);

afterEach(async () => {
  await recorder?.close();
  recorder = null;
  for (const p of running) await stopVipd(p);
  running = [];
});

afterAll(async () => {
  await lab?.close();
}, 30_000);

/** n1 holds the VIP, n2 waits behind it, and the recorder watches both. */
async function n1HoldsN2Waits(): Promise<void> {
  const file = lab.write("vip.yaml", `apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: ${VIP}\nlink: eth0\n`);
  const start = (host: Host, port: number) =>
    lab.vipd(host, ["--config", file, "--node-name", host.name, "--etcd-endpoints", "http://127.0.0.1:2379", "--health-listen", `127.0.0.1:${port}`, "--log-format", "json"]);
  running.push(start(n1, 18161));
  await waitFor("n1 holding the VIP", () => lab.seg.has(n1, VIP), 20_000);
  running.push(start(n2, 18162));
  await waitFor("n2 queued behind n1", async () => (await queue()).join(",") === "n1,n2", 20_000);
  recorder = await OwnershipRecorder.start({ vip: VIP, dir: lab.dir, nodes: site().nodes, spawnIn: spawnInNetns });
  expect(recorder.holders()).toEqual(["n1"]);
}

/** From t0 on: who held the VIP, and for how long two did at once (fenced addresses do not count; bare addresses separately). */
function since(t0: number) {
  const now = labNow();
  return {
    overlapMs: overlap(recorder!.intervals(t0, now)).total,
    addressOverlapMs: overlap(recorder!.addressIntervals(t0, now)).total,
    problems: recorder!.problems,
  };
}

test("the holder's election key deleted by hand: n1 lets go, n2 takes the VIP, never two holders", async () => {
  await n1HoldsN2Waits();
  const t0 = labNow();
  expect(await etcdDelete(site(), "n1", `${PREFIX}elections/${VIP}/n1`)).toBe(1);

  await waitFor("n2 alone holding the VIP", () => (recorder!.holders().join(",") === "n2" ? true : null), 15_000);
  // n1 joins the queue again, behind n2: it does not take the VIP back.
  await waitFor("n1 queued behind n2", async () => (await queue()).join(",") === "n2,n1", 15_000);
  expect(await lab.seg.has(n1, VIP)).toBe(false);
  expect(await lab.seg.has(n2, VIP)).toBe(true);
  expect(since(t0)).toEqual({ overlapMs: 0, addressOverlapMs: 0, problems: [] });
}, 60_000);

test("the holder's lease revoked by hand: every key of n1 goes at once, yet n2 takes the VIP only after n1 let go; n1's new session holds it again", async () => {
  await n1HoldsN2Waits();
  const mine = (await etcdRange(site(), "n1", PREFIX)).filter((kv) => kv.key.endsWith("/n1"));
  const leases = [...new Set(mine.map((kv) => kv.lease))];
  expect(leases.length).toBe(1);
  expect(leases[0]).not.toBe("0");
  const t0 = labNow();
  await etcdRevoke(site(), "n1", leases[0]!);
  // The revoke took n1's agent record, heartbeat and queue key in one go.
  expect((await etcdRange(site(), "n1", PREFIX)).filter((kv) => kv.key.endsWith("/n1") && kv.lease === leases[0])).toEqual([]);

  await waitFor("n2 alone holding the VIP", () => (recorder!.holders().join(",") === "n2" ? true : null), 20_000);
  // n1 registers again with a new lease and waits behind n2: every key it
  // had, back, all on one new lease.
  await waitFor("n1 queued behind n2", async () => (await queue()).join(",") === "n2,n1", 20_000);
  const again = (await etcdRange(site(), "n1", PREFIX)).filter((kv) => kv.key.endsWith("/n1"));
  expect(again.map((kv) => kv.key).sort()).toEqual(mine.map((kv) => kv.key).sort());
  const newLeases = [...new Set(again.map((kv) => kv.lease))];
  expect(newLeases.length).toBe(1);
  expect(newLeases[0]).not.toBe(leases[0]);
  expect(newLeases[0]).not.toBe("0");
  expect(await lab.seg.has(n1, VIP)).toBe(false);

  // The new session holds: n2 stops, and n1 takes the VIP back on that lease.
  const n2vipd = running.pop()!;
  expect((await stopVipd(n2vipd)).code).toBe(0);
  await waitFor("n1 alone holding the VIP", () => (recorder!.holders().join(",") === "n1" ? true : null), 10_000);
  expect(await queue()).toEqual(["n1"]);
  expect([...new Set((await etcdRange(site(), "n1", PREFIX)).filter((kv) => kv.key.endsWith("/n1")).map((kv) => kv.lease))]).toEqual(newLeases);
  expect(since(t0)).toEqual({ overlapMs: 0, addressOverlapMs: 0, problems: [] });
}, 60_000);
