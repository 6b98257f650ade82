// The queue reducer with plain values: each table gives a state, the facts
// and one event, and names the phase, the moves and the timer that follow.
import { describe, expect, test } from "bun:test";
import {
  initialQueueState, JOIN_VISIBLE_MS, type OwnFacts, PROBING, type QueueEffect, type QueueEvent, type QueueFacts, type QueueState, RETRY_MS,
  step, TAKEOVER_RETRY_MS, WITHDRAW_MS,
} from "./queue-state.ts";

const NOW = 10_000;
const OWN: OwnFacts = { now: NOW, head: false, proof: null, claimedUntil: null, held: false, link: "up", gateOpen: true, stopping: false, drained: null, conflict: null, yielding: null };
type FactsChange = Partial<Omit<QueueFacts, "vip">> & { vip?: Partial<OwnFacts> };
const facts = (c: FactsChange = {}): QueueFacts => ({
  registered: true, ready: true, queue: [], mine: null, takeoverAt: null, serving: false, clearToStand: true, handover: null, ...c, vip: { ...OWN, ...c.vip },
});
const S0 = initialQueueState("n1");
const state = (c: Partial<QueueState> = {}): QueueState => ({ ...S0, ...c });
const UPDATE: QueueEvent = { type: "update" };
/** The moves only: no log lines, no timer. */
const moves = (fx: QueueEffect[]): QueueEffect[] => fx.filter((e) => e.type !== "log" && e.type !== "arm");
const armedAt = (fx: QueueEffect[]) => (fx.find((e) => e.type === "arm") as { at: number } | undefined)?.at;
const logs = (fx: QueueEffect[]) => fx.flatMap((e) => (e.type === "log" ? [`${e.level}: ${e.message}`] : []));
/** Our key "7" first in the view, behind nobody. */
const HEAD = { mine: "7", queue: [{ node: "n1", heardAt: NOW }], vip: { head: true } } as const;
/** Our key "7" second, behind n0. */
const SECOND = { mine: "7", queue: [{ node: "n0", heardAt: NOW - 3000 }, { node: "n1", heardAt: NOW }] } as const;

describe("joining", () => {
  const cases: [string, QueueState, FactsChange, QueueEffect[], string, QueueState["phase"]][] = [
    ["ready, clear of strangers, nothing in the way: joins behind whoever is there", S0, { queue: [{ node: "n0", heardAt: NOW }] }, [{ type: "join", before: ["n0"] }], "ready", "joining"],
    ["the view is not current: waits for it", S0, { ready: false }, [], "ready", "out"],
    ["no probe has found the address clear yet: probes first", S0, { clearToStand: false }, [], PROBING, "out"],
    ["the link is down: does not stand", S0, { vip: { link: "down" } }, [], "link is down", "out"],
    ["drained: does not stand", S0, { vip: { drained: "drained by ops" } }, [], "drained by ops", "out"],
    ["a failed write a moment ago: waits for the pause", state({ pauseUntil: NOW + 1 }), {}, [], "ready", "out"],
    ["a write in flight: waits for it", state({ op: "takeover" }), {}, [], "ready", "taking-over"],
    ["joined a moment ago, the view not caught up: queued already", state({ joinedAt: NOW - 100 }), {}, [], "ready", "joining"],
    ["joined so long ago the view should show it: joins again", state({ joinedAt: NOW - JOIN_VISIBLE_MS }), {}, [{ type: "join", before: [] }], "ready", "joining"],
    ["our key in the view: nothing to do", S0, SECOND, [], "ready", "queued"],
    ["the key we released still in the view: joins again", state({ released: "7" }), SECOND, [{ type: "join", before: ["n0", "n1"] }], "ready", "joining"],
  ];
  for (const [name, s, f, want, candidacy, phase] of cases) {
    test(name, () => {
      const r = step(s, facts(f), UPDATE);
      expect(moves(r.effects)).toEqual(want);
      expect(r.state.candidacy).toBe(candidacy);
      expect(r.state.phase).toBe(phase);
    });
  }

  test("a committed join counts as queued until the view shows the key, then the view does", () => {
    const joined = step(state({ op: "join" }), facts(), { type: "joined", before: ["n0"] });
    expect(joined.state).toMatchObject({ op: null, joinedAt: NOW, winReason: "joined behind n0", phase: "joining" });
    expect(logs(joined.effects)).toEqual(["info: standing for VIP"]);
    const seen = step(joined.state, facts(SECOND), UPDATE);
    expect(seen.state).toMatchObject({ joinedAt: null, phase: "queued" });
    expect(step(state({ op: "join" }), facts(), { type: "joined", before: [] }).state.winReason).toBe("first in the queue when it joined");
  });

  test("a failed join pauses a second, arms the timer for it, then joins again", () => {
    const failed = step(state({ op: "join" }), facts(), { type: "join-failed", error: "etcd unreachable" });
    expect(moves(failed.effects)).toEqual([]);
    expect(failed.state.pauseUntil).toBe(NOW + RETRY_MS);
    expect(armedAt(failed.effects)).toBe(NOW + RETRY_MS);
    expect(logs(failed.effects)).toEqual(["warn: joining the queue failed; retrying"]);
    const later = step(failed.state, facts({ vip: { now: NOW + RETRY_MS } }), { type: "due" });
    expect(moves(later.effects)).toEqual([{ type: "join", before: [] }]);
    expect(later.state.pauseUntil).toBeNull();
  });
});

