import { beforeEach, describe, expect, test } from "bun:test";
import { VipController, type OwnershipChange } from "./controller.ts";
import type { VipFacts } from "./decision.ts";

// A fake kernel that records calls in order and can be told to fail.
function fakeKernel() {
  const calls: string[] = [];
  const present = new Map<string, number>();
  let failNext: Error | null = null;
  return {
    calls,
    present,
    failOnce(e: Error) {
      failNext = e;
    },
    /** Runs before the lifetime is read: the window in which a process can freeze. */
    beforeSend: null as null | (() => void),
    async replaceAddress(link: string, ip: string, source: () => number | null) {
      await Promise.resolve();
      this.beforeSend?.();
      const lifetime = source();
      calls.push(`replace ${ip} ${link} ${lifetime}`);
      if (lifetime === null) throw new Error("no lifetime left: not sent");
      if (failNext) {
        const e = failNext;
        failNext = null;
        throw e;
      }
      present.set(ip, lifetime);
      this.afterSend?.();
    },
    afterSend: null as null | (() => void),
    async deleteAddress(link: string, ip: string) {
      calls.push(`delete ${ip} ${link}`);
      return present.delete(ip);
    },
  };
}

function fakeAnnouncer() {
  const sent: string[] = [];
  return {
    sent,
    announceOnce(ip: string) {
      sent.push(`once ${ip}`);
    },
    guard: null as null | (() => boolean),
    async burst(ip: string, o: { count: number; intervalMs: number; signal?: AbortSignal; guard?: () => boolean }) {
      sent.push(`burst ${ip} x${o.count}/${o.intervalMs}ms`);
      this.guard = o.guard ?? null;
      return o.count * 2;
    },
  };
}

function fakeTimers() {
  const live = new Map<number, () => void>();
  let next = 1;
  return {
    live,
    setInterval: (fn: () => void) => {
      live.set(next, fn);
      return next++;
    },
    clearInterval: (h: unknown) => void live.delete(h as number),
    fire: () => {
      for (const fn of live.values()) fn();
    },
  };
}

let facts: VipFacts;
let kernel: ReturnType<typeof fakeKernel>;
let ann: ReturnType<typeof fakeAnnouncer>;
let timers: ReturnType<typeof fakeTimers>;
let changes: OwnershipChange[];
let errors: string[];
let now: number;
let c: VipController;

beforeEach(() => {
  facts = { leader: false, fenceLifetime: 1, link: "up", gateOpen: true, stopping: false };
  kernel = fakeKernel();
  ann = fakeAnnouncer();
  timers = fakeTimers();
  changes = [];
  errors = [];
  now = 1000;
  c = new VipController("192.0.2.15", "eth0", () => facts, {
    kernel,
    announcer: () => ann,
    announce: { burst: 3, burstIntervalMs: 50, refreshMs: 10_000 },
    clock: () => now,
    timers,
    onChange: (x) => changes.push(x),
    onError: (op, e) => errors.push(`${op}: ${(e as Error).message}`),
    winReason: () => "predecessor cp-2 left",
  });
});

