// The agent's heartbeat: one etcd transaction every 250 ms while the agent
// holds anything, every half hold (at most 1250 ms) while it stands by,
// whatever the number of VIPs (design.md §3).
//
//   if   agents/<node> was created by this run            (create revision)
//   and  elections/<vip>/<node> still is the key we hold,  for every VIP we head
//   then put heartbeats/<node> = {run, seq, claims}
//   else read those keys back, to learn which one is gone
//
// A committed heartbeat needed a quorum, so a stale or cut-off etcd member
// cannot fake one. Its send time proves every key it guarded until send time
// + hold − margin (proof.ts). A failed guard is how a deposed holder learns
// it was deposed, even when its watch is silent. The lost key leaves every
// later guard at once, or each heartbeat would fail on it until the view
// shows the deletion, and every other key would go unproven meanwhile.
//
// The pace is the holder's while the agent heads a queue, claims a VIP or is
// taking one over (`busy`): its proofs, and so how long an etcd stall it
// rides out, run from its heartbeats' send times. A standby's heartbeats
// only keep the agents behind it from judging it silent, which they do a
// whole silence window after receipt, so they go slower. An agent that
// becomes a holder sends at once (`beat`, or the takeover's own put:
// `putAlongside`) and at the holder's pace from then on; one that lets go
// slows down after its next heartbeat.
//
// Heartbeats do not wait for each other: one goes out every interval, each
// dated by its own send time, so one slow round trip costs nothing as long
// as a later one lands. While they fail (etcd electing a leader, say) the
// interval shortens, so the proof resumes soon after etcd does. When none is
// answered at all for a second, the connection is asked whether a new one
// would help (reconnect.ts): another endpoint might answer, or the calls may
// be stuck on a half-open TCP link. A member that is only slow or frozen
// keeps its connection, and the heartbeats in flight on it: they commit, and
// prove from their send time, as soon as it runs again.
import { type Etcd3, GRPCDeadlineExceededError, type ITxnResponse } from "etcd3";
import { type EtcdConnection, within } from "./connection.ts";
import { type Clock, Emitter, realTimers, type Timeouts } from "../seams.ts";
import { decodeIncarnation, type Incarnation } from "./incarnation.ts";
import { HEARTBEAT_INTERVAL_MS, HEARTBEAT_RETRY_MS } from "./proof.ts";
import { type Guarded, heartbeatPut, heartbeatTxn } from "./transactions.ts";

export type { Guarded };

export interface HeartbeatEvents extends Record<string, unknown> {
  /** A heartbeat committed: every guarded key is proven from sentAt. */
  committed: { sentAt: number; revision: string; guarded: readonly Guarded[]; rttMs: number };
  /**
   * The guard failed on these VIPs' keys: someone deleted them (a takeover,
   * an operator, the lease). At `revision` they were gone: a watch that has
   * not shown it within its progress check is stalled (design.md §7).
   */
  deposed: { keys: readonly Guarded[]; revision: string };
  /** Our agent record is gone, or belongs to another run now. */
  evicted: { reason: string; by: Incarnation | null };
  /** A heartbeat could not be sent or was not answered; the loop goes on. */
  failed: { reason: string };
  /** No heartbeat was answered for a while: whether the connection was replaced, and why (once per silence when it was not). */
  stalled: { silentMs: number; reconnected: boolean; why: string };
}

/** What a heartbeat needs of the etcd connection: one transaction call, and being told of (or asking for) a new one. */
export type HeartbeatConn = Pick<EtcdConnection, "reset" | "onReset" | "stalled"> & { readonly client: { readonly kv: Pick<Etcd3["kv"], "txn"> } };

