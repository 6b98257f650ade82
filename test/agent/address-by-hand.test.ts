// The VIP's address changed by hand at run time, behind vipd's back (an
// operator's `ip addr`, a network script). vipd follows the kernel's address
// events: the holder puts back a VIP deleted from its link, and a node that
// does not hold the VIP removes it when someone adds it there — while that
// node's fence keeps the stray address from answering. Neither moves the
// VIP or touches the queue. The witness is the recorder's `ip monitor` /
// `nft monitor` in each node and `ip -j addr`; the queue is read from etcd.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { HEARTBEAT_INTERVAL_MS } from "../../src/election/proof.ts";
import { labNow, spawnInNetns } from "../lab/cluster.ts";
import { etcdRange } from "../lab/etcd-admin.ts";
import type { Host } from "../lab/netns.ts";
import { OwnershipRecorder } from "../lab/recorder.ts";
import { waitFor } from "../lab/sh.ts";
import { SmallLab, stopVipd } from "../lab/small-lab.ts";

const VIP = "192.0.2.190";
const PREFIX = "/vipd/";
/** `ip -j addr` shows an address without a lifetime ("forever") as this. */
const FOREVER = 4294967295;
/**
 * The holder puts the address back on the kernel's event (a few ms in the
 * lab), and at the latest with the refresh after its next heartbeat; plus
 * room for a busy machine.
 */
const PUT_BACK_MS = HEARTBEAT_INTERVAL_MS + 100;
/**
 * A node that does not hold the VIP refreshes nothing: only the event makes
 * it remove a stray address. Allowed: one scheduling hiccup.
 */
const REMOVE_MS = 250;

let lab: SmallLab;
let n1: Host;
let n2: Host;
let recorder: OwnershipRecorder;
let running: ReturnType<SmallLab["vipd"]>[] = [];

const site = () => ({ nodes: [{ name: "n1", host: n1 }, { name: "n2", host: n2 }] });
/** The VIP's queue as etcd holds it, first in line first. */
const queue = async () =>
  (await etcdRange(site(), "n1", `${PREFIX}elections/${VIP}/`)).sort((a, b) => a.createRevision - b.createRevision).map((kv) => kv.key.slice(kv.key.lastIndexOf("/") + 1));
const vipOn = async (h: Host) => (await lab.seg.addresses(h)).find((a) => a.local === VIP) ?? null;

beforeAll(async () => {
  lab = await SmallLab.start(["n1", "n2"]);
  [n1, n2] = [lab.host("n1"), lab.host("n2")];
  const file = lab.vipConfig("vip.yaml", VIP);
  const start = (host: Host, port: number) =>
    lab.vipd(host, ["--config", file, "--node-name", host.name, "--etcd-endpoints", "http://127.0.0.1:2379", "--health-listen", `127.0.0.1:${port}`, "--log-format", "json"]);
  running.push(start(n1, 18201));
  await waitFor("n1 holding the VIP", () => lab.seg.has(n1, VIP), 20_000);
  running.push(start(n2, 18202));
  await waitFor("n2 queued behind n1", async () => (await queue()).join(",") === "n1,n2", 20_000);
  recorder = await OwnershipRecorder.start({ vip: VIP, dir: lab.dir, nodes: site().nodes, spawnIn: spawnInNetns });
}, 60_000);

afterAll(async () => {
  await recorder?.close();
  for (const p of running) expect((await stopVipd(p)).code).toBe(0);
  running = [];
  await lab?.close();
}, 30_000);

/** From t0 on, nothing moved: n1 alone held the VIP and n2 never answered for it. */
async function nothingMovedSince(t0: number): Promise<void> {
  const now = labNow();
  expect(recorder.holders()).toEqual(["n1"]);
  const held = recorder.intervals(t0, now);
  expect(held.get("n2")).toEqual([]);
  expect(recorder.problems).toEqual([]);
  expect(await queue()).toEqual(["n1", "n2"]);
}

test("the VIP deleted by hand from the holder: vipd puts it back within a heartbeat, as its own (/32, finite lifetime), and nothing moves", async () => {
  expect(recorder.holders()).toEqual(["n1"]);
  const t0 = labNow();
  await lab.seg.ip(n1.ns, "addr", "del", `${VIP}/32`, "dev", n1.link);
  const back = await waitFor("the VIP back on n1", () => vipOn(n1), 5000, 5);
  const ms = labNow() - t0;
  console.log(`deleted by hand on the holder: back after ${Math.round(ms)} ms`);
  expect(ms).toBeLessThanOrEqual(PUT_BACK_MS);
  expect(back.prefixlen).toBe(32);
  expect(back.valid_life_time).toBeLessThan(FOREVER);
  // The recorder saw it go and come back on n1 alone.
  expect(recorder.addressEdges.filter((e) => e.t >= t0).map((e) => [e.node, e.held])).toEqual([["n1", false], ["n1", true]]);
  expect(await vipOn(n2)).toBeNull();
  await nothingMovedSince(t0);
}, 30_000);

test("the VIP added by hand to a node that does not hold it: vipd removes it at once, and its fence kept it from answering meanwhile", async () => {
  expect(recorder.holders()).toEqual(["n1"]);
  const t0 = labNow();
  await lab.seg.ip(n2.ns, "addr", "add", `${VIP}/32`, "dev", n2.link);
  await waitFor("the stray VIP gone from n2", async () => (await vipOn(n2)) === null, 5000, 5);
  const ms = labNow() - t0;
  console.log(`added by hand on a non-holder: removed after ${Math.round(ms)} ms`);
  expect(ms).toBeLessThanOrEqual(REMOVE_MS);
  // The recorder saw the stray address come and go on n2, fenced the whole time.
  expect(recorder.addressEdges.filter((e) => e.t >= t0).map((e) => [e.node, e.held])).toEqual([["n2", true], ["n2", false]]);
  expect(await vipOn(n1)).not.toBeNull();
  await nothingMovedSince(t0);
}, 30_000);
