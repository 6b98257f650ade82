// Takeovers (design.md §3): when a queued agent may take a VIP from the
// agents ahead of it, and how a turn's worth of takeovers is cut into
// transactions etcd accepts. What each compares and deletes is built in
// transactions.ts. Pure; the queue writer sends them.
import type { ICompare } from "etcd3";
import { TAKEOVER_STAGGER_MS } from "./proof.ts";
import { type Self, type TakeoverTerms, uniqueCompares } from "./transactions.ts";
import type { ClusterView } from "./view.ts";

/**
 * When `me` may try to take the VIP from the agents ahead of it, on this
 * agent's clock: each must have been silent for its window since this view
 * last heard it (invariant I3, with its own hold time: I8), and ranks after
 * the first wait a stagger more, so that the next in line normally takes
 * over alone. An agent never heard counts from when this view could first
 * have heard it: its key's first sighting, or the view's first full read.
 * Null: not queued, or already first.
 */
export function takeoverAt(view: ClusterView, me: Pick<Self, "node" | "run">, vip: string, now: number): number | null {
  return silenceAhead(view, me, vip, now)?.takeoverAt ?? null;
}

/** The takeover's moment, and the agent ahead whose silence it waits for longest (the last to fall silent), with its deadline. */
export interface SilenceAhead {
  readonly takeoverAt: number;
  readonly node: string;
  readonly silentAfter: number;
}

/** takeoverAt, with the agent it waits on: a heartbeat of that agent moves the moment, one of another agent ahead may not. Null: not queued, or first. */
export function silenceAhead(view: ClusterView, me: Pick<Self, "node" | "run">, vip: string, now: number): SilenceAhead | null {
  const q = view.queue(vip);
  const rank = q.findIndex((c) => c.node === me.node && c.run === me.run);
  if (rank <= 0) return null;
  const synced = view.syncedAt ?? now;
  let at = -Infinity;
  let node = q[0]!.node;
  for (let i = 0; i < rank; i++) {
    const c = q[i]!;
    const until = view.silentAfter(c.node, Math.max(synced, c.firstSeenAt));
    if (until > at) {
      at = until;
      node = c.node;
    }
  }
  return { takeoverAt: at + (rank - 1) * TAKEOVER_STAGGER_MS, node, silentAfter: at };
}

export interface TakeoverAsk {
  readonly vip: string;
  readonly resolve: (r: { took: boolean; from: string[] }) => void;
  readonly reject: (err: unknown) => void;
}

export interface TakeoverPlan extends TakeoverTerms {
  readonly ask: TakeoverAsk;
}

/** etcd's default --max-txn-ops: the most comparisons, and the most operations, in one transaction. */
const MAX_TXN_OPS = 128;

/** The plans in order, cut where a transaction would exceed MAX_TXN_OPS (comparisons shared by plans count once). */
export function takeoverBatches<P extends { compare: ICompare[]; deletes: unknown[] }>(plans: readonly P[]): P[][] {
  const out: P[][] = [];
  let batch: P[] = [];
  for (const p of plans) {
    const next = [...batch, p];
    const compares = uniqueCompares(next.flatMap((b) => b.compare)).length;
    const ops = next.reduce((n, b) => n + b.deletes.length, 1);
    if (batch.length > 0 && (compares > MAX_TXN_OPS || ops > MAX_TXN_OPS)) {
      out.push(batch);
      batch = [p];
    } else {
      batch = next;
    }
  }
  if (batch.length) out.push(batch);
  return out;
}