describe("leaving", () => {
  const cases: [string, QueueState, FactsChange, string | null, QueueState["phase"]][] = [
    ["queued and the link goes down", S0, { ...SECOND, vip: { link: "down" } }, "link is down", "leaving"],
    ["head and the gate closes", S0, { ...HEAD, vip: { head: true, gateOpen: false } }, "kube-apiserver gate closed", "leaving"],
    ["removed from the configuration", state({ removing: true }), SECOND, "removed from the configuration", "leaving"],
    ["stood down", state({ withdrawn: { reason: "the fence is broken", until: NOW + 1 } }), SECOND, "the fence is broken", "leaving"],
    ["a hand-over asks our key to step back", S0, { ...SECOND, vip: { yielding: "handing over to n2" } }, "handing over to n2", "leaving"],
    ["a join the view has not shown yet is undone too", state({ joinedAt: NOW - 10 }), { vip: { link: "down" } }, "link is down", "leaving"],
    ["no key of ours: nothing to leave", S0, { vip: { link: "down" } }, null, "out"],
    ["the key we released, still in the view: nothing to leave", state({ released: "7" }), { ...SECOND, vip: { link: "down" } }, null, "out"],
    // Issue 17, finding 8: a release waited for a current view.
    ["registered, the view being read again: the release needs no view", S0, { ...SECOND, ready: false, vip: { link: "down" } }, "link is down", "leaving"],
    ["not registered with etcd: nothing can be sent", S0, { ...SECOND, registered: false, ready: false, vip: { link: "down" } }, null, "leaving"],
    ["a write in flight: after it", state({ op: "join" }), { ...SECOND, vip: { link: "down" } }, null, "joining"],
  ];
  for (const [name, s, f, reason, phase] of cases) {
    test(`${name}: ${reason === null ? "no release" : `releases (${reason})`}`, () => {
      const r = step(s, facts(f), UPDATE);
      expect(moves(r.effects).filter((e) => e.type !== "poke")).toEqual(reason === null ? [] : [{ type: "release", reason }]);
      expect(r.state.phase).toBe(phase);
    });
  }

  test("a committed release forgets the join and hides the key the view still shows", () => {
    const r = step(state({ op: "release", joinedAt: NOW - 10 }), facts({ ...SECOND, vip: { link: "down" } }), { type: "released", key: "7", reason: "link is down" });
    expect(r.state).toMatchObject({ op: null, joinedAt: null, released: "7", phase: "out" });
    expect(logs(r.effects)).toEqual(["info: withdrew from the VIP's queue"]);
    // The view drops the key: nothing left to hide.
    expect(step(r.state, facts({ vip: { link: "down" } }), UPDATE).state.released).toBeNull();
  });

  // Issue 17, finding 8: a release the kernel held back went again only a blind second later.
  test("a release the kernel held back: said once; goes the moment the kernel lets go, or a second later to ask again", () => {
    const f = (now: number, serving: boolean) => facts({ ...SECOND, serving, vip: { link: "down", now } });
    const release: QueueEffect[] = [{ type: "release", reason: "link is down" }];
    const held = step(state({ op: "release" }), f(NOW, true), { type: "kernel-answers" });
    expect(moves(held.effects)).toEqual([{ type: "poke" }]);
    expect(logs(held.effects)).toEqual(["warn: the kernel may still answer for the VIP; leaving its queue once it cannot"]);
    expect(armedAt(held.effects)).toBe(NOW + RETRY_MS);
    expect(held.state.phase).toBe("leaving");
    // Still answering a heartbeat later: wait.
    expect(moves(step(held.state, f(NOW + 250, true), UPDATE).effects)).toEqual([{ type: "poke" }]);
    // The kernel let go: at once.
    expect(moves(step(held.state, f(NOW + 250, false), UPDATE).effects)).toEqual(release);
    // A second on, still answering: ask again (the release pokes the controller first).
    const again = step(held.state, f(NOW + RETRY_MS, true), { type: "due" });
    expect(moves(again.effects)).toEqual([...release, { type: "poke" }]);
    const heldAgain = step(again.state, f(NOW + RETRY_MS, true), { type: "kernel-answers" });
    expect(logs(heldAgain.effects)).toEqual([]);
    // Standing again (the link came back): the wait is over.
    expect(step(held.state, facts({ ...SECOND, serving: true }), UPDATE).state.kernelRetryAt).toBeNull();
  });

  test("a failed release pauses a second, then goes again", () => {
    const f = facts({ ...SECOND, vip: { link: "down" } });
    const failed = step(state({ op: "release" }), f, { type: "release-failed", error: "etcd unreachable" });
    expect(moves(failed.effects)).toEqual([]);
    expect(armedAt(failed.effects)).toBe(NOW + RETRY_MS);
    const later = step(failed.state, facts({ ...SECOND, vip: { link: "down", now: NOW + RETRY_MS } }), { type: "due" });
    expect(moves(later.effects)).toEqual([{ type: "release", reason: "link is down" }]);
  });
});

