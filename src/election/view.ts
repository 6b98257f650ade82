// What this agent knows of the whole cluster, built from one range and one
// prefix watch (watcher.ts) over everything under vipd's prefix: the agents'
// records, their latest heartbeats — when each arrived *here*, on this
// agent's clock — and every VIP's queue (design.md §3, §4).
//
// Pure: fed with key-values and the local time they were received, so the
// takeover and claim arithmetic is tested without etcd. What the heartbeats
// say — when each agent was heard, what it claims, until when — is kept in
// heartbeat-book.ts; this file reads keys and keeps the rest.
//
// It also keeps what changed since each of its readers last asked
// (takeChanges for the agent's slots, follow() for any other): which VIPs'
// queues, hand-overs and claims, or everything. A heartbeat that
// claims what the last one did changes nothing there: it only moves its
// sender's silence deadline (heardUntil), which whoever waits on it reads
// when the deadline comes (design.md §8). So the agent decides again for the
// VIPs a batch of events concerns, not for every VIP at every heartbeat.
//
// Anything under the prefix that vipd did not write (a foreign writer, a
// hand edit) is reported once through onForeign and read in the way that
// keeps a VIP unheld rather than doubly held: a heartbeat whose value cannot
// be read still counts as a sign of life and claims every VIP.
//
// About 400 lines: it reads every kind of key vipd writes and notes what
// each changed; what the heartbeats say is in heartbeat-book.ts.
import { MAX_HOLD_MS } from "../config/fields.ts";
import { HeartbeatBook, type HeartbeatRecord } from "./heartbeat-book.ts";
import { decodeIncarnation, type Incarnation } from "./incarnation.ts";
import { compareRevisions, decodeDrain, decodeHandover, decodeHeartbeat, decodeMacs, type DrainValue, type HandoverValue, type MacsValue, parseKey } from "./keys.ts";

export type { HeartbeatRecord };

/** The parts of etcd's KeyValue the view reads (etcd3's IKeyValue fits). */
export interface Kv {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  readonly create_revision: string;
  readonly mod_revision: string;
}

export interface Candidate {
  readonly vip: string;
  readonly node: string;
  readonly key: string;
  /** The run that wrote it (the value). */
  readonly run: string;
  readonly createRevision: string;
  /** Local clock when this agent first saw the key. */
  readonly firstSeenAt: number;
}

export interface AgentRecord {
  readonly node: string;
  /** null: the value is not a record vipd wrote. */
  readonly incarnation: Incarnation | null;
  readonly createRevision: string;
  readonly modRevision: string;
}

export interface DrainRecord {
  readonly node: string;
  /** null: the value is not one vipd wrote; the node counts as drained all the same. */
  readonly drain: DrainValue | null;
}

export interface HandoverRecord {
  readonly vip: string;
  /** null: the value is not a request vipd wrote; nobody acts on it. */
  readonly request: HandoverValue | null;
}

export type KvEvent = { readonly type: "put" | "delete"; readonly kv: Kv };

/** What changed in the view since its reader last took the changes. */
export interface ViewChanges {
  /** Anything may have: a full read, an agent record, a drain, the MACs, a forgotten agent. */
  all: boolean;
  /** The VIPs whose queue, hand-over request or claims by some agent changed. */
  readonly vips: Set<string>;
}

const text = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString();

export class ClusterView {
  #revision = "0";
  #syncedAt: number | null = null;
  readonly #agents = new Map<string, AgentRecord>();
  readonly #heartbeats = new HeartbeatBook((vip) => this.#touch(vip));
  /** vip → key → candidate. */
  readonly #queues = new Map<string, Map<string, Candidate>>();
  /** vip → its queue in order, kept until the queue changes: read by every slot and heartbeat, changed rarely. */
  readonly #ordered = new Map<string, readonly Candidate[]>();
  /** Each reader's changes since it last took them, and the spare it swaps with (no allocation per batch). */
  readonly #feeds: { changes: ViewChanges; spare: ViewChanges }[] = [];
  /** The slots' reader (takeChanges). */
  readonly #slotsFeed = this.follow();
  readonly #drains = new Map<string, DrainRecord>();
  readonly #handovers = new Map<string, HandoverRecord>();
  /** node → the MAC of each of its VIP links. */
  readonly #macs = new Map<string, MacsValue>();
  readonly #foreign = new Set<string>();

