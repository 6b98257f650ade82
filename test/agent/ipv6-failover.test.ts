// An IPv6 VIP through the failures the IPv4 lab runs: the holder killed
// (SIGKILL) and the holder frozen (SIGSTOP for two hold times, then
// SIGCONT). The other node takes the VIP after the holder's silence, the
// dead or frozen node's kernel stops answering for it by its proof deadline
// (the fence's IPv6 sets and ND rules), a resumed node does not take it back,
// and at no instant do two nodes hold it. The witness is the recorder's
// `ip monitor` / `nft monitor` in each node namespace.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { CI_ALLOWANCE, vipdBounds } from "../lab/bounds.ts";
import { labNow, spawnInNetns } from "../lab/cluster.ts";
import { etcdRange } from "../lab/etcd-admin.ts";
import type { Host } from "../lab/netns.ts";
import { OwnershipRecorder } from "../lab/recorder.ts";
import { sleep, waitFor } from "../lab/sh.ts";
import { SmallLab, stopVipd } from "../lab/small-lab.ts";
import { overlap } from "../lab/stats.ts";

const VIP = "2001:db8::160";
const B = vipdBounds();
const HOLD_MS = B.holdMs;
const RELEASE_MS = B.releaseMs + CI_ALLOWANCE.releaseMs;
const SERVE_MS = B.serveMs + CI_ALLOWANCE.serveMs;

let lab: SmallLab;
let n1: Host;
let n2: Host;
let recorder: OwnershipRecorder;
const procs = new Map<string, ReturnType<SmallLab["vipd"]>>();

const site = () => ({ nodes: [{ name: "n1", host: n1 }, { name: "n2", host: n2 }] });
const queue = async () =>
  (await etcdRange(site(), "n1", `/vipd/elections/${VIP}/`)).sort((a, b) => a.createRevision - b.createRevision).map((kv) => kv.key.slice(kv.key.lastIndexOf("/") + 1));

function start(host: Host): void {
  const file = lab.vipConfig("vip6.yaml", VIP);
  procs.set(host.name, lab.vipd(host, ["--config", file, "--node-name", host.name, "--etcd-endpoints", "http://127.0.0.1:2379",
    "--health-listen", `127.0.0.1:${host.name === "n1" ? 18171 : 18172}`, "--log-format", "json"]));
}

const holder = () => waitFor("one holder of the VIP", () => (recorder.holders().length === 1 ? recorder.holders()[0]! : null), 20_000);

beforeAll(async () => {
  lab = await SmallLab.start(["n1", "n2"]);
  [n1, n2] = [lab.host("n1"), lab.host("n2")];
  start(n1);
  await waitFor("n1 holding the VIP", () => lab.seg.has(n1, VIP), 20_000);
  start(n2);
  await waitFor("n2 queued behind n1", async () => (await queue()).join(",") === "n1,n2", 20_000);
  recorder = await OwnershipRecorder.start({ vip: VIP, dir: lab.dir, nodes: site().nodes, spawnIn: spawnInNetns });
}, 60_000);

afterAll(async () => {
  await recorder?.close();
  for (const p of procs.values()) await stopVipd(p);
  await lab?.close();
}, 30_000);

test("SIGKILL of the holder: its kernel stops answering by its deadline, the other node holds the VIP, no overlap", async () => {
  const victim = await holder();
  const other = victim === "n1" ? "n2" : "n1";
  const t0 = labNow();
  procs.get(victim)!.kill("SIGKILL");
  await procs.get(victim)!.exited;
  await waitFor(`${victim} no longer holding (fenced)`, () => !recorder.isHeld(victim), RELEASE_MS + 1000, 5);
  const fencedMs = labNow() - t0;
  await waitFor(`${other} holding`, () => recorder.isHeld(other), SERVE_MS + 1000, 5);
  const takenMs = labNow() - t0;
  console.log(`IPv6 crash: ${victim} fenced after ${Math.round(fencedMs)} ms; ${other} holds after ${Math.round(takenMs)} ms`);
  expect(fencedMs).toBeLessThanOrEqual(RELEASE_MS);
  expect(takenMs).toBeLessThanOrEqual(SERVE_MS);
  expect(overlap(recorder.intervals(t0, labNow())).total).toBe(0);
  expect(recorder.problems).toEqual([]);
  // The killed node comes back behind the holder.
  start(lab.host(victim));
  await waitFor(`${victim} queued again`, async () => (await queue()).join(",") === `${other},${victim}`, 20_000);
  expect(recorder.holders()).toEqual([other]);
}, 60_000);

test("SIGSTOP of the holder for two hold times, then SIGCONT: the other node holds the VIP, the resumed one does not take it back, no overlap", async () => {
  const victim = await holder();
  const other = victim === "n1" ? "n2" : "n1";
  const t0 = labNow();
  procs.get(victim)!.kill("SIGSTOP");
  try {
    await waitFor(`${other} holding`, () => recorder.isHeld(other), 10_000);
    await sleep(Math.max(0, 2 * HOLD_MS - (labNow() - t0)));
  } finally {
    procs.get(victim)!.kill("SIGCONT");
  }
  // Resumed, it learns it was deposed and waits behind the new holder.
  await waitFor(`${victim} queued behind ${other}`, async () => (await queue()).join(",") === `${other},${victim}`, 20_000);
  await sleep(500);
  expect(recorder.holders()).toEqual([other]);
  expect(await lab.seg.has(lab.host(victim), VIP)).toBe(false);
  expect(overlap(recorder.intervals(t0, labNow())).total).toBe(0);
  expect(recorder.problems).toEqual([]);
}, 60_000);