describe("taking over", () => {
  const due: QueueEvent = { type: "due" };
  test("when the agents ahead have been silent long enough, and the view is current", () => {
    const r = step(S0, facts({ ...SECOND, takeoverAt: NOW }), due);
    expect(moves(r.effects)).toEqual([{ type: "takeover", silentMs: 3000 }]);
    expect(r.state.phase).toBe("taking-over");
  });
  const not: [string, QueueState, FactsChange][] = [
    ["not yet", S0, { ...SECOND, takeoverAt: NOW + 1 }],
    ["the view is not current", S0, { ...SECOND, takeoverAt: NOW, ready: false }],
    ["a write in flight", state({ op: "join" }), { ...SECOND, takeoverAt: NOW }],
    ["a failed takeover a moment ago", state({ pauseUntil: NOW + 50 }), { ...SECOND, takeoverAt: NOW }],
    ["on a fact change: only the timer takes over", S0, { ...SECOND, takeoverAt: NOW }],
  ];
  for (const [name, s, f] of not) {
    test(`not when ${name}`, () => {
      const r = step(s, facts(f), name.startsWith("on a fact") ? UPDATE : due);
      expect(moves(r.effects).filter((e) => e.type === "takeover")).toEqual([]);
    });
  }
  test("the timer waits for the moment, and for a pause after a failed try", () => {
    expect(armedAt(step(S0, facts({ ...SECOND, takeoverAt: NOW + 400 }), UPDATE).effects)).toBe(NOW + 400);
    expect(armedAt(step(state({ pauseUntil: NOW + 100 }), facts({ ...SECOND, takeoverAt: NOW }), UPDATE).effects)).toBe(NOW + 100);
    // While the write is in flight, its answer is the next event: no timer spins meanwhile.
    expect(armedAt(step(state({ op: "takeover" }), facts({ ...SECOND, takeoverAt: NOW }), UPDATE).effects)).toBe(Infinity);
  });
  test("the timer says which moment is its own and not the takeover's, which the agents ahead move (the slot may wait on their silence)", () => {
    const own = (fx: QueueEffect[]) => (fx.find((e) => e.type === "arm") as { own: number } | undefined)?.own;
    // Queued behind a live agent, nothing else to wait for: the takeover only.
    const behind = step(S0, facts({ ...SECOND, takeoverAt: NOW + 400 }), UPDATE).effects;
    expect([armedAt(behind), own(behind)]).toEqual([NOW + 400, Infinity]);
    // A stand-down ends before it: both.
    const down = step(state({ withdrawn: { reason: "fence", until: NOW + 300 } }), facts({ ...SECOND, takeoverAt: NOW + 400 }), UPDATE).effects;
    expect([armedAt(down), own(down)]).toEqual([NOW + 300, NOW + 300]);
    // A pause after a failed try is its own, and the takeover waits for it.
    const paused = step(state({ pauseUntil: NOW + 100 }), facts({ ...SECOND, takeoverAt: NOW }), UPDATE).effects;
    expect([armedAt(paused), own(paused)]).toEqual([NOW + 100, NOW + 100]);
  });
  test("a takeover that took: the metric, the log line and the reason it won", () => {
    const r = step(state({ op: "takeover" }), facts(HEAD), { type: "took", took: true, from: ["n0"], silentMs: 2811 });
    expect(moves(r.effects)).toContainEqual({ type: "took-over" });
    expect(r.state.winReason).toBe("took over from n0: no heartbeat for 2811 ms");
    expect(logs(r.effects)).toContain("info: took the VIP's queue over");
  });
  test("someone spoke meanwhile: half a retry for the view to catch up; a failure: a retry", () => {
    expect(step(state({ op: "takeover" }), facts(SECOND), { type: "took", took: false, from: [], silentMs: 0 }).state.pauseUntil).toBe(NOW + TAKEOVER_RETRY_MS / 2);
    const failed = step(state({ op: "takeover" }), facts(SECOND), { type: "takeover-failed", error: "no leader" });
    expect(failed.state.pauseUntil).toBe(NOW + TAKEOVER_RETRY_MS);
    expect(logs(failed.effects)).toEqual(["warn: takeover failed; retrying"]);
  });
});

