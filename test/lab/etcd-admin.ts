// etcd's own view of the lab's cluster, for faults that care where raft's
// leader is: the members and their IDs, which member leads, and moving the
// leadership on purpose (Maintenance.MoveLeader). Every call goes to a
// member's grpc-gateway inside its node's namespace (127.0.0.1:2379, where
// etcdctl on a kubeadm node would talk), with curl. Checked on etcd 3.4.23:
//
//   POST /v3/cluster/member/list {}   → {"members":[{"ID":"9107…","name":"n2",…},…]}
//   POST /v3/maintenance/status {}    → {"header":{"member_id":"…"},"leader":"…",…}
//   POST /v3/maintenance/transfer-leadership {"targetID":"<id>"} → {}
//
// The gateway writes uint64 IDs as JSON strings and reads them back as such.
// MoveLeader is served by the leader only (a follower answers "etcdserver:
// not leader"); the field is `targetID` (`target_id` is silently ignored and
// the transfer then fails as "bad leader transferee"). Lab members are named
// after their nodes.
import { sh } from "./sh.ts";

/** What these helpers need of a lab (a Lab is one). */
export interface EtcdSite {
  readonly nodes: readonly { readonly name: string; readonly host: { readonly ns: string } }[];
}

export interface EtcdMemberInfo {
  id: string;
  name: string;
}

export interface EtcdMemberStatus {
  node: string;
  memberId: string;
  /** The member ID this member takes for the raft leader ("0": none known). */
  leaderId: string;
  raftTerm: number;
}

/** etcd answered with an error object (e.g. "etcdserver: not leader"). */
export class EtcdApiError extends Error {
  constructor(readonly path: string, readonly node: string, readonly etcdMessage: string) {
    super(`etcd on ${node}: ${path}: ${etcdMessage}`);
    this.name = "EtcdApiError";
  }
}

const now = () => performance.now();

/** POSTs body to the member on `node`; null when it does not answer (down, frozen, timed out). */
async function gateway<T>(site: EtcdSite, node: string, path: string, body: unknown, timeoutS = 1): Promise<T | null> {
  const ns = site.nodes.find((n) => n.name === node)?.host.ns;
  if (!ns) throw new Error(`no node ${node} in the lab`);
  const out = await sh(["ip", "netns", "exec", ns, "curl", "-s", "--max-time", String(timeoutS), "-X", "POST",
    "-d", JSON.stringify(body), `http://127.0.0.1:2379${path}`], { allowFail: true });
  if (!out.trim()) return null;
  let v: unknown;
  try {
    v = JSON.parse(out);
  } catch {
    throw new EtcdApiError(path, node, `not JSON: ${out.slice(0, 120)}`);
  }
  const err = (v as { error?: unknown }).error;
  if (typeof err === "string") throw new EtcdApiError(path, node, err);
  return v as T;
}

/** The cluster's members, from the first member that answers. */
export async function etcdMembers(site: EtcdSite): Promise<EtcdMemberInfo[]> {
  for (const n of site.nodes) {
    const r = await gateway<{ members?: { ID?: string; name?: string }[] }>(site, n.name, "/v3/cluster/member/list", {});
    if (r?.members) return r.members.map((m) => ({ id: String(m.ID), name: String(m.name) }));
  }
  throw new Error("no etcd member answered /v3/cluster/member/list");
}

/** One member's status; null when it does not answer. */
export async function etcdStatus(site: EtcdSite, node: string): Promise<EtcdMemberStatus | null> {
  const s = await gateway<{ header?: { member_id?: string }; leader?: string; raftTerm?: string }>(site, node, "/v3/maintenance/status", {});
  if (!s?.header?.member_id) return null;
  return { node, memberId: s.header.member_id, leaderId: s.leader ?? "0", raftTerm: Number(s.raftTerm ?? 0) };
}

/** The node whose member reports itself as the raft leader. */
export async function etcdLeader(site: EtcdSite): Promise<string> {
  for (const n of site.nodes) {
    const s = await etcdStatus(site, n.name).catch(() => null);
    if (s && s.leaderId === s.memberId) return n.name;
  }
  throw new Error("no etcd member reports itself as the raft leader");
}

/** The leader every given member agrees on (by name); null if one does not answer or they disagree. */
export async function agreedLeader(site: EtcdSite, nodes: readonly string[], members?: readonly EtcdMemberInfo[]): Promise<string | null> {
  const ms = members ?? (await etcdMembers(site));
  const st = await Promise.all(nodes.map((n) => etcdStatus(site, n).catch(() => null)));
  const ids = new Set(st.map((s) => s?.leaderId ?? "none"));
  if (ids.size !== 1) return null;
  const [id] = ids;
  return ms.find((m) => m.id === id)?.name ?? null;
}

export interface LeaderWait {
  /** Only these members are asked (default: every node's). */
  nodes?: readonly string[];
  timeoutMs?: number;
  everyMs?: number;
}

/**
 * Polls until the members agree on a leader for which `want` holds. Returns
 * it and how long the wait took (resolution: one round of status calls, some
 * 20–50 ms).
 */