export interface HeartbeatOptions {
  readonly conn: HeartbeatConn;
  readonly clock: Clock;
  /** The runtime's timers unless a test drives them with its clock. */
  readonly timers?: Timeouts;
  readonly prefix: string;
  readonly node: string;
  readonly run: string;
  /** The lease the heartbeat key is put with (decimal). */
  readonly lease: string;
  /** Create revision of our agent record. */
  readonly agentRevision: string;
  /** Per call: the keys to guard and the VIPs to claim, read when each heartbeat leaves. */
  readonly guard: () => readonly Guarded[];
  readonly claims: () => readonly string[];
  /** Sequence numbers, shared with every other write of the heartbeat key. */
  readonly nextSeq: () => number;
  /** Deadline per heartbeat: one answered after the proof it would give has ended proves nothing. */
  readonly timeoutMs: number;
  /** The holder's interval. Default HEARTBEAT_INTERVAL_MS. */
  readonly intervalMs?: number;
  /** The interval while `busy` says no (proof.ts standbyInterval). Default: intervalMs. */
  readonly idleIntervalMs?: number;
  /** Read when each heartbeat is scheduled: whether the agent heads a queue, claims a VIP or is taking one over. Default: always. */
  readonly busy?: () => boolean;
  /** No answer of any kind for this long while heartbeats are out: ask the connection whether to replace it. Default 1000 ms. */
  readonly stallMs?: number;
}

/** Most heartbeats out at once; more would only queue behind a wedged connection. */
const MAX_IN_FLIGHT = 16;
/** Keys whose earlier proofs are void, the latest kept: answers in flight outlive a release or a loss by their deadline at most. */
const VOIDS_KEPT = 1024;

const id = (g: Guarded) => `${g.vip} ${g.createRevision}`;

export class Heartbeat extends Emitter<HeartbeatEvents> {
  readonly #o: HeartbeatOptions;
  readonly #interval: number;
  readonly #idleInterval: number;
  readonly #busy: () => boolean;
  /** The interval the latest schedule used, and the one before it (paceMs is the slower). */
  #pace: number;
  #paceBefore: number;
  readonly #stallMs: number;
  #running = false;
  readonly #timers: Timeouts;
  #timer: unknown = null;
  #beatAsked = false;
  #inFlight = 0;
  /** Bumped when the connection is replaced: answers to older calls no longer count as in flight. */
  #generation = 0;
  #unsubscribe: (() => void) | null = null;
  #lastSentAt = -Infinity;
  #lastCommitAt: number | null = null;
  /** The latest heartbeat to fail has not been followed by a commit: the next goes out a retry after the last, not an interval. */
  #failing = false;
  #lastAnswerAt: number;
  /** This silence was reported without a reconnect: say it once, not at every retry. */
  #stallReported = false;
  /** `${vip} ${createRevision}` → latest send time of a committed heartbeat that guarded it. */
  readonly #proven = new Map<string, number>();
  /**
   * `${vip} ${createRevision}` → proofs from writes sent up to this time do
   * not count; Infinity: the key is gone, and no heartbeat guards it again.
   */
  readonly #void = new Map<string, number>();