describe("the controller and the timer", () => {
  const cases: [string, QueueState, FactsChange, boolean, number][] = [
    ["a proven head that does not hold yet: poke, look again when the claim or proof changes", S0, { ...HEAD, vip: { head: true, proof: NOW + 2000 } }, true, Infinity],
    ["holding, same deadline as last poked: nothing; the proof's end is the next moment", state({ appliedDeadline: NOW + 2000 }), { ...HEAD, vip: { head: true, held: true, proof: NOW + 2000 } }, false, NOW + 2000],
    ["holding, a newer proof: poke", state({ appliedDeadline: NOW + 1750 }), { ...HEAD, vip: { head: true, held: true, proof: NOW + 2000 } }, true, NOW + 2000],
    ["first, another node's claim still runs: look again when it ends", S0, { ...HEAD, vip: { head: true, proof: NOW + 2000, claimedUntil: NOW + 900 } }, false, NOW + 900],
    ["held but not first any more: poke to release", S0, { ...SECOND, vip: { held: true, proof: NOW + 500 } }, true, NOW + 500],
    ["not held, the kernel may still answer: poke", S0, { ...SECOND, serving: true }, true, Infinity],
    ["neither held nor serving, not first: nothing", S0, SECOND, false, Infinity],
    ["stood down: look again when that ends", state({ withdrawn: { reason: "x", until: NOW + 5000 } }), {}, false, NOW + 5000],
  ];
  for (const [name, s, f, poke, at] of cases) {
    test(name, () => {
      const r = step(s, facts(f), UPDATE);
      expect(moves(r.effects).some((e) => e.type === "poke")).toBe(poke);
      expect(armedAt(r.effects)).toBe(at);
    });
  }
});

