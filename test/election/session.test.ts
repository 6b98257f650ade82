// The etcd session against a real etcd: registration under a node name,
// heartbeats and the proofs they give, the queue writes (join, release,
// takeover), claims, and a deposed holder learning it from its heartbeat.
// Sessions run in this process; "another agent" is either a second Session
// or keys written by hand in the same layout (a run that froze or died).
import { describe, expect, test } from "bun:test";
import { EtcdConnection } from "../../src/election/connection.ts";
import { currentIncarnation, encodeIncarnation, type Incarnation } from "../../src/election/incarnation.ts";
import { agentKey, decodeHeartbeat, electionKey, encodeHeartbeat, heartbeatKey, macsKey, type MacsValue } from "../../src/election/keys.ts";
import { MARGIN_MS, silenceWindow } from "../../src/election/proof.ts";
import { monotonicClock } from "../../src/seams.ts";
import { Session, type SessionEvents } from "../../src/election/session.ts";
import type { Logger } from "../../src/log.ts";
import { sleep, waitFor } from "../lab/sh.ts";
import { etcdSessions, writeGhost } from "./fixtures/etcd-sessions.ts";

const VIP = "192.0.2.10";
const HOLD = 1000;
let prefixN = 0;
const fx = etcdSessions();

function quietLog(lines: string[] = []): Logger {
  const at = (level: string) => (msg: string, fields?: object) => void lines.push(`${level} ${msg} ${fields ? JSON.stringify(fields) : ""}`);
  return { error: at("error"), warn: at("warn"), info: at("info"), debug: () => {} };
}

interface Agent {
  session: Session;
  serving: Set<string>;
  events: { [K in keyof SessionEvents]: SessionEvents[K][] };
  log: string[];
  /** What the session asked this agent's kernel to remove as its dead previous run's claims. */
  removed: string[];
}

function agent(
  node: string,
  prefix: string,
  opts: { identity?: Incarnation; alive?: (pid: number, start: string) => boolean; holdMs?: number; macs?: () => MacsValue } = {},
): Agent {
  const { endpoints } = fx.etcd;
  const conn = new EtcdConnection({ endpoints });
  const serving = new Set<string>();
  const log: string[] = [];
  const removed: string[] = [];
  const holdMs = opts.holdMs ?? HOLD;
  const session = new Session({
    settings: { endpoints, prefix, node, holdMs, leaseTtlS: 5 },
    conn,
    identity: opts.identity ?? currentIncarnation({ holdMs, version: "test" }),
    clock: monotonicClock,
    log: quietLog(log),
    serving: () => serving,
    removeLeftovers: async (claims) => void removed.push(...claims),
    ...(opts.alive ? { processAlive: opts.alive } : {}),
    ...(opts.macs ? { macs: opts.macs } : {}),
  });
  const events = { changed: [], deposed: [], lost: [], fatal: [], heartbeat: [] } as Agent["events"];
  for (const k of Object.keys(events) as (keyof SessionEvents)[]) session.on(k, (e) => (events[k] as unknown[]).push(e));
  session.start();
  fx.track(session, conn);
  return { session, serving, events, log, removed };
}

const freshPrefix = () => `/t${++prefixN}/`;
const ready = (a: Agent) => waitFor("session ready", () => a.session.ready, 5000);

describe("proof", () => {
  test("a head's committed heartbeat proves its key for hold − margin from when it was sent", async () => {
    const p = freshPrefix();
    const a = agent("a", p);
    await ready(a);
    await a.session.join(VIP);
    await waitFor("head", () => a.session.isHead(VIP), 2000);
    const proof = await waitFor("proof", () => a.session.proof(VIP), 2000);
    const left = proof - monotonicClock();
    expect(left).toBeLessThanOrEqual(HOLD - MARGIN_MS);
    // Heartbeats go out every 250 ms: the newest proof is never older than that plus a round trip.
    expect(left).toBeGreaterThan(HOLD - MARGIN_MS - 400);
    // It keeps moving.
    await sleep(600);
    expect(a.session.proof(VIP)!).toBeGreaterThan(proof);
    // Its heartbeat claims what it heads.
    const hb = await fx.admin.get(heartbeatKey(p, "a")).string();
    expect(JSON.parse(hb!).claims).toEqual([VIP]);
  });

  test("a follower holds no proof for a VIP it does not head", async () => {
    const p = freshPrefix();
    const a = agent("a", p);
    const b = agent("b", p);
    await ready(a);
    await ready(b);
    await a.session.join(VIP);
    await b.session.join(VIP);
    await waitFor("b sees the queue", () => b.session.view.queue(VIP).length === 2, 2000);
    await sleep(600);
    expect(b.session.isHead(VIP)).toBe(false);
    expect(b.session.proof(VIP)).toBeNull();
    expect(a.session.proof(VIP)).not.toBeNull();
  });
});

