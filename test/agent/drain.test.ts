// `vipd drain`, `undrain` and `handover` against three real agents and a
// real etcd, run as an operator would: the command in one namespace, the
// agents in theirs. Every outcome is checked where it happens: the address
// in each node's kernel, the keys in etcd (read through etcd's own gateway),
// and each agent's /status and /metrics. An ownership witness (recorder.ts)
// watches every node's kernel for the whole file: two holders at any moment
// fail it, and the planned moves are timed from their key's commit (seen on
// the holder's etcd member) to the holder letting go and the next holding,
// against the graceful bound (bounds.ts).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { labNow, REPO_ROOT, spawnInNetns } from "../lab/cluster.ts";
import { CI_ALLOWANCE, vipdBounds } from "../lab/bounds.ts";
import { type EtcdKv, etcdRange, type EtcdSite } from "../lab/etcd-admin.ts";
import { EtcdKeyWatch } from "../lab/etcd-watch.ts";
import type { Host } from "../lab/netns.ts";
import { parsePrometheusText, sampleValue } from "../../src/health/prom-text.ts";
import { OwnershipRecorder } from "../lab/recorder.ts";
import { sh, sleep, waitFor } from "../lab/sh.ts";
import { SmallLab, stopVipd } from "../lab/small-lab.ts";
import { overlap } from "../lab/stats.ts";

const VIP = "192.0.2.150";
const NODES = ["n1", "n2", "n3"] as const;
type Node = (typeof NODES)[number];
const PORT = 18201;
const ETCD = ["--etcd-endpoints", "http://127.0.0.1:2379"];
/** A planned move, from its key's commit: the holder letting go, the next holding (bounds.ts). */
const PLANNED_MS = vipdBounds().gracefulMs + CI_ALLOWANCE.gracefulMs;

let lab: SmallLab;
let rec: OwnershipRecorder;
let recordingSince = 0;
let site: EtcdSite;
let config: string;
const agents = new Map<Node, Subprocess<"ignore", "ignore", "pipe">>();

beforeAll(async () => {
  lab = await SmallLab.start(NODES);
  site = { nodes: NODES.map((name) => ({ name, host: lab.host(name) })) };
  config = lab.vipConfig("vip.yaml", VIP);
  rec = await OwnershipRecorder.start({ vip: VIP, dir: lab.dir, nodes: NODES.map((name) => ({ name, host: lab.host(name) })), spawnIn: spawnInNetns });
  recordingSince = labNow();
  // n1 first, alone, so the queue starts as n1, n2, n3.
  start("n1");
  await waitFor("n1 holds the VIP", () => lab.seg.has(lab.host("n1"), VIP), 15_000);
  start("n2");
  await waitFor("n2 in the queue", async () => (await queue()).length === 2, 10_000);
  start("n3");
  await waitFor("n3 in the queue", async () => (await queue()).length === 3, 10_000);
}, 60_000);

afterAll(async () => {
  await rec?.close();
  await lab?.close();
}, 30_000);

/**
 * Runs a planned move and times it from the commit of `key` (the drain or
 * hand-over request), as `from`'s etcd member delivers it, to `from` letting
 * go of the VIP and `to` holding it, by the witness's edges.
 */
async function timedMove(key: string, from: Node, to: Node, run: () => Promise<void>): Promise<{ releasedMs: number; acquiredMs: number }> {
  const watch = await EtcdKeyWatch.start((name, argv, opts) => spawnInNetns(lab.host(from).ns, join(lab.dir, `${name}.log`), name, argv, opts), key);
  const start = labNow();
  try {
    await run();
  } finally {
    await watch.stop().catch(() => {});
  }
  const put = watch.events.find((e) => e.key === key && e.type === "PUT");
  expect(put, `${key} seen committed on ${from}'s member`).toBeDefined();
  await waitFor(`${to} holds the VIP`, () => rec.isHeld(to), 5000, 5);
  const released = rec.edges.find((e) => e.node === from && !e.held && e.t >= start);
  const acquired = rec.edges.find((e) => e.node === to && e.held && e.t >= start);
  expect(released, `${from} let go`).toBeDefined();
  expect(acquired, `${to} held the VIP`).toBeDefined();
  const t = { releasedMs: released!.t - put!.t, acquiredMs: acquired!.t - put!.t };
  console.log(`${key}: ${from} let go ${Math.round(t.releasedMs)} ms and ${to} held the VIP ${Math.round(t.acquiredMs)} ms after the key's commit`);
  return t;
}