describe("standing down", () => {
  test("the kernel refusing the address three times in a row stands the slot down for 30 s, then it stands again", () => {
    expect(step(S0, facts(HEAD), { type: "hold-failed", consecutive: 2, error: "EACCES" })).toEqual({ state: S0, effects: [] });
    const down = step(S0, facts(HEAD), { type: "hold-failed", consecutive: 3, error: "EACCES" });
    expect(down.state.withdrawn).toEqual({ reason: "the kernel refused the address 3 times (EACCES); standing down for 30 s", until: NOW + WITHDRAW_MS });
    expect(moves(down.effects)).toEqual([{ type: "release", reason: "the kernel refused the address 3 times (EACCES); standing down for 30 s" }]);
    expect(logs(down.effects)).toEqual(["error: cannot hold the VIP; letting another node take it"]);
    expect(armedAt(down.effects)).toBe(NOW + WITHDRAW_MS);
    const after = step({ ...down.state, op: null, released: "7" }, facts({ vip: { now: NOW + WITHDRAW_MS } }), { type: "due" });
    expect(after.state.withdrawn).toBeNull();
    expect(logs(after.effects)).toEqual(["info: standing for the VIP again"]);
    expect(moves(after.effects)).toEqual([{ type: "join", before: [] }]);
  });

  test("a broken fence stands it down; said again, it only extends the time, silently", () => {
    const down = step(S0, facts(SECOND), { type: "stand-down", reason: "the fence of eth0 is broken", until: NOW + 3000 });
    expect(down.state.withdrawn).toEqual({ reason: "the fence of eth0 is broken", until: NOW + 3000 });
    expect(moves(down.effects)).toEqual([{ type: "release", reason: "the fence of eth0 is broken" }]);
    const again = step(down.state, facts(SECOND), { type: "stand-down", reason: "still broken", until: NOW + 5000 });
    expect(again.effects).toEqual([]);
    expect(again.state.withdrawn).toEqual({ reason: "the fence of eth0 is broken", until: NOW + 5000 });
  });
});

describe("removal", () => {
  test("done once nothing of ours is left, and nothing happens after", () => {
    const r = step(S0, facts(), { type: "remove" });
    expect(moves(r.effects)).toEqual([{ type: "left" }]);
    expect(r.state.phase).toBe("removed");
    expect(step(r.state, facts(HEAD), UPDATE).effects).toEqual([]);
  });
  const notYet: [string, QueueState, FactsChange][] = [
    ["the address is still on the link", S0, { vip: { held: true } }],
    ["the kernel may still answer", S0, { serving: true }],
    ["our key is still in the view", state({ released: "7" }), SECOND],
    ["a join may still show up", state({ joinedAt: NOW - 10 }), {}],
    ["a write is in flight", state({ op: "join" }), {}],
  ];
  for (const [name, s, f] of notYet) {
    test(`not while ${name}`, () => {
      expect(moves(step(s, facts(f), { type: "remove" }).effects).filter((e) => e.type === "left")).toEqual([]);
    });
  }
});

describe("why it won, and the failover metric", () => {
  test("first after the holder left the queue, or handed it over", () => {
    const before = state({ lastQueue: ["n0", "n1"] });
    expect(step(before, facts(HEAD), UPDATE).state).toMatchObject({ head: true, headSince: NOW, winReason: "n0 left the queue" });
    const asked = { to: "n1", by: "ops@admin", at: "2026-12-06T12:00:00Z" };
    expect(step(before, facts({ ...HEAD, handover: asked }), UPDATE).state.winReason).toBe("n0 handed it over (asked by ops@admin at 2026-12-06T12:00:00Z)");
    // After a takeover the takeover's reason stands.
    expect(step({ ...before, tookFrom: "n0", winReason: "took over" }, facts(HEAD), UPDATE).state.winReason).toBe("took over");
  });
  test("the winner's side: from first in the queue to the address on the link", () => {
    const first = step(S0, facts(HEAD), UPDATE).state;
    expect(step(first, facts({ ...HEAD, vip: { head: true, now: NOW + 40 } }), { type: "ownership", held: true, at: NOW + 40 }).effects).toEqual([{ type: "failover", ms: 40 }]);
  });
  test("the loser's side: from our release to another node first", () => {
    const released = step(S0, facts(HEAD), { type: "ownership", held: false, at: NOW }).state;
    expect(released.releasedAt).toBe(NOW);
    const moved = step(released, facts({ queue: [{ node: "n2", heardAt: NOW }], vip: { now: NOW + 30 } }), UPDATE);
    expect(moves(moved.effects)).toContainEqual({ type: "failover", ms: 30 });
    expect(moved.state.releasedAt).toBeNull();
  });
});
