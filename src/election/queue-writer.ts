// The three writes that change a VIP's queue (design.md §2–§4) — joining at
// the back, releasing, taking over from silent agents ahead — and what they
// leave behind for our own keys: which a heartbeat guards, which it claims,
// which we let go and must never prove again.
//
// It decides and sends; what each transaction holds is built in
// transactions.ts, and everything it needs of the session comes through
// QueueWriterPort, so it runs against a stand-in etcd in its tests.
import type { ITxnResponse } from "etcd3";
import { type Clock, type Timed, untimed } from "../seams.ts";
import type { Heartbeat } from "./heartbeat.ts";
import { type TakeoverAsk, takeoverBatches, type TakeoverPlan } from "./takeover.ts";
import { type Guarded, heartbeatPut, joinTxn, type KvCalls, type Registered, releaseTxn, type Self, takeoverTerms, type TakeoverTerms, takeoverTxn } from "./transactions.ts";
import type { Candidate, ClusterView, ViewChanges } from "./view.ts";

/** What the writes do to the heartbeat's proofs (heartbeat.ts). */
export type ProofLedger = Pick<Heartbeat, "beat" | "prove" | "releasing" | "gone" | "putAlongside">;

export interface QueueWriterPort {
  readonly me: Self;
  readonly view: ClusterView;
  readonly kv: Pick<KvCalls, "txn">;
  readonly clock: Clock;
  readonly rpcTimeoutMs: number;
  /** VIPs this agent's kernel may be answering for right now (invariant I5). */
  readonly serving: () => Iterable<string>;
  /** The current registration; null: none. */
  readonly registered: () => Registered | null;
  /** Whether the session is established: joins and takeovers need it, a release does not. */
  readonly established: () => boolean;
  /** The running heartbeat; null: none runs. */
  readonly proofs: () => ProofLedger | null;
  /** When our key may take the VIP over (takeover.ts takeoverAt); null: not queued behind anyone, or not yet. */
  readonly takeoverAt: (vip: string) => number | null;
  /** The heartbeat key's sequence numbers, shared with the heartbeat. */
  readonly nextSeq: () => number;
  /** A write of ours committed at this revision: the watch must show it (design.md §7). */
  readonly wrote: (revision: string) => void;
  /** A takeover committed: decide again. */
  readonly took: () => void;
  /** Measures what planning a batch of takeovers holds the event loop for (the agent's loop watch). */
  readonly timed?: Timed;
}

/** Our key in a VIP's queue, and its rank (0: first); undefined when the queue has none of this run's. */
function ours(queue: readonly Candidate[], me: Pick<Self, "node" | "run">): { rank: number; key: Candidate } | undefined {
  const rank = queue.findIndex((c) => c.node === me.node && c.run === me.run);
  return rank < 0 ? undefined : { rank, key: queue[rank]! };
}

export class QueueWriter {
  readonly #p: QueueWriterPort;
  readonly #releasing = new Set<string>();
  /** Keys whose release by this run committed ("vip createRevision"), the latest RELEASES_KEPT. */
  readonly #released = new Set<string>();
  /** Takeovers asked for in this turn of the loop, sent together at its end. */
  #takeovers: TakeoverAsk[] = [];
  /** Takeovers asked for and not answered yet. */
  #takingOver = 0;
  /** The view's changes since newHeads() last looked (its own reader: the slots take theirs apart). */
  readonly #viewChanges: () => Readonly<ViewChanges>;
  /** What guard() held at the last newHeads(), by VIP. */
  readonly #heads = new Set<string>();
  /** VIPs whose letGo() may have changed since the last newHeads(): a release began or ended, or its record was forgotten. */
  readonly #letGoMoved = new Set<string>();

  constructor(port: QueueWriterPort) {
    this.#p = port;
    this.#viewChanges = port.view.follow();
  }

