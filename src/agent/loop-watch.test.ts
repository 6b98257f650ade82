// The event-loop watch on a fake clock: a gap between ticks longer than
// LOOP_STALL_MS is a stall, said in the log once and in /healthz until
// LOOP_STALL_MS after it ended.
import { expect, test } from "bun:test";
import type { Logger } from "../log.ts";
import { LOOP_STALL_MS, LOOP_TICK_MS, LoopWatch } from "./loop-watch.ts";

function setup() {
  let now = 1000;
  let tick: (() => void) | null = null;
  const warnings: string[] = [];
  const log: Logger = { error: () => {}, warn: (m) => void warnings.push(m), info: () => {}, debug: () => {} };
  const watch = new LoopWatch({
    clock: () => now,
    log,
    timers: {
      setInterval: (fn, ms) => {
        expect(ms).toBe(LOOP_TICK_MS);
        tick = fn;
        return 1;
      },
      clearInterval: () => void (tick = null),
    },
  });
  const advance = (ms: number, ticks = true) => {
    now += ms;
    if (ticks) tick?.();
  };
  return { watch, warnings, advance, ticking: () => tick !== null };
}

test("ticks on time: healthy, nothing said", () => {
  const t = setup();
  for (let i = 0; i < 5; i++) t.advance(LOOP_TICK_MS);
  expect(t.watch.problem()).toBe("");
  expect(t.warnings).toEqual([]);
});

test("while the timer is late past LOOP_STALL_MS the loop is stalled now", () => {
  const t = setup();
  t.advance(LOOP_STALL_MS + 500, false);
  expect(t.watch.problem()).toBe(`event loop stalled for ${LOOP_STALL_MS + 500} ms`);
});

test("a stall that ended is reported until LOOP_STALL_MS after its end, and logged once", () => {
  const t = setup();
  t.advance(5000);
  expect(t.warnings).toEqual(["event loop stalled for 5000 ms (process frozen, or starved of CPU)"]);
  t.advance(LOOP_TICK_MS);
  expect(t.watch.problem()).toBe(`event loop stalled for 5000 ms, until ${LOOP_TICK_MS} ms ago`);
  t.advance(LOOP_STALL_MS - LOOP_TICK_MS);
  expect(t.watch.problem()).toBe("");
  expect(t.warnings.length).toBe(1);
});

test("close stops the timer", () => {
  const t = setup();
  t.watch.close();
  expect(t.ticking()).toBe(false);
});
