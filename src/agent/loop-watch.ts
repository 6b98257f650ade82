// Whether the event loop stalls, and why. Nothing runs while it stalls, so
// proofs may run out and VIPs move meanwhile; the fence kept that safe, and
// /healthz says so for a stall over LOOP_STALL_MS.
//
// The health server runs on the same loop, so a probe gets no answer while
// the stall lasts (its timeout is what catches it); requests answered once
// the loop runs again, for LOOP_STALL_MS after the stall, hear of it,
// whether the runtime serves them before or after this timer catches up.
//
// Any stall over STALL_LOG_MS is logged, with its cause where it can be
// told. Two things see a stall, and neither adds a wakeup to the 1 s tick:
// - the tick itself, when it runs late: the part of a stall after the tick
//   was due (a stall that starts and ends between two ticks is not seen);
// - the agent's big synchronous tasks (a watch batch, the slots' update, a
//   reload), which report through timed(): two clock reads each, and the
//   longest since the last tick is kept. A task over STALL_LOG_MS is a stall.
// At each tick the main thread's scheduler statistics (schedstat: time on a
// CPU, time waiting on a run queue) over the tick's window tell how the gap
// was spent: mostly on a CPU is vipd's own work (the longest task names it);
// mostly waiting is a machine starved by other processes; neither is a
// process stopped (SIGSTOP, a cgroup freezer) or blocked in a system call.
// Stalls are logged at most once every STALL_LOG_EVERY_MS, the later ones
// folded into the next line (the longest of them, and how many), so that a
// starved machine does not flood the journal; every one is counted in the
// metrics.
import { closeSync, openSync, readSync } from "node:fs";
import type { Fields, Logger } from "../log.ts";
import { type Clock, type Intervals, realTimers, type Timed } from "../seams.ts";

export const LOOP_TICK_MS = 1000;
/** /healthz fails for a gap between ticks over this, and for as long after it. */
export const LOOP_STALL_MS = 2000;
/** A stall over this is logged: the loop held that long delays every timer and every answer. */
export const STALL_LOG_MS = 100;
/** At most one stall line this often; the stalls between are folded into the next. */
export const STALL_LOG_EVERY_MS = 10_000;

/** Time the main thread spent on a CPU and waiting for one, in ms since it started (null: not known here). */
export type ThreadTimes = () => { cpuMs: number; waitMs: number } | null;

/**
 * The calling thread's /proc/thread-self/schedstat: "ns on CPU, ns waiting on
 * a run queue, timeslices". Opened once (by the main thread, which it then
 * describes) and read again at offset 0; null where the kernel has no
 * schedstat (CONFIG_SCHED_INFO off) or /proc is not mounted.
 */
export function threadSchedstat(): { read: ThreadTimes; close: () => void } {
  let fd: number | null;
  try {
    fd = openSync("/proc/thread-self/schedstat", "r");
  } catch {
    fd = null;
  }
  const buf = Buffer.alloc(96);
  return {
    read: () => {
      if (fd === null) return null;
      try {
        return parseSchedstat(buf.toString("latin1", 0, readSync(fd, buf, 0, buf.length, 0)));
      } catch {
        return null;
      }
    },
    close: () => {
      if (fd !== null) closeSync(fd);
      fd = null;
    },
  };
}

export function parseSchedstat(text: string): { cpuMs: number; waitMs: number } | null {
  const m = /^(\d+) (\d+) \d+/.exec(text);
  return m ? { cpuMs: Number(m[1]) / 1e6, waitMs: Number(m[2]) / 1e6 } : null;
}

/** One stall: how long, the scheduler's figures over the tick window it fell in, and the longest timed task. */
export interface Stall {
  ms: number;
  windowMs: number;
  cpuMs: number | null;
  waitMs: number | null;
  task: { name: string; ms: number; items: string | undefined } | null;
}

export type StallCause = "cpu" | "starved" | "stopped" | "unknown";

/**
 * What the thread did during the stall. The figures cover the whole tick
 * window, in which an idle agent spends little on a CPU or waiting: when
 * the two together fall short of half the stall, the thread was neither
 * running nor runnable for most of it.
 */
export function stallCause(s: Stall): StallCause {
  if (s.cpuMs === null || s.waitMs === null) return "unknown";
  if (s.cpuMs + s.waitMs < s.ms / 2) return "stopped";
  return s.cpuMs >= s.waitMs ? "cpu" : "starved";
}

const r = Math.round;

