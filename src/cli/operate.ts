// `vipd drain`, `vipd undrain` and `vipd handover`: planned moves, asked of
// the cluster through etcd alone, from any machine that reaches it (design.md
// §11). The commands write one key and watch the agents act on it; the agents
// decide by themselves (election/handover.ts), so a command that dies half way
// leaves nothing that can make two holders.
//
// "Healthy" is judged as the agents judge each other: by heartbeats. A node
// whose heartbeat key did not move within HEARD_WITHIN_MS is not counted on to
// take a VIP.
import type { Etcd3 } from "etcd3";
import { within } from "../election/connection.ts";
import { describeDrain } from "../election/handover.ts";
import { compareRevisions, drainKey, encodeDrain, encodeHandover, handoverKey, HEARTBEATS, prefixEnd } from "../election/keys.ts";
import { ClusterView } from "../election/view.ts";

/**
 * A healthy holder commits a heartbeat every 250 ms, a standby every 1250 ms
 * at most (design.md §3): at least one chance to hear it, with 750 ms to spare.
 * A longer window would keep a command that cannot find a candidate waiting
 * longer; one missed makes the command refuse or pick the next, never a
 * silent node.
 */
export const HEARD_WITHIN_MS = 2000;
const POLL_MS = 50;
const RPC_MS = 3000;

export interface Asker {
  /** user@host of whoever runs the command. */
  readonly by: string;
  /** Wall clock, ms. */
  readonly now: () => number;
  out(line: string): void;
  err(line: string): void;
}

export type Outcome = "done" | "refused" | "failed";

async function readView(client: Etcd3, prefix: string): Promise<ClusterView> {
  const key = Buffer.from(prefix);
  const res = await client.kv.range({ key, range_end: prefixEnd(key) }, within(RPC_MS));
  const view = new ClusterView(prefix);
  view.load(res.kvs, res.header.revision, performance.now());
  return view;
}

/** Which of `nodes` commit a heartbeat within `windowMs`; returns early once all have. */
export async function heardFrom(client: Etcd3, prefix: string, nodes: Iterable<string>, windowMs = HEARD_WITHIN_MS): Promise<Set<string>> {
  const want = new Set(nodes);
  const heard = new Set<string>();
  if (want.size === 0) return heard;
  const key = Buffer.from(`${prefix}${HEARTBEATS}`);
  const read = async () => {
    const res = await client.kv.range({ key, range_end: prefixEnd(key), keys_only: true }, within(RPC_MS));
    return new Map(res.kvs.map((kv) => [kv.key.toString().slice(key.length), kv.mod_revision]));
  };
  const first = await read();
  const end = performance.now() + windowMs;
  while (heard.size < want.size && performance.now() < end) {
    await Bun.sleep(Math.min(POLL_MS * 2, Math.max(0, end - performance.now())));
    const now = await read();
    for (const n of want) {
      const rev = now.get(n);
      if (rev !== undefined && rev !== first.get(n)) heard.add(n);
    }
  }
  return heard;
}

// ---- drain ------------------------------------------------------------------------

export interface DrainOptions {
  readonly node: string;
  readonly reason: string;
  readonly force: boolean;
  /** Wait until the node holds and stands for nothing; ms, or null not to wait. */
  readonly waitMs: number | null;
}

export async function drain(client: Etcd3, prefix: string, o: DrainOptions, a: Asker): Promise<Outcome> {
  const view = await readView(client, prefix);
  const had = view.drain(o.node);
  const vips = view.vips().filter((v) => view.queue(v).some((c) => c.node === o.node)).sort();
  if (had) {
    a.out(`${o.node} is already ${had.drain ? describeDrain(had.drain) : "drained"}`);
  } else {
    const dark = await wouldGoDark(client, prefix, view, o.node, vips);
    if (dark.length && !o.force) {
      a.err(
        `refusing to drain ${o.node}: no other healthy node stands for ${dark.join(", ")}, which would go dark. ` +
          "Start or undrain another candidate first, or give --force to drain anyway",
      );
      return "refused";
    }
    const at = new Date(a.now()).toISOString();
    await client.kv.put({ key: Buffer.from(drainKey(prefix, o.node)), value: Buffer.from(encodeDrain({ by: a.by, at, reason: o.reason })) }, within(RPC_MS));
    if (!view.agent(o.node)) a.out(`drained ${o.node} (by ${a.by} at ${at}); no vipd runs as ${o.node} now: it will stand for nothing when it starts`);
    else a.out(`drained ${o.node} (by ${a.by} at ${at})${vips.length ? `; it leaves the queues of ${vips.join(", ")} now` : "; it stands for no VIP now"}`);
    if (dark.length) a.out(`warning: ${dark.join(", ")} ${dark.length === 1 ? "has" : "have"} no other healthy candidate and will go dark`);
  }
  if (o.waitMs === null) return "done";
  return (await waitUntilOut(client, prefix, o.node, vips, o.waitMs, a)) ? "done" : "failed";
}