function start(node: Node): void {
  agents.set(node, lab.vipd(lab.host(node), ["--config", config, "--node-name", node, ...ETCD, "--health-listen", `127.0.0.1:${PORT}`, "--log-format", "json"]));
}

/** `vipd ARGS` run in `from`'s namespace, as an operator on that node would. */
async function vipd(from: Host, args: readonly string[]): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn(["ip", "netns", "exec", from.ns, process.execPath, join(REPO_ROOT, "src", "main.ts"), ...args], {
    stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, SUDO_USER: "", USER: "ops" },
  });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}
const admin = () => lab.host("n3");

/** The VIP's queue as etcd holds it, first in line first. */
async function queue(): Promise<string[]> {
  const kvs = await etcdRange(site, "n1", `/vipd/elections/${VIP}/`);
  return kvs.sort((a, b) => a.createRevision - b.createRevision).map((kv) => kv.key.split("/").at(-1)!);
}

async function keys(prefix: string): Promise<EtcdKv[]> {
  return etcdRange(site, "n1", `/vipd/${prefix}`);
}

/** Which nodes have the VIP on their link now (the kernel's view). */
async function holders(): Promise<Node[]> {
  const has = await Promise.all(NODES.map((n) => lab.seg.has(lab.host(n), VIP)));
  return NODES.filter((_, i) => has[i]);
}

async function http(node: Node, path: string): Promise<string> {
  return sh(["ip", "netns", "exec", lab.host(node).ns, "curl", "-s", `http://127.0.0.1:${PORT}${path}`]);
}
async function metric(node: Node, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  return sampleValue(parsePrometheusText(await http(node, "/metrics")), name, labels);
}

