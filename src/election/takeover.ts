// Takeovers of several VIPs in one etcd transaction (design.md §3): what
// one VIP's takeover compares and deletes, and how a turn's worth of them is
// cut into transactions etcd accepts. Pure; the session sends them.
import type { ITxnRequest } from "etcd3";

export interface TakeoverAsk {
  readonly vip: string;
  readonly resolve: (r: { took: boolean; from: string[] }) => void;
  readonly reject: (err: unknown) => void;
}

export type Compare = NonNullable<ITxnRequest["compare"]>[number];

export interface TakeoverPlan {
  readonly vip: string;
  /** Our key's create revision, which the transaction proves. */
  readonly createRevision: string;
  /** The nodes ahead, whose keys it deletes. */
  readonly from: string[];
  readonly compare: Compare[];
  readonly deletes: Buffer[];
  readonly ask: TakeoverAsk;
}

/** etcd's default --max-txn-ops: the most comparisons, and the most operations, in one transaction. */
const MAX_TXN_OPS = 128;

/** The plans in order, cut where a transaction would exceed MAX_TXN_OPS (comparisons shared by plans count once). */
export function takeoverBatches<P extends { compare: Compare[]; deletes: unknown[] }>(plans: readonly P[]): P[][] {
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

/** Comparisons with the same key, target and value once. */
export function uniqueCompares(list: readonly Compare[]): Compare[] {
  const seen = new Set<string>();
  return list.filter((c) => {
    const id = `${Buffer.from(c.key as Buffer).toString("hex")} ${c.target} ${c.result} ${c.create_revision ?? ""} ${c.mod_revision ?? ""}`;
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}