describe("release and takeover", () => {
  test("a release hands over at once: the next is first and nothing is claimed elsewhere", async () => {
    const p = freshPrefix();
    const a = agent("a", p);
    const b = agent("b", p);
    await ready(a);
    await ready(b);
    await a.session.join(VIP);
    await b.session.join(VIP);
    await waitFor("b sees a's claim", () => b.session.claimedElsewhereUntil(VIP) !== null, 2000);
    const t0 = monotonicClock();
    await a.session.release([VIP]);
    await waitFor("b first", () => b.session.isHead(VIP), 1000);
    expect(b.session.claimedElsewhereUntil(VIP)).toBeNull();
    await waitFor("b proven", () => b.session.proof(VIP), 1000);
    expect(monotonicClock() - t0).toBeLessThan(500);
  });

  test("a released key is never proven again, even in a view that has not shown its deletion yet", async () => {
    const p = freshPrefix();
    // A hold long enough that the heartbeats before the release would still prove the key.
    const a = agent("a", p, { holdMs: 2500 });
    const b = agent("b", p);
    await ready(a);
    await ready(b);
    await a.session.join(VIP);
    await waitFor("a proven", () => a.session.proof(VIP), 2000);
    const key = (await fx.admin.get(electionKey(p, VIP, "a")).exec()).kvs[0]!;
    await b.session.join(VIP);
    await waitFor("b queued", () => b.session.view.queue(VIP).length === 2, 2000);
    // a's link goes down: its kernel let go (I4), then it releases; b takes the VIP at once.
    await a.session.release([VIP]);
    await waitFor("b first", () => b.session.isHead(VIP), 1000);
    expect(b.session.claimedElsewhereUntil(VIP)).toBeNull();
    // a's link comes back before its watch shows the deletion: its view
    // still has its key first, as a lagging watch would leave it.
    await waitFor("a's view saw the deletion", () => !a.session.mine(VIP), 1000);
    a.session.view.apply([{ type: "put", kv: key }], monotonicClock());
    expect(a.session.isHead(VIP)).toBe(true);
    expect(a.session.proof(VIP)).toBeNull();
    // Nor does a claim it again, or b's view would see a second owner's claim.
    await sleep(600);
    expect(a.session.proof(VIP)).toBeNull();
    expect(b.session.claimedElsewhereUntil(VIP)).toBeNull();
  });

  test("a dead holder's claim does not outlive its window when its lease takes its record", async () => {
    const p = freshPrefix();
    // A run that died right after a heartbeat claiming the VIP.
    const { lease } = await writeGhost(fx.admin, p, { node: "ghost", holdMs: 1000, vips: [VIP] });
    const b = agent("b", p);
    const c = agent("c", p);
    await ready(b);
    await ready(c);
    await b.session.join(VIP);
    await waitFor("b queued", () => b.session.takeoverAt(VIP) !== null, 2000);
    await c.session.join(VIP);
    await waitFor("c queued", () => c.session.view.queue(VIP).length === 3, 2000);
    await sleep(Math.max(0, b.session.takeoverAt(VIP)! - monotonicClock()) + 5);
    expect((await b.session.takeover(VIP)).took).toBe(true);
    // The ghost's lease runs out: its record, heartbeat and keys go.
    await fx.admin.leaseClient.leaseRevoke({ ID: lease });
    await waitFor("c saw the record go", () => c.session.view.agent("ghost") === undefined, 1000);
    // b lets go (a drain, say): c is first, and nothing of the ghost's keeps it from the VIP.
    await b.session.release([VIP]);
    await waitFor("c first", () => c.session.isHead(VIP), 1000);
    await waitFor("b's release seen", () => {
      const claims = c.session.view.heartbeat("b")?.claims;
      return claims !== undefined && claims !== "all" && !claims.has(VIP);
    }, 1000);
    expect(c.session.claimedElsewhereUntil(VIP)).toBeNull();
  });

  test("a release refuses while the kernel may still answer for the VIP", async () => {
    const p = freshPrefix();
    const a = agent("a", p);
    await ready(a);
    await a.session.join(VIP);
    a.serving.add(VIP);
    await expect(a.session.release([VIP])).rejects.toThrow("still on the link");
    expect(await fx.admin.get(electionKey(p, VIP, "a")).string()).not.toBeNull();
  });

  test("a silent agent ahead is taken over after its window, not before", async () => {
    const p = freshPrefix();
    // A run that froze right after a heartbeat claiming the VIP: its keys, written by hand.
    const { lease, ghost } = await writeGhost(fx.admin, p, { node: "ghost", holdMs: 1500, vips: [VIP] });
    const b = agent("b", p);
    await ready(b);
    const readAt = monotonicClock();
    await b.session.join(VIP);
    await waitFor("queued behind ghost", () => b.session.takeoverAt(VIP) !== null, 2000);
    const at = b.session.takeoverAt(VIP)!;
    // The window is the ghost's own published hold, from when b first heard it.
    expect(at - readAt).toBeGreaterThan(silenceWindow(1500) - 200);
    expect(at - readAt).toBeLessThanOrEqual(silenceWindow(1500) + 300);
    expect(b.session.claimedElsewhereUntil(VIP)).not.toBeNull();
    expect((await b.session.takeover(VIP)).took).toBe(false);
    expect(await fx.admin.get(electionKey(p, VIP, "ghost")).string()).toBe(ghost.run);
    await sleep(Math.max(0, at - monotonicClock()) + 5);
    expect(await b.session.takeover(VIP)).toEqual({ took: true, from: ["ghost"] });
    expect(await fx.admin.get(electionKey(p, VIP, "ghost")).string()).toBeNull();
    await waitFor("b first", () => b.session.isHead(VIP), 1000);
    expect(b.session.proof(VIP)).not.toBeNull();
    // The ghost's claim ran out with its window: nothing blocks b.
    expect(b.session.claimedElsewhereUntil(VIP)).toBeNull();
    await fx.admin.leaseClient.leaseRevoke({ ID: lease });
  });

  test("a silent agent ahead of 100 VIPs is taken over in two transactions, each VIP proven", async () => {
    const p = freshPrefix();
    const vips = Array.from({ length: 100 }, (_, i) => `192.0.2.${i + 1}`);
    const { lease } = await writeGhost(fx.admin, p, { node: "ghost", holdMs: 1000, vips });
    const b = agent("b", p);
    await ready(b);
    for (const v of vips) await b.session.join(v);
    await waitFor("queued behind ghost everywhere", () => vips.every((v) => b.session.takeoverAt(v) !== null), 2000);
    // The revision of each deletion of a ghost key: one per transaction that made it.
    const deletedAt: string[] = [];
    const watch = await fx.admin.watch().prefix(`${p}elections/`).create();
    watch.on("delete", (kv) => {
      if (kv.key.toString().endsWith("/ghost")) deletedAt.push(kv.mod_revision);
    });
    await sleep(Math.max(...vips.map((v) => b.session.takeoverAt(v)!)) - monotonicClock() + 5);
    // Asked in one turn of the loop, as slots whose timers fire together ask.
    const answers = await Promise.all(vips.map((v) => b.session.takeover(v)));
    expect(answers.every((a) => a.took && a.from.length === 1 && a.from[0] === "ghost")).toBe(true);
    await waitFor("every ghost key's deletion seen", () => deletedAt.length === vips.length, 2000);
    for (const v of vips) expect(await fx.admin.get(electionKey(p, v, "ghost")).string()).toBeNull();
    // 202 comparisons (our agent record and 100 keys, the ghost's heartbeat and 100 keys) do not fit
    // etcd's 128 per transaction: two transactions, not one per VIP.
    expect(new Set(deletedAt).size).toBe(2);
    await waitFor("b first everywhere", () => vips.every((v) => b.session.isHead(v)), 2000);
    for (const v of vips) expect(b.session.proof(v)).not.toBeNull();
    await watch.cancel();
    await fx.admin.leaseClient.leaseRevoke({ ID: lease });
  });

  test("an agent ahead that keeps beating is never taken over", async () => {
    const p = freshPrefix();
    const a = agent("a", p);
    const b = agent("b", p);
    await ready(a);
    await ready(b);
    await a.session.join(VIP);
    await b.session.join(VIP);
    await sleep(silenceWindow(HOLD) + 500);
    expect(b.session.takeoverAt(VIP)! - monotonicClock()).toBeGreaterThan(HOLD * 0.5);
    expect((await b.session.takeover(VIP)).took).toBe(false);
    expect(a.session.isHead(VIP)).toBe(true);
  });
});

