import { describe, expect, test } from "bun:test";
import type { Intervals } from "./seams.ts";
import { SharedIntervals } from "./shared-ticks.ts";

/** Runtime intervals that fire when the test advances time. */
class FakeIntervals implements Intervals {
  now = 0;
  armed = 0;
  readonly #timers = new Map<number, { fn: () => void; ms: number; next: number }>();
  #id = 0;
  setInterval(fn: () => void, ms: number): unknown {
    this.armed++;
    this.#timers.set(++this.#id, { fn, ms, next: this.now + ms });
    return this.#id;
  }
  clearInterval(h: unknown): void {
    this.#timers.delete(h as number);
  }
  get running(): number {
    return this.#timers.size;
  }
  advance(ms: number): void {
    const end = this.now + ms;
    for (;;) {
      const due = [...this.#timers.values()].filter((t) => t.next <= end).sort((a, b) => a.next - b.next)[0];
      if (!due) break;
      this.now = due.next;
      due.next += due.ms;
      due.fn();
    }
    this.now = end;
  }
}

describe("SharedIntervals", () => {
  test("tasks of one period share one runtime timer, each runs every period, in the order they joined", () => {
    const rt = new FakeIntervals();
    const shared = new SharedIntervals(rt);
    const runs: string[] = [];
    shared.setInterval(() => runs.push(`loop@${rt.now}`), 1000);
    rt.advance(300);
    shared.setInterval(() => runs.push(`fence@${rt.now}`), 1000);
    shared.setInterval(() => runs.push(`other@${rt.now}`), 250);
    expect(rt.armed).toBe(2);
    expect(shared.timers).toBe(2);
    rt.advance(1700);
    // The fence joined at 300 and runs at the period's next tick, with the loop watch's.
    expect(runs.filter((r) => !r.startsWith("other"))).toEqual(["loop@1000", "fence@1000", "loop@2000", "fence@2000"]);
    expect(runs.filter((r) => r.startsWith("other")).length).toBe(6);
  });

  test("a cleared task stops at once, even later in the same tick; the timer goes with the period's last task", () => {
    const rt = new FakeIntervals();
    const shared = new SharedIntervals(rt);
    const runs: string[] = [];
    let b: unknown = null;
    const a = shared.setInterval(() => {
      runs.push("a");
      shared.clearInterval(b);
    }, 1000);
    b = shared.setInterval(() => runs.push("b"), 1000);
    rt.advance(2000);
    expect(runs).toEqual(["a", "a"]);
    expect(rt.running).toBe(1);
    shared.clearInterval(a);
    shared.clearInterval(a);
    shared.clearInterval(null);
    expect(rt.running).toBe(0);
    expect(shared.timers).toBe(0);
    rt.advance(2000);
    expect(runs).toEqual(["a", "a"]);
    // A period that starts again gets a timer again.
    shared.setInterval(() => runs.push("c"), 1000);
    rt.advance(1000);
    expect(runs).toEqual(["a", "a", "c"]);
    expect(rt.armed).toBe(2);
  });

  test("a task that throws does not keep the others of its tick from running; its error is passed on", () => {
    const rt = new FakeIntervals();
    const thrown: unknown[] = [];
    const shared = new SharedIntervals(rt, (e) => thrown.push(e));
    const runs: string[] = [];
    shared.setInterval(() => {
      throw new Error("task bug");
    }, 1000);
    shared.setInterval(() => runs.push("after"), 1000);
    rt.advance(2000);
    expect(runs).toEqual(["after", "after"]);
    expect(thrown.map((e) => (e as Error).message)).toEqual(["task bug", "task bug"]);
  });
});
