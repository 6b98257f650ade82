// The event-loop watch on a fake clock and fake scheduler figures: a gap
// between ticks longer than LOOP_STALL_MS fails /healthz until LOOP_STALL_MS
// after it ended; any stall over STALL_LOG_MS, seen by a late tick or by a
// timed task, is logged with its cause, at most once every
// STALL_LOG_EVERY_MS with the others folded in.
import { expect, test } from "bun:test";
import type { Fields, Logger } from "../log.ts";
import { describeStall, LOOP_STALL_MS, LOOP_TICK_MS, LoopWatch, parseSchedstat, STALL_LOG_EVERY_MS, stallCause, threadSchedstat } from "./loop-watch.ts";

function setup(opts: { schedstat?: boolean } = {}) {
  let now = 1000;
  let tick: (() => void) | null = null;
  const thread = { cpuMs: 0, waitMs: 0 };
  const warnings: { msg: string; fields: Fields }[] = [];
  const stalls: number[] = [];
  const log: Logger = { error: () => {}, warn: (msg, fields = {}) => void warnings.push({ msg, fields }), info: () => {}, debug: () => {} };
  let closed = false;
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
    threadTimes: { read: () => (opts.schedstat === false ? null : { ...thread }), close: () => void (closed = true) },
    stalled: (ms) => void stalls.push(ms),
  });
  /** Time passes: `cpu` and `wait` of it the thread spent on a CPU and waiting for one; then the tick runs (unless ticks is false). */
  const advance = (ms: number, o: { cpu?: number; wait?: number; ticks?: boolean } = {}) => {
    now += ms;
    thread.cpuMs += o.cpu ?? 0;
    thread.waitMs += o.wait ?? 0;
    if (o.ticks !== false) tick?.();
  };
  /** A timed task that holds the (fake) loop for ms, all of it on a CPU. */
  const task = (name: string, ms: number, items?: string) =>
    watch.timed(name, () => {
      now += ms;
      thread.cpuMs += ms;
      return name;
    }, items);
  return { watch, warnings, stalls, advance, task, ticking: () => tick !== null, closed: () => closed, msgs: () => warnings.map((w) => w.msg) };
}

test("ticks on time: healthy, nothing said", () => {
  const t = setup();
  for (let i = 0; i < 5; i++) t.advance(LOOP_TICK_MS, { cpu: 5, wait: 1 });
  expect(t.watch.problem()).toBe("");
  expect(t.warnings).toEqual([]);
  expect(t.stalls).toEqual([]);
});

test("while the timer is late past LOOP_STALL_MS the loop is stalled now", () => {
  const t = setup();
  t.advance(LOOP_STALL_MS + 500, { ticks: false });
  expect(t.watch.problem()).toBe(`event loop stalled for ${LOOP_STALL_MS + 500} ms`);
});

test("a frozen process: /healthz until LOOP_STALL_MS after the stall; logged once, cause stopped", () => {
  const t = setup();
  t.advance(5000, { cpu: 3, wait: 1 });
  expect(t.msgs()).toEqual([
    "event loop stalled for 4000 ms: neither on CPU (3 ms) nor waiting for one (1 ms) of the last 5000 ms: the process was stopped or frozen (SIGSTOP, cgroup freezer) or blocked in a system call",
  ]);
  expect(t.warnings[0]!.fields).toMatchObject({ stalledMs: 4000, cause: "stopped", cpuMs: 3, waitMs: 1, windowMs: 5000, stalls: 1, agoMs: 0 });
  expect(t.stalls).toEqual([4000]);
  t.advance(LOOP_TICK_MS);
  expect(t.watch.problem()).toBe(`event loop stalled for 5000 ms, until ${LOOP_TICK_MS} ms ago`);
  t.advance(LOOP_STALL_MS - LOOP_TICK_MS);
  expect(t.watch.problem()).toBe("");
  expect(t.warnings.length).toBe(1);
});

test("a late tick under STALL_LOG_MS is jitter: nothing said", () => {
  const t = setup();
  t.advance(LOOP_TICK_MS + 100, { cpu: 90 });
  expect(t.warnings).toEqual([]);
});

test("a short stall the tick sees, below /healthz's rule: logged, /healthz stays healthy", () => {
  const t = setup();
  t.advance(LOOP_TICK_MS + 300, { wait: 280, cpu: 10 });
  expect(t.msgs()).toEqual(["event loop stalled for 300 ms: waiting for a CPU 280 ms of the last 1300 ms (starved by other processes), on CPU 10 ms, no timed task ran"]);
  expect(t.warnings[0]!.fields.cause).toBe("starved");
  expect(t.watch.problem()).toBe("");
});

test("a long timed task between ticks is a stall, named in the line with what it handled", () => {
  const t = setup();
  t.advance(300, { ticks: false });
  t.task("watch batch", 20, "40 events");
  t.task("slots update", 371, "100 VIPs");
  t.task("watch batch", 5);
  t.advance(LOOP_TICK_MS - 300 - 396, { cpu: 19 });
  expect(t.msgs()).toEqual(["event loop stalled for 371 ms: on CPU 415 ms of the last 1000 ms, longest task 'slots update' 371 ms (100 VIPs)"]);
  expect(t.warnings[0]!.fields).toMatchObject({ cause: "cpu", task: "slots update", taskMs: 371, items: "100 VIPs", stalledMs: 371 });
  // The record starts again at each tick.
  t.task("watch batch", 2);
  t.advance(LOOP_TICK_MS - 2);
  expect(t.warnings.length).toBe(1);
});