test("drain hands the VIP over at once, keeps the node out across a restart; undrain lets it stand again", async () => {
  expect(await holders()).toEqual(["n1"]);
  let r = { code: -1, out: "", err: "" };
  const move = await timedMove("/vipd/drains/n1", "n1", "n2", async () => {
    r = await vipd(admin(), ["drain", "n1", "--reason", "kernel upgrade", "--wait", ...ETCD]);
  });
  expect(move.releasedMs).toBeLessThanOrEqual(PLANNED_MS);
  expect(move.acquiredMs).toBeLessThanOrEqual(PLANNED_MS);
  expect(r.err).toBe("");
  expect(r.code).toBe(0);
  expect(r.out).toMatch(/^drained n1 \(by ops@\S+ at \S+\); it leaves the queues of 192\.0\.2\.150 now\n/);
  expect(r.out).toContain(`${VIP}: held by n2\n`);
  expect(r.out).toEndWith("n1 is drained: it holds no VIP and stands for none\n");
  // The next in line holds it, and nobody else.
  await waitFor("the VIP on n2", async () => (await holders()).join() === "n2", 5000);
  expect(await queue()).toEqual(["n2", "n3"]);
  const [drain] = await keys("drains/");
  expect(drain!.key).toBe("/vipd/drains/n1");
  expect(JSON.parse(drain!.value)).toMatchObject({ reason: "kernel upgrade", by: expect.stringMatching(/^ops@/) });
  // The drained node says so, stays healthy (it is out on purpose), and counts it.
  const status = JSON.parse(await http("n1", "/status")) as { drained: string | null; drains: { node: string }[] };
  expect(status.drained).toMatch(/^drained by ops@\S+ at \S+: kernel upgrade$/);
  expect(status.drains.map((d) => d.node)).toEqual(["n1"]);
  expect(await metric("n1", "vipd_drained")).toBe(1);
  expect(await metric("n1", "vipd_drains_total")).toBe(1);
  expect(await metric("n1", "vipd_ownership_transitions_total", { vip: VIP, direction: "released", reason: "drained" })).toBe(1);
  expect((await sh(["ip", "netns", "exec", lab.host("n1").ns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", `http://127.0.0.1:${PORT}/healthz`]))).toBe("200");

  // A restart does not undo it: the new run registers and stands for nothing.
  expect((await stopVipd(agents.get("n1")!)).code).toBe(0);
  start("n1");
  await waitFor("n1 registered again", async () => (await keys("agents/")).some((k) => k.key === "/vipd/agents/n1"), 10_000);
  await waitFor("n1 healthy", async () => (await http("n1", "/healthz").catch(() => "")).startsWith("ok"), 10_000);
  await sleep(1000);
  expect(await queue()).toEqual(["n2", "n3"]);

  // Undrain: n1 joins at the back; the holder does not change.
  const u = await vipd(admin(), ["undrain", "n1", ...ETCD]);
  expect([u.code, u.out, u.err]).toEqual([0, "undrained n1: it stands for its VIPs again\n", ""]);
  await waitFor("n1 back in the queue", async () => (await queue()).join() === "n2,n3,n1", 5000);
  expect(await holders()).toEqual(["n2"]);
  expect(await keys("drains/")).toEqual([]);
  expect(await metric("n1", "vipd_drained")).toBe(0);
  const again = await vipd(admin(), ["undrain", "n1", ...ETCD]);
  expect([again.code, again.out]).toEqual([0, "n1 was not drained\n"]);
}, 60_000);

test("drain refuses to leave a VIP without a healthy candidate, unless --force", async () => {
  // Queue: n2 (holder), n3, n1. Drain n1 and n3: n2 is the last candidate.
  expect((await vipd(admin(), ["drain", "n1", ...ETCD])).code).toBe(0);
  expect((await vipd(admin(), ["drain", "n3", "--wait", ...ETCD])).code).toBe(0);
  expect(await queue()).toEqual(["n2"]);
  const refused = await vipd(admin(), ["drain", "n2", ...ETCD]);
  expect(refused.code).toBe(1);
  expect(refused.err).toBe(`vipd drain: refusing to drain n2: no other healthy node stands for ${VIP}, which would go dark. Start or undrain another candidate first, or give --force to drain anyway\n`);
  expect((await keys("drains/")).map((k) => k.key)).toEqual(["/vipd/drains/n1", "/vipd/drains/n3"]);
  expect(await holders()).toEqual(["n2"]);

  // A candidate that stands but does not beat (frozen) is not a healthy one.
  expect((await vipd(admin(), ["undrain", "n3", ...ETCD])).code).toBe(0);
  await waitFor("n3 back in the queue", async () => (await queue()).join() === "n2,n3", 5000);
  const n3 = agents.get("n3")!;
  process.kill(n3.pid, "SIGSTOP");
  try {
    const frozen = await vipd(admin(), ["drain", "n2", ...ETCD]);
    expect(frozen.code).toBe(1);
    expect(frozen.err).toContain(`refusing to drain n2: no other healthy node stands for ${VIP}`);
  } finally {
    process.kill(n3.pid, "SIGCONT");
  }
  expect(await holders()).toEqual(["n2"]);

  // --force: the operator takes the outage.
  expect((await vipd(admin(), ["drain", "n3", "--wait", ...ETCD])).code).toBe(0);
  const forced = await vipd(admin(), ["drain", "n2", "--force", "--wait", ...ETCD]);
  expect(forced.code).toBe(0);
  expect(forced.out).toContain(`warning: ${VIP} has no other healthy candidate and will go dark\n`);
  expect(forced.out).toContain(`${VIP}: nobody stands for it now\n`);
  expect(await holders()).toEqual([]);
  expect(await queue()).toEqual([]);

  for (const n of ["n2", "n3", "n1"]) expect((await vipd(admin(), ["undrain", n, ...ETCD])).code).toBe(0);
  await waitFor("all three in the queue", async () => (await queue()).length === 3, 10_000);
  await waitFor("one holder", async () => (await holders()).length === 1, 10_000);
}, 60_000);

test("handover moves the VIP to the next in line, or to a named node further back", async () => {
  const [first, second, third] = (await queue()) as Node[];
  await waitFor(`the VIP on ${first}`, async () => (await holders()).join() === first, 10_000);

  let h = { code: -1, out: "", err: "" };
  const move = await timedMove(`/vipd/handovers/${VIP}`, first!, second!, async () => {
    h = await vipd(admin(), ["handover", VIP, ...ETCD]);
  });
  expect(move.releasedMs).toBeLessThanOrEqual(PLANNED_MS);
  expect(move.acquiredMs).toBeLessThanOrEqual(PLANNED_MS);
  expect(h.err).toBe("");
  expect(h.code).toBe(0);
  expect(h.out).toMatch(new RegExp(`^${VIP.replaceAll(".", "\\.")}: handed over from ${first} to ${second} in \\d+ ms\n$`));
  expect(await holders()).toEqual([second!]);
  // The old holder stepped back, to the end of the line; the request is gone.
  await waitFor("the old holder back in line", async () => (await queue()).join() === [second, third, first].join(), 5000);
  expect(await keys("handovers/")).toEqual([]);
  expect(await metric(first!, "vipd_handovers_total", { vip: VIP, direction: "out" })).toBe(1);
  expect(await metric(second!, "vipd_handovers_total", { vip: VIP, direction: "in" })).toBe(1);
  expect(await metric(first!, "vipd_ownership_transitions_total", { vip: VIP, direction: "released", reason: "handover" })).toBe(1);

  // To the last in line: the one between steps back first, then the holder.
  const to = await vipd(admin(), ["handover", VIP, "--to", first!, ...ETCD]);
  expect([to.code, to.err]).toEqual([0, ""]);
  expect(to.out).toMatch(new RegExp(`handed over from ${second} to ${first} in \\d+ ms`));
  expect(await holders()).toEqual([first!]);
  await waitFor("both others behind the new holder", async () => (await queue()).length === 3, 5000);
  expect((await queue())[0]).toBe(first!);

  const already = await vipd(admin(), ["handover", VIP, "--to", first!, ...ETCD]);
  expect([already.code, already.out]).toEqual([0, `${VIP}: ${first} is already first in line; nothing to do\n`]);
}, 60_000);

test("handover says why it cannot: unknown node, drained node, nobody standing, bad input", async () => {
  const q = await queue();
  const cases: [string[], number, string][] = [
    [["handover", VIP, "--to", "n9"], 1, `vipd handover: cannot hand ${VIP} over to n9: no vipd runs as n9\n`],
    [["handover", "198.51.100.7"], 1, "vipd handover: nobody stands for 198.51.100.7: there is no queue for it under /vipd/ (is it in a running agent's configuration?)\n"],
  ];
  for (const [args, code, err] of cases) {
    const r = await vipd(admin(), [...args, ...ETCD]);
    expect([r.code, r.err, r.out]).toEqual([code, err, ""]);
  }
  const last = q.at(-1)!;
  expect((await vipd(admin(), ["drain", last, "--wait", ...ETCD])).code).toBe(0);
  const drained = await vipd(admin(), ["handover", VIP, "--to", last, ...ETCD]);
  expect(drained.code).toBe(1);
  expect(drained.err).toMatch(new RegExp(`^vipd handover: cannot hand ${VIP.replaceAll(".", "\\.")} over to ${last}: it is drained by ops@\\S+ at \\S+; "vipd undrain ${last}" first\n$`));
  expect((await vipd(admin(), ["undrain", last, ...ETCD])).code).toBe(0);
  expect(await holders()).toEqual([q[0] as Node]);

  const usage: [string[], string][] = [
    [["handover"], "vipd handover: give exactly one VIP"],
    [["handover", "10.0.0.300"], 'vipd handover: "10.0.0.300" is not an IPv4 or IPv6 address'],
    [["handover", VIP, "--to", "bad/name"], 'vipd handover: --to "bad/name" is not a node name'],
    [["drain"], "vipd drain: give exactly one NODE"],
    [["drain", "n1", "n2"], "vipd drain: give exactly one NODE"],
    [["drain", "-x"], "flag -x: unknown flag; see --help"],
    [["drain", "n1", "--timeout", "5"], "vipd drain: --timeout only applies with --wait"],
    [["undrain", ".n1"], 'vipd undrain: ".n1" is not a node name'],
  ];
  for (const [args, msg] of usage) {
    const r = await vipd(admin(), [...args, ...ETCD]);
    expect(r.code, args.join(" ")).toBe(2);
    expect(r.err, args.join(" ")).toContain(msg);
  }
}, 60_000);

// Last: bun runs a file's tests in the order they are defined.
test("the whole file: never two holders, and the witness whole", () => {
  expect(overlap(rec.intervals(recordingSince, labNow())).intervals).toEqual([]);
  expect(rec.problems).toEqual([]);
  expect(rec.overruns).toBe(0);
  // It saw the moves above: start, drain, forced drain, hand-overs.
  expect(rec.edges.filter((e) => e.held).length).toBeGreaterThanOrEqual(4);
});