  constructor(opts: HeartbeatOptions) {
    super();
    this.#o = opts;
    this.#interval = opts.intervalMs ?? HEARTBEAT_INTERVAL_MS;
    this.#idleInterval = Math.max(this.#interval, opts.idleIntervalMs ?? this.#interval);
    this.#busy = opts.busy ?? (() => true);
    this.#pace = this.#interval;
    this.#paceBefore = this.#interval;
    this.#stallMs = opts.stallMs ?? 1000;
    this.#timers = opts.timers ?? realTimers;
    this.#lastAnswerAt = opts.clock();
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#lastAnswerAt = this.#o.clock();
    // Calls on a replaced connection may never return: stop waiting for them.
    this.#unsubscribe = this.#o.conn.onReset(() => {
      this.#generation++;
      this.#inFlight = 0;
      this.#lastAnswerAt = this.#o.clock();
      this.#send();
    });
    this.#send();
  }

  stop(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = null;
    this.#running = false;
    if (this.#timer !== null) this.#timers.clearTimeout(this.#timer);
    this.#timer = null;
  }

  /**
   * Sends one now (a new head needs its proof without waiting for the next
   * interval). Calls in one turn of the loop share one heartbeat: it guards
   * every key we hold when it leaves, so 100 VIPs joining at start need one,
   * not as many as may be in flight.
   */
  beat(): void {
    if (!this.#running || this.#beatAsked) return;
    this.#beatAsked = true;
    queueMicrotask(() => {
      this.#beatAsked = false;
      if (this.#running) this.#send();
    });
  }

  /**
   * Another write of ours that put the heartbeat key, sent at `sentAt`, has
   * committed: a takeover, which makes this agent a holder in the same
   * transaction. It counts as a heartbeat that left then and committed now:
   * the next goes one interval after it, at the pace `busy` says now, not a
   * standby's interval after the last one.
   */
  putAlongside(sentAt: number): void {
    if (!this.#running) return;
    const now = this.#o.clock();
    if (sentAt > this.#lastSentAt) this.#lastSentAt = sentAt;
    if (this.#lastCommitAt === null || now > this.#lastCommitAt) this.#lastCommitAt = now;
    this.#failing = false;
    this.#schedule();
  }

  /** Send time of the latest committed heartbeat that guarded this key; null if none did. */
  provenSince(vip: string, createRevision: string): number | null {
    return this.#proven.get(`${vip} ${createRevision}`) ?? null;
  }

  /**
   * Records a proof from a guarded write of ours (a heartbeat, or a takeover
   * transaction), unless a release or a loss of the key voided it: a late
   * answer must not give back what was let go.
   */
  prove(g: Guarded, sentAt: number): void {
    const k = id(g);
    if (sentAt <= (this.#void.get(k) ?? -Infinity)) return;
    if ((this.#proven.get(k) ?? -Infinity) < sentAt) this.#proven.set(k, sentAt);
  }

  /**
   * A release of this key left at `sentAt`: proofs from writes sent until
   * then no longer count, since the next node takes the VIP as soon as the
   * release commits (design.md §4). Later heartbeats that guard the key still
   * prove it, should the release never have committed.
   */
  releasing(g: Guarded, sentAt: number): void {
    this.#voidUpTo(id(g), sentAt);
  }

  /** The key is gone (our release committed, or a guard failed on it): no heartbeat guards it or proves it again. */
  gone(g: Guarded): void {
    this.#voidUpTo(id(g), Infinity);
  }

  #voidUpTo(k: string, sentAt: number): void {
    if ((this.#proven.get(k) ?? Infinity) <= sentAt) this.#proven.delete(k);
    const was = this.#void.get(k) ?? -Infinity;
    this.#void.delete(k);
    this.#void.set(k, Math.max(was, sentAt));
    for (const old of this.#void.keys()) {
      if (this.#void.size <= VOIDS_KEPT) break;
      this.#void.delete(old);
    }
  }

  get lastCommitAt(): number | null {
    return this.#lastCommitAt;
  }

  /**
   * How far apart two commits may be while etcd answers every heartbeat: the
   * interval now, or the one before if that was slower (a standby that just
   * became a holder last committed up to a standby's interval ago).
   */
  get paceMs(): number {
    return Math.max(this.#pace, this.#paceBefore);
  }

  #schedule(): void {
    if (!this.#running) return;
    if (this.#timer !== null) this.#timers.clearTimeout(this.#timer);
    const interval = this.#busy() ? this.#interval : this.#idleInterval;
    this.#paceBefore = this.#pace;
    this.#pace = interval;
    // Judged by the slower of the old and the new pace: a standby that
    // becomes a holder last committed up to a standby's interval ago, which
    // is no reason to retry.
    const span = this.paceMs;
    const healthy = !this.#failing && this.#lastCommitAt !== null && this.#o.clock() - this.#lastCommitAt < 2 * span;
    const next = this.#lastSentAt + (healthy ? interval : HEARTBEAT_RETRY_MS);
    this.#timer = this.#timers.setTimeout(() => {
      this.#timer = null;
      this.#send();
    }, Math.max(0, next - this.#o.clock()));
  }

  #send(): void {
    if (!this.#running) return;
    const now = this.#o.clock();
    if (this.#inFlight > 0 && now - this.#lastAnswerAt > this.#stallMs) {
      const silentMs = Math.round(now - this.#lastAnswerAt);
      const d = this.#o.conn.stalled(silentMs);
      if (d.reset || !this.#stallReported) this.emit("stalled", { silentMs, reconnected: d.reset, why: d.why });
      this.#stallReported = !d.reset;
      // Sends the next heartbeat itself, through onReset.
      if (d.reset) return;
    }
    if (this.#inFlight >= MAX_IN_FLIGHT) {
      // Try again a retry from now, not from the last send: that is past, and would spin.
      this.#lastSentAt = now;
      return this.#schedule();
    }
    const o = this.#o;
    // A key a guard found gone stays in the view until the watch shows it.
    const guarded = o.guard().filter((g) => this.#void.get(id(g)) !== Infinity);
    const me = { prefix: o.prefix, node: o.node, run: o.run };
    const req = heartbeatTxn(me, o.agentRevision, guarded, heartbeatPut(me, o.lease, o.nextSeq(), o.claims()));
    // The proof starts when the request leaves, not when it was decided.
    const sentAt = o.clock();
    this.#lastSentAt = sentAt;
    this.#inFlight++;
    const gen = this.#generation;
    o.conn.client.kv.txn(req, within(o.timeoutMs)).then(
      (res) => this.#answered(res, sentAt, guarded, gen),
      (err: unknown) => this.#failed(err, gen),
    );
    this.#schedule();
  }

  #answered(res: ITxnResponse, sentAt: number, guarded: readonly Guarded[], gen: number): void {
    // A late answer from a replaced connection still proves what it proves.
    if (gen === this.#generation) this.#inFlight--;
    const now = this.#o.clock();
    this.#lastAnswerAt = now;
    this.#stallReported = false;
    if (!this.#running) return;
    if (res.succeeded) {
      if (this.#lastCommitAt === null || now > this.#lastCommitAt) this.#lastCommitAt = now;
      this.#failing = false;
      for (const g of guarded) this.prove(g, sentAt);
      this.emit("committed", { sentAt, revision: res.header.revision, guarded, rttMs: now - sentAt });
      return;
    }
    const [agent, ...keys] = res.responses.map((r) => r.response_range?.kvs ?? []);
    const record = agent?.[0];
    if (!record || record.create_revision !== this.#o.agentRevision) {
      const by = record ? decodeIncarnation(record.value.toString()) : null;
      this.emit("evicted", {
        reason: record ? "our agent record was replaced by another run of vipd under this node name" : "our agent record is gone (lease expired or revoked, or deleted by hand)",
        by,
      });
      return;
    }
    const lost = guarded.filter((g, i) => keys[i]?.[0]?.create_revision !== g.createRevision);
    if (lost.length === 0) return;
    // Heartbeats still in flight fail on the same key: only the first to learn it sends again.
    const news = lost.some((g) => this.#void.get(id(g)) !== Infinity);
    for (const g of lost) this.gone(g);
    this.emit("deposed", { keys: lost, revision: res.header.revision });
    // The rest are still ours: prove them without waiting for the next interval.
    if (news) this.#send();
  }

  #failed(err: unknown, gen: number): void {
    if (gen !== this.#generation) return;
    this.#inFlight--;
    // An error from etcd ("no leader") is an answer; our own deadline running out is not.
    if (!(err instanceof GRPCDeadlineExceededError)) {
      this.#lastAnswerAt = this.#o.clock();
      this.#stallReported = false;
    }
    if (!this.#running) return;
    this.emit("failed", { reason: err instanceof Error ? err.message : String(err) });
    // The next goes out a retry after the last send (design.md §3), not when
    // the interval timer armed at that send would have sent it: waiting the
    // whole interval after a refusal leaves the proof to run down meanwhile.
    this.#failing = true;
    this.#schedule();
  }
}