test("timed returns what the task returns, and keeps timing when it throws", () => {
  const t = setup();
  expect(t.task("reload", 1)).toBe("reload");
  expect(() => t.watch.timed("reload", () => {
    t.advance(250, { cpu: 250, ticks: false });
    throw new Error("boom");
  })).toThrow("boom");
  t.advance(LOOP_TICK_MS - 251);
  expect(t.warnings[0]!.fields).toMatchObject({ task: "reload", taskMs: 250 });
});

test("on a CPU without a task to show for it: the time went to untimed work", () => {
  const t = setup();
  t.task("watch batch", 3);
  t.advance(LOOP_TICK_MS + 400 - 3, { cpu: 380 });
  expect(t.msgs()).toEqual(["event loop stalled for 400 ms: on CPU 383 ms of the last 1400 ms, longest task 'watch batch' 3 ms (the rest: garbage collection or untimed work)"]);
});

test("a task and a late tick in one window are one stall, the longer of the two", () => {
  const t = setup();
  // The task runs across the tick's due time: the tick, 400 ms late, runs right after it.
  t.advance(900, { ticks: false });
  t.task("slots update", 500);
  t.advance(0);
  expect(t.stalls).toEqual([500]);
  expect(t.warnings.length).toBe(1);
});

test("rate-limited: one line every STALL_LOG_EVERY_MS, the stalls between folded into the next, the longest named", () => {
  const t = setup();
  t.advance(LOOP_TICK_MS + 200, { cpu: 190 });
  expect(t.warnings.length).toBe(1);
  // A starved machine: a stall at every tick for 8.7 s.
  for (let i = 0; i < 7; i++) t.advance(LOOP_TICK_MS + 150 + (i === 4 ? 600 : 0), { wait: 140 + (i === 4 ? 600 : 0) });
  expect(t.warnings.length).toBe(1);
  expect(t.stalls.length).toBe(8);
  // The first tick STALL_LOG_EVERY_MS after the last line says them all.
  let quiet = 0;
  while (t.warnings.length === 1) {
    t.advance(LOOP_TICK_MS);
    quiet += LOOP_TICK_MS;
    expect(quiet).toBeLessThanOrEqual(STALL_LOG_EVERY_MS);
  }
  const last = t.warnings[1]!;
  expect(last.msg).toStartWith("event loop stalled for 750 ms (the longest of 7 stalls over 100 ms since the last such line): waiting for a CPU 740 ms of the last 1750 ms");
  expect(last.fields).toMatchObject({ stalls: 7, stalledMs: 750, cause: "starved" });
  expect(Number(last.fields.agoMs)).toBeGreaterThan(0);
  // Quiet since: the next stall is said at once.
  for (let i = 0; i < 10; i++) t.advance(LOOP_TICK_MS);
  t.advance(LOOP_TICK_MS + 120, { cpu: 115 });
  expect(t.warnings.length).toBe(3);
  expect(t.warnings[2]!.fields.stalls).toBe(1);
});

test("close stops the timer, says a folded stall at once, and closes the figures", () => {
  const t = setup();
  t.advance(LOOP_TICK_MS + 200);
  t.advance(LOOP_TICK_MS + 300);
  expect(t.warnings.length).toBe(1);
  t.watch.close();
  expect(t.ticking()).toBe(false);
  expect(t.closed()).toBe(true);
  expect(t.warnings.length).toBe(2);
  expect(t.warnings[1]!.fields).toMatchObject({ stalledMs: 300, stalls: 1 });
});

test("without scheduler figures the cause is unknown, and the stall still logged", () => {
  const t = setup({ schedstat: false });
  t.task("reload", 150);
  t.advance(LOOP_TICK_MS - 150);
  expect(t.msgs()).toEqual(["event loop stalled for 150 ms: cause unknown (no scheduler statistics here), longest task 'reload' 150 ms"]);
  expect(t.warnings[0]!.fields).toMatchObject({ cause: "unknown", cpuMs: null, waitMs: null });
});

test("the cause: half the stall on a CPU or waiting for one, else stopped", () => {
  const s = (ms: number, cpuMs: number | null, waitMs: number | null) => ({ ms, windowMs: 1000 + ms, cpuMs, waitMs, task: null });
  expect(stallCause(s(400, 390, 5))).toBe("cpu");
  expect(stallCause(s(400, 150, 60))).toBe("cpu");
  expect(stallCause(s(400, 60, 150))).toBe("starved");
  expect(stallCause(s(400, 100, 90))).toBe("stopped");
  expect(stallCause(s(400, null, null))).toBe("unknown");
  expect(describeStall(s(400, 390, 5), 1, 0).fields.task).toBeUndefined();
});

test("schedstat: ns on CPU, ns waiting, timeslices; the real file of this thread reads and grows", () => {
  expect(parseSchedstat("46063028 88478484 22\n")).toEqual({ cpuMs: 46.063028, waitMs: 88.478484 });
  expect(parseSchedstat("")).toBeNull();
  const reader = threadSchedstat();
  try {
    const a = reader.read();
    expect(a).not.toBeNull();
    // Spinning: this thread's CPU time grows (slowly on a loaded machine, hence the 2 s).
    const until = performance.now() + 2000;
    let b = reader.read()!;
    while (performance.now() < until && b.cpuMs - a!.cpuMs <= 5) b = reader.read()!;
    expect(b.cpuMs - a!.cpuMs).toBeGreaterThan(5);
  } finally {
    reader.close();
  }
  expect(reader.read()).toBeNull();
});
