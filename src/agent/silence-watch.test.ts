// The silence watch with a fake clock and timers: one timer whatever the
// number of waiters, heartbeats move nothing until it fires, and it wakes
// exactly the waiters whose agent has been silent until its deadline.
import { beforeEach, expect, test } from "bun:test";
import { SilenceWatch } from "./silence-watch.ts";

let now: number;
let timers: { at: number; fn: () => void }[];
let arms: number;
/** node → when its latest heartbeat stops counting; absent: never heard. */
let heard: Map<string, number>;
let woken: string[];
let watch: SilenceWatch;

const waiter = (name: string) => ({ due: () => void woken.push(name) });

function fire(): void {
  const t = timers.sort((a, b) => a.at - b.at).shift()!;
  now = Math.max(now, t.at);
  t.fn();
}

beforeEach(() => {
  now = 0;
  timers = [];
  arms = 0;
  heard = new Map();
  woken = [];
  watch = new SilenceWatch({
    clock: () => now,
    heardUntil: (n) => heard.get(n) ?? null,
    timers: {
      setTimeout(fn, ms) {
        arms++;
        const t = { at: now + ms, fn };
        timers.push(t);
        return t;
      },
      clearTimeout(h) {
        timers = timers.filter((t) => t !== h);
      },
    },
  });
});

test("many waiters on one agent: one timer; an agent that keeps speaking is checked once per deadline and wakes nobody", () => {
  heard.set("h", 2600);
  const ws = Array.from({ length: 100 }, (_, i) => waiter(`w${i}`));
  for (const w of ws) watch.wait(w, "h", 2600);
  expect(arms).toBe(1);
  expect(timers.map((t) => t.at)).toEqual([2601]);
  // h speaks at 2000: its deadline moves to 4600; nothing happens until the timer.
  heard.set("h", 4600);
  fire();
  expect(woken).toEqual([]);
  expect(watch.rechecks).toBe(1);
  expect(timers.map((t) => t.at)).toEqual([4601]);
  // Then h falls silent: every waiter is woken, in one turn.
  fire();
  expect(woken.length).toBe(100);
  expect(watch.waiting).toBe(0);
  expect(timers).toEqual([]);
});

test("waiting again on the same deadline changes nothing; on another agent moves the waiter; cancel forgets it", () => {
  heard.set("h", 1000);
  heard.set("g", 3000);
  const w = waiter("w");
  watch.wait(w, "h", 1000);
  watch.wait(w, "h", 1000);
  expect(arms).toBe(1);
  watch.wait(w, "g", 3000);
  fire();
  expect(woken).toEqual([]);
  expect(timers.map((t) => t.at)).toEqual([3001]);
  watch.cancel(w);
  fire();
  expect(woken).toEqual([]);
  expect(timers).toEqual([]);
});

test("an agent never heard: each waiter's own deadline counts, until a heartbeat of it arrives", () => {
  const early = waiter("early");
  const late = waiter("late");
  watch.wait(early, "n", 1000);
  watch.wait(late, "n", 1500);
  fire();
  expect(woken).toEqual(["early"]);
  heard.set("n", 4000);
  fire();
  expect(woken).toEqual(["early"]);
  expect(timers.map((t) => t.at)).toEqual([4001]);
});

test("a waiter for an earlier deadline brings the timer forward; close stops it", () => {
  heard.set("h", 5000);
  heard.set("g", 1000);
  watch.wait(waiter("a"), "h", 5000);
  watch.wait(waiter("b"), "g", 1000);
  expect(timers.map((t) => t.at)).toEqual([1001]);
  watch.close();
  expect(timers).toEqual([]);
  expect(watch.waiting).toBe(0);
});