/** The log line for a stall (the longest of `count` since the last line, `agoMs` before it). */
export function describeStall(s: Stall, count: number, agoMs: number): { msg: string; fields: Fields } {
  const cause = stallCause(s);
  const t = s.task;
  const task = t ? `longest task '${t.name}' ${r(t.ms)} ms${t.items ? ` (${t.items})` : ""}` : "no timed task ran";
  const cpu = r(s.cpuMs ?? 0);
  const wait = r(s.waitMs ?? 0);
  // The figures cover the tick's whole window, which holds the stall.
  const of = `of the last ${r(s.windowMs)} ms`;
  const why = {
    cpu: `on CPU ${cpu} ms ${of}, ${task}${t && t.ms >= s.ms / 2 ? "" : " (the rest: garbage collection or untimed work)"}`,
    starved: `waiting for a CPU ${wait} ms ${of} (starved by other processes), on CPU ${cpu} ms, ${task}`,
    stopped: `neither on CPU (${cpu} ms) nor waiting for one (${wait} ms) ${of}: the process was stopped or frozen (SIGSTOP, cgroup freezer) or blocked in a system call`,
    unknown: `cause unknown (no scheduler statistics here), ${task}`,
  }[cause];
  const folded = count > 1 ? ` (the longest of ${count} stalls over ${STALL_LOG_MS} ms since the last such line)` : "";
  return {
    msg: `event loop stalled for ${r(s.ms)} ms${folded}: ${why}`,
    fields: {
      stalledMs: r(s.ms), cause, cpuMs: s.cpuMs === null ? null : cpu, waitMs: s.waitMs === null ? null : wait, windowMs: r(s.windowMs),
      task: t?.name, taskMs: t ? r(t.ms) : undefined, items: t?.items, stalls: count, agoMs: r(agoMs),
    },
  };
}

export interface LoopWatchDeps {
  clock: Clock;
  log: Logger;
  timers?: Intervals;
  /** The main thread's scheduler figures (default: its schedstat). */
  threadTimes?: { read: ThreadTimes; close: () => void };
  /** Every stall over STALL_LOG_MS, logged or folded: for the metrics. */
  stalled?: (ms: number) => void;
}

export class LoopWatch {
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #timers: Intervals;
  readonly #timer: unknown;
  readonly #thread: { read: ThreadTimes; close: () => void };
  readonly #stalled: (ms: number) => void;
  #at: number;
  #times: { cpuMs: number; waitMs: number } | null;
  /** The last stall over LOOP_STALL_MS: how long, and when it ended (/healthz). */
  #lastStall: { ms: number; endedAt: number } | null = null;
  /** The longest timed task since the last tick (kept in fields: timed() allocates nothing). */
  #taskName = "";
  #taskMs = 0;
  #taskItems: string | undefined = undefined;
  #lastLineAt = -Infinity;
  /** Stalls not logged yet, and the longest of them. */
  #folded = 0;
  #worst: { stall: Stall; at: number } | null = null;

  constructor(deps: LoopWatchDeps) {
    this.#clock = deps.clock;
    this.#log = deps.log;
    this.#timers = deps.timers ?? realTimers;
    this.#thread = deps.threadTimes ?? threadSchedstat();
    this.#stalled = deps.stalled ?? (() => {});
    this.#at = this.#clock();
    this.#times = this.#thread.read();
    this.#timer = this.#timers.setInterval(() => this.#tick(), LOOP_TICK_MS);
  }

  /** Runs a synchronous task of the agent's and keeps its duration if it is the longest since the last tick. */
  readonly timed: Timed = (task, fn, items) => {
    const t0 = this.#clock();
    try {
      return fn();
    } finally {
      const ms = this.#clock() - t0;
      if (ms > this.#taskMs) {
        this.#taskMs = ms;
        this.#taskName = task;
        this.#taskItems = items;
      }
    }
  };

  /** Why the loop is not healthy now ("" when it is): stalled at this moment, or until less than LOOP_STALL_MS ago. */
  problem(): string {
    const now = this.#clock();
    if (now - this.#at > LOOP_STALL_MS) return `event loop stalled for ${Math.round(now - this.#at)} ms`;
    const stall = this.#lastStall;
    if (stall && now - stall.endedAt < LOOP_STALL_MS) return `event loop stalled for ${stall.ms} ms, until ${Math.round(now - stall.endedAt)} ms ago`;
    return "";
  }

  /** Stops the timer; a stall still folded is logged now, whatever the rate. */
  close(): void {
    this.#timers.clearInterval(this.#timer);
    this.#flush(this.#clock(), true);
    this.#thread.close();
  }

  #tick(): void {
    const now = this.#clock();
    const gap = now - this.#at;
    this.#at = now;
    if (gap > LOOP_STALL_MS) this.#lastStall = { ms: Math.round(gap), endedAt: now };
    const before = this.#times;
    const times = this.#thread.read();
    this.#times = times;
    const ms = Math.max(gap - LOOP_TICK_MS, this.#taskMs);
    if (ms > STALL_LOG_MS) {
      const stall: Stall = {
        ms, windowMs: gap,
        cpuMs: before && times ? times.cpuMs - before.cpuMs : null,
        waitMs: before && times ? times.waitMs - before.waitMs : null,
        task: this.#taskMs > 0 ? { name: this.#taskName, ms: this.#taskMs, items: this.#taskItems } : null,
      };
      this.#stalled(ms);
      this.#folded++;
      if (!this.#worst || ms > this.#worst.stall.ms) this.#worst = { stall, at: now };
    }
    this.#taskMs = 0;
    this.#flush(now, false);
  }

  #flush(now: number, always: boolean): void {
    const worst = this.#worst;
    if (!worst || (!always && now - this.#lastLineAt < STALL_LOG_EVERY_MS)) return;
    const { msg, fields } = describeStall(worst.stall, this.#folded, now - worst.at);
    this.#log.warn(msg, fields);
    this.#lastLineAt = now;
    this.#folded = 0;
    this.#worst = null;
  }
}
