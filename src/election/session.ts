// The agent's etcd session: connection, lease, registration of this run
// under its node name, the cluster view, the heartbeats and the proofs they
// give, and the three writes that change a queue — join, release, takeover
// (design.md §2–§7).
//
// It never touches the kernel. It answers "may this agent hold the VIP, and
// until when?" from etcd facts, and the VIP slots decide with that and the
// link and gate facts.
//
// A session that loses its footing (its agent record or lease gone) says
// "lost" — every VIP must be released — and registers again by itself. One
// that finds another live run under its node name says "fatal": the agent
// stops and exits 2 (design.md §6).
import type { ITxnRequest } from "etcd3";
import { describeError, type Logger } from "../log.ts";
import { type EtcdConnection, type EtcdTlsFiles, within } from "./connection.ts";
import { describeEtcdError } from "./etcd-error.ts";
import { etcdVersionWarning } from "./etcd-version.ts";
import { drainReason, yieldReason } from "./handover.ts";
import { type Guarded, Heartbeat } from "./heartbeat.ts";
import { decodeIncarnation, describeIncarnation, encodeIncarnation, type Incarnation, judge, processAlive } from "./incarnation.ts";
import { agentKey, decodeHeartbeat, electionKey, electionsPrefix, encodeHeartbeat, encodeMacs, heartbeatKey, LEGACY_ELECTIONS, macsKey, type MacsValue, prefixEnd } from "./keys.ts";
import { readNewerLayout } from "./layout.ts";
import { AgentLease } from "./lease.ts";
import { type Clock, Emitter } from "../seams.ts";
import { HEARTBEAT_INTERVAL_MS, proofDeadline, silenceWindow, TAKEOVER_STAGGER_MS } from "./proof.ts";
import { stallAfter } from "./reconnect.ts";
import { type TakeoverAsk, type TakeoverPlan, takeoverBatches, uniqueCompares } from "./takeover.ts";
import { type Candidate, ClusterView } from "./view.ts";
import { Watcher } from "./watcher.ts";

export interface SessionSettings {
  readonly endpoints: readonly string[];
  readonly tls?: EtcdTlsFiles | undefined;
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

/** A problem no retry can fix: the agent must stop. */
export class SessionFatalError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SessionFatalError";
  }
}

const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5000;

export class Session extends Emitter<SessionEvents> {
  readonly view: ClusterView;
  readonly #o: SessionOptions;
  readonly #s: SessionSettings;
  readonly #rpcMs: number;
  #lease: AgentLease | null = null;
  #watcher: Watcher | null = null;
  #heartbeat: Heartbeat | null = null;
  #agentRevision: string | null = null;
  #seq = 0;
  #ready = false;
  #stopped = false;
  /** stop()'s budget, for undoing a registration that was still under way when it came. */
  #stopTimeoutMs = 600;
  #lastError: string | null = "connecting";
  #lastHeartbeatError: string | null = null;
  #versionChecked = false;
  #ended: (() => void) | null = null;
  #loop: Promise<void> | null = null;
  readonly #releasing = new Set<string>();
  #heads = new Set<string>();
  /** Keys whose release by this run committed ("vip createRevision"), the latest RELEASES_KEPT. */
  readonly #released = new Set<string>();
  /** Takeovers asked for in this turn of the loop, sent together at its end. */
  #takeovers: TakeoverAsk[] = [];
  /** The MACs value in etcd for this registration, as written; null: not yet. */
  #macsPublished: string | null = null;
  #macsWriting = false;

