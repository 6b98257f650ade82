// The etcd write outage from an independent writer's answers (etcd-writer.ts).
import { expect, test } from "bun:test";
import { longestWriteOutage, parseWriteLine, type WriteSample } from "./etcd-writer.ts";

/** Puts every 50 ms from `from`, answered 2 ms later, except those sent in [gapFrom, gapTo), all answered (or failed) at gapTo − 20. */
function puts(from: number, to: number, gap: [number, number], failedInGap = false): WriteSample[] {
  const out: WriteSample[] = [];
  for (let t = from; t < to; t += 50) {
    const inGap = t >= gap[0] && t < gap[1];
    out.push({ t, d: inGap ? gap[1] - 20 : t + 2, ok: !(inGap && failedInGap) });
  }
  return out;
}

test("the longest stretch between two committed puts, by when etcd answered", () => {
  // Puts sent in [1000, 3000) all land at 2980 (etcd runs again): the last before was answered at 952.
  expect(longestWriteOutage(puts(0, 6000, [1000, 3000]), 0, 6000)).toEqual({ ms: 2028, at: 952 });
});

test("failed puts count as nothing written", () => {
  // Those in the gap failed; the first after it (sent at 3000) commits at 3002.
  expect(longestWriteOutage(puts(0, 6000, [1000, 3000], true), 0, 6000)).toEqual({ ms: 2050, at: 952 });
});

test("an outage runs to the window's edges; no puts at all is the whole window", () => {
  expect(longestWriteOutage(puts(0, 6000, [4000, 7000]), 0, 5000)).toEqual({ ms: 5000 - 3952, at: 3952 });
  expect(longestWriteOutage([], 100, 400)).toEqual({ ms: 300, at: 100 });
  // Writing steadily: the cadence and no more.
  expect(longestWriteOutage(puts(0, 6000, [9000, 9000]), 1000, 5000).ms).toBe(50);
});

test("the worker's lines, and nothing else", () => {
  expect(parseWriteLine('{"t":1,"d":2,"ok":true}')).toEqual({ t: 1, d: 2, ok: true });
  expect(parseWriteLine('{"t":1,"d":2,"ok":false,"error":"etcdserver: no leader"}')).toEqual({ t: 1, d: 2, ok: false });
  for (const bad of ["", "x", "{}", '{"t":"1","d":2,"ok":true}', "null"]) expect(parseWriteLine(bad)).toBeNull();
});