describe("a deposed holder", () => {
  test("learns it from its next heartbeat, and its claim keeps the VIP from the next node until it lets go", async () => {
    const p = freshPrefix();
    const a = agent("a", p);
    const b = agent("b", p);
    await ready(a);
    await ready(b);
    await a.session.join(VIP);
    await waitFor("a proven", () => a.session.proof(VIP), 2000);
    a.serving.add(VIP); // a's kernel answers for the VIP
    await b.session.join(VIP);
    await waitFor("b queued", () => b.session.view.queue(VIP).length === 2, 2000);
    // An operator deletes a's key by hand.
    await fx.admin.delete().key(electionKey(p, VIP, "a"));
    await waitFor("a deposed", () => a.events.deposed.length > 0 || !a.session.mine(VIP), 1000);
    expect(a.session.proof(VIP)).toBeNull();
    await waitFor("b first", () => b.session.isHead(VIP), 1000);
    // b is first, but a still claims the VIP: b must not take it yet.
    expect(b.session.claimedElsewhereUntil(VIP)).not.toBeNull();
    // a lets go: its next heartbeat claims nothing.
    a.serving.delete(VIP);
    await waitFor("a's claim gone", () => b.session.claimedElsewhereUntil(VIP) === null, 1000);
  });
});

describe("one live run per node name", () => {
  test("a second run on this machine is refused while the first one's process lives", async () => {
    const p = freshPrefix();
    const a = agent("n1", p);
    await ready(a);
    const second = agent("n1", p, { alive: () => true });
    await waitFor("fatal", () => second.events.fatal[0], 5000);
    expect(second.events.fatal[0]!.reason).toContain('another vipd already runs as node "n1" on this machine');
    expect(second.session.ready).toBe(false);
    // The first is untouched.
    await sleep(400);
    expect(a.events.lost).toEqual([]);
    expect(a.events.fatal).toEqual([]);
  });

  test("a restart clears the dead run's keys at once, and the old run, if it ever speaks again, stops", async () => {
    const p = freshPrefix();
    const a = agent("n1", p);
    await ready(a);
    await a.session.join(VIP);
    // The premise: a's last heartbeat claims the VIP. Its first heartbeat
    // after the join carries the claim; on a loaded machine the restart
    // below could otherwise read the one before it (CI saw removed = []).
    await waitFor("a's heartbeat claims the VIP", async () =>
      decodeHeartbeat((await fx.admin.get(heartbeatKey(p, "n1")).string()) ?? "")?.claims.includes(VIP), 2000);
    const t0 = monotonicClock();
    const restarted = agent("n1", p, { alive: () => false });
    await ready(restarted);
    expect(monotonicClock() - t0).toBeLessThan(1000);
    expect(restarted.log.join("\n")).toContain("cleared the keys of this node's previous run");
    // a headed the VIP, so its last heartbeat claimed it: removed from this machine's links before the keys went.
    // a is judged dead but still beats here: a heartbeat landing between the restart's read and its
    // guarded clear fails the clear, and the next pass removes the newer heartbeat's claims again
    // (registration.test.ts). So the VIP may be asked for more than once, and nothing else ever.
    expect(restarted.removed.length).toBeGreaterThan(0);
    expect(new Set(restarted.removed)).toEqual(new Set([VIP]));
    expect(await fx.admin.get(electionKey(p, VIP, "n1")).string()).toBeNull();
    await waitFor("old run evicted", () => a.events.fatal[0], 2000);
    expect(a.events.fatal[0]!.reason).toContain('node name "n1" was taken over by another vipd');
  });

  test("the same name on another machine is refused while its heartbeat moves", async () => {
    const p = freshPrefix();
    const a = agent("n1", p);
    await ready(a);
    const elsewhere = { ...currentIncarnation({ holdMs: HOLD, version: "test" }), boot: "another-kernel" };
    const t0 = monotonicClock();
    const b = agent("n1", p, { identity: elsewhere });
    await waitFor("fatal", () => b.events.fatal[0], 5000);
    expect(b.events.fatal[0]!.reason).toContain('node name "n1" is in use by a live vipd elsewhere');
    // It listened for a's heartbeat for a's window before deciding.
    expect(monotonicClock() - t0).toBeLessThan(silenceWindow(HOLD) + 1000);
  });

  test("the same name left by a silent run on another machine is taken after its window", async () => {
    const p = freshPrefix();
    const lease = await fx.admin.lease(30, { autoKeepAlive: false }).grant();
    const gone = { ...currentIncarnation({ holdMs: 1200, version: "test" }), boot: "another-kernel" };
    await fx.admin.put(agentKey(p, "n1")).value(encodeIncarnation(gone)).lease(lease);
    await fx.admin.put(heartbeatKey(p, "n1")).value(encodeHeartbeat({ run: gone.run, seq: 9, claims: [] })).lease(lease);
    const t0 = monotonicClock();
    const b = agent("n1", p);
    await ready(b);
    expect(monotonicClock() - t0).toBeGreaterThan(silenceWindow(1200) - 100);
    expect(b.events.fatal).toEqual([]);
    await fx.admin.leaseClient.leaseRevoke({ ID: lease });
  });
});

