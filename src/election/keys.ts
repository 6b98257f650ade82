// vipd's layout in etcd: every key the agents and `vipd status` read or
// write, in one place (design.md §2).
//
//   <prefix>agents/<node>            one run of vipd under this node name: an Incarnation (JSON),
//                                    written once when the run registers
//   <prefix>heartbeats/<node>        rewritten ~4 times a second: {"run","seq","claims"} (JSON)
//   <prefix>elections/<vip>/<node>   the node's place in the VIP's queue; value = the run's id
//
// All three live on the run's etcd lease, which only cleans up after a run
// that vanished: liveness comes from the heartbeats (design.md §3).
//
// A VIP's queue is its election keys ordered by create revision, first =
// holder, as in etcd's own election recipe. IPv6 VIPs put ':' in keys, which
// etcd allows; node names are [A-Za-z0-9._-] (config/fields.ts), so '/'
// separates the parts unambiguously.
//
// vipd 0.1 kept `<prefix>vip/<vip>/<lease hex>` = node name, on a lease that
// meant ownership. The two layouts must never run side by side (each would
// elect its own holder), so the agent refuses to start while 0.1 keys exist.

export const AGENTS = "agents/";
export const HEARTBEATS = "heartbeats/";
export const ELECTIONS = "elections/";
/** vipd 0.1's election keys: present means a 0.1 agent may still run. */
export const LEGACY_ELECTIONS = "vip/";

export const agentKey = (prefix: string, node: string) => `${prefix}${AGENTS}${node}`;
export const heartbeatKey = (prefix: string, node: string) => `${prefix}${HEARTBEATS}${node}`;
export const electionKey = (prefix: string, vip: string, node: string) => `${prefix}${ELECTIONS}${vip}/${node}`;
export const electionsPrefix = (prefix: string) => `${prefix}${ELECTIONS}`;

export type ParsedKey =
  | { kind: "agent"; node: string }
  | { kind: "heartbeat"; node: string }
  | { kind: "election"; vip: string; node: string }
  | { kind: "legacy"; vip: string }
  /** Under the prefix but not a key vipd writes (a foreign writer, a typo): ignored. */
  | { kind: "unknown" };

const NODE = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$/;

/** What a key under `prefix` is; null when it is not under the prefix at all. */
export function parseKey(prefix: string, key: string): ParsedKey | null {
  if (!key.startsWith(prefix)) return null;
  const rest = key.slice(prefix.length);
  const single = (kind: "agent" | "heartbeat", tail: string): ParsedKey => (NODE.test(tail) ? { kind, node: tail } : { kind: "unknown" });
  if (rest.startsWith(AGENTS)) return single("agent", rest.slice(AGENTS.length));
  if (rest.startsWith(HEARTBEATS)) return single("heartbeat", rest.slice(HEARTBEATS.length));
  if (rest.startsWith(ELECTIONS)) {
    const tail = rest.slice(ELECTIONS.length);
    const slash = tail.lastIndexOf("/");
    const vip = tail.slice(0, slash);
    const node = tail.slice(slash + 1);
    return slash > 0 && NODE.test(node) && !vip.includes("/") ? { kind: "election", vip, node } : { kind: "unknown" };
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

/** Orders etcd revisions given as decimal int64 strings or numbers. */
export function compareRevisions(a: string | number, b: string | number): number {
  const d = BigInt(a) - BigInt(b);
  return d < 0n ? -1 : d > 0n ? 1 : 0;
}
