// vipd's layout in etcd: every key the agents and `vipd status` read or
// write, in one place (design.md §2).
//
//   <prefix>agents/<node>            one run of vipd under this node name: an Incarnation (JSON),
//                                    written once when the run registers
//   <prefix>heartbeats/<node>        rewritten ~4 times a second: {"run","seq","claims"} (JSON)
//   <prefix>elections/<vip>/<node>   the node's place in the VIP's queue; value = the run's id
//   <prefix>macs/<node>              the node's MACs: {"<vip>": "<mac>"} for each VIP's link and
//                                    {"link/<name>": "<mac>"} for every link in its network namespace
//                                    (JSON), written as the run registers and when a MAC changes; an
//                                    address-conflict probe answered by one of these is no conflict
//   <prefix>drains/<node>            an operator drained the node (`vipd drain`): {"by","at","reason"};
//                                    no lease: it outlives every run until `vipd undrain`
//   <prefix>handovers/<vip>          a hand-over in progress (`vipd handover`): {"to","toRevision","by","at"},
//                                    on the asking command's own short lease
//
// The first three and macs/ live on the run's etcd lease, which only cleans up after a
// run that vanished: liveness comes from the heartbeats (design.md §3).
//
// A VIP's queue is its election keys ordered by create revision, first =
// holder, as in etcd's own election recipe. IPv6 VIPs put ':' in keys, which
// etcd allows; node names are [A-Za-z0-9._-] (config/fields.ts), so '/'
// separates the parts unambiguously.
//
// vipd 0.1 kept `<prefix>vip/<vip>/<lease hex>` = node name, on a lease that
// meant ownership. The two layouts must never run side by side (each would
// elect its own holder), so the agent refuses to start while 0.1 keys exist.
import { NODE_NAME } from "../config/fields.ts";

export const AGENTS = "agents/";
export const HEARTBEATS = "heartbeats/";
export const ELECTIONS = "elections/";
export const DRAINS = "drains/";
export const HANDOVERS = "handovers/";
export const MACS = "macs/";
/** vipd 0.1's election keys: present means a 0.1 agent may still run. */
export const LEGACY_ELECTIONS = "vip/";

export const agentKey = (prefix: string, node: string) => `${prefix}${AGENTS}${node}`;
export const heartbeatKey = (prefix: string, node: string) => `${prefix}${HEARTBEATS}${node}`;
export const electionKey = (prefix: string, vip: string, node: string) => `${prefix}${ELECTIONS}${vip}/${node}`;
export const electionsPrefix = (prefix: string) => `${prefix}${ELECTIONS}`;
export const drainKey = (prefix: string, node: string) => `${prefix}${DRAINS}${node}`;
export const handoverKey = (prefix: string, vip: string) => `${prefix}${HANDOVERS}${vip}`;
export const macsKey = (prefix: string, node: string) => `${prefix}${MACS}${node}`;

export type ParsedKey =
  | { kind: "agent"; node: string }
  | { kind: "heartbeat"; node: string }
  | { kind: "election"; vip: string; node: string }
  | { kind: "drain"; node: string }
  | { kind: "handover"; vip: string }
  | { kind: "macs"; node: string }
  | { kind: "legacy"; vip: string }
  /** Under the prefix but not a key vipd writes (a foreign writer, a typo): ignored. */
  | { kind: "unknown" };


/** What a key under `prefix` is; null when it is not under the prefix at all. */
export function parseKey(prefix: string, key: string): ParsedKey | null {
  if (!key.startsWith(prefix)) return null;
  const rest = key.slice(prefix.length);
  const single = (kind: "agent" | "heartbeat" | "drain" | "macs", tail: string): ParsedKey => (NODE_NAME.test(tail) ? { kind, node: tail } : { kind: "unknown" });
  if (rest.startsWith(AGENTS)) return single("agent", rest.slice(AGENTS.length));
  if (rest.startsWith(HEARTBEATS)) return single("heartbeat", rest.slice(HEARTBEATS.length));
  if (rest.startsWith(DRAINS)) return single("drain", rest.slice(DRAINS.length));
  if (rest.startsWith(MACS)) return single("macs", rest.slice(MACS.length));
  if (rest.startsWith(HANDOVERS)) {
    const vip = rest.slice(HANDOVERS.length);
    return vip && !vip.includes("/") ? { kind: "handover", vip } : { kind: "unknown" };
  }
  if (rest.startsWith(ELECTIONS)) {
    const tail = rest.slice(ELECTIONS.length);
    const slash = tail.lastIndexOf("/");
    const vip = tail.slice(0, slash);
    const node = tail.slice(slash + 1);
    return slash > 0 && NODE_NAME.test(node) && !vip.includes("/") ? { kind: "election", vip, node } : { kind: "unknown" };
  }
  if (rest.startsWith(LEGACY_ELECTIONS)) {
    const vip = rest.slice(LEGACY_ELECTIONS.length).split("/")[0] ?? "";
    return vip ? { kind: "legacy", vip } : { kind: "unknown" };
  }
  return { kind: "unknown" };
}

