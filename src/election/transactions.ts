// Every etcd transaction a run of vipd writes under its node name, as plain
// values (design.md §2–§6): what each compares, puts, deletes and reads
// back. Pure; the session, the registration and the heartbeat send them.
//
// Every write of a registered run carries one guard, `ownRecord`: our agent
// record still has the create revision this run gave it. A run whose record
// went (its lease expired, someone deleted it, another run of the node name
// replaced it) must write nothing more; the guard makes etcd refuse instead
// of trusting the run to know. The writes that come before there is a
// record (registering, clearing a dead run's keys) compare the record
// itself instead.
import type { ICompare, IPutRequest, IRangeRequest, IRangeResponse, ITxnRequest, ITxnResponse } from "etcd3";
import { agentKey, electionKey, electionsPrefix, encodeHeartbeat, heartbeatKey, LEGACY_ELECTIONS, macsKey, prefixEnd } from "./keys.ts";

/** Who writes: this run, under its node name, under vipd's prefix. */
export interface Self {
  readonly prefix: string;
  readonly node: string;
  /** The run's id: the value of its election keys and the `run` of its heartbeats. */
  readonly run: string;
}

/** A registered run: its agent record's create revision, and the lease its keys live on (decimal, as etcd's API carries it). */
export interface Registered {
  readonly agentRevision: string;
  readonly lease: string;
}

/** One of our election keys a write requires to still exist, as the view showed it. */
export interface Guarded {
  readonly vip: string;
  readonly createRevision: string;
}

/** The two calls the session's writes make, each with its own deadline, on whatever client the connection has at that moment. */
export interface KvCalls {
  txn(req: ITxnRequest, timeoutMs: number): Promise<ITxnResponse>;
  range(req: IRangeRequest, timeoutMs: number): Promise<IRangeResponse>;
}

const key = (k: string) => Buffer.from(k);
const createdAt = (k: string | Buffer, revision: string): ICompare => ({ key: Buffer.from(k), target: "Create", result: "Equal", create_revision: revision });
const modifiedAt = (k: string | Buffer, revision: string): ICompare => ({ key: Buffer.from(k), target: "Mod", result: "Equal", mod_revision: revision });
const del = (k: Buffer) => ({ request_delete_range: { key: k } });

/** The guard of every write of a registered run: our agent record is still the one this run created. */
export function ownRecord(me: Pick<Self, "prefix" | "node">, agentRevision: string): ICompare {
  return createdAt(agentKey(me.prefix, me.node), agentRevision);
}

/** Our heartbeat key's new value: this run, its next sequence number, its claims (design.md §4). */
export function heartbeatPut(me: Self, lease: string, seq: number, claims: readonly string[]): IPutRequest {
  return { key: key(heartbeatKey(me.prefix, me.node)), value: Buffer.from(encodeHeartbeat({ run: me.run, seq, claims })), lease };
}

/**
 * The heartbeat (design.md §3): our record, and every key we head unchanged,
 * then the put; otherwise those keys read back in that order, record first,
 * so the answer says which one went.
 */
export function heartbeatTxn(me: Self, agentRevision: string, guarded: readonly Guarded[], put: IPutRequest): ITxnRequest {
  const elections = guarded.map((g) => key(electionKey(me.prefix, g.vip, me.node)));
  return {
    compare: [ownRecord(me, agentRevision), ...guarded.map((g, i) => createdAt(elections[i]!, g.createRevision))],
    success: [{ request_put: put }],
    failure: [{ request_range: { key: key(agentKey(me.prefix, me.node)) } }, ...elections.map((k) => ({ request_range: { key: k } }))],
  };
}

/** Joining a VIP's queue at the back: creates our key only where none is; otherwise reads back what is there. */
export function joinTxn(me: Self, reg: Registered, vip: string): ITxnRequest {
  const k = key(electionKey(me.prefix, vip, me.node));
  return {
    compare: [ownRecord(me, reg.agentRevision), createdAt(k, "0")],
    success: [{ request_put: { key: k, value: Buffer.from(me.run), lease: reg.lease } }],
    failure: [{ request_range: { key: k } }],
  };
}

/** Leaving the VIPs' queues, and a heartbeat that no longer claims them, in one revision (design.md §4). */
export function releaseTxn(me: Self, reg: Registered, vips: readonly string[], heartbeat: IPutRequest): ITxnRequest {
  return {
    compare: [ownRecord(me, reg.agentRevision)],
    success: [...vips.map((v) => del(key(electionKey(me.prefix, v, me.node)))), { request_put: heartbeat }],
    failure: [],
  };
}

/** What one VIP's takeover compares and deletes (design.md §3, invariant I3). */
export interface TakeoverTerms {
  readonly vip: string;
  /** Our key's create revision, which the transaction proves. */
  readonly createRevision: string;
  /** The nodes ahead, whose keys it deletes. */
  readonly from: string[];
  readonly compare: ICompare[];
  readonly deletes: Buffer[];
}

/** One agent ahead of us in a queue, as our view knows it. */
export interface Ahead {
  readonly node: string;
  readonly key: string;
  readonly createRevision: string;
  /** Its heartbeat key's mod revision when we last heard it; "0": none in the view. */
  readonly heartbeatRevision: string;
}

