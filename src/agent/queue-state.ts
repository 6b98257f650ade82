// One VIP's place in etcd's queue, as a pure reducer: from the slot's state,
// the facts as they are now and one event, the next state and what to do
// (join, release, take over, poke the controller, arm the one timer, log).
// No I/O and no clock of its own; slot.ts runs the effects and feeds the
// results back as events (design.md §8).
//
// The phases, as the code lives them:
//   out          no key of ours in the queue, nothing in flight
//   joining      a join in flight, or committed and not in the view yet
//   queued       our key is in the queue behind others
//   head         our key is first (holding needs a proof too: decideHold)
//   taking-over  a takeover of the silent agents ahead is in flight
//   leaving      we must not stand and still have a key: waiting for the
//                kernel to stop answering (I4), then the release in flight
//   removed      the VIP left the configuration and nothing of ours is
//                left: terminal
// Standing down (the kernel refused the address, or the link's fence could
// not be rebuilt) is no phase of its own: it is a reason not to stand, with
// an end, kept beside the phase; a withdrawn slot goes through leaving to out.
//
// Two rules beyond the old slot's (issue 17, finding 8):
//   - a release needs a registration, not a current view: the release
//     deletes our key by name and waits for nobody, and a slot that may not
//     hold the VIP keeps it dark while it stays first (design.md §4, §10);
//   - a release the kernel held back (the address may still answer, I4) goes
//     out as soon as the controller says the kernel no longer may, not a
//     blind retry interval later.
import { decideCandidacy, decideHold, type VipFacts } from "../vip/decision.ts";

/** Consecutive failures to add the address before the node stands down for it. */
export const HOLD_FAILURES_TO_WITHDRAW = 3;
/** How long a node stands down after the kernel kept refusing the address. */
export const WITHDRAW_MS = 30_000;
/** Retry after a failed join or release, and between looks at a kernel that still answers. */
export const RETRY_MS = 1000;
/** Retry after a takeover that failed: soon, since every moment counts towards the failover. */
export const TAKEOVER_RETRY_MS = 100;
/** How long a committed join may take to show in the view before the slot joins again. */
export const JOIN_VISIBLE_MS = 2000;
/** The candidacy while the first conflict probe runs: ready, not standing yet. */
export const PROBING = "probing for another machine that uses the address before standing";

export type Phase = "out" | "joining" | "queued" | "head" | "taking-over" | "leaving" | "removed";

export interface QueueState {
  readonly node: string;
  readonly phase: Phase;
  /** The etcd write in flight; its result comes back as an event. */
  readonly op: "join" | "release" | "takeover" | null;
  /** After a failed write: no new one before this clock time. */
  readonly pauseUntil: number | null;
  /** When a join committed, while the view has not shown our key yet. */
  readonly joinedAt: number | null;
  /** The create revision of the key we released, while the view still shows it: not queued any more. */
  readonly released: string | null;
  /** The last release found the kernel still answering: the next try, unless it stops sooner. */
  readonly kernelRetryAt: number | null;
  /** Stood down on our own, and until when. */
  readonly withdrawn: { readonly reason: string; readonly until: number } | null;
  /** The VIP left the configuration: leave for good. */
  readonly removing: boolean;
  /** The candidacy's reason, or PROBING. */
  readonly candidacy: string;
  /** The deadline the controller was last poked for; null: poked to release. */
  readonly appliedDeadline: number | null;
  // For the log and the failover metric only.
  readonly head: boolean;
  readonly headSince: number | null;
  readonly winReason: string;
  readonly lastQueue: readonly string[];
  readonly releasedAt: number | null;
  readonly tookFrom: string | null;
}

export function initialQueueState(node: string): QueueState {
  return {
    node, phase: "out", op: null, pauseUntil: null, joinedAt: null, released: null, kernelRetryAt: null, withdrawn: null, removing: false,
    candidacy: "not started", appliedDeadline: null, head: false, headSince: null, winReason: "first in the queue", lastQueue: [],
    releasedAt: null, tookFrom: null,
  };
}

/** The decision's facts that do not come from this state (withdrawn and removed do). */
export type OwnFacts = Omit<VipFacts, "withdrawn" | "removed">;