/** The VIPs `node` stands for that no other healthy, undrained node stands for. */
async function wouldGoDark(client: Etcd3, prefix: string, view: ClusterView, node: string, vips: readonly string[]): Promise<string[]> {
  const others = new Map(vips.map((v) => [v, view.queue(v).map((c) => c.node).filter((n) => n !== node && !view.drain(n))]));
  const alive = await heardFrom(client, prefix, new Set([...others.values()].flat()));
  return vips.filter((v) => !others.get(v)!.some((n) => alive.has(n)));
}

/** Until the node is in no queue and its heartbeat claims nothing; then says who holds each VIP it left. */
async function waitUntilOut(client: Etcd3, prefix: string, node: string, vips: readonly string[], waitMs: number, a: Asker): Promise<boolean> {
  const end = performance.now() + waitMs;
  for (;;) {
    const view = await readView(client, prefix);
    const queued = view.vips().filter((v) => view.queue(v).some((c) => c.node === node));
    const hb = view.heartbeat(node);
    const claims = !hb || hb.modRevision === "0" ? [] : hb.claims === "all" ? ["(unreadable heartbeat)"] : [...hb.claims];
    // Done when the node is out, and each VIP it left is answered by its next holder (or nobody stands for it).
    const moving = vips.filter((v) => view.queue(v).length > 0 && !answering(view, v).includes(view.queue(v)[0]!.node));
    if (queued.length === 0 && claims.length === 0 && moving.length === 0) {
      for (const v of vips) a.out(`${v}: ${holderText(view, v)}`);
      a.out(`${node} is drained: it holds no VIP and stands for none`);
      return true;
    }
    if (performance.now() >= end) {
      const secs = Math.round(waitMs / 1000);
      if (queued.length || claims.length) {
        const what = [queued.length ? `still in the queues of ${queued.join(", ")}` : "", claims.length ? `still claims ${claims.join(", ")}` : ""].filter(Boolean).join(" and ");
        a.err(`${node} is drained but ${what} after ${secs} s: is its vipd reachable? (its keys expire with its lease if it is gone)`);
      } else {
        a.err(`${node} is out, but after ${secs} s nobody answers yet for ${moving.map((v) => `${v} (${holderText(view, v)})`).join(", ")}`);
      }
      return false;
    }
    await Bun.sleep(POLL_MS);
  }
}

/** Nodes whose latest heartbeat claims the VIP: the holder answers for it. */
function answering(view: ClusterView, vip: string): string[] {
  return view.heartbeats().filter((h) => h.modRevision !== "0" && (h.claims === "all" || h.claims.has(vip))).map((h) => h.node);
}

function holderText(view: ClusterView, vip: string): string {
  const first = view.queue(vip)[0];
  if (!first) return "nobody stands for it now";
  return answering(view, vip).includes(first.node) ? `held by ${first.node}` : `${first.node} is first in line`;
}

export async function undrain(client: Etcd3, prefix: string, node: string, a: Asker): Promise<Outcome> {
  const res = await client.kv.deleteRange({ key: Buffer.from(drainKey(prefix, node)) }, within(RPC_MS));
  a.out(Number(res.deleted) > 0 ? `undrained ${node}: it stands for its VIPs again` : `${node} was not drained`);
  return "done";
}

// ---- handover ---------------------------------------------------------------------

export interface HandoverOptions {
  readonly vip: string;
  /** The node to take the VIP; null: the next healthy one in line. */
  readonly to: string | null;
  readonly timeoutMs: number;
}

