// The agent's etcd session (design.md §2–§7): the lifecycle loop that
// connects, registers this run under its node name, reads and watches the
// cluster view and runs the heartbeat, and the facts the VIP slots decide
// with — "may this agent hold the VIP, and until when?" — answered from etcd
// alone. It never touches the kernel.
//
// The parts it wires: lifecycle.ts (the loop, and the lease, watcher and
// heartbeat it runs), registration.ts (0.1 refusal, judging the previous
// run, MACs), queue-writer.ts (join, release, batched takeover) and
// transactions.ts (what every write holds). Its public surface is what the
// agent and its VIP slots use.
//
// A session that loses its footing (its agent record or lease gone) says
// "lost" — every VIP must be released — and registers again by itself. One
// that finds another live run under its node name says "fatal": the agent
// stops and exits 2 (design.md §6).
import type { Logger } from "../log.ts";
import { type Clock, Emitter, type Timed } from "../seams.ts";
import { type EtcdConnection, within } from "./connection.ts";
import { drainReason, yieldReason } from "./handover.ts";
import type { Incarnation } from "./incarnation.ts";
import type { MacsValue } from "./keys.ts";
import { etcdParts, Lifecycle } from "./lifecycle.ts";
import { HEARTBEAT_INTERVAL_MS, proofDeadline } from "./proof.ts";
import { QueueWriter } from "./queue-writer.ts";
import { Registration, SessionFatalError } from "./registration.ts";
import { takeoverAt } from "./takeover.ts";
import type { KvCalls, Self } from "./transactions.ts";
import { type Candidate, ClusterView } from "./view.ts";

export { SessionFatalError };

export interface SessionSettings {
  readonly endpoints: readonly string[];
  readonly prefix: string;
  readonly node: string;
  readonly holdMs: number;
  /** TTL of the cleanup lease, seconds. */
  readonly leaseTtlS: number;
}

export interface SessionOptions {
  readonly settings: SessionSettings;
  readonly conn: EtcdConnection;
  readonly identity: Incarnation;
  readonly clock: Clock;
  readonly log: Logger;
  /** VIPs this agent's kernel may be answering for right now; they stay claimed until released. */
  readonly serving: () => Iterable<string>;
  /**
   * The MAC of each VIP's link, by VIP, as the other agents' address-conflict
   * probes must know them. Published as the run registers, and again after
   * any committed heartbeat that finds them changed. Absent: none published.
   */
  readonly macs?: () => MacsValue;
  readonly processAlive?: (pid: number, start: string) => boolean;
  /**
   * Makes the kernel stop answering for VIPs a dead run of this node, in this
   * network namespace, claimed in its last heartbeat (removes them from every
   * link); rejects when it cannot. Asked before that run's keys are cleared
   * at once (design.md §6); absent, or rejecting: its window is waited out.
   */
  readonly removeLeftovers?: (claims: readonly string[]) => Promise<void>;
  readonly rpcTimeoutMs?: number;
  /** Measures the session's big synchronous tasks (a watch batch, a takeover decision) for the agent's loop watch. */
  readonly timed?: Timed;
}

export interface SessionEvents extends Record<string, unknown> {
  /** The view or a proof changed: decide again. */
  changed: Record<string, never>;
  /** Our keys for these VIPs are gone: stop answering for them now. */
  deposed: { vips: readonly string[] };
  /** Our agent record or lease is gone: release everything. The session registers again by itself. */
  lost: { reason: string };
  /** Another live run owns this node name: stop (exit 2). */
  fatal: { reason: string };
  /** A heartbeat's outcome, for metrics. */
  heartbeat: { result: "committed" | "failed" | "deposed"; rttMs?: number };
}

export class Session extends Emitter<SessionEvents> {
  readonly view: ClusterView;
  readonly #o: SessionOptions;
  readonly #s: SessionSettings;
  readonly #me: Self;
  readonly #rpcMs: number;
  readonly #life: Lifecycle;
  readonly #queues: QueueWriter;
  #seq = 0;

