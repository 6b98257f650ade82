// The benchmark's verdicts and its markdown, on hand-made trial results.
import { describe, expect, test } from "bun:test";
import type { FaultId } from "./faults.ts";
import type { ImplementationId } from "./implementations.ts";
import { aggregate, BEGIN, END, evaluateTargets, markdownReport, spliceBetweenMarkers } from "./report.ts";
import { timelineSvg } from "./timeline-svg.ts";
import type { TrialResult } from "./trial.ts";

function trial(impl: ImplementationId, fault: FaultId, rep: number, over: Partial<TrialResult> = {}): TrialResult {
  return {
    impl, fault, rep, victim: "n1", detail: "", t0: 0, recoverAt: 15000, endAt: 19000,
    outageMs: 0, recoveryOutageMs: 0, newHolderMs: 100, newHolder: "n2", servedByOtherMs: 110,
    victimReleasedMs: 5, leftBehind: false, victimWasEtcdLeader: false, overlapMs: 0, staleAnswers: 0, probes: 1900,
    timeline: { from: -1000, to: 19000, recoverAt: 15000, ownership: { n1: [{ start: -1000, end: 5 }], n2: [{ start: 100, end: 19000 }] },
      outages: [{ start: 0, end: 110 }], answers: [{ start: -1000, end: 0, node: "n1" }, { start: 110, end: 19000, node: "n2" }] },
    ...over,
  };
}

const budget = { ttlMs: 3000, fenceMs: 4000 };

describe("aggregate", () => {
  test("one row per implementation and fault, with counts", () => {
    const rows = aggregate([
      trial("keepalived", "crash", 0, { leftBehind: true, overlapMs: 11000 }),
      trial("keepalived", "crash", 1, { leftBehind: true, overlapMs: 12000 }),
      trial("vipd", "crash", 0, { newHolderMs: null }),
    ]);
    expect(rows.length).toBe(2);
    const k = rows.find((r) => r.impl === "keepalived")!;
    expect([k.reps, k.leftBehind, k.repsWithOverlap, k.overlapTotalMs, k.overlapMaxMs]).toEqual([2, 2, 2, 23000, 12000]);
    expect(rows.find((r) => r.impl === "vipd")!.noNewHolder).toBe(1);
  });
});

describe("targets", () => {
  test("graceful: under 50 ms and at least 10× shorter than keepalived", () => {
    const v = evaluateTargets([
      trial("vipd", "graceful", 0, { outageMs: 20 }), trial("vipd", "graceful", 1, { outageMs: 40 }),
      trial("keepalived", "graceful", 0, { outageMs: 600 }),
    ], budget);
    expect(v.filter((x) => x.target.startsWith("graceful")).map((x) => x.pass)).toEqual([true, true]);
    const slow = evaluateTargets([trial("vipd", "graceful", 0, { outageMs: 80 }), trial("keepalived", "graceful", 0, { outageMs: 600 })], budget);
    expect(slow.filter((x) => x.target.startsWith("graceful")).map((x) => x.pass)).toEqual([false, false]);
  });
  test("crash: a VIP never released or another node too slow is a MISS", () => {
    const v = evaluateTargets([trial("vipd", "crash", 0, { victimReleasedMs: null, servedByOtherMs: 4500 })], budget);
    expect(v.filter((x) => x.target.startsWith("crash")).map((x) => x.pass)).toEqual([false, false]);
  });
  test("any overlap in any repetition is a MISS that names it", () => {
    const v = evaluateTargets([trial("vipd", "partition", 0), trial("vipd", "partition", 1, { overlapMs: 3 })], budget);
    const o = v.find((x) => x.target.startsWith("overlap"))!;
    expect(o.pass).toBe(false);
    expect(o.detail).toContain("partition #2");
  });
  test("without vipd in the run nothing passes", () => {
    expect(evaluateTargets([trial("keepalived", "graceful", 0)], budget)).toEqual([{ target: "vipd measured", pass: false, detail: "vipd was not part of this run" }]);
  });
});

describe("BENCHMARKS.md", () => {
  test("the section between the markers is replaced, the rest kept", () => {
    const doc = `# Benchmarks\n\nintro\n\n${BEGIN}\nold\n${END}\n\nafter\n`;
    const out = spliceBetweenMarkers(doc, "new");
    expect(out).toBe(`# Benchmarks\n\nintro\n\n${BEGIN}\nnew\n${END}\n\nafter\n`);
  });
  test("a document without markers gets a section appended", () => {
    expect(spliceBetweenMarkers("# Benchmarks\n", "t")).toBe(`# Benchmarks\n\n## Failover\n\n${BEGIN}\nt\n${END}\n`);
  });
  test("the table has a row per implementation, the timeline link and the verdicts", () => {
    const results = [trial("vipd", "crash", 0), trial("keepalived", "crash", 0, { leftBehind: true, overlapMs: 11600 })];
    const md = markdownReport(results, { command: "npm run bench:failover", date: "d", machine: "m", implementations: { vipd: "x" } },
      evaluateTargets(results, budget), { crash: "docs/bench/failover-crash.svg" });
    expect(md).toContain("![timeline: crash](docs/bench/failover-crash.svg)");
    expect(md).toMatch(/\| keepalived \| 1 \| .* \| 0 ms \/ 0 ms \| .* \| 1\/1 \| 1\/1 \| 0 \|/);
    expect(md).toContain("**PASS** overlap exactly 0");
  });
});

test("the timeline picture has a bar per holding interval and the client's outages", () => {
  const svg = timelineSvg("crash", [{ title: "vipd", subtitle: "s", timeline: trial("vipd", "crash", 0).timeline }]);
  expect(svg.startsWith("<svg")).toBe(true);
  expect(svg.endsWith("</svg>")).toBe(true);
  expect(svg.match(/<title>n\d: /g)?.length).toBe(2);
  expect(svg).toContain("no answer: 110 ms");
});