  constructor(
    readonly prefix: string,
    private readonly onForeign: (key: string, why: string) => void = () => {},
  ) {}

  /** The etcd revision this view reflects. */
  get revision(): string {
    return this.#revision;
  }

  /** Local clock of the first full read; null before it. */
  get syncedAt(): number | null {
    return this.#syncedAt;
  }

  /**
   * Replaces the view with a full read at `revision`. Heartbeats whose
   * revision did not change keep the time they were first received; a
   * heartbeat key that vanished keeps its claims until they run out, because
   * its run may still be answering for them (design.md §4).
   * A run the view knew that has no heartbeat in this read counts as heard
   * now, claiming every VIP (HeartbeatBook.reread, design.md §4, §9 (c)).
   */
  load(kvs: readonly Kv[], revision: string, receivedAt: number): void {
    const beats = new Set<string>();
    const known = new Map(this.#agents);
    this.#agents.clear();
    this.#drains.clear();
    this.#handovers.clear();
    this.#macs.clear();
    const oldQueues = new Map([...this.#queues].map(([vip, q]) => [vip, new Map(q)]));
    this.#queues.clear();
    this.#ordered.clear();
    this.#touch(null);
    // Heartbeats last, so that each is judged by the record read with it.
    const isBeat = (kv: Kv) => parseKey(this.prefix, text(kv.key))?.kind === "heartbeat";
    for (const kv of [...kvs.filter((kv) => !isBeat(kv)), ...kvs.filter(isBeat)]) {
      const key = text(kv.key);
      const parsed = parseKey(this.prefix, key);
      if (parsed?.kind === "heartbeat") beats.add(parsed.node);
      if (parsed?.kind === "election") {
        // A key seen before keeps its first sighting: a re-read is not news.
        const seen = oldQueues.get(parsed.vip)?.get(key);
        if (seen && seen.createRevision === kv.create_revision) {
          this.#queue(parsed.vip).set(key, seen);
          continue;
        }
      }
      this.#put(key, kv, receivedAt, true);
    }
    this.#heartbeats.reread(beats, new Map([...known].map(([node, a]) => [node, a.incarnation])), receivedAt);
    this.#revision = revision;
    this.#syncedAt ??= receivedAt;
    this.prune(receivedAt);
  }

  /** Applies watch events in order. */
  apply(events: readonly KvEvent[], receivedAt: number): void {
    // Takeovers are read off whole revisions: which election keys each deleted, whose heartbeats it put.
    let at: string | null = null;
    let deleted: { vip: string; node: string }[] = [];
    let beaten: string[] = [];
    const settle = () => {
      for (const k of deleted) if (beaten.some((n) => n !== k.node)) this.#heartbeats.tookOver(k.vip, k.node);
      deleted = [];
      beaten = [];
    };
    for (const e of events) {
      if (e.kv.mod_revision !== at) settle();
      at = e.kv.mod_revision;
      const key = text(e.kv.key);
      if (e.type === "put") this.#put(key, e.kv, receivedAt, false);
      else this.#delete(key);
      if (compareRevisions(e.kv.mod_revision, this.#revision) > 0) this.#revision = e.kv.mod_revision;
      const parsed = parseKey(this.prefix, key);
      if (e.type === "delete" && parsed?.kind === "election") deleted.push(parsed);
      if (e.type === "put" && parsed?.kind === "heartbeat") beaten.push(parsed.node);
    }
    settle();
    this.prune(receivedAt);
  }

  /**
   * What changed since the last call, for the agent's slots. The object is
   * reused: read it before calling again.
   */
  takeChanges(): Readonly<ViewChanges> {
    return this.#slotsFeed();
  }

  /**
   * A reader of its own: the function returns what changed since its last
   * call (everything at the first), whoever else takes changes meanwhile.
   * Its object is reused too. For a reader that lives as long as the view:
   * a feed is never dropped.
   */
  follow(): () => Readonly<ViewChanges> {
    const feed = { changes: { all: true, vips: new Set<string>() }, spare: { all: false, vips: new Set<string>() } };
    this.#feeds.push(feed);
    return () => {
      const taken = feed.changes;
      feed.changes = feed.spare;
      feed.changes.all = false;
      feed.changes.vips.clear();
      feed.spare = taken;
      return taken;
    };
  }

  /** A VIP's facts changed; null: possibly every VIP's. */
  #touch(vip: string | null): void {
    for (const { changes } of this.#feeds) {
      if (vip === null) changes.all = true;
      else if (!changes.all) changes.vips.add(vip);
    }
  }

  /** Marks a revision as seen (a watch progress notice, or our own committed write). */
  advance(revision: string): void {
    if (compareRevisions(revision, this.#revision) > 0) this.#revision = revision;
  }

  #put(key: string, kv: Kv, receivedAt: number, loading: boolean): void {
    const parsed = parseKey(this.prefix, key);
    if (!parsed) return;
    const value = text(kv.value);
    switch (parsed.kind) {
      case "agent": {
        const incarnation = decodeIncarnation(value);
        if (!incarnation) this.#foreignOnce(key, "not an agent record vipd wrote");
        this.#agents.set(parsed.node, { node: parsed.node, incarnation, createRevision: kv.create_revision, modRevision: kv.mod_revision });
        // Its hold time judges its silence, its host shows in every queue: rare, and news to all.
        this.#touch(null);
        return;
      }
      case "heartbeat":
        return this.#beat(parsed.node, key, kv, value, receivedAt, loading);
      case "election": {
        this.#queueChanged(parsed.vip);
        const q = this.#queue(parsed.vip);
        const had = q.get(key);
        const same = had && had.createRevision === kv.create_revision;
        q.set(key, {
          vip: parsed.vip,
          node: parsed.node,
          key,
          run: value,
          createRevision: kv.create_revision,
          firstSeenAt: same ? had.firstSeenAt : receivedAt,
        });
        return;
      }
      case "drain": {
        const drain = decodeDrain(value);
        if (!drain) this.#foreignOnce(key, "not a drain vipd wrote; the node counts as drained");
        this.#drains.set(parsed.node, { node: parsed.node, drain });
        this.#touch(null);
        return;
      }
      case "handover": {
        const request = decodeHandover(value);
        if (!request) this.#foreignOnce(key, "not a hand-over request vipd wrote; ignoring it");
        this.#handovers.set(parsed.vip, { vip: parsed.vip, request });
        this.#touch(parsed.vip);
        return;
      }
      case "macs": {
        const macs = decodeMacs(value);
        // Unknown MACs make a probe's answer look like a stranger's: the VIP
        // stays unheld (a conflict) rather than fought over.
        if (!macs) this.#foreignOnce(key, "not a list of MACs vipd wrote; that agent's answers to address probes count as a stranger's");
        if (macs) this.#macs.set(parsed.node, macs);
        else this.#macs.delete(parsed.node);
        this.#touch(null);
        return;
      }
      // vipd 0.1's keys: the session refuses to start beside them (registration.ts), not the view's business.
      case "legacy":
        return;
      case "unknown":
        this.#foreignOnce(key, "not a key vipd writes");
        return;
    }
  }

  #beat(node: string, key: string, kv: Kv, value: string, receivedAt: number, loading: boolean): void {
    const had = this.#heartbeats.get(node);
    // On a re-read, a heartbeat we already had is not a new sign of life (nor news of a foreign value).
    if (loading && had && had.modRevision === kv.mod_revision) return;
    const hb = decodeHeartbeat(value);
    if (!hb) this.#foreignOnce(key, "not a heartbeat vipd wrote; treating it as claiming every VIP");
    this.#heartbeats.heard(node, kv.mod_revision, hb, this.#agents.get(node)?.incarnation, receivedAt);
  }

  #delete(key: string): void {
    const parsed = parseKey(this.prefix, key);
    if (!parsed) return;
    switch (parsed.kind) {
      case "agent":
        this.#agents.delete(parsed.node);
        this.#touch(null);
        return;
      case "heartbeat":
        // Its claims stay in force; an agent's keys go together (its lease), rarely: news to all.
        this.#heartbeats.deleted(parsed.node);
        this.#touch(null);
        return;
      case "election": {
        this.#queueChanged(parsed.vip);
        const q = this.#queues.get(parsed.vip);
        q?.delete(key);
        if (q && q.size === 0) this.#queues.delete(parsed.vip);
        return;
      }
      case "drain":
        this.#drains.delete(parsed.node);
        this.#touch(null);
        return;
      case "handover":
        this.#handovers.delete(parsed.vip);
        this.#touch(parsed.vip);
        return;
      case "macs":
        this.#macs.delete(parsed.node);
        this.#touch(null);
        return;
      case "legacy":
      case "unknown":
        return;
    }
  }

  #queueChanged(vip: string): void {
    this.#ordered.delete(vip);
    this.#touch(vip);
  }

  #queue(vip: string): Map<string, Candidate> {
    let q = this.#queues.get(vip);
    if (!q) this.#queues.set(vip, (q = new Map()));
    return q;
  }

  #foreignOnce(key: string, why: string): void {
    if (this.#foreign.has(key)) return;
    this.#foreign.add(key);
    this.onForeign(key, why);
  }

  /** A VIP's queue, holder first. The same array until the queue changes: do not change it. */
  queue(vip: string): readonly Candidate[] {
    let q = this.#ordered.get(vip);
    if (!q) {
      q = [...(this.#queues.get(vip)?.values() ?? [])].sort((a, b) => compareRevisions(a.createRevision, b.createRevision));
      this.#ordered.set(vip, q);
    }
    return q;
  }

  /** Every VIP with a queue. */
  vips(): string[] {
    return [...this.#queues.keys()];
  }

  agent(node: string): AgentRecord | undefined {
    return this.#agents.get(node);
  }

  agents(): AgentRecord[] {
    return [...this.#agents.values()];
  }

  /** Whether (and why) an operator drained the node. */
  drain(node: string): DrainRecord | undefined {
    return this.#drains.get(node);
  }

  drains(): DrainRecord[] {
    return [...this.#drains.values()];
  }

  /** The hand-over requested for the VIP, if one is in progress. */
  handover(vip: string): HandoverRecord | undefined {
    return this.#handovers.get(vip);
  }

  /** Every MAC the agents published for their VIP links: an address probe answered by one of these found no stranger. */
  agentMacs(): ReadonlySet<string> {
    return new Set([...this.#macs.values()].flatMap((m) => Object.values(m)));
  }

  heartbeat(node: string): HeartbeatRecord | undefined {
    return this.#heartbeats.get(node);
  }

  heartbeats(): HeartbeatRecord[] {
    return this.#heartbeats.all();
  }

  /**
   * The hold time a node published (design.md invariant I8); the longest
   * allowed when unknown (keeps a VIP unheld rather than doubly held).
   */
  holdOf(node: string): number {
    return this.#agents.get(node)?.incarnation?.holdMs ?? MAX_HOLD_MS;
  }

  /** When the latest heartbeat heard from `node` stops counting (heartbeat-book.ts); null: none heard. */
  heardUntil(node: string): number | null {
    return this.#heartbeats.heardUntil(node);
  }

  /** When the last sign of life from `node` stops counting (heartbeat-book.ts); `since` stands in for a node never heard. */
  silentAfter(node: string, since: number): number {
    return this.#heartbeats.silentAfter(node, since, this.holdOf(node));
  }

  /** Until when another node may still be answering for `vip` by its own heartbeats' claims (design.md §4); null when nobody else may. */
  claimedUntil(vip: string, except: string, now: number): number | null {
    return this.#heartbeats.claimedUntil(vip, except, now);
  }

  /** Forgets deleted heartbeats whose claims and window have run out. Called with every read and every batch of events. */
  prune(now: number): void {
    this.#heartbeats.prune(now);
  }
}
