// The benchmark's arithmetic and parsing, on hand-made samples and intervals.
import { describe, expect, test } from "bun:test";
import { parseProbeLine } from "./prober.ts";
import { ownershipIntervals } from "./ownership.ts";
import {
  formatMs,
  holdersStarting,
  newHolderAt,
  outages,
  overlap,
  type ProbeSample,
  errorsWhileHeld,
  probeCoverage,
  probeErrors,
  probeTally,
  quantile,
  releasedAt,
  soleServer,
  staleAnswers,
  subtract,
  summarize,
  total,
} from "./stats.ts";
import { answerRuns } from "./trial.ts";

const ok = (t: number, node = "n1", d = t): ProbeSample => ({ t, d, ok: true, node });
const fail = (t: number, d = t + 300): ProbeSample => ({ t, d, ok: false, error: "timeout" });

describe("outages", () => {
  test("none when every probe succeeds", () => {
    expect(outages([ok(0), ok(10), ok(20)], 30)).toEqual([]);
  });
  test("a run of failures lasts from its first failure to the next success", () => {
    expect(outages([ok(0), fail(10), fail(20), fail(30), ok(40, "n2")], 100)).toEqual([{ start: 10, end: 40 }]);
  });
  test("a single failed probe is one probe interval", () => {
    expect(total(outages([ok(0), fail(10), ok(20)], 30))).toBe(10);
  });
  test("samples are ordered by start time, not by arrival", () => {
    // A slow failure that arrives after later successes must not split or extend a run.
    expect(outages([ok(0), ok(20), fail(10), ok(30)], 40)).toEqual([{ start: 10, end: 20 }]);
  });
  test("an outage ends when the first later probe got its answer, not when it was sent", () => {
    // Sent at 20 into an empty ARP entry, answered at 250 once a new holder announced itself.
    expect(outages([ok(0), fail(10), ok(20, "n2", 250), ok(30, "n2", 251)], 300)).toEqual([{ start: 10, end: 250 }]);
  });
  test("a run still failing at the end lasts until the end", () => {
    expect(outages([ok(0), fail(10), fail(20)], 50)).toEqual([{ start: 10, end: 50 }]);
  });
  test("several runs are reported separately", () => {
    expect(outages([fail(0), ok(10), fail(20), ok(50)], 60)).toEqual([{ start: 0, end: 10 }, { start: 20, end: 50 }]);
  });
});

describe("overlap", () => {
  test("a clean hand-over at one instant is no overlap", () => {
    expect(overlap([[{ start: 0, end: 100 }], [{ start: 100, end: 200 }]]).total).toBe(0);
  });
  test("two holders count exactly where both intervals cover", () => {
    const r = overlap(new Map([["n1", [{ start: 0, end: 100 }]], ["n2", [{ start: 60, end: 200 }]]]));
    expect(r).toEqual({ total: 40, intervals: [{ start: 60, end: 100 }] });
  });
  test("three holders are counted once, not twice", () => {
    const r = overlap([[{ start: 0, end: 100 }], [{ start: 10, end: 90 }], [{ start: 20, end: 80 }]]);
    expect(r.total).toBe(80);
  });
  test("separate stretches add up; empty and reversed intervals are ignored", () => {
    const r = overlap([[{ start: 0, end: 10 }, { start: 50, end: 70 }], [{ start: 5, end: 60 }, { start: 30, end: 30 }]]);
    expect(r.intervals).toEqual([{ start: 5, end: 10 }, { start: 50, end: 60 }]);
    expect(r.total).toBe(15);
  });
});

