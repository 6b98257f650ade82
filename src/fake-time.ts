// A clock and timers that move only when a unit test says so, for anything
// timed through the seams (Clock, Timeouts): the heartbeat, the gate, the
// slots and the silence watch. Timers fire in the order they fall due (in
// the order they were armed for the same time), each followed by a settle,
// so that the promise chains one starts run before the next fires. Tests
// import it; nothing else does.
import type { Timeouts } from "./seams.ts";

/** Lets every promise chain run that needs only microtasks (no I/O, no setImmediate). */
export async function microtasks(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

/** Lets every promise chain run that can, across a few turns of the event loop (what an agent's chains need: setImmediate). */
export async function turns(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

export class FakeTime implements Timeouts {
  now: number;
  /** Timers armed so far, by anyone. */
  armed = 0;
  #queue: { at: number; fn: () => void; id: number }[] = [];
  #id = 0;
  readonly #settle: () => Promise<void>;

  constructor(o: { start?: number; settle?: () => Promise<void> } = {}) {
    this.now = o.start ?? 0;
    this.#settle = o.settle ?? microtasks;
  }

  readonly clock = (): number => this.now;

  readonly setTimeout = (fn: () => void, ms: number): unknown => {
    const id = ++this.#id;
    this.armed++;
    this.#queue.push({ at: this.now + ms, fn, id });
    return id;
  };

  readonly clearTimeout = (h: unknown): void => {
    this.#queue = this.#queue.filter((t) => t.id !== h);
  };

  /** Timers armed and neither fired nor cleared. */
  get pending(): number {
    return this.#queue.length;
  }

  /** Moves the clock forward by `ms` (see to). */
  advance(ms: number): Promise<void> {
    return this.to(this.now + ms);
  }

  /** Moves the clock to `t`, firing due timers in order and letting what they start settle. */
  async to(t: number): Promise<void> {
    for (;;) {
      await this.#settle();
      this.#queue.sort((a, b) => a.at - b.at);
      const next = this.#queue[0];
      if (!next || next.at > t) break;
      this.#queue.shift();
      // A test that moved the clock itself may have passed a timer's time.
      this.now = Math.max(this.now, next.at);
      next.fn();
    }
    this.now = t;
    await this.#settle();
  }
}
