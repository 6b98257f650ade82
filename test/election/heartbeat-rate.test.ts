// Heartbeat by role (design.md §3), against a real etcd: a holder writes its
// heartbeat every 250 ms, a standby every half hold (1250 ms at the default
// 2500 ms). Counted from what etcd holds: the heartbeat key's `version` (how
// many times etcd wrote it) and etcd's revision (every write vipd makes is
// one revision), over a few seconds of steady state. The sessions are the
// agent's own (src/election/session.ts), in this process; "the kernel" is a
// set the test fills when a session is proven, as the agent's slot would.
//
// The issue's target for 3 nodes and 1 VIP: ≤ 6 etcd writes per second in all
// (12 with every agent at 250 ms).
//
// Each measurement runs against etcd without raft pre-vote (3.4's default,
// Debian's etcd-server) and with it (3.5's, kubeadm's), to the same limits.
import { describe, expect, test } from "bun:test";
import { EtcdConnection, within } from "../../src/election/connection.ts";
import { currentIncarnation } from "../../src/election/incarnation.ts";
import { electionKey, heartbeatKey, prefixEnd } from "../../src/election/keys.ts";
import { HEARTBEAT_INTERVAL_MS } from "../../src/election/proof.ts";
import { Session } from "../../src/election/session.ts";
import { monotonicClock } from "../../src/seams.ts";
import { sleep, waitFor } from "../lab/sh.ts";
import { type EtcdSessions, etcdSessions, writeGhost } from "./fixtures/etcd-sessions.ts";

const VIP = "192.0.2.20";
const HOLD = 2500;
/** Long enough for about 5 standby heartbeats and 24 of the holder's. */
const MEASURE_MS = 6000;
/** Expected rates, per second, with the room a shared 2-core machine needs either way. */
const HOLDER = { min: 3.3, max: 4.5 };
const STANDBY = { min: 0.5, max: 1.0 };
/**
 * A head made by a release beats at once: the watch brings it the deletion,
 * and its heartbeat is one round trip later. Half a holder's interval, so a
 * head that waited for its standby heartbeat (due anywhere in the next
 * 1250 ms) fails it most times, and one at the standby pace always fails the
 * count below.
 */
const AT_ONCE_MS = HEARTBEAT_INTERVAL_MS / 2;
/** Heartbeats of the new head in the first second after the release: one at once and one every 250 ms (5), less one late timer. */
const FIRST_SECOND_MIN = 4;
const quiet = { error: () => {}, warn: () => {}, info: () => {}, debug: () => {} };

let prefixN = 0;

interface Agent {
  readonly node: string;
  readonly session: Session;
  readonly serving: Set<string>;
}

function agent(fx: EtcdSessions, node: string, prefix: string): Agent {
  const endpoints = fx.etcd.endpoints;
  const conn = new EtcdConnection({ endpoints });
  const serving = new Set<string>();
  const session = new Session({
    settings: { endpoints, prefix, node, holdMs: HOLD, leaseTtlS: 10 },
    conn, identity: currentIncarnation({ holdMs: HOLD, version: "test" }), clock: monotonicClock, log: quiet, serving: () => serving,
  });
  // As the agent's slot does: the kernel answers once the session proves the VIP.
  session.on("changed", () => {
    if (session.proof(VIP) !== null) serving.add(VIP);
  });
  session.start();
  fx.track(session, conn);
  return { node, session, serving };
}

/** Each node's heartbeat key version and etcd's revision, read in one revision. */
async function snapshot(fx: EtcdSessions, prefix: string, nodes: readonly string[]): Promise<{ at: number; revision: number; versions: Map<string, number> }> {
  const key = Buffer.from(`${prefix}heartbeats/`);
  const res = await fx.admin.kv.range({ key, range_end: prefixEnd(key) }, within(2000));
  const at = performance.now();
  const versions = new Map(res.kvs.map((kv) => [kv.key.toString().slice(key.length), Number(kv.version)]));
  for (const n of nodes) if (!versions.has(n)) throw new Error(`no heartbeat key for ${n} under ${prefix}`);
  return { at, revision: Number(res.header.revision), versions };
}

/** Heartbeat writes per second of each node, and etcd's writes per second in all, over MEASURE_MS. */
async function rates(fx: EtcdSessions, prefix: string, nodes: readonly string[]): Promise<{ perNode: Record<string, number>; total: number }> {
  const a = await snapshot(fx, prefix, nodes);
  await sleep(MEASURE_MS);
  const b = await snapshot(fx, prefix, nodes);
  const s = (b.at - a.at) / 1000;
  const perNode = Object.fromEntries(nodes.map((n) => [n, (b.versions.get(n)! - a.versions.get(n)!) / s]));
  const total = (b.revision - a.revision) / s;
  console.log(`heartbeat writes/s over ${s.toFixed(1)} s: ${nodes.map((n) => `${n} ${perNode[n]!.toFixed(2)}`).join(", ")}; etcd ${total.toFixed(2)} writes/s in all`);
  return { perNode, total };
}

function expectRate(x: number | undefined, r: { min: number; max: number }): void {
  expect(x).toBeGreaterThanOrEqual(r.min);
  expect(x).toBeLessThanOrEqual(r.max);
}

/**
 * When etcd delivered each write of `key` to this process, and its deletions:
 * the commits as every session here receives them, with their revisions.
 */