/** What the slot knows at one instant: the election port's view, the controller, the conflict watch. */
export interface QueueFacts {
  readonly vip: OwnFacts;
  /** Registered with etcd: a release can be sent. */
  readonly registered: boolean;
  /** Registered and the view current: joins and takeovers. */
  readonly ready: boolean;
  /** The queue as the view shows it, first first; heardAt: when that agent's last heartbeat arrived. */
  readonly queue: readonly { readonly node: string; readonly heardAt: number | null }[];
  /** The create revision of our key in the view; null: none. */
  readonly mine: string | null;
  /** When we may take the queue over from the silent agents ahead; null: not queued behind anyone. */
  readonly takeoverAt: number | null;
  /** The kernel may answer for the VIP (VipController.serving). */
  readonly serving: boolean;
  /** The conflict watch lets us join (a recent probe found no stranger). */
  readonly clearToStand: boolean;
  /** A hand-over in progress for the VIP, if any. */
  readonly handover: { readonly to: string; readonly by: string; readonly at: string } | null;
}

export type QueueEvent =
  /** Some fact changed. */
  | { readonly type: "update" }
  /** The timer fired. */
  | { readonly type: "due" }
  | { readonly type: "joined"; readonly before: readonly string[] }
  | { readonly type: "join-failed"; readonly error: string }
  | { readonly type: "released"; readonly key: string | null; readonly reason: string }
  | { readonly type: "release-failed"; readonly error: string }
  /** The release did not go out: the kernel may still answer for the VIP (I4). */
  | { readonly type: "kernel-answers" }
  | { readonly type: "took"; readonly took: boolean; readonly from: readonly string[]; readonly silentMs: number }
  | { readonly type: "takeover-failed"; readonly error: string }
  /** Stand down until `until` (the link's fence is broken); repeated, it only extends. */
  | { readonly type: "stand-down"; readonly reason: string; readonly until: number }
  /** The kernel refused the address `consecutive` times in a row. */
  | { readonly type: "hold-failed"; readonly consecutive: number; readonly error: string }
  | { readonly type: "remove" }
  /** The controller acquired or released the VIP at `at` (for the failover metric). */
  | { readonly type: "ownership"; readonly held: boolean; readonly at: number };

export type QueueEffect =
  | { readonly type: "join"; readonly before: readonly string[] }
  /** The controller first; only when the kernel no longer answers, leave the queue (I4). */
  | { readonly type: "release"; readonly reason: string }
  | { readonly type: "takeover"; readonly silentMs: number }
  | { readonly type: "poke" }
  /**
   * The one timer: fire at this clock time (Infinity: none). `own`: the next
   * moment but the takeover's; when `at` is earlier, it is the takeover's,
   * which every heartbeat of the agents ahead moves (the shell may wait on
   * their silence instead of a timer: slot.ts).
   */
  | { readonly type: "arm"; readonly at: number; readonly own: number }
  | { readonly type: "log"; readonly level: "info" | "warn" | "error"; readonly message: string; readonly fields: Readonly<Record<string, string | number>> }
  | { readonly type: "failover"; readonly ms: number }
  | { readonly type: "took-over" }
  /** Nothing of ours is left: the removal is done. */
  | { readonly type: "left" };

export interface Step {
  readonly state: QueueState;
  readonly effects: QueueEffect[];
}

/** The decision's facts: the world's, with this state's own reasons. */
export function vipFacts(s: QueueState, own: OwnFacts): VipFacts {
  return { ...own, withdrawn: s.withdrawn && s.withdrawn.until > own.now ? s.withdrawn.reason : null, removed: s.removing };
}

/**
 * Our key is in the queue, as far as we know: the view shows it and we did
 * not release it, or we joined a moment ago and the view has not caught up.
 */
export function isQueued(s: QueueState, f: QueueFacts): boolean {
  return (f.mine !== null && s.released === null) || joining(s, f.vip.now);
}

const joining = (s: QueueState, now: number) => s.joinedAt !== null && now - s.joinedAt < JOIN_VISIBLE_MS;
const idle = (s: QueueState, now: number) => s.op === null && (s.pauseUntil === null || s.pauseUntil <= now);

export function step(s: QueueState, f: QueueFacts, e: QueueEvent): Step {
  if (s.phase === "removed") return { state: s, effects: [] };
  const fx: QueueEffect[] = [];
  const [t, again] = apply(s, f, e, fx);
  if (!again) return { state: t, effects: fx };
  return { state: decide(t, f, fx), effects: fx };
}