  constructor(opts: SessionOptions) {
    super();
    this.#o = opts;
    this.#s = opts.settings;
    this.#rpcMs = opts.rpcTimeoutMs ?? 2000;
    this.view = new ClusterView(this.#s.prefix, (key, why) => opts.log.warn("ignoring a key under vipd's prefix", { key, reason: why }));
  }

  /** Starts connecting and registering in the background. */
  start(): void {
    this.#loop ??= this.#run();
  }

  get ready(): boolean {
    return this.#ready && (this.#watcher?.synced ?? false);
  }
  /** Registered (lease and agent record), whether or not the view is current: a release can be sent. */
  get registered(): boolean {
    return this.#ready;
  }
  get lastError(): string | null {
    return this.#lastError;
  }
  get lease(): AgentLease | null {
    return this.#lease;
  }
  get identity(): Incarnation {
    return this.#o.identity;
  }
  get lastHeartbeatAt(): number | null {
    return this.#heartbeat?.lastCommitAt ?? null;
  }
  get lastHeartbeatError(): string | null {
    return this.#lastHeartbeatError;
  }

  // ---- facts for the slots --------------------------------------------------

  /** Our key in a VIP's queue, if the view has it. */
  mine(vip: string): Candidate | undefined {
    return this.view.queue(vip).find((c) => c.node === this.#s.node && c.run === this.#o.identity.run);
  }

  /** Whether our key is first in the VIP's queue. */
  isHead(vip: string): boolean {
    const first = this.view.queue(vip)[0];
    return first !== undefined && first.node === this.#s.node && first.run === this.#o.identity.run;
  }

  /**
   * Until when a heartbeat proves our key for this VIP (design.md §3,
   * invariant I1); null: unproven. It does not wait for the view to be current: a proof stands on
   * the heartbeat's guard alone, and a view being read again must not drop a
   * VIP that etcd still proves. A key we released is never proven again,
   * though the view may show it for a while yet (design.md §4).
   */
  proof(vip: string): number | null {
    if (!this.#ready || this.#releasing.has(vip)) return null;
    const me = this.mine(vip);
    if (!me || this.#released.has(`${vip} ${me.createRevision}`)) return null;
    const since = this.#heartbeat?.provenSince(vip, me.createRevision) ?? null;
    return since === null ? null : proofDeadline(since, this.#s.holdMs);
  }

  /** Why an operator drained this node (`vipd drain`); null: it is not drained. */
  get drained(): string | null {
    return drainReason(this.view, this.#s.node);
  }

  /** Why our key for the VIP must step back for a requested hand-over; null: it stays. */
  yielding(vip: string): string | null {
    return yieldReason(this.view, vip, { node: this.#s.node, run: this.#o.identity.run });
  }

  /** Until when another node may still answer for the VIP by its claims; null: nobody else. */
  claimedElsewhereUntil(vip: string): number | null {
    return this.view.claimedUntil(vip, this.#s.node, this.#o.clock());
  }

  /**
   * When this agent may try to take the VIP from the agents ahead of it
   * (design.md §3): each must have been silent for its window, and ranks
   * after the first wait a stagger more. Null: not queued, or already first.
   */
  takeoverAt(vip: string): number | null {
    if (!this.ready) return null;
    const q = this.view.queue(vip);
    const rank = q.findIndex((c) => c.node === this.#s.node && c.run === this.#o.identity.run);
    if (rank <= 0) return null;
    const synced = this.view.syncedAt ?? this.#o.clock();
    let at = -Infinity;
    for (const c of q.slice(0, rank)) at = Math.max(at, this.view.silentAfter(c.node, Math.max(synced, c.firstSeenAt)));
    return at + (rank - 1) * TAKEOVER_STAGGER_MS;
  }

  // ---- writes -----------------------------------------------------------------

  /** Joins the VIP's queue (at the back). */
  async join(vip: string): Promise<void> {
    const agentRevision = this.#requireRegistered();
    const key = Buffer.from(electionKey(this.#s.prefix, vip, this.#s.node));
    const res = await this.#o.conn.client.kv.txn({
      compare: [
        { key: Buffer.from(agentKey(this.#s.prefix, this.#s.node)), target: "Create", result: "Equal", create_revision: agentRevision },
        { key, target: "Create", result: "Equal", create_revision: "0" },
      ],
      success: [{ request_put: { key, value: Buffer.from(this.#o.identity.run), lease: this.#lease!.etcdId } }],
      failure: [{ request_range: { key } }],
    }, within(this.#rpcMs));
    if (!res.succeeded) {
      const had = res.responses[0]?.response_range?.kvs[0];
      if (!had) throw new Error(`joining the queue for ${vip}: our agent record is gone`);
      // Ours already (a retry after an answer that got lost): nothing to do.
      if (had.value.toString() !== this.#o.identity.run) throw new Error(`joining the queue for ${vip}: a key of another run of this node is in the way`);
    }
    this.#watcher?.expect(res.header.revision);
    // Our proof must guard the new key from the next heartbeat on.
    this.#heartbeat?.beat();
  }

  /**
   * Leaves the VIPs' queues and, in the same transaction, publishes a
   * heartbeat that no longer claims them, so that the next in line takes over
   * at once (design.md §4). The caller must have removed the addresses first
   * (invariant I4); this refuses while the kernel may still answer for one.
   * Uses its own fresh deadline: it runs on the way out.
   *
   * The next node may take the VIP as soon as this commits, so from the
   * moment it leaves no earlier heartbeat proves the keys, and once it
   * committed nothing does: not a late answer, nor a view that still shows
   * them (design.md §4, §9 (a)).
   */
  async release(vips: readonly string[], timeoutMs = this.#rpcMs): Promise<void> {
    if (vips.length === 0 || this.#agentRevision === null || !this.#lease) return;
    for (const v of vips) this.#releasing.add(v);
    try {
      const serving = new Set(this.#o.serving());
      const still = vips.filter((v) => serving.has(v));
      if (still.length) throw new Error(`releasing ${still.join(", ")}: still on the link`);
      const keys = vips.flatMap((vip) => {
        const key = this.mine(vip);
        return key ? [{ vip, createRevision: key.createRevision }] : [];
      });
      const hb = this.#heartbeat;
      const sentAt = this.#o.clock();
      for (const g of keys) hb?.releasing(g, sentAt);
      const res = await this.#o.conn.client.kv.txn({
        compare: [{ key: Buffer.from(agentKey(this.#s.prefix, this.#s.node)), target: "Create", result: "Equal", create_revision: this.#agentRevision }],
        success: [
          ...vips.map((v) => ({ request_delete_range: { key: Buffer.from(electionKey(this.#s.prefix, v, this.#s.node)) } })),
          { request_put: this.#heartbeatPut(this.#claims()) },
        ],
        failure: [],
      }, within(timeoutMs));
      if (!res.succeeded) throw new Error(`releasing ${vips.join(", ")}: our agent record is gone (its keys went with it)`);
      for (const g of keys) {
        hb?.gone(g);
        this.#released.add(`${g.vip} ${g.createRevision}`);
      }
      for (const k of this.#released) {
        if (this.#released.size <= RELEASES_KEPT) break;
        this.#released.delete(k);
      }
      this.#watcher?.expect(res.header.revision);
    } finally {
      for (const v of vips) this.#releasing.delete(v);
    }
  }

  /**
   * Takes the VIP from the agents ahead, who have been silent for their
   * windows (design.md invariant I3): one transaction that compares their
   * heartbeats unchanged since this agent last heard them and deletes their
   * keys for this VIP, and puts our own heartbeat claiming it. Its send time
   * proves our key. False, without writing, before takeoverAt(); false when
   * someone spoke meanwhile (or the queue changed).
   *
   * A crashed holder of many VIPs falls silent for all of them at once, and
   * 100 transactions in flight take etcd ten times as long as one. So the
   * takeovers asked for in one turn of the loop go in one transaction (a few,
   * within etcd's limit of operations per transaction): the conjunction of
   * their comparisons, which commits only where each alone would have. If it
   * fails, each is tried on its own.
   */
  takeover(vip: string): Promise<{ took: boolean; from: string[] }> {
    return new Promise((resolve, reject) => {
      if (this.#takeovers.length === 0) setImmediate(() => void this.#takeOverAsked());
      this.#takeovers.push({ vip, resolve, reject });
    });
  }

  async #takeOverAsked(): Promise<void> {
    const asked = this.#takeovers;
    this.#takeovers = [];
    const plans: TakeoverPlan[] = [];
    for (const ask of asked) {
      try {
        const plan = this.#planTakeover(ask.vip);
        if ("took" in plan) ask.resolve(plan);
        else plans.push({ ...plan, ask });
      } catch (err) {
        ask.reject(err);
      }
    }
    const batches = takeoverBatches(plans);
    await Promise.all(batches.map(async (batch) => {
      try {
        if (await this.#commitTakeover(batch)) return;
      } catch (err) {
        for (const p of batch) p.ask.reject(err);
        return;
      }
      if (batch.length === 1) return batch[0]!.ask.resolve({ took: false, from: [] });
      // Someone spoke, or a queue changed, for at least one of them.
      await Promise.all(batch.map(async (p) => {
        try {
          if (!(await this.#commitTakeover([p]))) p.ask.resolve({ took: false, from: [] });
        } catch (err) {
          p.ask.reject(err);
        }
      }));
    }));
  }

  /** What taking the VIP over compares and deletes, or the answer without writing. */
  #planTakeover(vip: string): Omit<TakeoverPlan, "ask"> | { took: boolean; from: string[] } {
    const agentRevision = this.#requireRegistered();
    const q = this.view.queue(vip);
    const rank = q.findIndex((c) => c.node === this.#s.node && c.run === this.#o.identity.run);
    if (rank <= 0) return { took: rank === 0, from: [] };
    const at = this.takeoverAt(vip);
    if (at === null || this.#o.clock() < at) return { took: false, from: [] };
    const me = q[rank]!;
    const ahead = q.slice(0, rank);
    const p = this.#s.prefix;
    return {
      vip,
      createRevision: me.createRevision,
      from: ahead.map((c) => c.node),
      compare: [
        { key: Buffer.from(agentKey(p, this.#s.node)), target: "Create", result: "Equal", create_revision: agentRevision },
        { key: Buffer.from(me.key), target: "Create", result: "Equal", create_revision: me.createRevision },
        ...ahead.flatMap((c) => [
          { key: Buffer.from(heartbeatKey(p, c.node)), target: "Mod" as const, result: "Equal" as const, mod_revision: this.view.heartbeat(c.node)?.modRevision ?? "0" },
          { key: Buffer.from(c.key), target: "Create" as const, result: "Equal" as const, create_revision: c.createRevision },
        ]),
      ],
      deletes: ahead.map((c) => Buffer.from(c.key)),
    };
  }

  /** One transaction for the batch; true when it committed (and the answers are given). */
  async #commitTakeover(batch: readonly TakeoverPlan[]): Promise<boolean> {
    const req: ITxnRequest = {
      compare: uniqueCompares(batch.flatMap((b) => b.compare)),
      success: [
        ...batch.flatMap((b) => b.deletes.map((key) => ({ request_delete_range: { key } }))),
        { request_put: this.#heartbeatPut([...new Set([...this.#claims(), ...batch.map((b) => b.vip)])]) },
      ],
      failure: [],
    };
    const sentAt = this.#o.clock();
    const res = await this.#o.conn.client.kv.txn(req, within(this.#rpcMs));
    if (!res.succeeded) return false;
    for (const b of batch) this.#heartbeat?.prove({ vip: b.vip, createRevision: b.createRevision }, sentAt);
    this.#watcher?.expect(res.header.revision);
    this.emit("changed", {});
    for (const b of batch) b.ask.resolve({ took: true, from: b.from });
    return true;
  }

  /**
   * Leaves every queue (with a heartbeat that claims nothing) and revokes the
   * lease, each with its own short deadline. The caller has removed every
   * address first.
   */
  async stop(timeoutMs = 600): Promise<void> {
    this.#stopped = true;
    this.#stopTimeoutMs = timeoutMs;
    this.#heartbeat?.stop();
    const mine = this.view.vips().filter((v) => this.mine(v));
    const errors: string[] = [];
    if (this.#ready) {
      await this.release(mine, timeoutMs).catch((e: unknown) => errors.push(describeEtcdError(e, this.#s.endpoints)));
      await this.#lease?.revoke(timeoutMs).catch((e: unknown) => errors.push(describeEtcdError(e, this.#s.endpoints)));
    }
    this.#end();
    await this.#loop;
    if (errors.length) throw new Error(errors.join("; "));
  }

  // ---- the session loop -----------------------------------------------------------

  async #run(): Promise<void> {
    let backoff = RETRY_MIN_MS;
    while (!this.#stopped) {
      try {
        await this.#establish();
        if (this.#stopped) {
          await this.#abandon();
          break;
        }
        backoff = RETRY_MIN_MS;
        this.#ready = true;
        this.#lastError = null;
        this.#o.log.info("etcd session established", { node: this.#s.node, lease: this.#lease!.id, holdMs: this.#s.holdMs });
        this.emit("changed", {});
        await new Promise<void>((resolve) => {
          this.#ended = resolve;
        });
      } catch (err) {
        if (this.#stopped) {
          await this.#abandon();
          break;
        }
        if (err instanceof SessionFatalError) {
          this.#lastError = err.message;
          this.#stopped = true;
          this.#teardown();
          this.emit("fatal", { reason: err.message });
          break;
        }
        this.#lastError = describeEtcdError(err, this.#s.endpoints);
        this.#o.log.warn("etcd not ready; retrying", { error: this.#lastError, retryInMs: backoff });
        this.#teardown();
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(RETRY_MAX_MS, backoff * 2);
        continue;
      }
      this.#teardown();
    }
  }

  async #establish(): Promise<void> {
    const { conn, log, clock } = this.#o;
    const t0 = clock();
    const lease = new AgentLease(conn, { clock, rpcTimeoutMs: this.#rpcMs });
    this.#lease = lease;
    lease.on("lost", ({ reason }) => this.#lose(`etcd lease ${lease.id}: ${reason}`));
    lease.on("stream-error", ({ reason }) => log.debug("keepalive stream error", { reason }));
    // Four independent reads and a grant: one round trip, not five.
    const [status, , , newerLayout] = await Promise.all([
      this.#versionChecked ? null : conn.client.maintenance.status(within(this.#rpcMs)),
      this.#refuseLegacy(),
      lease.grant(this.#s.leaseTtlS),
      readNewerLayout(conn.client, this.#s.prefix, within(this.#rpcMs), `vipd ${this.#o.identity.version}`),
    ]);
    if (newerLayout) throw new SessionFatalError(newerLayout);
    if (status) {
      this.#versionChecked = true;
      const warning = etcdVersionWarning(status.version);
      if (warning) log.warn(warning, { etcdVersion: status.version });
    }
    const t1 = clock();
    await this.#register(lease);
    const t2 = clock();
    const watcher = new Watcher({
      conn,
      view: this.view,
      clock: this.#o.clock,
      changed: () => this.#viewChanged(),
      warn: (reason) => log.warn("etcd watch", { reason }),
      rpcTimeoutMs: this.#rpcMs,
      progressMs: stallAfter(this.#s.holdMs, HEARTBEAT_INTERVAL_MS),
    });
    this.#watcher = watcher;
    await watcher.start();
    this.#startHeartbeat(lease);
    log.debug("etcd session phases", { leaseMs: Math.round(t1 - t0), registerMs: Math.round(t2 - t1), viewMs: Math.round(clock() - t2) });
  }

  #startHeartbeat(lease: AgentLease): void {
    const hb = new Heartbeat({
      conn: this.#o.conn,
      clock: this.#o.clock,
      prefix: this.#s.prefix,
      node: this.#s.node,
      run: this.#o.identity.run,
      lease: lease.etcdId,
      agentRevision: this.#agentRevision!,
      guard: () => this.#guard(),
      claims: () => this.#claims(),
      nextSeq: () => ++this.#seq,
      timeoutMs: Math.min(this.#s.holdMs, 2000),
      stallMs: stallAfter(this.#s.holdMs, HEARTBEAT_INTERVAL_MS),
    });
    this.#heartbeat = hb;
    hb.on("committed", ({ revision, rttMs }) => {
      this.emit("heartbeat", { result: "committed", rttMs });
      this.#lastHeartbeatError = null;
      this.#watcher?.etcdAnswered();
      this.#watcher?.expect(revision);
      void this.#publishMacs();
      this.emit("changed", {});
    });
    hb.on("failed", ({ reason }) => {
      this.emit("heartbeat", { result: "failed" });
      this.#lastHeartbeatError = describeEtcdError(new Error(reason), this.#s.endpoints);
    });
    hb.on("stalled", ({ silentMs, reconnected, why }) =>
      this.#o.log.warn(reconnected ? "etcd answered no heartbeat; reconnecting" : "etcd answered no heartbeat; keeping the connection", { silentMs, why }));
    hb.on("deposed", ({ keys, revision }) => {
      this.emit("heartbeat", { result: "deposed" });
      // The heartbeat forgot those keys' proofs (only theirs: a key this VIP
      // got since, a new join, is proven on its own). A watch that has not
      // shown the deletion by then is stalled, silently: probe it.
      this.#watcher?.expect(revision);
      // A heartbeat sent before one of our own releases committed after it
      // (they may take different connections): that key's absence is no news.
      const ours = (k: Guarded) => this.#released.has(`${k.vip} ${k.createRevision}`) || this.#releasing.has(k.vip);
      const vips = [...new Set(keys.filter((k) => !ours(k)).map((k) => k.vip))];
      if (vips.length) this.emit("deposed", { vips });
      this.emit("changed", {});
    });
    hb.on("evicted", ({ reason, by }) => {
      if (by && by.run !== this.#o.identity.run) {
        this.#stopped = true;
        this.#end();
        this.emit("fatal", { reason: `node name "${this.#s.node}" was taken over by another vipd (${describeIncarnation(by)}) while this one could not reach etcd; stopping` });
        return;
      }
      this.#lose(reason);
    });
    hb.start();
  }

  /**
   * A node that just became first in a queue (its predecessor released, or
   * was taken over) needs a proof now, not at the next interval: graceful
   * hand-over costs one round trip instead of up to 250 ms.
   */
  #viewChanged(): void {
    const heads = new Set(this.#guard().map((g) => g.vip));
    const news = [...heads].some((v) => !this.#heads.has(v));
    this.#heads = heads;
    if (news) this.#heartbeat?.beat();
    this.emit("changed", {});
  }

  #lose(reason: string): void {
    if (!this.#ready) return;
    this.#ready = false;
    this.#lastError = reason;
    this.#o.log.warn("etcd session lost; registering again", { reason });
    this.#end();
    this.emit("lost", { reason });
  }

  /**
   * A stop that came while a session was being established: stop() found
   * nothing ready to release, but the registration may have committed
   * meanwhile. Revoking its lease deletes every key on it (agent record,
   * heartbeat, MACs) now rather than a lease TTL later.
   */
  async #abandon(): Promise<void> {
    const lease = this.#lease;
    this.#teardown();
    await lease?.revoke(this.#stopTimeoutMs).catch((e: unknown) =>
      this.#o.log.warn("stopped while registering; our keys expire with the lease", { error: describeEtcdError(e, this.#s.endpoints) }));
  }

  /** Ends the current session: the loop wakes up and, unless stopped, establishes a new one. */
  #end(): void {
    const done = this.#ended;
    this.#ended = null;
    this.#teardown();
    done?.();
  }

  #teardown(): void {
    this.#ready = false;
    this.#heartbeat?.stop();
    this.#heartbeat = null;
    this.#watcher?.close();
    this.#watcher = null;
    this.#lease?.close();
    this.#agentRevision = null;
    this.#macsPublished = null;
  }

  /**
   * Writes our MACs when they differ from what this registration last wrote
   * (a VIP link that appeared, or came back with another MAC). Guarded by our
   * agent record like a join; a failure is tried again after the next
   * committed heartbeat.
   */
  async #publishMacs(): Promise<void> {
    const macs = this.#o.macs;
    const agentRevision = this.#agentRevision;
    if (!macs || this.#macsWriting || agentRevision === null || !this.#lease) return;
    const value = encodeMacs(macs());
    if (value === this.#macsPublished) return;
    this.#macsWriting = true;
    try {
      const p = this.#s.prefix;
      const res = await this.#o.conn.client.kv.txn({
        compare: [{ key: Buffer.from(agentKey(p, this.#s.node)), target: "Create", result: "Equal", create_revision: agentRevision }],
        success: [{ request_put: { key: Buffer.from(macsKey(p, this.#s.node)), value: Buffer.from(value), lease: this.#lease.etcdId } }],
        failure: [],
      }, within(this.#rpcMs));
      // Our record gone: the next registration writes them.
      if (res.succeeded && this.#agentRevision === agentRevision) this.#macsPublished = value;
    } catch (err) {
      this.#o.log.warn("publishing this node's MACs failed; retrying after the next heartbeat", { error: describeEtcdError(err, this.#s.endpoints) });
    } finally {
      this.#macsWriting = false;
    }
  }

  /** vipd 0.1 elected by another layout: running beside it could make two holders. */
  async #refuseLegacy(): Promise<void> {
    const prefix = Buffer.from(`${this.#s.prefix}${LEGACY_ELECTIONS}`);
    const res = await this.#o.conn.client.kv.range({ key: prefix, range_end: prefixEnd(prefix), count_only: true }, within(this.#rpcMs));
    if (Number(res.count) > 0) {
      throw new SessionFatalError(
        `etcd holds vipd 0.1 election keys under ${prefix.toString()}: a vipd 0.1 agent may still be running, and the two versions would each elect a holder. ` +
          "Stop every vipd 0.1 agent first (their keys leave with their leases, a few seconds later), then start this version",
      );
    }
  }

  /**
   * Claims this node name for this run (design.md §6, invariant I7). Another run's record
   * is cleared at once when that run is provably dead (same kernel, its PID
   * gone); a run elsewhere is cleared only after its heartbeat has been
   * silent for its window; a live one is refused.
   */
  async #register(lease: AgentLease): Promise<void> {
    const { conn, identity, log } = this.#o;
    const p = this.#s.prefix;
    const node = this.#s.node;
    const aKey = Buffer.from(agentKey(p, node));
    const hKey = Buffer.from(heartbeatKey(p, node));
    for (let attempt = 0; ; attempt++) {
      if (attempt > 5) throw new Error(`registering as node ${node}: the record kept changing under us`);
      const read = await conn.client.kv.txn({
        compare: [],
        success: [{ request_range: { key: aKey } }, { request_range: { key: hKey } }],
        failure: [],
      }, within(this.#rpcMs));
      const agent = read.responses[0]?.response_range?.kvs[0];
      const beat = read.responses[1]?.response_range?.kvs[0];
      if (!agent) {
        // Our MACs go with the record: no key of ours is in any queue before
        // the other agents can tell our answers to their probes from a stranger's.
        const macs = this.#o.macs ? encodeMacs(this.#o.macs()) : null;
        const res = await conn.client.kv.txn({
          compare: [{ key: aKey, target: "Create", result: "Equal", create_revision: "0" }],
          success: [
            { request_put: { key: aKey, value: Buffer.from(encodeIncarnation(identity)), lease: lease.etcdId } },
            { request_put: { key: hKey, value: Buffer.from(encodeHeartbeat({ run: identity.run, seq: ++this.#seq, claims: [...this.#o.serving()] })), lease: lease.etcdId } },
            ...(macs === null ? [] : [{ request_put: { key: Buffer.from(macsKey(p, node)), value: Buffer.from(macs), lease: lease.etcdId } }]),
          ],
          failure: [],
        }, within(this.#rpcMs));
        if (!res.succeeded) continue;
        this.#agentRevision = res.header.revision;
        this.#macsPublished = macs;
        await this.#clearOwnElectionKeys();
        return;
      }
      const other = decodeIncarnation(agent.value.toString());
      const beatRevision = beat?.mod_revision ?? "0";
      if (other?.run === identity.run) {
        // Our own record from before the session was lost: start over cleanly.
        await this.#clear(agent.mod_revision, beatRevision);
        continue;
      }
      const verdict = other ? judge(identity, other, this.#o.processAlive ?? processAlive) : { kind: "elsewhere" as const };
      const who = other ? describeIncarnation(other) : `a record vipd cannot read at ${aKey.toString()}`;
      if (verdict.kind === "alive") {
        throw new SessionFatalError(`another vipd already runs as node "${node}" on this machine (${who}): stop it, or give this one its own --node-name`);
      }
      const here = verdict.kind === "dead" && verdict.here && (await this.#removedClaimsOf(other!, beat?.value));
      if (!here) {
        const windowMs = silenceWindow(other?.holdMs ?? this.view.holdOf(node));
        log.warn(`node name "${node}" is registered by another run of vipd (${who}); waiting ${Math.round(windowMs)} ms for its heartbeat to fall silent`);
        if (await this.#heardWithin(hKey, beatRevision, windowMs)) {
          throw new SessionFatalError(
            `node name "${node}" is in use by a live vipd elsewhere (${who}): its heartbeat moved within the last ${Math.round(windowMs)} ms. ` +
              "Give each node its own --node-name (a cloned VM keeps its host name)",
          );
        }
      }
      if (await this.#clear(agent.mod_revision, beatRevision)) {
        log.info("cleared the keys of this node's previous run", { previous: who, verdict: here ? "dead, here" : verdict.kind });
      }
    }
  }

  /**
   * Whether nothing a dead run of ours, here, claimed in its last heartbeat
   * can still answer: each claimed VIP removed from every link. Those claims
   * are what keeps the other nodes off its VIPs; clearing them at once is
   * safe only then. Otherwise its window must pass first (false).
   */
  async #removedClaimsOf(other: Incarnation, beat: Buffer | undefined): Promise<boolean> {
    // Its heartbeat deleted by hand: the other views keep its last claims, which only it knew.
    const hb = beat ? decodeHeartbeat(beat.toString()) : null;
    const claims = hb?.run === other.run ? hb.claims : null;
    const remove = this.#o.removeLeftovers;
    if (claims === null || (claims.length > 0 && !remove)) {
      this.#o.log.warn("cannot tell which VIPs the previous run of this node claimed; waiting out its window", { heartbeat: beat?.toString().slice(0, 200) ?? "(none)" });
      return false;
    }
    if (claims.length === 0) return true;
    try {
      await remove!(claims);
      return true;
    } catch (err) {
      this.#o.log.warn("could not remove the VIPs the previous run of this node claimed; waiting out its window", { claims: claims.join(", "), error: describeError(err) });
      return false;
    }
  }

  /** Polls the heartbeat key for a change of revision within windowMs. */
  async #heardWithin(key: Buffer, revision: string, windowMs: number): Promise<boolean> {
    const end = this.#o.clock() + windowMs;
    while (this.#o.clock() < end) {
      await new Promise((r) => setTimeout(r, Math.min(250, Math.max(0, end - this.#o.clock()))));
      const res = await this.#o.conn.client.kv.range({ key, keys_only: true }, within(this.#rpcMs));
      if ((res.kvs[0]?.mod_revision ?? "0") !== revision) return true;
    }
    return false;
  }

  /**
   * Deletes another (dead) run's record, heartbeat and election keys under
   * our node name, if nothing of it moved since we read it.
   */
  async #clear(agentRevision: string, beatRevision: string): Promise<boolean> {
    const p = this.#s.prefix;
    const mine = await this.#ownElectionKeys();
    const res = await this.#o.conn.client.kv.txn({
      compare: [
        { key: Buffer.from(agentKey(p, this.#s.node)), target: "Mod", result: "Equal", mod_revision: agentRevision },
        { key: Buffer.from(heartbeatKey(p, this.#s.node)), target: "Mod", result: "Equal", mod_revision: beatRevision },
      ],
      success: [
        { request_delete_range: { key: Buffer.from(agentKey(p, this.#s.node)) } },
        { request_delete_range: { key: Buffer.from(heartbeatKey(p, this.#s.node)) } },
        ...mine.map((key) => ({ request_delete_range: { key } })),
      ],
      failure: [],
    }, within(this.#rpcMs));
    return res.succeeded;
  }

  /** Election keys under our node name left by an earlier registration: none of them is guarded by this one. */
  async #clearOwnElectionKeys(): Promise<void> {
    const keys = await this.#ownElectionKeys();
    if (keys.length === 0) return;
    await this.#o.conn.client.kv.txn({ compare: [], success: keys.map((key) => ({ request_delete_range: { key } })), failure: [] }, within(this.#rpcMs));
  }

  async #ownElectionKeys(): Promise<Buffer[]> {
    const prefix = Buffer.from(electionsPrefix(this.#s.prefix));
    const res = await this.#o.conn.client.kv.range({ key: prefix, range_end: prefixEnd(prefix), keys_only: true }, within(this.#rpcMs));
    const suffix = `/${this.#s.node}`;
    return res.kvs.map((kv) => kv.key).filter((k) => k.toString().endsWith(suffix));
  }

  #requireRegistered(): string {
    if (this.#agentRevision === null || !this.#lease || !this.#ready) throw new Error("etcd session not established");
    return this.#agentRevision;
  }

  /** Our keys a heartbeat must guard: the VIPs we head (and are not leaving, nor have left while the view lags). */
  #guard(): Guarded[] {
    const out: Guarded[] = [];
    for (const vip of this.view.vips()) {
      if (this.#releasing.has(vip) || !this.isHead(vip)) continue;
      const createRevision = this.view.queue(vip)[0]!.createRevision;
      if (!this.#released.has(`${vip} ${createRevision}`)) out.push({ vip, createRevision });
    }
    return out;
  }

  /** What our heartbeats claim: every VIP we head, and every VIP the kernel may still answer for (invariant I5). */
  #claims(): string[] {
    const claims = new Set(this.#guard().map((g) => g.vip));
    for (const v of this.#o.serving()) claims.add(v);
    return [...claims];
  }

  #heartbeatPut(claims: readonly string[]) {
    return {
      key: Buffer.from(heartbeatKey(this.#s.prefix, this.#s.node)),
      value: Buffer.from(encodeHeartbeat({ run: this.#o.identity.run, seq: ++this.#seq, claims })),
      lease: this.#lease!.etcdId,
    };
  }

  /** For /status: the session as people need to see it. */
  describe(): { lease: string | null; ttl: number | null; agents: { node: string; silentForMs: number | null; host: string | null }[] } {
    const now = this.#o.clock();
    return {
      lease: this.#lease && this.#lease.ttl > 0 ? this.#lease.id : null,
      ttl: this.#lease && this.#lease.ttl > 0 ? this.#lease.ttl : null,
      agents: this.view.agents().map((a) => {
        const hb = this.view.heartbeat(a.node);
        return { node: a.node, host: a.incarnation?.host ?? null, silentForMs: hb ? Math.round(now - hb.receivedAt) : null };
      }),
    };
  }
}

/** Enough for every VIP's last few releases: heartbeats in flight outlive a release by seconds at most. */
const RELEASES_KEPT = 1024;
