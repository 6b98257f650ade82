// One runtime timer for every repeating task of the same period. The loop
// watch's tick and the fence read-back each ran on a 1 s interval of its
// own, out of phase with the other: two wakeups a second of an idle agent
// where one does (BENCHMARKS.md, "Idle cost", counts an idle standby's
// wakeups by source). Each task still runs once a period; one that joins a
// period already ticking first runs at its next tick, so sooner than a
// whole period after it joined, never later.
import { type Intervals, realTimers } from "./seams.ts";

interface Task {
  readonly fn: () => void;
  readonly ms: number;
}

interface Period {
  readonly handle: unknown;
  readonly tasks: Set<Task>;
}

/** As if the task had had a timer of its own: its error goes uncaught. */
const uncaught = (err: unknown) =>
  queueMicrotask(() => {
    throw err;
  });

export class SharedIntervals implements Intervals {
  readonly #timers: Intervals;
  readonly #thrown: (err: unknown) => void;
  readonly #periods = new Map<number, Period>();

  /** `thrown` gets what a task throws (default: thrown again, uncaught, once the tick is over). */
  constructor(timers: Intervals = realTimers, thrown: (err: unknown) => void = uncaught) {
    this.#timers = timers;
    this.#thrown = thrown;
  }

  /** Runtime timers running now: one per period with a task. */
  get timers(): number {
    return this.#periods.size;
  }

  setInterval(fn: () => void, ms: number): unknown {
    const task: Task = { fn, ms };
    let period = this.#periods.get(ms);
    if (!period) {
      const tasks = new Set<Task>();
      period = { tasks, handle: this.#timers.setInterval(() => this.#run(tasks), ms) };
      this.#periods.set(ms, period);
    }
    period.tasks.add(task);
    return task;
  }

  clearInterval(handle: unknown): void {
    const task = handle as Task | null;
    if (!task) return;
    const period = this.#periods.get(task.ms);
    if (!period?.tasks.delete(task)) return;
    if (period.tasks.size > 0) return;
    this.#timers.clearInterval(period.handle);
    this.#periods.delete(task.ms);
  }

  #run(tasks: Set<Task>): void {
    for (const task of [...tasks]) {
      // One task may have stopped another earlier in this tick.
      if (!tasks.has(task)) continue;
      try {
        task.fn();
      } catch (err) {
        // The tasks after it still run.
        this.#thrown(err);
      }
    }
  }
}