test("an agent's MACs are written with its record, follow a change, leave with its lease, and every view knows them", async () => {
  const p = freshPrefix();
  let macs: MacsValue = { [VIP]: "02:00:00:00:00:0a" };
  const a = agent("a", p, { macs: () => macs });
  const b = agent("b", p);
  await ready(a);
  // In the registering transaction itself: no key of a's can be in a queue before its MACs are known.
  const [record, published] = await Promise.all([fx.admin.get(agentKey(p, "a")).exec(), fx.admin.get(macsKey(p, "a")).exec()]);
  expect(JSON.parse(published.kvs[0]!.value.toString())).toEqual(macs);
  expect(published.kvs[0]!.create_revision).toBe(record.kvs[0]!.create_revision);
  expect(published.kvs[0]!.lease).toBe(record.kvs[0]!.lease);
  await ready(b);
  expect([...b.session.view.agentMacs()]).toEqual(["02:00:00:00:00:0a"]);
  // The link came back with another MAC: published after the next heartbeat.
  macs = { [VIP]: "02:00:00:00:00:aa" };
  await waitFor("b sees the new MAC", () => b.session.view.agentMacs().has("02:00:00:00:00:aa"), 3000);
  expect(b.session.view.agentMacs().has("02:00:00:00:00:0a")).toBe(false);
  await a.session.stop(300);
  expect(await fx.admin.get(macsKey(p, "a")).string()).toBeNull();
  await waitFor("b forgets a's MAC", () => b.session.view.agentMacs().size === 0, 3000);
});

test("vipd 0.1's keys under the prefix stop the session with a sentence", async () => {
  const p = freshPrefix();
  await fx.admin.put(`${p}vip/${VIP}/694d8f2b1c3e9a01`).value("cp-1");
  const a = agent("a", p);
  await waitFor("fatal", () => a.events.fatal[0], 5000);
  expect(a.events.fatal[0]!.reason).toContain("vipd 0.1 election keys");
});

test("losing the lease makes the session release everything and register again", async () => {
  const p = freshPrefix();
  const a = agent("a", p);
  await ready(a);
  await a.session.join(VIP);
  await waitFor("proof", () => a.session.proof(VIP), 2000);
  // The lease etcd keeps the run's record on: revoking it takes every key of the run.
  const record = (await fx.admin.get(agentKey(p, "a")).exec()).kvs[0]!;
  await fx.admin.leaseClient.leaseRevoke({ ID: record.lease });
  await waitFor("lost", () => a.events.lost[0], 3000);
  expect(a.session.proof(VIP)).toBeNull();
  await waitFor("registered again", () => a.session.ready, 5000);
  expect(await fx.admin.get(agentKey(p, "a")).string()).not.toBeNull();
});