export async function waitForEtcdLeader(site: EtcdSite, want: (leader: string) => boolean, opts: LeaderWait = {}): Promise<{ leader: string; ms: number }> {
  const nodes = opts.nodes ?? site.nodes.map((n) => n.name);
  const members = await etcdMembers(site);
  const start = now();
  let last: string | null = null;
  for (;;) {
    last = await agreedLeader(site, nodes, members);
    if (last !== null && want(last)) return { leader: last, ms: now() - start };
    if (now() - start > (opts.timeoutMs ?? 10_000)) {
      throw new Error(`etcd members ${nodes.join(", ")} did not agree on the wanted leader within ${opts.timeoutMs ?? 10_000} ms (last agreement: ${last ?? "none"})`);
    }
    await Bun.sleep(opts.everyMs ?? 10);
  }
}

export interface LeaderMove {
  from: string;
  to: string;
  /** The MoveLeader call, as the leader answered it. */
  requestMs: number;
  /** From the call until every member named the new leader. */
  visibleMs: number;
  /**
   * Transfers that returned but never showed the new leader to every member
   * (the transferee still catching up after a rejoin, say), each asked again.
   */
  notTaken: string[];
}

/**
 * Moves raft leadership to `to`'s member (MoveLeader, sent to the current
 * leader) and waits until every member names it. A leader already on `to`
 * is left alone (requestMs and visibleMs 0).
 */
export async function moveEtcdLeader(site: EtcdSite, to: string, opts: { timeoutMs?: number } = {}): Promise<LeaderMove> {
  const members = await etcdMembers(site);
  const target = members.find((m) => m.name === to);
  if (!target) throw new Error(`no etcd member named ${to} (members: ${members.map((m) => m.name).join(", ")})`);
  let lastError: unknown = null;
  const notTaken: string[] = [];
  for (let attempt = 0; attempt < 5; attempt++) {
    const from = await etcdLeader(site);
    if (from === to) return { from, to, requestMs: 0, visibleMs: 0, notTaken };
    const start = now();
    try {
      await gateway(site, from, "/v3/maintenance/transfer-leadership", { targetID: target.id }, 5);
    } catch (e) {
      // Leadership changed between asking and moving: ask again.
      if (e instanceof EtcdApiError && /not leader/.test(e.etcdMessage)) {
        lastError = e;
        continue;
      }
      throw e;
    }
    const requestMs = now() - start;
    try {
      await waitForEtcdLeader(site, (l) => l === to, { timeoutMs: opts.timeoutMs ?? 5000, everyMs: 5 });
    } catch (e) {
      // raft gives a transfer up when the transferee does not catch up in
      // time; etcd may still have answered. Ask again, and say so.
      lastError = e;
      notTaken.push(`MoveLeader ${from} → ${to} did not take: ${e instanceof Error ? e.message : String(e)}`);
      continue;
    }
    return { from, to, requestMs, visibleMs: now() - start, notTaken };
  }
  throw new Error(`moving etcd's raft leader to ${to} failed 5 times: ${String(lastError)}`);
}

export interface EtcdKv {
  key: string;
  value: string;
  createRevision: number;
  /** The lease the key is attached to, as etcd's decimal ID; "0": none. */
  lease: string;
}

/**
 * Every key under `prefix`, read through `node`'s member, in key order: the
 * state as etcd holds it, not as vipd reports it. Throws when the member
 * does not answer.
 */
export async function etcdRange(site: EtcdSite, node: string, prefix: string): Promise<EtcdKv[]> {
  const b64 = (b: Buffer) => b.toString("base64");
  const key = Buffer.from(prefix);
  const end = Buffer.from(key);
  end[end.length - 1]! += 1;
  const r = await gateway<{ kvs?: { key: string; value?: string; create_revision: string; lease?: string }[] }>(site, node, "/v3/kv/range", { key: b64(key), range_end: b64(end) });
  if (!r) throw new Error(`etcd on ${node} did not answer a range read of ${prefix}`);
  return (r.kvs ?? []).map((kv) => ({
    key: Buffer.from(kv.key, "base64").toString(),
    value: Buffer.from(kv.value ?? "", "base64").toString(),
    createRevision: Number(kv.create_revision),
    lease: kv.lease ?? "0",
  }));
}

/** Writes one key (any bytes) through `node`'s member, as a foreign writer would; no lease. */
export async function etcdPut(site: EtcdSite, node: string, key: string, value: string | Uint8Array): Promise<void> {
  const r = await gateway<object>(site, node, "/v3/kv/put", { key: Buffer.from(key).toString("base64"), value: Buffer.from(value).toString("base64") });
  if (!r) throw new Error(`etcd on ${node} did not answer the put of ${key}`);
}

/** Deletes one key through `node`'s member, as an operator's etcdctl del would; the number deleted. */
export async function etcdDelete(site: EtcdSite, node: string, key: string): Promise<number> {
  const r = await gateway<{ deleted?: string }>(site, node, "/v3/kv/deleterange", { key: Buffer.from(key).toString("base64") });
  if (!r) throw new Error(`etcd on ${node} did not answer the delete of ${key}`);
  return Number(r.deleted ?? 0);
}

/** Revokes a lease (decimal ID) through `node`'s member: every key on it goes. */
export async function etcdRevoke(site: EtcdSite, node: string, lease: string): Promise<void> {
  const r = await gateway<object>(site, node, "/v3/lease/revoke", { ID: lease });
  if (!r) throw new Error(`etcd on ${node} did not answer the revoke of lease ${lease}`);
}