  /** Our key in the VIP's queue, if the view has it. */
  mine(vip: string): Candidate | undefined {
    return ours(this.#p.view.queue(vip), this.#p.me)?.key;
  }

  /** Whether our key is first in the VIP's queue. */
  isHead(vip: string): boolean {
    return ours(this.#p.view.queue(vip), this.#p.me)?.rank === 0;
  }

  /** Whether we let go of this key: its release is under way or committed. Such a key is never proven again (design.md §4). */
  letGo(g: Guarded): boolean {
    return this.#releasing.has(g.vip) || this.#released.has(`${g.vip} ${g.createRevision}`);
  }

  /** Our keys a heartbeat must guard: the VIPs we head (and are not leaving, nor have left while the view lags). */
  guard(): Guarded[] {
    const out: Guarded[] = [];
    for (const vip of this.#p.view.vips()) {
      const g = this.#guarded(vip);
      if (g) out.push(g);
    }
    return out;
  }

  /** Our key for the VIP if guard() holds it; null when it does not. */
  #guarded(vip: string): Guarded | null {
    const head = this.#p.view.queue(vip)[0];
    if (!head || head.node !== this.#p.me.node || head.run !== this.#p.me.run) return null;
    const g = { vip, createRevision: head.createRevision };
    return this.letGo(g) ? null : g;
  }

  /**
   * Whether guard() holds a VIP it did not at the last call: we just became
   * first in a queue and want a proof now (Lifecycle's view change). Work in
   * proportion to what changed, not to the VIPs: whether guard() holds a
   * VIP depends on its queue, which the view reports when it changes, and on
   * letGo(), which only release() changes (#letGoMoved); every other VIP
   * stands as it did at the last call.
   */
  newHeads(): boolean {
    const changed = this.#viewChanges();
    let news = false;
    const look = (vip: string) => {
      if (this.#guarded(vip) === null) this.#heads.delete(vip);
      else if (!this.#heads.has(vip)) {
        this.#heads.add(vip);
        news = true;
      }
    };
    if (changed.all) {
      // Those held before too: a queue that is gone holds nothing.
      for (const vip of [...this.#heads, ...this.#p.view.vips()]) look(vip);
    } else {
      for (const vip of changed.vips) look(vip);
      for (const vip of this.#letGoMoved) look(vip);
    }
    this.#letGoMoved.clear();
    return news;
  }

  /**
   * Whether our heartbeats must go at the holder's pace (design.md §3): we
   * head a queue, the kernel may answer for a VIP, or a takeover is under
   * way, whose commit makes us a holder.
   */
  busy(): boolean {
    if (this.#takingOver > 0) return true;
    for (const _ of this.#p.serving()) return true;
    return this.guard().length > 0;
  }

  /** What our heartbeats claim: every VIP we head, and every VIP the kernel may still answer for (invariant I5). */
  claims(): string[] {
    const claims = new Set(this.guard().map((g) => g.vip));
    for (const v of this.#p.serving()) claims.add(v);
    return [...claims];
  }

  /** Joins the VIP's queue (at the back). */
  async join(vip: string): Promise<void> {
    const reg = this.#requireEstablished();
    const res = await this.#p.kv.txn(joinTxn(this.#p.me, reg, vip), this.#p.rpcTimeoutMs);
    if (!res.succeeded) {
      const had = res.responses[0]?.response_range?.kvs[0];
      if (!had) throw new Error(`joining the queue for ${vip}: our agent record is gone`);
      // Ours already (a retry after an answer that got lost): nothing to do.
      if (had.value.toString() !== this.#p.me.run) throw new Error(`joining the queue for ${vip}: a key of another run of this node is in the way`);
    }
    this.#p.wrote(res.header.revision);
    // Our proof must guard the new key from the next heartbeat on.
    this.#p.proofs()?.beat();
  }

  /**
   * Leaves the VIPs' queues and, in the same transaction, publishes a
   * heartbeat that no longer claims them, so that the next in line takes over
   * at once (design.md §4). The caller must have removed the addresses first
   * (invariant I4); this refuses while the kernel may still answer for one.
   *
   * The next node may take the VIP as soon as this commits, so from the
   * moment it leaves no earlier heartbeat proves the keys, and once it
   * committed nothing does: not a late answer, nor a view that still shows
   * them (design.md §4, §9 (a)).
   */
  async release(vips: readonly string[], timeoutMs = this.#p.rpcTimeoutMs): Promise<void> {
    const reg = this.#p.registered();
    if (vips.length === 0 || reg === null) return;
    for (const v of vips) {
      this.#releasing.add(v);
      this.#letGoMoved.add(v);
    }
    try {
      const serving = new Set(this.#p.serving());
      const still = vips.filter((v) => serving.has(v));
      if (still.length) throw new Error(`releasing ${still.join(", ")}: still on the link`);
      const keys = vips.flatMap((vip) => {
        const key = this.mine(vip);
        return key ? [{ vip, createRevision: key.createRevision }] : [];
      });
      const hb = this.#p.proofs();
      const sentAt = this.#p.clock();
      for (const g of keys) hb?.releasing(g, sentAt);
      const req = releaseTxn(this.#p.me, reg, vips, this.#heartbeat(reg, this.claims()));
      const res = await this.#p.kv.txn(req, timeoutMs);
      if (!res.succeeded) throw new Error(`releasing ${vips.join(", ")}: our agent record is gone (its keys went with it)`);
      for (const g of keys) {
        hb?.gone(g);
        this.#released.add(`${g.vip} ${g.createRevision}`);
      }
      for (const k of this.#released) {
        if (this.#released.size <= RELEASES_KEPT) break;
        this.#released.delete(k);
        this.#letGoMoved.add(k.slice(0, k.indexOf(" ")));
      }
      this.#p.wrote(res.header.revision);
    } finally {
      for (const v of vips) {
        this.#releasing.delete(v);
        this.#letGoMoved.add(v);
      }
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
    this.#takingOver++;
    const settled = new Promise<{ took: boolean; from: string[] }>((resolve, reject) => {
      if (this.#takeovers.length === 0) setImmediate(() => void (this.#p.timed ?? untimed)("takeover decision", () => this.#takeOverAsked(), `${this.#takeovers.length} VIPs`));
      this.#takeovers.push({ vip, resolve, reject });
    });
    return settled.finally(() => this.#takingOver--);
  }

  async #takeOverAsked(): Promise<void> {
    const asked = this.#takeovers;
    this.#takeovers = [];
    // The registration the plans were made under: their guards compare its record.
    const reg = this.#p.registered();
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
    await Promise.all(takeoverBatches(plans).map(async (batch) => {
      try {
        if (await this.#commitTakeover(batch, reg!)) return;
      } catch (err) {
        for (const p of batch) p.ask.reject(err);
        return;
      }
      if (batch.length === 1) return batch[0]!.ask.resolve({ took: false, from: [] });
      // Someone spoke, or a queue changed, for at least one of them.
      await Promise.all(batch.map(async (p) => {
        try {
          if (!(await this.#commitTakeover([p], reg!))) p.ask.resolve({ took: false, from: [] });
        } catch (err) {
          p.ask.reject(err);
        }
      }));
    }));
  }

  /** What taking the VIP over compares and deletes, or the answer without writing. */
  #planTakeover(vip: string): TakeoverTerms | { took: boolean; from: string[] } {
    const reg = this.#requireEstablished();
    const q = this.#p.view.queue(vip);
    const me = ours(q, this.#p.me);
    if (!me || me.rank === 0) return { took: me !== undefined, from: [] };
    const at = this.#p.takeoverAt(vip);
    if (at === null || this.#p.clock() < at) return { took: false, from: [] };
    const ahead = q.slice(0, me.rank).map((c) => ({ ...c, heartbeatRevision: this.#p.view.heartbeat(c.node)?.modRevision ?? "0" }));
    return takeoverTerms(this.#p.me, reg.agentRevision, vip, me.key, ahead);
  }

  /** One transaction for the batch; true when it committed (and the answers are given). */
  async #commitTakeover(batch: readonly TakeoverPlan[], reg: Registered): Promise<boolean> {
    const claims = [...new Set([...this.claims(), ...batch.map((b) => b.vip)])];
    const req = takeoverTxn(batch, this.#heartbeat(reg, claims));
    const sentAt = this.#p.clock();
    const res: ITxnResponse = await this.#p.kv.txn(req, this.#p.rpcTimeoutMs);
    if (!res.succeeded) return false;
    for (const b of batch) this.#p.proofs()?.prove({ vip: b.vip, createRevision: b.createRevision }, sentAt);
    // Its put was our heartbeat, the first at the holder's pace: the next follows an interval after it.
    this.#p.proofs()?.putAlongside(sentAt);
    this.#p.wrote(res.header.revision);
    this.#p.took();
    for (const b of batch) b.ask.resolve({ took: true, from: b.from });
    return true;
  }

  #heartbeat(reg: Registered, claims: readonly string[]) {
    return heartbeatPut(this.#p.me, reg.lease, this.#p.nextSeq(), claims);
  }

  #requireEstablished(): Registered {
    const reg = this.#p.registered();
    if (reg === null || !this.#p.established()) throw new Error("etcd session not established");
    return reg;
  }
}

/** Enough for every VIP's last few releases: heartbeats in flight outlive a release by seconds at most. */
const RELEASES_KEPT = 1024;