describe("VipController", () => {
  test("a follower makes sure the address is absent and reports no change", async () => {
    await c.poke();
    expect(kernel.calls).toEqual(["delete 192.0.2.15 eth0"]);
    expect(changes).toEqual([]);
    expect(c.held).toBe(false);
  });

  test("a follower asks the kernel once, then again only after the kernel reports a change", async () => {
    await c.poke();
    await c.poke();
    expect(kernel.calls).toEqual(["delete 192.0.2.15 eth0"]);
    await c.kernelChanged();
    expect(kernel.calls).toEqual(["delete 192.0.2.15 eth0", "delete 192.0.2.15 eth0"]);
  });

  test("winning adds with the fence lifetime, announces at once, then refreshes on a timer", async () => {
    facts = { ...facts, leader: true, fenceLifetime: 2 };
    await c.poke();
    expect(kernel.calls).toEqual(["replace 192.0.2.15 eth0 2"]);
    expect(changes).toEqual([{ ip: "192.0.2.15", link: "eth0", held: true, reason: "predecessor cp-2 left", code: "elected", at: 1000 }]);
    expect(ann.sent).toEqual(["burst 192.0.2.15 x3/50ms"]);
    expect(timers.live.size).toBe(1);
    timers.fire();
    expect(ann.sent).toEqual(["burst 192.0.2.15 x3/50ms", "once 192.0.2.15"]);
  });

  test("each later pass refreshes the lifetime without announcing or reporting again", async () => {
    facts = { ...facts, leader: true };
    await c.poke();
    facts = { ...facts, fenceLifetime: 1 };
    await c.poke();
    await c.poke();
    expect(kernel.calls).toEqual(["replace 192.0.2.15 eth0 1", "replace 192.0.2.15 eth0 1", "replace 192.0.2.15 eth0 1"]);
    expect(changes).toHaveLength(1);
    expect(ann.sent).toHaveLength(1);
  });

  test("a passed fence deadline removes the address even though etcd still says leader", async () => {
    facts = { ...facts, leader: true };
    await c.poke();
    now = 4000;
    facts = { ...facts, fenceLifetime: null };
    await c.poke();
    expect(kernel.calls.at(-1)).toBe("delete 192.0.2.15 eth0");
    expect(changes.at(-1)).toEqual({ ip: "192.0.2.15", link: "eth0", held: false, reason: "lease not proven (keepalive deadline passed)", code: "fence-expired", at: 4000 });
    expect(timers.live.size).toBe(0);
    expect(kernel.present.size).toBe(0);
  });

  test("after a freeze, a refresh timer that fires before the release pass announces nothing", async () => {
    facts = { ...facts, leader: true };
    await c.poke();
    expect(ann.guard?.()).toBe(true);
    // The process was frozen past its deadline: the facts say "no proof" but
    // no pass has run yet, so the controller still believes it holds.
    facts = { ...facts, fenceLifetime: null };
    expect(c.held).toBe(true);
    expect(ann.guard?.()).toBe(false);
    timers.fire();
    expect(ann.sent).toEqual(["burst 192.0.2.15 x3/50ms"]);
    // ...and the refused refresh asked for the pass that releases it.
    await c.poke();
    expect(c.held).toBe(false);
    expect(kernel.calls.at(-1)).toBe("delete 192.0.2.15 eth0");
  });

  test("the lifetime is read when the request leaves: a freeze between decision and send adds nothing", async () => {
    facts = { ...facts, leader: true };
    kernel.beforeSend = () => {
      facts = { ...facts, fenceLifetime: null };
    };
    await c.poke();
    expect(kernel.present.size).toBe(0);
    expect(c.held).toBe(false);
    expect(changes).toEqual([]);
    expect(errors).toEqual(["holding 192.0.2.15 on eth0: no lifetime left: not sent"]);
  });

  test("pokes during a pass coalesce into one more pass that sees the latest facts", async () => {
    facts = { ...facts, leader: true };
    kernel.afterSend = () => {
      kernel.afterSend = null;
      facts = { ...facts, stopping: true };
      void c.poke();
      void c.poke();
    };
    await c.poke();
    expect(kernel.calls).toEqual(["replace 192.0.2.15 eth0 1", "delete 192.0.2.15 eth0"]);
    expect(changes.map((x) => x.reason)).toEqual(["predecessor cp-2 left", "shutting down"]);
  });

  test("a kernel failure while adding is reported, not counted as holding, and retried on the next pass", async () => {
    facts = { ...facts, leader: true };
    kernel.failOnce(new Error("ENODEV: adding 192.0.2.15/32 to eth0"));
    await c.poke();
    expect(c.held).toBe(false);
    expect(errors).toEqual(["holding 192.0.2.15 on eth0: ENODEV: adding 192.0.2.15/32 to eth0"]);
    await c.poke();
    expect(c.held).toBe(true);
  });
});