/** The end of etcd's range for a prefix: the prefix with its last byte incremented (clientv3.GetPrefixRangeEnd). */
export function prefixEnd(prefix: string | Uint8Array): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  // All 0xff: etcd's "no end" marker means every key from here on.
  return Buffer.from([0]);
}

/** The heartbeat's value: which run wrote it, in what order, and what it may serve. */
export interface HeartbeatValue {
  readonly run: string;
  /** Increases with every heartbeat a run sends, so a late-committed older one cannot speak last. */
  readonly seq: number;
  /** VIPs the run holds, or may hold before its next heartbeat (design.md §4). */
  readonly claims: readonly string[];
}

export function encodeHeartbeat(h: HeartbeatValue): string {
  return JSON.stringify({ run: h.run, seq: h.seq, claims: h.claims });
}

/**
 * A JSON object from a value under vipd's prefix, or null for anything else:
 * values may come from a foreign writer, and must never throw.
 */
export function jsonObject(text: string): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** Parses a heartbeat value; null when it is not one vipd wrote. */
export function decodeHeartbeat(text: string): HeartbeatValue | null {
  const v = jsonObject(text);
  if (!v) return null;
  const { run, seq, claims } = v;
  if (typeof run !== "string" || !run || typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 0) return null;
  if (!Array.isArray(claims) || !claims.every((c) => typeof c === "string")) return null;
  return { run, seq, claims: claims as string[] };
}

/** Why a node is drained, as the operator's command recorded it. */
export interface DrainValue {
  /** Who asked: user@host of the command. */
  readonly by: string;
  /** When, as an ISO 8601 time from the asking machine's clock. */
  readonly at: string;
  /** Free text the operator gave (`--reason`), or "". */
  readonly reason: string;
}

export function encodeDrain(d: DrainValue): string {
  return JSON.stringify({ by: d.by, at: d.at, reason: d.reason });
}

/** Parses a drain value; null when it is not one vipd wrote (the node still counts as drained). */
export function decodeDrain(text: string): DrainValue | null {
  const v = jsonObject(text);
  if (!v) return null;
  const { by, at, reason } = v;
  if (typeof by !== "string" || typeof at !== "string" || typeof reason !== "string") return null;
  return { by, at, reason };
}

/** A requested hand-over: which queue entry the VIP should move to. */
export interface HandoverValue {
  /** The node to take the VIP. */
  readonly to: string;
  /** The create revision of its election key when asked: a later key of the same node is not what was asked for. */
  readonly toRevision: string;
  readonly by: string;
  readonly at: string;
}

export function encodeHandover(h: HandoverValue): string {
  return JSON.stringify({ to: h.to, toRevision: h.toRevision, by: h.by, at: h.at });
}

/** Parses a hand-over request; null when it is not one vipd wrote (then nobody acts on it). */
export function decodeHandover(text: string): HandoverValue | null {
  const v = jsonObject(text);
  if (!v) return null;
  const { to, toRevision, by, at } = v;
  if (typeof to !== "string" || !NODE_NAME.test(to) || typeof toRevision !== "string" || !/^[1-9][0-9]{0,18}$/.test(toRevision)) return null;
  if (typeof by !== "string" || typeof at !== "string") return null;
  return { to, toRevision, by, at };
}

/**
 * One agent's MACs, aa:bb:cc:dd:ee:ff in lower case: each VIP's link by VIP,
 * and every link of its namespace by `link/<name>` (a link name has no '/').
 */
export type MacsValue = Readonly<Record<string, string>>;

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

export function encodeMacs(m: MacsValue): string {
  return JSON.stringify(Object.fromEntries(Object.entries(m).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));
}

/** Parses an agent's MACs; null when it is not a value vipd wrote (its MACs are then unknown). */
export function decodeMacs(text: string): MacsValue | null {
  const v = jsonObject(text);
  if (!v) return null;
  for (const mac of Object.values(v)) if (typeof mac !== "string" || !MAC.test(mac)) return null;
  return v as Record<string, string>;
}

/** Orders etcd revisions given as decimal int64 strings or numbers. */
export function compareRevisions(a: string | number, b: string | number): number {
  const d = BigInt(a) - BigInt(b);
  return d < 0n ? -1 : d > 0n ? 1 : 0;
}