/**
 * Taking a VIP from the agents ahead: our record and our key unchanged, and
 * for each agent ahead its heartbeat unchanged since we last heard it and
 * its key unchanged; then their keys go.
 */
export function takeoverTerms(me: Self, agentRevision: string, vip: string, mine: { key: string; createRevision: string }, ahead: readonly Ahead[]): TakeoverTerms {
  return {
    vip,
    createRevision: mine.createRevision,
    from: ahead.map((a) => a.node),
    compare: [
      ownRecord(me, agentRevision),
      createdAt(mine.key, mine.createRevision),
      ...ahead.flatMap((a) => [modifiedAt(heartbeatKey(me.prefix, a.node), a.heartbeatRevision), createdAt(a.key, a.createRevision)]),
    ],
    deletes: ahead.map((a) => key(a.key)),
  };
}

/** Comparisons with the same key, target and value once. */
export function uniqueCompares(list: readonly ICompare[]): ICompare[] {
  const seen = new Set<string>();
  return list.filter((c) => {
    const id = `${Buffer.from(c.key as Buffer).toString("hex")} ${c.target} ${c.result} ${c.create_revision ?? ""} ${c.mod_revision ?? ""}`;
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}

/**
 * Several takeovers in one transaction: the conjunction of their
 * comparisons (each once), every deletion, and one heartbeat that claims
 * them. It commits only where each alone would have.
 */
export function takeoverTxn(batch: readonly Pick<TakeoverTerms, "compare" | "deletes">[], heartbeat: IPutRequest): ITxnRequest {
  return {
    compare: uniqueCompares(batch.flatMap((b) => b.compare)),
    success: [...batch.flatMap((b) => b.deletes.map(del)), { request_put: heartbeat }],
    failure: [],
  };
}

/** Our MACs (design.md §12), written again by a run whose links changed. */
export function macsTxn(me: Self, reg: Registered, value: string): ITxnRequest {
  return {
    compare: [ownRecord(me, reg.agentRevision)],
    success: [{ request_put: { key: key(macsKey(me.prefix, me.node)), value: Buffer.from(value), lease: reg.lease } }],
    failure: [],
  };
}

/** The agent record under our node name and its heartbeat, read in one revision: whoever registered it last, and what it claimed. */
export function previousRunTxn(me: Pick<Self, "prefix" | "node">): ITxnRequest {
  return {
    compare: [],
    success: [{ request_range: { key: key(agentKey(me.prefix, me.node)) } }, { request_range: { key: key(heartbeatKey(me.prefix, me.node)) } }],
    failure: [],
  };
}

/**
 * Registering this run (design.md §6): where no record is, our record, our
 * first heartbeat and our MACs, all on our lease. The MACs come with the
 * record so that no key of ours is in any queue before the other agents can
 * tell our answers to their address probes from a stranger's.
 */
export function registerTxn(me: Self, lease: string, incarnation: string, heartbeat: IPutRequest, macs: string | null): ITxnRequest {
  const record = key(agentKey(me.prefix, me.node));
  return {
    compare: [createdAt(record, "0")],
    success: [
      { request_put: { key: record, value: Buffer.from(incarnation), lease } },
      { request_put: heartbeat },
      ...(macs === null ? [] : [{ request_put: { key: key(macsKey(me.prefix, me.node)), value: Buffer.from(macs), lease } }]),
    ],
    failure: [],
  };
}

/** Clearing another run's record, heartbeat and election keys under our node name, if neither record nor heartbeat moved since we judged it. */
export function clearTxn(me: Pick<Self, "prefix" | "node">, agentModRevision: string, heartbeatModRevision: string, electionKeys: readonly Buffer[]): ITxnRequest {
  const record = key(agentKey(me.prefix, me.node));
  const beat = key(heartbeatKey(me.prefix, me.node));
  return {
    compare: [modifiedAt(record, agentModRevision), modifiedAt(beat, heartbeatModRevision)],
    success: [del(record), del(beat), ...electionKeys.map(del)],
    failure: [],
  };
}

/** Deleting keys, unconditionally: election keys of an earlier registration of ours, which no guard of this one covers. */
export function deleteTxn(keys: readonly Buffer[]): ITxnRequest {
  return { compare: [], success: keys.map(del), failure: [] };
}

/** How many vipd 0.1 election keys there are (design.md §2). */
export function legacyRange(prefix: string): IRangeRequest {
  const k = key(`${prefix}${LEGACY_ELECTIONS}`);
  return { key: k, range_end: prefixEnd(k), count_only: true };
}

/** Every election key's name, to pick out our node's. */
export function electionKeysRange(prefix: string): IRangeRequest {
  const k = key(electionsPrefix(prefix));
  return { key: k, range_end: prefixEnd(k), keys_only: true };
}

/** Our node's keys in an electionKeysRange answer. */
export function ownElectionKeys(res: Pick<IRangeResponse, "kvs">, node: string): Buffer[] {
  const suffix = `/${node}`;
  return res.kvs.map((kv) => kv.key).filter((k) => k.toString().endsWith(suffix));
}
