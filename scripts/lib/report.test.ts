// The benchmark's verdicts and its markdown, on hand-made trial results.
import { describe, expect, test } from "bun:test";
import type { FaultId } from "../../test/lab/faults.ts";
import type { ImplementationId } from "../../test/lab/implementations.ts";
import { aggregate, BEGIN, END, evaluateTargets, markdownReport, spliceBetweenMarkers } from "./report.ts";
import { timelineSvg } from "./timeline-svg.ts";
import type { TrialFailure, TrialResult } from "../../test/lab/trial.ts";

function trial(impl: ImplementationId, fault: FaultId, rep: number, over: Partial<TrialResult> = {}): TrialResult {
  return {
    impl, fault, rep, victim: "n1", detail: "", placement: null, t0: 0, inPlaceMs: 0, recoverAt: 15000, endAt: 19000,
    outageMs: 0, recoveryOutageMs: 0, newHolderMs: 100, newHolder: "n2", servedByOtherMs: 110,
    victimReleasedMs: 5, victimAddressGoneMs: 5, leftBehind: false, addressLeftBehind: false, victimWasEtcdLeader: false,
    moved: true, movedTo: ["n2"], overlapMs: 0, addressOverlapMs: 0, staleAnswers: 0, probes: 1900, probeErrors: {},
    recovery: { staleAnswers: 0, probeErrors: {}, holders: ["n2"], addressLeftOn: [], steady: true, steadyLaterMs: null },
    timings: {}, failure: null,
    timeline: { from: -1000, to: 19000, recoverAt: 15000, ownership: { n1: [{ start: -1000, end: 5 }], n2: [{ start: 100, end: 19000 }] },
      outages: [{ start: 0, end: 110 }], answers: [{ start: -1000, end: 0, node: "n1" }, { start: 110, end: 19000, node: "n2" }] },
    ...over,
  };
}