  constructor(opts: SessionOptions) {
    super();
    this.#o = opts;
    this.#s = opts.settings;
    this.#me = { prefix: this.#s.prefix, node: this.#s.node, run: opts.identity.run };
    this.#rpcMs = opts.rpcTimeoutMs ?? 2000;
    this.view = new ClusterView(this.#s.prefix, (key, why) => opts.log.warn("ignoring a key under vipd's prefix", { key, reason: why }));
    // The connection may replace its client: ask for the current one at each call.
    const kv: KvCalls = {
      txn: (req, ms) => opts.conn.client.kv.txn(req, within(ms)),
      range: (req, ms) => opts.conn.client.kv.range(req, within(ms)),
    };
    const nextSeq = () => ++this.#seq;
    const registration = new Registration({
      me: this.#me, identity: opts.identity, kv, clock: opts.clock, log: opts.log, rpcTimeoutMs: this.#rpcMs, endpoints: this.#s.endpoints,
      serving: opts.serving, macs: opts.macs, processAlive: opts.processAlive, removeLeftovers: opts.removeLeftovers,
      holdOf: (node) => this.view.holdOf(node), nextSeq,
    });
    this.#queues = new QueueWriter({
      me: this.#me, view: this.view, kv, clock: opts.clock, rpcTimeoutMs: this.#rpcMs, serving: opts.serving, nextSeq,
      registered: () => this.#life.registered(),
      established: () => this.#life.established,
      proofs: () => this.#life.heartbeat,
      takeoverAt: (vip) => this.takeoverAt(vip),
      wrote: (revision) => this.#life.expect(revision),
      took: () => this.emit("changed", {}),
      timed: opts.timed,
    });
    this.#life = new Lifecycle({
      settings: this.#s, clock: opts.clock, log: opts.log, run: this.#me.run, registration, queues: this.#queues,
      parts: etcdParts({ conn: opts.conn, view: this.view, me: this.#me, settings: this.#s, clock: opts.clock, log: opts.log, rpcTimeoutMs: this.#rpcMs, nextSeq, timed: opts.timed }),
      emit: (event, payload) => this.emit(event, payload),
    });
  }

  /** Starts connecting and registering in the background. */
  start(): void {
    this.#life.start();
  }

  get ready(): boolean {
    return this.#life.ready;
  }
  /** Registered (lease and agent record), whether or not the view is current: a release can be sent. */
  get registered(): boolean {
    return this.#life.established;
  }
  get lastError(): string | null {
    return this.#life.lastError;
  }
  get lastHeartbeatAt(): number | null {
    return this.#life.heartbeat?.lastCommitAt ?? null;
  }
  /** How far apart our heartbeats' commits may be while etcd answers (Heartbeat.paceMs); the holder's interval before the first. */
  get heartbeatPaceMs(): number {
    return this.#life.heartbeat?.paceMs ?? HEARTBEAT_INTERVAL_MS;
  }
  get lastHeartbeatError(): string | null {
    return this.#life.lastHeartbeatError;
  }

  // ---- facts for the slots --------------------------------------------------

  /** Our key in a VIP's queue, if the view has it. */
  mine(vip: string): Candidate | undefined {
    return this.#queues.mine(vip);
  }

  /** Whether our key is first in the VIP's queue. */
  isHead(vip: string): boolean {
    return this.#queues.isHead(vip);
  }

  /**
   * Until when a heartbeat proves our key for this VIP (design.md §3,
   * invariant I1); null: unproven. It does not wait for the view to be current: a proof stands on
   * the heartbeat's guard alone, and a view being read again must not drop a
   * VIP that etcd still proves. A key we released is never proven again,
   * though the view may show it for a while yet (design.md §4).
   */
  proof(vip: string): number | null {
    if (!this.#life.established) return null;
    const me = this.mine(vip);
    if (!me || this.#queues.letGo({ vip, createRevision: me.createRevision })) return null;
    const since = this.#life.heartbeat?.provenSince(vip, me.createRevision) ?? null;
    return since === null ? null : proofDeadline(since, this.#s.holdMs);
  }

  /** Why an operator drained this node (`vipd drain`); null: it is not drained. */
  get drained(): string | null {
    return drainReason(this.view, this.#s.node);
  }

  /** Why our key for the VIP must step back for a requested hand-over; null: it stays. */
  yielding(vip: string): string | null {
    return yieldReason(this.view, vip, this.#me);
  }

  /** Until when another node may still answer for the VIP by its claims; null: nobody else. */
  claimedElsewhereUntil(vip: string): number | null {
    return this.view.claimedUntil(vip, this.#s.node, this.#o.clock());
  }

  /** When this agent may try to take the VIP from the agents ahead of it (takeover.ts); null: not queued, already first, or not ready. */
  takeoverAt(vip: string): number | null {
    return this.ready ? takeoverAt(this.view, this.#me, vip, this.#o.clock()) : null;
  }

  // ---- writes (queue-writer.ts) ---------------------------------------------------

  /** Joins the VIP's queue (at the back). */
  join(vip: string): Promise<void> {
    return this.#queues.join(vip);
  }

  /**
   * Leaves the VIPs' queues with a heartbeat that no longer claims them
   * (design.md §4); refuses while the kernel may still answer for one
   * (invariant I4). Uses its own fresh deadline: it runs on the way out.
   */
  release(vips: readonly string[], timeoutMs = this.#rpcMs): Promise<void> {
    return this.#queues.release(vips, timeoutMs);
  }

  /** Takes the VIP from the silent agents ahead (invariant I3), batched with this turn's other takeovers. */
  takeover(vip: string): Promise<{ took: boolean; from: string[] }> {
    return this.#queues.takeover(vip);
  }

  /**
   * Leaves every queue (with a heartbeat that claims nothing) and revokes the
   * lease, each with its own short deadline. The caller has removed every
   * address first.
   */
  async stop(timeoutMs = 600): Promise<void> {
    await this.#life.stop(timeoutMs, () => this.release(this.view.vips().filter((v) => this.mine(v)), timeoutMs));
  }

  /** For /status: the session as people need to see it. */
  describe(): { lease: string | null; ttl: number | null; agents: { node: string; silentForMs: number | null; host: string | null }[] } {
    const now = this.#o.clock();
    const lease = this.#life.lease;
    return {
      lease: lease && lease.ttl > 0 ? lease.id : null,
      ttl: lease && lease.ttl > 0 ? lease.ttl : null,
      agents: this.view.agents().map((a) => {
        const hb = this.view.heartbeat(a.node);
        return { node: a.node, host: a.incarnation?.host ?? null, silentForMs: hb ? Math.round(now - hb.receivedAt) : null };
      }),
    };
  }
}