/** The event's own bookkeeping; false: nothing to decide again. */
function apply(s: QueueState, f: QueueFacts, e: QueueEvent, fx: QueueEffect[]): [QueueState, boolean] {
  const now = f.vip.now;
  const log = (level: "info" | "warn" | "error", message: string, fields: Record<string, string | number> = {}) => fx.push({ type: "log", level, message, fields });
  switch (e.type) {
    case "update":
      return [s, true];
    case "due":
      if (idle(s, now) && f.ready && f.takeoverAt !== null && f.takeoverAt <= now) {
        const silentMs = f.queue.length ? Math.round(now - (f.queue[0]!.heardAt ?? now)) : 0;
        fx.push({ type: "takeover", silentMs });
        return [{ ...s, op: "takeover" }, true];
      }
      return [s, true];
    case "joined": {
      const names = e.before.join(", ");
      log("info", "standing for VIP", { queue: e.before.join(",") || "(empty)" });
      const winReason = e.before.length === 0 ? "first in the queue when it joined" : `joined behind ${names}`;
      return [{ ...s, op: null, joinedAt: now, winReason }, true];
    }
    case "join-failed":
      log("warn", "joining the queue failed; retrying", { error: e.error });
      return [{ ...s, op: null, pauseUntil: now + RETRY_MS }, true];
    case "released":
      log("info", "withdrew from the VIP's queue", { reason: e.reason });
      // A join whose key the view has not shown yet is undone as well.
      return [{ ...s, op: null, joinedAt: null, released: e.key, kernelRetryAt: null }, true];
    case "release-failed":
      log("warn", "leaving the queue failed; retrying", { error: e.error });
      return [{ ...s, op: null, pauseUntil: now + RETRY_MS }, true];
    case "kernel-answers":
      if (s.kernelRetryAt === null) log("warn", "the kernel may still answer for the VIP; leaving its queue once it cannot");
      return [{ ...s, op: null, kernelRetryAt: now + RETRY_MS }, true];
    case "took": {
      if (!e.took) {
        // Someone spoke meanwhile, and our view has not caught up yet: give it a moment.
        return [{ ...s, op: null, pauseUntil: now + TAKEOVER_RETRY_MS / 2 }, true];
      }
      if (e.from.length === 0) return [{ ...s, op: null }, true];
      const tookFrom = e.from.join(", ");
      fx.push({ type: "took-over" });
      log("info", "took the VIP's queue over", { from: tookFrom, silentMs: e.silentMs });
      return [{ ...s, op: null, tookFrom, winReason: `took over from ${tookFrom}: no heartbeat for ${e.silentMs} ms` }, true];
    }
    case "takeover-failed":
      // etcd may be electing a leader (the old one went with the holder): try again soon.
      log("warn", "takeover failed; retrying", { error: e.error });
      return [{ ...s, op: null, pauseUntil: now + TAKEOVER_RETRY_MS }, true];
    case "stand-down":
      if (s.withdrawn) return [{ ...s, withdrawn: { reason: s.withdrawn.reason, until: Math.max(e.until, s.withdrawn.until) } }, false];
      log("error", "cannot hold the VIP; letting another node take it", { reason: e.reason });
      return [{ ...s, withdrawn: { reason: e.reason, until: e.until } }, true];
    case "hold-failed": {
      if (e.consecutive < HOLD_FAILURES_TO_WITHDRAW || s.withdrawn) return [s, false];
      const reason = `the kernel refused the address ${e.consecutive} times (${e.error}); standing down for ${WITHDRAW_MS / 1000} s`;
      log("error", "cannot hold the VIP; letting another node take it", { reason });
      return [{ ...s, withdrawn: { reason, until: now + WITHDRAW_MS } }, true];
    }
    case "remove":
      return [{ ...s, removing: true }, true];
    case "ownership":
      if (!e.held) return [{ ...s, releasedAt: e.at }, false];
      if (s.headSince !== null) fx.push({ type: "failover", ms: e.at - s.headSince });
      return [s, false];
  }
}