const budget = { releaseMs: 2550, serveP95Ms: 2800 };

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
  test("moves, recoveries, failed trials and the fault's timings are counted per row", () => {
    const failures: TrialFailure[] = [{ impl: "vipd", fault: "etcd-move-leader-to-holder", rep: 2, phase: "placement", message: "no steady holder" }];
    const rows = aggregate([
      trial("vipd", "etcd-move-leader-to-holder", 0, { moved: false, movedTo: [], timings: { "MoveLeader seen by all": 120 } }),
      trial("vipd", "etcd-move-leader-to-holder", 1, { moved: true, movedTo: ["n3"], timings: { "MoveLeader seen by all": 140 },
        recovery: { staleAnswers: 0, probeErrors: { ECONNREFUSED: 2 }, holders: [], addressLeftOn: ["n1"], steady: false, steadyLaterMs: null },
        probeErrors: { ECONNREFUSED: 2, EHOSTUNREACH: 1 }, failure: "no single steady holder" }),
    ], failures);
    expect(rows.length).toBe(1);
    const r = rows[0]!;
    expect([r.reps, r.moved, r.steadyAtEnd, r.failed, r.probeErrors]).toEqual([2, 1, 1, 2, 3]);
    expect(r.timings["MoveLeader seen by all"]!.median).toBe(130);
  });
  test("a fault that only failed to start still gets a row", () => {
    const rows = aggregate([], [{ impl: "keepalived", fault: "crash@leader", rep: 0, phase: "steady", message: "m" }]);
    expect(rows.map((r) => [r.impl, r.fault, r.reps, r.failed])).toEqual([["keepalived", "crash@leader", 0, 1]]);
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
  test("drain and hand-over: under 50 ms each", () => {
    const v = evaluateTargets([
      trial("vipd", "drain", 0, { outageMs: 20 }), trial("vipd", "drain", 1, { outageMs: 30 }),
      trial("vipd", "handover", 0, { outageMs: 45 }), trial("vipd", "handover", 1, { outageMs: 70 }), trial("vipd", "handover", 2, { outageMs: 60 }),
    ], budget);
    expect(v.filter((x) => x.target.startsWith("drain") || x.target.startsWith("handover")).map((x) => [x.target, x.pass])).toEqual([
      ["drain: client outage median < 50 ms", true],
      ["handover: client outage median < 50 ms", false],
    ]);
  });
  test("a VIP never released, or another node too slow at the p95, is a MISS", () => {
    const fast = [0, 1, 2].map((i) => trial("vipd", "crash@leader", i, { servedByOtherMs: 2500 }));
    const v = evaluateTargets([...fast, trial("vipd", "freeze@leader", 0, { victimReleasedMs: null, servedByOtherMs: 4500 })], budget);
    expect(v.find((x) => x.target.includes("raft leader on the holder's node"))!.pass).toBe(false);
    expect(v.find((x) => x.target.startsWith("the victim stops answering"))!.pass).toBe(false);
    const ok = evaluateTargets(fast, budget);
    expect(ok.find((x) => x.target.includes("raft leader on the holder's node"))).toEqual({
      target: "crash, freeze, link down, partition (raft leader on the holder's node): another node serves, p95 ≤ 2.80 s",
      pass: true, detail: "p95 2.50 s over 3 repetitions, median 2.50 s",
    });
    const never = evaluateTargets([...fast, trial("vipd", "partition@leader", 0, { servedByOtherMs: null })], budget);
    expect(never.find((x) => x.target.includes("raft leader on the holder's node"))!.detail).toContain("never served: partition@leader #1");
  });
  test("the victim's release is judged from the fault in place, not from the clock's start", () => {
    const fast = [0, 1, 2].map((i) => trial("vipd", "crash@leader", i, { servedByOtherMs: 2500 }));
    const release = (over: Partial<TrialResult>) =>
      evaluateTargets([...fast, trial("vipd", "partition@leader", 0, { servedByOtherMs: 2700, ...over })], budget).find((x) => x.target.startsWith("the victim stops answering"))!;
    // The partition's nft took 90 ms: a heartbeat sent meanwhile dated the proof.
    expect(release({ victimReleasedMs: 2637, inPlaceMs: 90 })).toMatchObject({ pass: true, detail: "latest 2.55 s" });
    expect(release({ victimReleasedMs: 2637, inPlaceMs: 80 })).toMatchObject({ pass: false, detail: "latest 2.56 s (or never)" });
  });
  test("any overlap in any repetition is a MISS that names it", () => {
    const v = evaluateTargets([trial("vipd", "partition", 0), trial("vipd", "partition", 1, { overlapMs: 3 })], budget);
    const o = v.find((x) => x.target.startsWith("overlap"))!;
    expect(o.pass).toBe(false);
    expect(o.detail).toContain("partition #2");
  });
  test("placed variants are judged by placement; against keepalived, fault by fault", () => {
    const v = evaluateTargets([trial("vipd", "crash@leader", 0), trial("vipd", "crash@follower", 0, { servedByOtherMs: 3000 })], budget);
    expect(v.filter((x) => x.target.includes("another node serves")).map((x) => x.pass)).toEqual([true, false]);
    const link = evaluateTargets([
      trial("vipd", "link-down@follower", 0, { outageMs: 3000 }), trial("keepalived", "link-down@follower", 0, { outageMs: 3100 }),
      trial("vipd", "link-down@leader", 0, { outageMs: 5000 }), trial("keepalived", "link-down@leader", 0, { outageMs: 3100 }),
    ], budget);
    expect(link.filter((x) => x.target.startsWith("link-down")).map((x) => [x.target.split(":")[0], x.pass])).toEqual([
      ["link-down@follower", true], ["link-down@leader", false],
    ]);
  });
  test("a VIP that moves under an etcd-only fault is a MISS that names where it went", () => {
    const v = evaluateTargets([
      trial("vipd", "etcd-leader-elsewhere", 0, { moved: false, movedTo: [] }),
      trial("vipd", "etcd-member-freeze", 0, { moved: true, movedTo: ["n3"] }),
    ], budget);
    const t = v.find((x) => x.target.includes("never moves"))!;
    expect(t.pass).toBe(false);
    expect(t.detail).toBe("etcd-member-freeze #1: to n3");
    const dark = evaluateTargets([trial("vipd", "same-node-name", 0, { moved: false, movedTo: [], outageMs: 12 })], budget);
    expect(dark.find((x) => x.target === "the same: client outage 0 ms")).toEqual({ target: "the same: client outage 0 ms", pass: false, detail: "same-node-name #1: 12 ms" });
  });
  test("a VIP left behind anywhere is a MISS", () => {
    const v = evaluateTargets([trial("vipd", "freeze@leader", 0, { leftBehind: true })], budget);
    expect(v.find((x) => x.target.startsWith("VIP left behind"))).toEqual({ target: "VIP left behind exactly 0 in every fault and repetition", pass: false, detail: "freeze@leader #1" });
  });
  test("failed trials, run or not started, are a MISS that names them", () => {
    const v = evaluateTargets([trial("vipd", "graceful", 0), trial("vipd", "graceful", 1, { failure: "x" })], budget,
      [{ impl: "vipd", fault: "crash@leader", rep: 0, phase: "steady", message: "m" }, { impl: "keepalived", fault: "crash@leader", rep: 0, phase: "steady", message: "m" }]);
    const t = v.find((x) => x.target.includes("steady"))!;
    expect(t).toEqual({ target: "every trial starts steady and recovers to one steady holder within its settle window", pass: false, detail: "not: graceful #2, crash@leader #1 (steady)" });
    expect(evaluateTargets([trial("vipd", "graceful", 0)], budget).find((x) => x.target.includes("steady"))!.pass).toBe(true);
    const slow = evaluateTargets([trial("vipd", "graceful", 0, {
      recovery: { staleAnswers: 0, probeErrors: {}, holders: ["n2"], addressLeftOn: [], steady: false, steadyLaterMs: 5230 } })], budget);
    expect(slow.find((x) => x.target.includes("steady"))!.detail).toBe("not: graceful #1 (steady only 5.23 s after recovery)");
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
  test("a named section has its own markers and leaves the full table alone", () => {
    const doc = `# Benchmarks\n\n${BEGIN}\nfull\n${END}\n`;
    const planned = { name: "planned", heading: "Planned moves" };
    const once = spliceBetweenMarkers(doc, "p1", planned);
    expect(once).toBe(`${doc}\n## Planned moves\n\n<!-- failover-planned:begin -->\np1\n<!-- failover-planned:end -->\n`);
    const twice = spliceBetweenMarkers(once, "p2", planned);
    expect(twice).toBe(once.replace("\np1\n", "\np2\n"));
    expect(spliceBetweenMarkers(twice, "full2")).toBe(twice.replace("\nfull\n", "\nfull2\n"));
  });
  test("the table has a row per implementation, the timeline link and the verdicts", () => {
    const results = [trial("vipd", "crash", 0), trial("keepalived", "crash", 0, { leftBehind: true, overlapMs: 11600 })];
    const md = markdownReport(results, { command: "npm run bench:failover", date: "d", machine: "m", implementations: { vipd: "x" } },
      evaluateTargets(results, budget), { crash: "docs/bench/failover-crash.svg" });
    expect(md).toContain("![timeline: crash](docs/bench/failover-crash.svg)");
    expect(md).toMatch(/\| keepalived \| 1 \| .* \| 0 ms \/ 0 ms \| .* \| 1\/1 \| 1\/1 \| 0 \|/);
    expect(md).toContain("**PASS** overlap exactly 0");
  });
  test("faults where the VIP must stay get their own table, moves in bold; failed trials are listed", () => {
    const results = [
      trial("vipd", "etcd-move-leader-off-holder", 0, { moved: true, movedTo: ["n2"], outageMs: 40, timings: { "MoveLeader seen by all": 130 } }),
      trial("keepalived", "etcd-move-leader-off-holder", 0, { moved: false, movedTo: [], failure: "no single steady holder 4000 ms after recovery" }),
    ];
    const failures: TrialFailure[] = [{ impl: "vipd", fault: "etcd-move-leader-off-holder", rep: 1, phase: "placement", message: "the VIP kept moving" }];
    const md = markdownReport(results, { command: "c", date: "d", machine: "m", implementations: {} }, [], {}, failures);
    expect(md).toContain("| implementation | reps | **VIP moved** | **client outage** median / max |");
    expect(md).toContain("| vipd | 1 | **1/1** | 40 ms / 40 ms | 0 ms / 0 ms | 0 ms (0 ms) | 0 | 0 | 1/1 | MoveLeader seen by all 130 ms | **1** |");
    expect(md).toContain("| keepalived | 1 | 0/1 |");
    expect(md).toContain("### Failed trials");
    expect(md).toContain("- vipd etcd-move-leader-off-holder #2: could not start (placement): the VIP kept moving");
    expect(md).toContain("- keepalived etcd-move-leader-off-holder #1 on n1: no single steady holder 4000 ms after recovery");
  });
  test("an address left behind but fenced is told apart from a VIP left behind", () => {
    const md = markdownReport([trial("vipd", "freeze@leader", 0, { addressLeftBehind: true, addressOverlapMs: 900 })],
      { command: "c", date: "d", machine: "m", implementations: {} }, [], {});
    expect(md).toContain("| 0 ms (0 ms); address, fenced: 900 ms | 0/1 | 0/1 (address, fenced: 1/1) | 0 | 1/1 | – | 0 |");
  });
});

test("the timeline picture has a bar per holding interval and the client's outages", () => {
  const svg = timelineSvg("crash", [{ title: "vipd", subtitle: "s", timeline: trial("vipd", "crash", 0).timeline }]);
  expect(svg.startsWith("<svg")).toBe(true);
  expect(svg.endsWith("</svg>")).toBe(true);
  expect(svg.match(/<title>n\d: /g)?.length).toBe(2);
  expect(svg).toContain("no answer: 110 ms");
  expect(svg).not.toContain("fenced");
});

test("an address present but fenced is drawn apart from holding, and the legend says so", () => {
  const tl = trial("vipd", "freeze@leader", 0).timeline;
  const svg = timelineSvg("freeze", [{ title: "vipd", subtitle: "s", timeline: { ...tl, fenced: { n1: [{ start: 5, end: 1200 }], n2: [] } } }]);
  expect(svg).toContain("<title>n1 fenced: address present, traffic dropped 5…1200 ms</title>");
  expect(svg).toContain("pale: address present but fenced");
  expect(svg.match(/<title>n\d: /g)?.length).toBe(2);
});

describe("etcd with and without pre-vote", () => {
  const off = { etcdPreVote: false };
  const after = (ms: number, node = "n2") => ({ etcdWriteOutage: { during: null, after: { node, ms, at: 15100 } } });
  const during = (ms: number) => ({ etcdWriteOutage: { during: { node: "n1", ms, at: 50 }, after: null } });

  test("a mode is its own row; results saved before the choice ran with pre-vote", () => {
    const rows = aggregate([
      trial("vipd", "link-down@leader", 0),
      trial("vipd", "link-down@leader", 0, off),
      trial("vipd", "link-down@leader", 1, { etcdPreVote: true }),
    ]);
    expect(rows.map((r) => [r.etcdPreVote, r.reps])).toEqual([[true, 2], [false, 1]]);
    const md = markdownReport([trial("vipd", "link-down@leader", 0, off)], { command: "c", date: "d", machine: "m", implementations: {} }, [], {});
    expect(md).toContain("| vipd, etcd without pre-vote | 1 |");
  });

  test("without pre-vote: dark time after a rejoin within max(0, U − (H − m − 250 ms)) + 100 ms of etcd's own outage", () => {
    const target = (rs: TrialResult[]) => evaluateTargets(rs, { ...budget, holdMs: 2500 }).find((v) => v.target.startsWith("etcd without pre-vote"))!;
    // U = 3.2 s: the bound is 3200 − 2200 + 100 = 1100 ms.
    expect(target([trial("vipd", "partition@leader", 0, { ...off, recoveryOutageMs: 1100, ...after(3200) })]).pass).toBe(true);
    const miss = target([trial("vipd", "partition@leader", 0, { ...off, recoveryOutageMs: 1101, ...after(3200) })]);
    expect(miss.pass).toBe(false);
    expect(miss.detail).toBe("partition@leader #1: dark 1.10 s, etcd took no write on n2 for 3.20 s (bound 1.10 s)");
    // The leader freeze is judged during the fault, on the holder: U under H − m − 250 ms allows 100 ms.
    expect(target([trial("vipd", "etcd-member-freeze@leader", 0, { ...off, outageMs: 100, ...during(1600) })]).pass).toBe(true);
    expect(target([trial("vipd", "etcd-member-freeze@leader", 0, { ...off, outageMs: 101, ...during(1600) })]).pass).toBe(false);
  });

  test("with pre-vote the same faults must cost nothing, and the other targets ignore the runs without it", () => {
    const v = evaluateTargets([
      trial("vipd", "link-down@follower", 0, { recoveryOutageMs: 0, ...after(40) }),
      trial("vipd", "link-down@follower", 0, { ...off, recoveryOutageMs: 0, overlapMs: 5, ...after(2000) }),
    ], { ...budget, holdMs: 2500 });
    expect(v.find((x) => x.target.startsWith("etcd with pre-vote"))!.pass).toBe(true);
    // The overlap target counts with-pre-vote runs only (the other run is judged by its own target).
    expect(v.find((x) => x.target.startsWith("overlap"))!.pass).toBe(true);
    const dark = evaluateTargets([trial("vipd", "partition@leader", 0, { recoveryOutageMs: 30, ...after(40) })], budget);
    expect(dark.find((x) => x.target.startsWith("etcd with pre-vote"))!.pass).toBe(false);
  });
});