describe("ownership intervals from edges", () => {
  const edges = [
    { node: "n1", t: 0, wall: 0, held: true },
    { node: "n1", t: 100, wall: 0, held: false },
    { node: "n2", t: 90, wall: 0, held: true },
  ];
  test("edges fold into intervals per node; open ones end at `to`", () => {
    const m = ownershipIntervals(edges, ["n1", "n2", "n3"], 0, 200);
    expect(m.get("n1")).toEqual([{ start: 0, end: 100 }]);
    expect(m.get("n2")).toEqual([{ start: 90, end: 200 }]);
    expect(m.get("n3")).toEqual([]);
  });
  test("intervals are clipped to the window", () => {
    const m = ownershipIntervals(edges, ["n1", "n2"], 50, 95);
    expect(m.get("n1")).toEqual([{ start: 50, end: 95 }]);
    expect(m.get("n2")).toEqual([{ start: 90, end: 95 }]);
  });
  test("a repeated add (lifetime refresh) does not open a second interval", () => {
    const m = ownershipIntervals([...edges, { node: "n2", t: 150, wall: 0, held: true }], ["n2"], 0, 200);
    expect(m.get("n2")).toEqual([{ start: 90, end: 200 }]);
  });
});

describe("failover facts", () => {
  const perNode = new Map([
    ["n1", [{ start: -500, end: 40 }]],
    ["n2", [{ start: 1200, end: 5000 }]],
    ["n3", [{ start: -900, end: -800 }]],
  ]);
  test("the new holder is the first other node to add the VIP after the fault", () => {
    expect(newHolderAt(perNode, "n1", 0)).toEqual({ node: "n2", t: 1200 });
    expect(newHolderAt(perNode, "n2", 0)).toBeNull();
  });
  test("the victim's release is the end of the hold covering the fault", () => {
    expect(releasedAt(perNode.get("n1")!, 0, 5000)).toBe(40);
    expect(releasedAt([{ start: -500, end: 5000 }], 0, 5000)).toBeNull();
    expect(releasedAt([], 0, 5000)).toBe(0);
  });
  test("a stale answer comes from a node holding no VIP during the probe", () => {
    const samples = [ok(30, "n1", 35), ok(60, "n1", 62), ok(1300, "n2"), fail(100)];
    expect(staleAnswers(samples, perNode)).toBe(1);
    // An answer 3 ms before the recorder stamped the add is polling jitter, not a stale answer.
    expect(staleAnswers([ok(1197, "n2", 1198)], perNode)).toBe(0);
    expect(staleAnswers([ok(1180, "n2", 1190)], perNode)).toBe(1);
  });
  test("the VIP moved to every other node that started holding it in the window, in order", () => {
    const m = new Map([
      ["n1", [{ start: -500, end: 40 }, { start: 6000, end: 9000 }]],
      ["n2", [{ start: 1200, end: 5000 }]],
      ["n3", [{ start: -900, end: 10 }, { start: 800, end: 900 }]],
    ]);
    expect(holdersStarting(m, "n1", 0, 9000)).toEqual(["n3", "n2"]);
    // A hold that began before the window (clipped to its start) is no move.
    expect(holdersStarting(new Map([["n2", [{ start: 0, end: 50 }]]]), "n1", 1, 100)).toEqual([]);
    expect(holdersStarting(m, "n2", 0, 9000)).toEqual(["n3", "n1"]);
  });
  test("subtracting intervals leaves what the second list does not cover", () => {
    expect(subtract([{ start: 0, end: 100 }], [{ start: 10, end: 20 }, { start: 90, end: 120 }])).toEqual([{ start: 0, end: 10 }, { start: 20, end: 90 }]);
    expect(subtract([{ start: 0, end: 100 }], [{ start: 0, end: 100 }])).toEqual([]);
    expect(subtract([{ start: 0, end: 10 }, { start: 50, end: 60 }], [])).toEqual([{ start: 0, end: 10 }, { start: 50, end: 60 }]);
  });
  test("probe errors leave timeouts out and count the rest by error", () => {
    const samples: ProbeSample[] = [fail(0), { t: 10, d: 11, ok: false, error: "ECONNREFUSED" }, { t: 20, d: 21, ok: false, error: "ECONNREFUSED" },
      { t: 30, d: 31, ok: false, error: "HTTP 500" }, ok(40)];
    expect(probeErrors(samples)).toEqual({ ECONNREFUSED: 2, "HTTP 500": 1 });
    expect(probeTally(samples)).toBe("timeout ×1, ECONNREFUSED ×2, HTTP 500 ×1, answered by n1 ×1");
    expect(probeTally([])).toBe("no probes");
  });
  test("a sole server answered every probe of the window, and enough of them", () => {
    const run = Array.from({ length: 10 }, (_, i) => ok(i * 10, "n2"));
    expect(soleServer(run, 0, 100, 10)).toBe("n2");
    expect(soleServer(run, 0, 100, 11)).toBeNull();
    expect(soleServer([...run, ok(55, "n3")], 0, 100, 10)).toBeNull();
    expect(soleServer([...run, fail(55)], 0, 100, 10)).toBeNull();
    // Probes outside the window do not count either way.
    expect(soleServer([fail(-5), ...run, ok(100, "n3")], 0, 100, 10)).toBe("n2");
  });
  test("answer runs group consecutive successes by node", () => {
    const runs = answerRuns([ok(0, "n1", 1), ok(10, "n1", 11), fail(20), ok(30, "n2", 31), ok(40, "n3", 41)]);
    expect(runs).toEqual([
      { start: 0, end: 11, node: "n1" },
      { start: 30, end: 31, node: "n2" },
      { start: 40, end: 41, node: "n3" },
    ]);
  });
});