export async function handover(client: Etcd3, prefix: string, o: HandoverOptions, a: Asker): Promise<Outcome> {
  const view = await readView(client, prefix);
  const queue = view.queue(o.vip);
  const head = queue[0];
  if (!head) {
    a.err(`nobody stands for ${o.vip}: there is no queue for it under ${prefix} (is it in a running agent's configuration?)`);
    return "refused";
  }
  const busy = view.handover(o.vip);
  if (busy) {
    const r = busy.request;
    a.err(`a hand-over of ${o.vip} is already in progress${r ? ` (to ${r.to}, asked by ${r.by} at ${r.at})` : ""}: wait for it to finish`);
    return "refused";
  }
  const alive = await heardFrom(client, prefix, queue.slice(1).map((c) => c.node));
  let target;
  if (o.to !== null) {
    const to = o.to;
    if (to === head.node) {
      a.out(`${o.vip}: ${to} is already first in line; nothing to do`);
      return "done";
    }
    target = queue.find((c) => c.node === to);
    if (!target) {
      const drained = view.drain(to);
      if (!view.agent(to)) a.err(`cannot hand ${o.vip} over to ${to}: no vipd runs as ${to}`);
      else if (drained) a.err(`cannot hand ${o.vip} over to ${to}: it is ${drained.drain ? describeDrain(drained.drain) : "drained"}; "vipd undrain ${to}" first`);
      else a.err(`cannot hand ${o.vip} over to ${to}: it does not stand for ${o.vip} (the VIP is not in its configuration, or its link is down, its kube-apiserver gate closed, or it stood down; "vipd status" and its /healthz say which)`);
      return "refused";
    }
    if (!alive.has(to)) {
      a.err(`cannot hand ${o.vip} over to ${to}: it stands for it, but committed no heartbeat within ${HEARD_WITHIN_MS} ms, so it is not a healthy candidate`);
      return "refused";
    }
  } else {
    target = queue.slice(1).find((c) => alive.has(c.node));
    if (!target) {
      const others = queue.slice(1).map((c) => c.node);
      a.err(`cannot hand ${o.vip} over: ${others.length ? `no other candidate (${others.join(", ")}) committed a heartbeat within ${HEARD_WITHIN_MS} ms` : `no other node stands for it`}; it would go dark`);
      return "refused";
    }
  }

  // The request lives on a lease of its own: if this command dies, it goes.
  const ttl = Math.ceil(o.timeoutMs / 1000) + 10;
  const grant = await client.leaseClient.leaseGrant({ TTL: ttl }, within(RPC_MS));
  if (grant.error) throw new Error(`granting an etcd lease of ${ttl} s: ${grant.error}`);
  const leaseId = grant.ID;
  try {
    const key = handoverKey(prefix, o.vip);
    const at = new Date(a.now()).toISOString();
    const value = encodeHandover({ to: target.node, toRevision: target.createRevision, by: a.by, at });
    const put = await client.kv.txn({
      compare: [{ key: Buffer.from(key), target: "Create", result: "Equal", create_revision: "0" }],
      success: [{ request_put: { key: Buffer.from(key), value: Buffer.from(value), lease: leaseId } }],
      failure: [],
    }, within(RPC_MS));
    if (!put.succeeded) {
      a.err(`a hand-over of ${o.vip} was asked for by someone else a moment ago: wait for it to finish`);
      return "refused";
    }
    const t0 = performance.now();
    const end = t0 + o.timeoutMs;
    for (;;) {
      const now = await readView(client, prefix);
      const first = now.queue(o.vip)[0];
      if (first?.node === target.node && compareRevisions(first.createRevision, target.createRevision) === 0 && answering(now, o.vip).includes(target.node)) {
        a.out(`${o.vip}: handed over from ${head.node} to ${target.node} in ${Math.round(performance.now() - t0)} ms`);
        return "done";
      }
      if (performance.now() >= end) {
        a.err(`${o.vip}: the hand-over to ${target.node} did not complete within ${Math.round(o.timeoutMs / 1000)} s: ${stuck(now, o.vip, target)}`);
        return "failed";
      }
      await Bun.sleep(POLL_MS);
    }
  } finally {
    // Revoking deletes the request: the agents stop acting on it at once.
    await client.leaseClient.leaseRevoke({ ID: leaseId }, within(RPC_MS)).catch(() => {});
  }
}

/** Why a hand-over is not done: who stands in the way. */
function stuck(view: ClusterView, vip: string, target: { node: string; createRevision: string }): string {
  const queue = view.queue(vip);
  const at = queue.findIndex((c) => c.node === target.node && c.createRevision === target.createRevision);
  if (at < 0) return `${target.node} left the queue meanwhile (it stopped, was drained, or stood down)`;
  if (at === 0) return `${target.node} is first in line but does not answer for it yet (its heartbeats do not claim it)`;
  // The holder steps back only once the target is directly behind it: while
  // others stand between, it waits for them by design and is not in the way.
  const ahead = (at === 1 ? queue.slice(0, 1) : queue.slice(1, at)).map((c) => c.node);
  return `${ahead.join(", ")} ${ahead.length === 1 ? "is" : "are"} still ahead of it in the queue and did not step back (not running, or cut off from etcd?)`;
}

/** Who is asking, for the record: the invoking user (through sudo, the real one) at this host. */
export function askerName(env: Record<string, string | undefined>, hostname: string, fallbackUser: () => string): string {
  const user = env.SUDO_USER || env.USER || env.LOGNAME || fallbackUser();
  return `${user}@${hostname}`;
}