async function commits(fx: EtcdSessions, key: string): Promise<{ puts: { t: number; revision: number }[]; deletes: { t: number; revision: number }[]; cancel(): Promise<void> }> {
  const puts: { t: number; revision: number }[] = [];
  const deletes: { t: number; revision: number }[] = [];
  const w = await fx.admin.watch().key(key).create();
  w.on("put", (kv) => void puts.push({ t: performance.now(), revision: Number(kv.mod_revision) }));
  w.on("delete", (kv) => void deletes.push({ t: performance.now(), revision: Number(kv.mod_revision) }));
  return { puts, deletes, cancel: () => w.cancel() };
}

for (const preVote of [false, true]) {
  describe(`etcd ${preVote ? "with" : "without"} raft pre-vote`, () => {
    const fx = etcdSessions({ preVote });

    test("1 holder and 2 standbys: the holder writes 4 heartbeats a second, each standby under 1; after a release the new head beats at once and at the holder's pace, and the old one slows", async () => {
      const p = `/rate${++prefixN}/`;
      const [a, b, c] = ["a", "b", "c"].map((n) => agent(fx, n, p)) as [Agent, Agent, Agent];
      for (const x of [a, b, c]) await waitFor(`${x.node} ready`, () => x.session.ready, 10_000);
      await a.session.join(VIP);
      await waitFor("a serving", () => a.serving.has(VIP), 5000);
      await b.session.join(VIP);
      await c.session.join(VIP);
      await waitFor("c sees the queue a, b, c", () => c.session.view.queue(VIP).map((q) => q.node).join() === "a,b,c", 5000);
      // Past the join's own heartbeats and the first retry.
      await sleep(1500);

      const one = await rates(fx, p, ["a", "b", "c"]);
      expectRate(one.perNode.a, HOLDER);
      expectRate(one.perNode.b, STANDBY);
      expectRate(one.perNode.c, STANDBY);
      // The issue's target: ≤ 6 etcd writes per second for 3 nodes and 1 VIP.
      expect(one.total).toBeLessThanOrEqual(6);

      // a lets go (its kernel first, as the agent does): b heads the queue and takes the holder's pace; a, in no queue now, stands by.
      const bBeats = await commits(fx, heartbeatKey(p, "b"));
      const aKey = await commits(fx, electionKey(p, VIP, "a"));
      a.serving.delete(VIP);
      await a.session.release([VIP]);
      await waitFor("b serving", () => b.serving.has(VIP), 2000);
      await sleep(1500);
      await bBeats.cancel();
      await aKey.cancel();
      // Right after the release: b's heartbeats committed in its first second as head (design.md §3: one at once, every 250 ms after).
      expect(aKey.deletes.length).toBe(1);
      const released = aKey.deletes[0]!;
      const first = bBeats.puts.filter((x) => x.revision > released.revision && x.t <= released.t + 1000);
      console.log(`b's heartbeats after the release (ms after its commit reached this process): ${first.map((x) => Math.round(x.t - released.t)).join(", ")}`);
      expect(first.length).toBeGreaterThanOrEqual(FIRST_SECOND_MIN);
      expect(first[0]!.t - released.t).toBeLessThanOrEqual(AT_ONCE_MS);

      const two = await rates(fx, p, ["a", "b", "c"]);
      expectRate(two.perNode.b, HOLDER);
      expectRate(two.perNode.a, STANDBY);
      expectRate(two.perNode.c, STANDBY);
      expect(two.total).toBeLessThanOrEqual(6);
    }, 60_000);

    test("a standby that takes over from a dead holder heartbeats at the holder's pace from then on; the one behind it stays slow", async () => {
      const p = `/rate${++prefixN}/`;
      // A holder that died right after a heartbeat: its keys stay until its lease runs out (30 s, beyond the test).
      const { lease } = await writeGhost(fx.admin, p, { node: "ghost", holdMs: HOLD, vips: [VIP] });
      const [b, c] = ["b", "c"].map((n) => agent(fx, n, p)) as [Agent, Agent];
      for (const x of [b, c]) await waitFor(`${x.node} ready`, () => x.session.ready, 10_000);
      await b.session.join(VIP);
      await c.session.join(VIP);
      await waitFor("c sees the queue ghost, b, c", () => c.session.view.queue(VIP).map((q) => q.node).join() === "ghost,b,c", 5000);
      // Standing by behind a silent holder: both slow until b's turn comes.
      const before = await snapshot(fx, p, ["b", "c"]);
      const at = b.session.takeoverAt(VIP)!;
      await sleep(Math.max(0, at - monotonicClock()) + 5);
      expect(await b.session.takeover(VIP)).toEqual({ took: true, from: ["ghost"] });
      const after = await snapshot(fx, p, ["b", "c"]);
      const waited = (after.at - before.at) / 1000;
      // Over the wait, b's heartbeats came at a standby's pace (its takeover's put is one more write).
      expect((after.versions.get("b")! - before.versions.get("b")! - 1) / waited).toBeLessThanOrEqual(STANDBY.max + 0.5);
      await waitFor("b serving", () => b.serving.has(VIP), 2000);
      await sleep(1000);
      const r = await rates(fx, p, ["b", "c"]);
      expectRate(r.perNode.b, HOLDER);
      expectRate(r.perNode.c, STANDBY);
      await fx.admin.leaseClient.leaseRevoke({ ID: lease });
    }, 60_000);
  });
}
