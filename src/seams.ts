// The seams every stateful part of vipd takes time and events through: the
// clock, timers and a typed emitter. Declared once, below everything else,
// so that the kernel, the election, the gate, the controllers and the agent
// share one meaning of "now" and one shape of fake in their tests: an
// injectable clock is what lets the fence arithmetic be tested exactly.

/** Milliseconds on a monotonic clock. Every time vipd measures is on one (design.md §3). */
export type Clock = () => number;

/** The process's monotonic clock, in milliseconds. */
export const monotonicClock: Clock = () => performance.now();

/** One-shot timers; a fake runs them when its test advances time. */
export interface Timeouts {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Repeating timers. */
export interface Intervals {
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

export type Timers = Timeouts & Intervals;

/** The runtime's own timers. */
export const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (h) => clearInterval(h as ReturnType<typeof setInterval>),
};

/**
 * Runs a synchronous task of the agent's and measures how long it held the
 * event loop (agent/loop-watch.ts names the longest in a stall's log line);
 * `items` says how much it handled ("100 VIPs"). Two clock reads a task.
 */
export type Timed = <T>(task: string, fn: () => T, items?: string) => T;

/** No measuring: the default where nobody watches the loop (tests, the CLI). */
export const untimed: Timed = (_task, fn) => fn();

type Listener<P> = (payload: P) => void;

/**
 * A tiny typed event emitter: one payload per event name. Listener errors
 * are reported on the console and never break the loop that emitted the
 * event: a buggy logger must not stop a keepalive loop.
 */
export class Emitter<Events extends Record<string, unknown>> {
  readonly #listeners = new Map<keyof Events, Set<Listener<never>>>();

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof Events>(event: K, fn: Listener<Events[K]>): () => void {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    set.add(fn as Listener<never>);
    return () => set.delete(fn as Listener<never>);
  }

  protected emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    for (const fn of this.#listeners.get(event) ?? []) {
      try {
        (fn as Listener<Events[K]>)(payload);
      } catch (e) {
        console.error(`listener for ${String(event)} threw`, e);
      }
    }
  }
}