/** Decide candidacy, queue moves and holding again from the facts as they are now. */
function decide(s: QueueState, f: QueueFacts, fx: QueueEffect[]): QueueState {
  const now = f.vip.now;
  let t = s;
  if (t.withdrawn && t.withdrawn.until <= now) {
    fx.push({ type: "log", level: "info", message: "standing for the VIP again", fields: { after: t.withdrawn.reason } });
    t = { ...t, withdrawn: null };
  }
  if (t.pauseUntil !== null && t.pauseUntil <= now) t = { ...t, pauseUntil: null };
  const vf = vipFacts(t, f.vip);
  t = noteQueue(t, f, vf.head, fx);
  const c = decideCandidacy(vf);
  t = { ...t, candidacy: c.reason };
  if (f.mine !== null) t = { ...t, joinedAt: null };
  if (f.mine !== t.released) t = { ...t, released: null };

  const queued = isQueued(t, f);
  if (c.stand || !queued) t = { ...t, kernelRetryAt: null };
  if (idle(t, now)) {
    if (c.stand && !queued && f.ready) {
      // Not before a probe found no stranger: a takeover later must not wait for one.
      if (!f.clearToStand) t = { ...t, candidacy: PROBING };
      else {
        fx.push({ type: "join", before: f.queue.map((q) => q.node) });
        t = { ...t, op: "join" };
      }
    } else if (!c.stand && queued && f.registered && (!f.serving || t.kernelRetryAt === null || t.kernelRetryAt <= now)) {
      fx.push({ type: "release", reason: c.reason });
      t = { ...t, op: "release" };
    }
  }

  const d = decideHold(vf);
  if (d.hold ? !vf.held || d.deadline !== t.appliedDeadline : vf.held || f.serving) {
    t = { ...t, appliedDeadline: d.hold ? d.deadline : null };
    fx.push({ type: "poke" });
  }

  const left = !vf.held && !f.serving && idle(t, now) && !joining(t, now) && f.mine === null;
  if (t.removing && left) {
    fx.push({ type: "left" });
    return { ...t, phase: "removed" };
  }
  fx.push({ type: "arm", ...nextAt(t, f, vf) });
  return { ...t, phase: phaseOf(t, f, c.stand, vf.head) };
}

/** Notes when we became first in the queue, and why, for the log and the failover metric. */
function noteQueue(s: QueueState, f: QueueFacts, head: boolean, fx: QueueEffect[]): QueueState {
  const now = f.vip.now;
  const queue = f.queue.map((q) => q.node);
  let { headSince, winReason, tookFrom, releasedAt } = s;
  if (head && !s.head) {
    headSince = now;
    const gone = s.lastQueue.filter((n) => n !== s.node && !queue.includes(n));
    const asked = f.handover;
    if (gone.length && !tookFrom) {
      winReason = asked?.to === s.node ? `${gone.join(", ")} handed it over (asked by ${asked.by} at ${asked.at})` : `${gone.join(", ")} left the queue`;
    }
    tookFrom = null;
  }
  if (!head) headSince = null;
  // The loser's side of a failover: from our release until another node is first.
  if (releasedAt !== null && queue[0] !== undefined && queue[0] !== s.node) {
    fx.push({ type: "failover", ms: now - releasedAt });
    releasedAt = null;
  }
  return { ...s, head, headSince, winReason, tookFrom, releasedAt, lastQueue: queue };
}

/** The next moment facts change by themselves, or a paused write may go again; `own`: the same without the takeover's. */
function nextAt(s: QueueState, f: QueueFacts, vf: VipFacts): { at: number; own: number } {
  let own = Infinity;
  if (vf.proof !== null && (vf.held || f.serving)) own = Math.min(own, vf.proof);
  if (vf.head && !vf.held && vf.claimedUntil !== null) own = Math.min(own, vf.claimedUntil);
  if (s.withdrawn) own = Math.min(own, s.withdrawn.until);
  if (s.pauseUntil !== null) own = Math.min(own, s.pauseUntil);
  if (s.kernelRetryAt !== null) own = Math.min(own, s.kernelRetryAt);
  // A write in flight comes back as an event; a takeover waits for it and for a pause.
  const takeover = f.takeoverAt !== null && s.op === null ? Math.max(f.takeoverAt, s.pauseUntil ?? -Infinity) : Infinity;
  return { at: Math.min(own, takeover), own };
}

function phaseOf(s: QueueState, f: QueueFacts, stand: boolean, head: boolean): Phase {
  if (s.op === "join") return "joining";
  if (s.op === "release") return "leaving";
  if (s.op === "takeover") return "taking-over";
  if (!isQueued(s, f)) return "out";
  if (!stand) return "leaving";
  if (f.mine === null) return "joining";
  return head ? "head" : "queued";
}
