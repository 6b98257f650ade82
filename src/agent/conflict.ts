// Address conflicts (RFC 5227): whether a machine that is not a vipd agent
// answers for a VIP. One watch per VIP decides when to probe and what an
// answer means; the probe itself (kernel/announce.ts probeAddress), the
// list of the agents' MACs (published in etcd) and the MACs of this node's
// own links come in through the deps.
//
// Who is a stranger: a MAC that is neither an agent's nor one of this node's
// links. A node with a second link on the VIP's segment answers its own probe
// there (Linux's default arp_ignore=0: any link answers ARP for any local
// address) with that link's MAC; the answer is this node's, and no conflict.
//
// When it probes:
//   - before the node first stands for the VIP (joins its queue), and before
//     it stands again when its last clear probe is older than the interval;
//   - every interval while it stands or holds, so that the nodes waiting
//     behind a holder learn of a stranger too, and leave the queue;
//   - right after it takes the VIP: the node it took over from may have let
//     go because of a stranger;
//   - every CONFLICT_RETRY_MS (or the interval, if shorter) while in conflict,
//     so that the VIP comes back soon after the stranger leaves.
// Never before a takeover: a failover must not wait for a probe. Never two
// probes at once.
//
// A probe that cannot be sent (a link gone down meanwhile) is reported and
// counts as "nobody answered": a broken probe must not keep a VIP dark. It
// ends no conflict, though; only an answer-free probe does.
import { type Clock, realTimers, type Timeouts } from "../seams.ts";

/** Between probes while in conflict, at most: the VIP returns this soon after a stranger leaves. */
export const CONFLICT_RETRY_MS = 10_000;

export interface Conflict {
  /** The strangers' MACs, sorted. */
  readonly macs: readonly string[];
  /** Clock time of the probe that found it. */
  readonly since: number;
  /** A sentence for the log, /healthz, /status and the decision. */
  readonly reason: string;
}

export interface ConflictDeps {
  readonly vip: string;
  readonly link: string;
  /** Between probes while standing or holding, ms; 0 turns conflict detection off. */
  readonly intervalMs: number;
  /** The MACs other than our own that answer for the VIP; rejects when no probe could be sent. */
  readonly probe: () => Promise<readonly string[]>;
  /** The MACs of the cluster's agents (published in etcd): their answers are no conflict. */
  readonly agentMacs: () => ReadonlySet<string>;
  /** The MACs of every link in this node's network namespace: its own answers, known without etcd. */
  readonly ownMacs: () => ReadonlySet<string>;
  readonly clock: Clock;
  readonly timers?: Timeouts;
  /** A conflict was found (a Conflict) or has cleared (null). Called on those two changes only. */
  readonly onChange: (conflict: Conflict | null, before: Conflict | null) => void;
  readonly onProbeFailed: (err: unknown) => void;
  /** A probe ended, whatever it found: the slot may stand now. */
  readonly onProbed?: () => void;
}

/** What the slot is doing, as far as probing cares. */
export interface SlotState {
  /** The node would stand for the VIP, if not for a conflict. */
  readonly wantsToStand: boolean;
  /** The VIP is on our link now. */
  readonly held: boolean;
}

export class ConflictWatch {
  readonly #d: ConflictDeps;
  readonly #timers: Timeouts;
  #conflict: Conflict | null = null;
  /** When the last probe that found no stranger ended. */
  #clearAt: number | null = null;
  /** When the last probe started and ended (any outcome). */
  #startedAt: number | null = null;
  #endedAt: number | null = null;
  /** Since when we hold the VIP, null when we do not. */
  #heldSince: number | null = null;
  #state: SlotState = { wantsToStand: false, held: false };
  #inFlight = false;
  #timer: unknown = null;
  #timerAt = Infinity;
  #stopped = false;

  constructor(deps: ConflictDeps) {
    if (!Number.isFinite(deps.intervalMs) || deps.intervalMs < 0) throw new RangeError(`probe interval ${deps.intervalMs} ms is not a non-negative number`);
    this.#d = deps;
    this.#timers = deps.timers ?? realTimers;
  }

  get enabled(): boolean {
    return this.#d.intervalMs > 0;
  }

