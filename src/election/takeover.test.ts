import { expect, test } from "bun:test";
import type { ICompare as Compare } from "etcd3";
import { takeoverBatches } from "./takeover.ts";
import { uniqueCompares } from "./transactions.ts";

const create = (key: string, rev: string): Compare => ({ key: Buffer.from(key), target: "Create", result: "Equal", create_revision: rev });
const mod = (key: string, rev: string): Compare => ({ key: Buffer.from(key), target: "Mod", result: "Equal", mod_revision: rev });

/** One VIP's takeover from one silent agent, as Session plans it. */
const plan = (i: number) => ({
  i,
  compare: [create("/v/agents/b", "7"), create(`/v/elections/10.0.0.${i}/b`, `${100 + i}`), mod("/v/heartbeats/a", "50"), create(`/v/elections/10.0.0.${i}/a`, `${i}`)],
  deletes: [Buffer.from(`/v/elections/10.0.0.${i}/a`)],
});

test("100 takeovers from one agent: two transactions, each within 128 comparisons, in order", () => {
  const batches = takeoverBatches(Array.from({ length: 100 }, (_, i) => plan(i)));
  // The agent record and the heartbeat are shared: 2 + 2 per VIP, so 63 fit.
  expect(batches.map((b) => b.length)).toEqual([63, 37]);
  expect(batches.flat().map((p) => p.i)).toEqual(Array.from({ length: 100 }, (_, i) => i));
  for (const b of batches) expect(uniqueCompares(b.flatMap((p) => p.compare)).length).toBeLessThanOrEqual(128);
});

test("deletions count against the limit too, with the heartbeat put", () => {
  // A VIP whose queue had 10 silent agents ahead deletes 10 keys.
  const wide = (i: number) => ({ i, compare: [create("/v/agents/b", "7")], deletes: Array.from({ length: 10 }, () => Buffer.from(`${i}`)) });
  const batches = takeoverBatches(Array.from({ length: 30 }, (_, i) => wide(i)));
  // 12 × 10 deletions + 1 put = 121 ≤ 128; a 13th would make 131.
  expect(batches.map((b) => b.length)).toEqual([12, 12, 6]);
});

test("a plan too large for one transaction still goes, alone; none is a batch of nothing", () => {
  const huge = { i: 0, compare: Array.from({ length: 200 }, (_, k) => create(`/k${k}`, "1")), deletes: [] };
  expect(takeoverBatches([plan(1), huge, plan(2)]).map((b) => b.map((p) => p.i))).toEqual([[1], [0], [2]]);
  expect(takeoverBatches([])).toEqual([]);
});

test("comparisons are the same only with the same key, target and revision", () => {
  expect(uniqueCompares([create("/a", "1"), create("/a", "1"), create("/a", "2"), mod("/a", "1")]).length).toBe(3);
});