describe("summaries", () => {
  test("median, p95 and max interpolate between ranks and skip nulls", () => {
    const s = summarize([10, null, 30, 20, 40, 50]);
    expect(s).toEqual({ n: 5, median: 30, p95: 48, max: 50 });
  });
  test("an empty sample has no statistics", () => {
    expect(summarize([null])).toEqual({ n: 0, median: null, p95: null, max: null });
    expect(quantile([], 0.5)).toBeNull();
  });
  test("durations print in ms below a second and in seconds above", () => {
    expect(formatMs(12.4)).toBe("12 ms");
    expect(formatMs(3300)).toBe("3.30 s");
    expect(formatMs(null)).toBe("–");
    expect(formatMs(0.2)).toBe("<1 ms");
  });
});

describe("probe lines", () => {
  test("successes and failures parse", () => {
    expect(parseProbeLine('{"t":1,"d":2,"ok":true,"node":"n1"}')).toEqual({ t: 1, d: 2, ok: true, node: "n1" });
    expect(parseProbeLine('{"t":1,"d":2,"ok":false,"error":"timeout"}')).toEqual({ t: 1, d: 2, ok: false, error: "timeout" });
  });
  test("broken lines are errors that say what is wrong", () => {
    expect(String(parseProbeLine("{nope"))).toContain("not JSON");
    expect(String(parseProbeLine('{"t":"1","d":2,"ok":true}'))).toContain("numbers t and d");
    expect(String(parseProbeLine('{"t":1,"d":2,"ok":true}'))).toContain("without a node");
  });
});

describe("probe errors and coverage", () => {
  const err = (t: number, d: number, error: string): ProbeSample => ({ t, d, ok: false, error });
  test("an error while one node held the VIP throughout counts; one while nobody did, or a timeout, does not", () => {
    const perNode = new Map([["n1", [{ start: 0, end: 1000 }]], ["n2", [{ start: 3000, end: 5000 }]]]);
    const samples = [
      err(100, 110, "ECONNREFUSED"),
      err(200, 500, "timeout"),
      // The holder let go during the probe: the move's, not the holder's.
      err(990, 1010, "ECONNREFUSED"),
      err(2000, 2001, "EHOSTUNREACH"),
      err(4000, 4002, "HTTP 500"),
      ok(4100, "n2"),
    ];
    expect(errorsWhileHeld(samples, perNode)).toEqual({ ECONNREFUSED: 1, "HTTP 500": 1 });
    expect(errorsWhileHeld([], perNode)).toEqual({});
  });
  test("coverage: the probes started in the window and the longest stretch without one, edges included", () => {
    expect(probeCoverage([ok(5), ok(15), ok(60), ok(200)], 0, 100)).toEqual({ probes: 3, longestGapMs: 45 });
    expect(probeCoverage([], 0, 100)).toEqual({ probes: 0, longestGapMs: 100 });
    expect(probeCoverage([ok(10), ok(20)], 0, 100)).toEqual({ probes: 2, longestGapMs: 80 });
  });
});