  get conflict(): Conflict | null {
    return this.#conflict;
  }

  get probing(): boolean {
    return this.#inFlight;
  }

  /**
   * Whether the node may join the queue now as far as strangers go: detection
   * is off, or the last probe, within the interval, found none.
   */
  clearToStand(): boolean {
    if (!this.enabled) return true;
    if (this.#conflict || this.#clearAt === null) return false;
    return this.#d.clock() - this.#clearAt < this.#d.intervalMs;
  }

  /** The slot decided again: start a probe that is due now, or arm the timer for the next one. */
  update(state: SlotState): void {
    if (this.#stopped || !this.enabled) return;
    const now = this.#d.clock();
    if (state.held && this.#heldSince === null) this.#heldSince = now;
    if (!state.held) this.#heldSince = null;
    this.#state = state;
    if (this.#inFlight) return;
    const at = this.#nextProbeAt(now);
    if (at <= now) {
      this.#disarm();
      void this.#probe();
      return;
    }
    if (at === this.#timerAt) return;
    this.#disarm();
    if (at === Infinity) return;
    this.#timerAt = at;
    this.#timer = this.#timers.setTimeout(() => {
      this.#timer = null;
      this.#timerAt = Infinity;
      this.update(this.#state);
    }, at - now);
  }

  /** No more probes; one in flight is let finish and its answer ignored. */
  stop(): void {
    this.#stopped = true;
    this.#disarm();
  }

  /** When the next probe is due (clock time), Infinity when none is. */
  #nextProbeAt(now: number): number {
    const { intervalMs } = this.#d;
    const { wantsToStand, held } = this.#state;
    if (!wantsToStand && !held) return Infinity;
    if (this.#conflict) return (this.#endedAt ?? now) + Math.min(CONFLICT_RETRY_MS, intervalMs);
    if (this.#heldSince !== null && (this.#startedAt === null || this.#startedAt < this.#heldSince)) return now;
    return this.#clearAt === null ? now : this.#clearAt + intervalMs;
  }

  async #probe(): Promise<void> {
    const { clock, probe, agentMacs, ownMacs } = this.#d;
    this.#inFlight = true;
    this.#startedAt = clock();
    // An agent known when the probe began counts as one to its end: a holder
    // that answered and then stopped takes its MACs out of etcd meanwhile.
    // Our own links likewise: one deleted during the probe answered as ours.
    const agentsBefore = agentMacs();
    const ownBefore = ownMacs();
    let answered: readonly string[] | null = null;
    try {
      answered = await probe();
    } catch (err) {
      if (!this.#stopped) this.#d.onProbeFailed(err);
    }
    this.#inFlight = false;
    const now = clock();
    this.#endedAt = now;
    if (this.#stopped) return;
    const before = this.#conflict;
    const agentsAfter = agentMacs();
    const ownAfter = ownMacs();
    const known = (m: string) => agentsBefore.has(m) || agentsAfter.has(m) || ownBefore.has(m) || ownAfter.has(m);
    const strangers = answered ? [...new Set(answered.filter((m) => !known(m)))].sort() : null;
    if (strangers === null) {
      // Learned nothing: a conflict stays, and otherwise the node may stand.
      if (!before) this.#clearAt = now;
    } else if (strangers.length > 0) {
      // Other strangers than before: the same conflict, told with their MACs.
      if (before?.macs.join() !== strangers.join()) this.#conflict = { macs: strangers, since: before?.since ?? now, reason: this.#reason(strangers) };
      if (!before) this.#d.onChange(this.#conflict, null);
    } else {
      this.#clearAt = now;
      if (before) {
        this.#conflict = null;
        this.#d.onChange(null, before);
      }
    }
    this.update(this.#state);
    this.#d.onProbed?.();
  }

  #reason(macs: readonly string[]): string {
    const { vip, link } = this.#d;
    const which = macs.length === 1 ? "which is not a vipd agent" : "which are not vipd agents";
    return `address conflict: ${vip} on ${link} is answered by ${macs.join(", ")}, ${which}`;
  }

  #disarm(): void {
    if (this.#timer !== null) this.#timers.clearTimeout(this.#timer);
    this.#timer = null;
    this.#timerAt = Infinity;
  }
}
