// Stall lines read back from vipd's JSON log, placed in time and picked per move.
import { expect, test } from "bun:test";
import { describeStallLine, longestStall, stallLines } from "./stall-lines.ts";

const LOG = [
  '{"time":"2026-12-06T15:27:27.262Z","level":"info","msg":"acquired VIP","vip":"192.0.2.128"}',
  '{"time":"2026-12-06T15:27:27.262Z","level":"warn","msg":"event loop stalled for 943 ms: neither on CPU (23 ms) nor waiting for one (8 ms) of the last 1943 ms: the process was stopped","stalledMs":943,"cause":"stopped","cpuMs":23,"waitMs":8,"windowMs":1943,"stalls":1,"agoMs":0}',
  "not json at all",
  '{"time":"2026-12-06T15:27:40.000Z","level":"warn","msg":"event loop stalled for 371 ms (the longest of 3 stalls over 100 ms since the last such line): on CPU 390 ms of the last 1371 ms, longest task \'slots update\' 371 ms (100 VIPs)","stalledMs":371,"cause":"cpu","task":"slots update","taskMs":371,"stalls":3,"agoMs":4000}',
].join("\n");

test("every stall line, placed when the timer saw it (a folded line's time less agoMs)", () => {
  const lines = stallLines("n2", LOG);
  expect(lines).toEqual([
    { node: "n2", seenAt: Date.parse("2026-12-06T15:27:27.262Z"), ms: 943, cause: "stopped", task: null, stalls: 1 },
    { node: "n2", seenAt: Date.parse("2026-12-06T15:27:36.000Z"), ms: 371, cause: "cpu", task: "slots update", stalls: 3 },
  ]);
});

test("the longest stall seen in a move's window, or until one tick after it", () => {
  const lines = stallLines("n2", LOG);
  const t = (s: string) => Date.parse(`2026-12-06T15:27:${s}Z`);
  expect(longestStall(lines, t("20.000"), t("30.000"))?.ms).toBe(943);
  expect(longestStall(lines, t("30.000"), t("35.500"))?.ms).toBe(371);
  expect(longestStall(lines, t("30.000"), t("34.000"))).toBeNull();
  expect(longestStall(lines, t("27.263"), t("45.000"))?.ms).toBe(371);
  expect(describeStallLine(longestStall(lines, t("30.000"), t("40.000")))).toBe("371 ms (n2, on CPU, 'slots update')");
  expect(describeStallLine(null)).toBe("none over 100 ms");
});
