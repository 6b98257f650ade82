// A hand-over blocked by a frozen node ahead of its target (design.md §11):
// "A frozen or cut-off node ahead of the target does not step back: the
// hand-over times out and says who stood in the way, and nothing moved but
// keys that stepped back." Queue n1 (holder), n2, n3; n2 freezes (SIGSTOP)
// and stays frozen past the command's 2 s health window (well inside its
// 10 s lease), so `vipd handover` without --to picks n3. The holder waits
// for n2, which never steps back: the command fails after its timeout naming
// n2, the request is gone, the queue is as it was, and an ownership witness
// on every node's kernel sees n1 hold the VIP the whole time — not dark for
// an instant, never two holders.
//
// The same with n2 frozen just before the command: the command watches each
// candidate's heartbeat key move for 2 s (operate.ts heardFrom), so a node
// frozen a moment ago is not picked as the target, and the holder is never
// asked to step back to a node that cannot take over.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { labNow, REPO_ROOT, spawnInNetns } from "../lab/cluster.ts";
import { etcdRange, type EtcdSite } from "../lab/etcd-admin.ts";
import { OwnershipRecorder } from "../lab/recorder.ts";
import { sleep, waitFor } from "../lab/sh.ts";
import { SmallLab, stopVipd } from "../lab/small-lab.ts";

const VIP = "192.0.2.176";
const NODES = ["n1", "n2", "n3"] as const;
type Node = (typeof NODES)[number];
const ETCD = ["--etcd-endpoints", "http://127.0.0.1:2379"];
/** The command's own health window (operate.ts HEARD_WITHIN_MS): a node silent longer is no target. */
const HEARD_WITHIN_MS = 2000;

let lab: SmallLab;
let rec: OwnershipRecorder;
let site: EtcdSite;
const agents = new Map<Node, Subprocess<"ignore", "ignore", "pipe">>();
let config: string;
const start = (node: Node) =>
  agents.set(node, lab.vipd(lab.host(node), ["--config", config, "--node-name", node, ...ETCD, "--health-listen", "127.0.0.1:18176", "--log-format", "json"]));

/** One at a time, so the queue is n1, n2, n3. */
async function startInOrder(): Promise<void> {
  start("n1");
  await waitFor("n1 holds the VIP", () => lab.seg.has(lab.host("n1"), VIP), 15_000);
  start("n2");
  await waitFor("n2 in the queue", async () => (await queue()).length === 2, 10_000);
  start("n3");
  await waitFor("n3 in the queue", async () => (await queue()).length === 3, 10_000);
}

/** `vipd handover VIP ARGS` from n3's namespace, as an operator there would run it. */
async function handover(args: readonly string[]): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn(["ip", "netns", "exec", lab.host("n3").ns, process.execPath, join(REPO_ROOT, "src", "main.ts"), "handover", VIP, ...args, ...ETCD], {
    stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, SUDO_USER: "", USER: "ops" },
  });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}

beforeAll(async () => {
  lab = await SmallLab.start(NODES);
  site = { nodes: NODES.map((name) => ({ name, host: lab.host(name) })) };
  rec = await OwnershipRecorder.start({ vip: VIP, dir: lab.dir, nodes: NODES.map((name) => ({ name, host: lab.host(name) })), spawnIn: spawnInNetns });
  config = lab.vipConfig("vip.yaml", VIP);
  await startInOrder();
}, 60_000);

afterAll(async () => {
  await rec?.close();
  await lab?.close();
}, 30_000);

/** The VIP's queue as etcd holds it, first in line first: node and create revision. */
async function queue(): Promise<string[]> {
  const kvs = await etcdRange(site, "n1", `/vipd/elections/${VIP}/`);
  return kvs.sort((a, b) => a.createRevision - b.createRevision).map((kv) => `${kv.key.split("/").at(-1)}@${kv.createRevision}`);
}

test("a frozen node ahead of the target: the hand-over times out naming it, nothing moves, the holder never lets go", async () => {
  const before = await queue();
  expect(before.map((k) => k.split("@")[0])).toEqual(["n1", "n2", "n3"]);
  const n2 = agents.get("n2")!;
  const from = labNow();
  n2.kill("SIGSTOP");
  let out = "";
  let err = "";
  let code = -1;
  let tookMs = 0;
  try {
    await sleep(HEARD_WITHIN_MS + 500);
    const t0 = labNow();
    ({ out, err, code } = await handover(["--timeout", "3"]));
    tookMs = labNow() - t0;
    // Still frozen here, and its lease (10 s) still alive: the queue is as it was.
    expect(await queue()).toEqual(before);
    expect(await etcdRange(site, "n1", "/vipd/handovers/")).toEqual([]);
  } finally {
    n2.kill("SIGCONT");
  }
  const to = labNow();
  console.log(`handover exited ${code} after ${Math.round(tookMs)} ms: ${err.trim()}`);
  expect(out).toBe("");
  expect(err).toBe(`vipd handover: ${VIP}: the hand-over to n3 did not complete within 3 s: n2 is still ahead of it in the queue and did not step back (not running, or cut off from etcd?)\n`);
  expect(code).toBe(1);
  // The kernels' view, from before the freeze to after the thaw: n1 held the VIP throughout, alone.
  expect(rec.problems).toEqual([]);
  const held = rec.intervals(from, to);
  expect(held.get("n1")).toEqual([{ start: from, end: to }]);
  expect(held.get("n2") ?? []).toEqual([]);
  expect(held.get("n3") ?? []).toEqual([]);

  for (const node of NODES) expect((await stopVipd(agents.get(node)!)).code).toBe(0);
}, 60_000);

test("the next in line frozen just before the command: it is not picked (its heartbeat does not move), and the holder keeps the VIP", async () => {
  await startInOrder();
  const before = await queue();
  expect(before.map((k) => k.split("@")[0])).toEqual(["n1", "n2", "n3"]);
  const from = labNow();
  const n2 = agents.get("n2")!;
  n2.kill("SIGSTOP");
  let r: { code: number; out: string; err: string };
  try {
    r = await handover(["--timeout", "3"]);
    expect(await queue()).toEqual(before);
  } finally {
    n2.kill("SIGCONT");
  }
  const to = labNow();
  console.log(`handover exited ${r.code}: ${r.err.trim()}`);
  expect(r.err).toBe(`vipd handover: ${VIP}: the hand-over to n3 did not complete within 3 s: n2 is still ahead of it in the queue and did not step back (not running, or cut off from etcd?)\n`);
  expect(r.code).toBe(1);
  expect(rec.problems).toEqual([]);
  const held = rec.intervals(from, to);
  expect(held.get("n1")).toEqual([{ start: from, end: to }]);
  expect(held.get("n2") ?? []).toEqual([]);
  expect(held.get("n3") ?? []).toEqual([]);
  for (const node of NODES) expect((await stopVipd(agents.get(node)!)).code).toBe(0);
}, 60_000);
