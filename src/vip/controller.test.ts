// The VIP controller against a fake kernel and clock, case by case: every
// ownership change it makes and every refusal it meets. Long because it is a
// list of cases, each read on its own.
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
    /** The error every delete fails with while set (the address stays). */
    failDeletes: null as Error | null,
    async deleteAddress(link: string, ip: string) {
      calls.push(`delete ${ip} ${link}`);
      if (this.failDeletes) throw this.failDeletes;
      return present.delete(ip);
    },
  };
}

/** A fake nftables fence that logs into the kernel's call list, so order is visible. */
function fakeFence(calls: string[], clock: () => number) {
  return {
    mode: "nftables" as const,
    allowed: new Map<string, number>(),
    async allow(ip: string, deadline: () => number | null) {
      await Promise.resolve();
      const d = deadline();
      calls.push(`allow ${ip} ${d === null ? "null" : d - clock()}`);
      if (d === null) this.allowed.delete(ip);
      else this.allowed.set(ip, d);
    },
    /** The error every deny fails with while set. */
    failDeny: null as Error | null,
    async deny(ip: string) {
      calls.push(`deny ${ip}`);
      if (this.failDeny) throw this.failDeny;
      this.allowed.delete(ip);
    },
  };
}

/** The fence without nftables (ports.ts lifetimeOnlyFence), logging its calls: the address lifetime is all there is. */
function lifetimeFence(calls: string[]) {
  return {
    mode: "lifetime" as const,
    async allow() {},
    async deny(ip: string) {
      calls.push(`deny ${ip}`);
    },
  };
}

/** A kernel error as rtnl.ts throws it: its errno name in `code`. */
const kernelError = (code: string, message: string) => Object.assign(new Error(message), { code });

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
let fence: ReturnType<typeof fakeFence>;
let ann: ReturnType<typeof fakeAnnouncer>;
let timers: ReturnType<typeof fakeTimers>;
let changes: OwnershipChange[];
let errors: string[];
let failures: number[];
let now: number;
let c: VipController;

const IP = "192.0.2.15";

function controller(f: ReturnType<typeof fakeFence> | ReturnType<typeof lifetimeFence>): VipController {
  const v: VipController = new VipController(IP, "eth0", () => ({ ...facts, now, held: v.held }), {
    kernel,
    fence: f,
    announcer: () => ann,
    announce: { burst: 3, burstIntervalMs: 50, refreshMs: 10_000 },
    clock: () => now,
    timers,
    onChange: (x) => changes.push(x),
    onError: (op, e) => errors.push(`${op}: ${(e as Error).message}`),
    onHoldFailed: (_e, n) => failures.push(n),
    winReason: () => "predecessor cp-2 left",
  });
  return v;
}

beforeEach(() => {
  now = 1000;
  facts = { now, head: false, proof: null, claimedUntil: null, held: false, link: "up", gateOpen: true, withdrawn: null, stopping: false, removed: false, drained: null, conflict: null, yielding: null };
  kernel = fakeKernel();
  fence = fakeFence(kernel.calls, () => now);
  ann = fakeAnnouncer();
  timers = fakeTimers();
  changes = [];
  errors = [];
  failures = [];
  c = controller(fence);
});

/** Facts of a proven head whose proof runs `ms` past now. */
const provenFor = (ms: number) => ({ ...facts, head: true, proof: now + ms });

describe("VipController", () => {
  test("a follower makes sure the VIP is fenced and absent, and reports no change", async () => {
    await c.poke();
    expect(kernel.calls).toEqual([`deny ${IP}`, `delete ${IP} eth0`]);
    expect(changes).toEqual([]);
    expect(c.held).toBe(false);
    expect(c.serving).toBe(false);
  });

  test("a follower asks the kernel once, then again only after the kernel reports a change", async () => {
    await c.poke();
    await c.poke();
    expect(kernel.calls).toEqual([`deny ${IP}`, `delete ${IP} eth0`]);
    await c.kernelChanged();
    expect(kernel.calls).toEqual([`deny ${IP}`, `delete ${IP} eth0`, `deny ${IP}`, `delete ${IP} eth0`]);
  });

  test("winning opens the fence until the deadline, then adds the address with a backstop lifetime, then announces", async () => {
    facts = provenFor(2400);
    await c.poke();
    // nftables mode: the address outlives the deadline by a second or two (proof.ts addressLifetime).
    expect(kernel.calls).toEqual([`allow ${IP} 2400`, `replace ${IP} eth0 4`]);
    expect(changes).toEqual([{ ip: IP, link: "eth0", held: true, reason: "predecessor cp-2 left", code: "elected", at: 1000 }]);
    expect(ann.sent).toEqual([`burst ${IP} x3/50ms`]);
    expect(c.serving).toBe(true);
    expect(timers.live.size).toBe(1);
    timers.fire();
    expect(ann.sent).toEqual([`burst ${IP} x3/50ms`, `once ${IP}`]);
  });

  test("each later pass moves the fence and the lifetime without announcing or reporting again", async () => {
    facts = provenFor(2400);
    await c.poke();
    now += 250;
    facts = provenFor(2400);
    await c.poke();
    expect(kernel.calls).toEqual([`allow ${IP} 2400`, `replace ${IP} eth0 4`, `allow ${IP} 2400`, `replace ${IP} eth0 4`]);
    expect(fence.allowed.get(IP)).toBe(now + 2400);
    expect(changes).toHaveLength(1);
    expect(ann.sent).toHaveLength(1);
  });

  test("a passed deadline fences and removes the VIP even though etcd still says first in the queue", async () => {
    facts = provenFor(2400);
    await c.poke();
    now += 2400;
    await c.poke();
    expect(kernel.calls.slice(-2)).toEqual([`deny ${IP}`, `delete ${IP} eth0`]);
    expect(changes.at(-1)).toEqual({ ip: IP, link: "eth0", held: false, reason: "no committed heartbeat proves our key (etcd unreachable or slow)", code: "fence-expired", at: now });
    expect(timers.live.size).toBe(0);
    expect(kernel.present.size).toBe(0);
    expect(fence.allowed.size).toBe(0);
    expect(c.serving).toBe(false);
  });

  test("after a freeze, a refresh timer that fires before the release pass announces nothing", async () => {
    facts = provenFor(2400);
    await c.poke();
    expect(ann.guard?.()).toBe(true);
    // Frozen past the deadline: no pass has run yet, so the controller still believes it holds.
    now += 5000;
    expect(c.held).toBe(true);
    expect(ann.guard?.()).toBe(false);
    timers.fire();
    expect(ann.sent).toEqual([`burst ${IP} x3/50ms`]);
    // ...and the refused refresh asked for the pass that releases it.
    await c.poke();
    expect(c.held).toBe(false);
    expect(kernel.calls.at(-1)).toBe(`delete ${IP} eth0`);
  });

  test("the deadline is read when each request leaves: a freeze between decision and send adds nothing", async () => {
    facts = provenFor(2400);
    kernel.beforeSend = () => {
      now += 3000;
    };
    await c.poke();
    expect(kernel.present.size).toBe(0);
    expect(c.held).toBe(false);
    expect(changes).toEqual([]);
    expect(errors).toEqual([`holding ${IP} on eth0: no lifetime left: not sent`]);
    // The fence element was opened before the freeze; the next pass closes it.
    await c.poke();
    expect(fence.allowed.size).toBe(0);
    expect(c.serving).toBe(false);
  });

  test("pokes during a pass coalesce into one more pass that sees the latest facts", async () => {
    facts = provenFor(2400);
    kernel.afterSend = () => {
      kernel.afterSend = null;
      facts = { ...facts, stopping: true };
      void c.poke();
      void c.poke();
    };
    await c.poke();
    expect(kernel.calls).toEqual([`allow ${IP} 2400`, `replace ${IP} eth0 4`, `deny ${IP}`, `delete ${IP} eth0`]);
    expect(changes.map((x) => x.reason)).toEqual(["predecessor cp-2 left", "shutting down"]);
  });

  test("a kernel failure while adding is reported and counted, not held, and retried on the next pass", async () => {
    facts = provenFor(2400);
    kernel.failOnce(new Error("EACCES: adding 192.0.2.15/32 to eth0"));
    await c.poke();
    expect(c.held).toBe(false);
    expect(errors).toEqual([`holding ${IP} on eth0: EACCES: adding 192.0.2.15/32 to eth0`]);
    expect(failures).toEqual([1]);
    // It may be answering (the fence element is open): it still claims the VIP.
    expect(c.serving).toBe(true);
    await c.poke();
    expect(c.held).toBe(true);
  });

  test("another node's claim keeps a follower from taking the VIP, but not a holder from keeping it", async () => {
    facts = { ...provenFor(2400), claimedUntil: now + 500 };
    await c.poke();
    expect(c.held).toBe(false);
    facts = { ...facts, claimedUntil: null };
    await c.poke();
    expect(c.held).toBe(true);
    facts = { ...facts, claimedUntil: now + 500 };
    await c.poke();
    expect(c.held).toBe(true);
  });

  describe("serving ends only when the address is gone or what the kernel was given has run out (I4)", () => {
    test("without nftables, a failed delete leaves the VIP served until its lifetime and the kernel's slack have passed", async () => {
      c = controller(lifetimeFence(kernel.calls));
      facts = provenFor(5000);
      await c.poke();
      // floor((5000 - 1000) / 1000): the address goes by itself 4 s from now, and the kernel may take a second more.
      expect(kernel.calls).toEqual([`replace ${IP} eth0 4`]);
      kernel.failDeletes = kernelError("EPERM", "EPERM: removing 192.0.2.15/32 from eth0");
      facts = { ...facts, stopping: true };
      await c.poke();
      expect(c.held).toBe(false);
      expect(kernel.present.has(IP)).toBe(true);
      expect(c.serving).toBe(true);
      now += 4999;
      expect(c.serving).toBe(true);
      now += 1;
      expect(c.serving).toBe(false);
    });

    test("with nftables, a closed fence is not enough while the address is still there: it outlives the element", async () => {
      facts = provenFor(2400);
      await c.poke();
      kernel.failDeletes = kernelError("EBUSY", "EBUSY: removing 192.0.2.15/32 from eth0");
      facts = { ...facts, stopping: true };
      await c.poke();
      expect(fence.allowed.size).toBe(0);
      expect(c.serving).toBe(true);
      // Each pass tries again; once the delete goes through, nothing is left.
      await c.poke();
      expect(kernel.calls.slice(-2)).toEqual([`deny ${IP}`, `delete ${IP} eth0`]);
      expect(c.serving).toBe(true);
      kernel.failDeletes = null;
      await c.poke();
      expect(kernel.present.size).toBe(0);
      expect(c.serving).toBe(false);
    });

    test("an address confirmed gone ends it though the fence could not be closed, which the next pass tries again", async () => {
      facts = provenFor(2400);
      await c.poke();
      fence.failDeny = kernelError("EBUSY", "EBUSY: deleting element 192.0.2.15");
      facts = { ...facts, stopping: true };
      await c.poke();
      expect(kernel.present.size).toBe(0);
      expect(c.serving).toBe(false);
      fence.failDeny = null;
      await c.poke();
      expect(kernel.calls.slice(-2)).toEqual([`deny ${IP}`, `delete ${IP} eth0`]);
      expect(fence.allowed.size).toBe(0);
      await c.poke();
      expect(kernel.calls.slice(-1)).toEqual([`delete ${IP} eth0`]);
    });

    test("a link that is gone (ENODEV) took the address with it", async () => {
      c = controller(lifetimeFence(kernel.calls));
      facts = provenFor(5000);
      await c.poke();
      kernel.failDeletes = kernelError("ENODEV", "ENODEV: removing 192.0.2.15/32 from eth0");
      facts = { ...facts, link: "absent" };
      await c.poke();
      expect(c.serving).toBe(false);
    });
  });

  test("without nftables, a proof too short for a whole second of lifetime sends nothing and is no kernel refusal", async () => {
    c = controller(lifetimeFence(kernel.calls));
    // A slow etcd: the proof is still good, but for less than the 2 s a lifetime needs.
    for (let i = 0; i < 3; i++) {
      facts = provenFor(1900);
      await c.poke();
      now += 50;
    }
    expect(kernel.calls).toEqual([`replace ${IP} eth0 null`, `replace ${IP} eth0 null`, `replace ${IP} eth0 null`]);
    expect(kernel.present.size).toBe(0);
    expect(c.held).toBe(false);
    expect(failures).toEqual([]);
    // A refusal of the kernel's still counts.
    facts = provenFor(5000);
    kernel.failOnce(new Error("EACCES: adding 192.0.2.15/32 to eth0"));
    await c.poke();
    expect(failures).toEqual([1]);
    await c.poke();
    expect(c.held).toBe(true);
  });
});

test("VIPs the kernel confirmed in one batch are all announced before any of them is reported", async () => {
  // As rtnl.ts and nft-fence.ts do: requests made in one turn leave in one
  // batch, and every caller resumes when the kernel answers it.
  const events: string[] = [];
  let answer!: () => void;
  const batch = new Promise<void>((r) => (answer = r));
  const shared = {
    mode: "nftables" as const,
    allow: async (_ip: string, deadline: () => number | null) => {
      deadline();
      await batch;
    },
    deny: async () => {},
    replaceAddress: async (_link: string, _ip: string, lifetime: () => number | null) => {
      lifetime();
      await batch;
    },
    deleteAddress: async () => true,
  };
  const announcer = {
    announceOnce: () => {},
    burst: async (ip: string) => {
      events.push(`announce ${ip}`);
      return 2;
    },
  };
  const ips = ["192.0.2.21", "192.0.2.22", "2001:db8::23"];
  const controllers = ips.map((ip) => {
    const v: VipController = new VipController(ip, "eth0", () => ({ ...provenFor(2400), held: v.held }), {
      kernel: shared,
      fence: shared,
      announcer: () => announcer,
      announce: { burst: 3, burstIntervalMs: 50, refreshMs: 0 },
      clock: () => now,
      timers,
      onChange: (x) => events.push(`change ${x.ip}`),
      onError: (op, e) => errors.push(`${op}: ${(e as Error).message}`),
    });
    return v;
  });
  const passes = controllers.map((v) => v.poke());
  answer();
  await Promise.all(passes);
  expect(events).toEqual([...ips.map((ip) => `announce ${ip}`), ...ips.map((ip) => `change ${ip}`)]);
  expect(errors).toEqual([]);
  expect(controllers.every((v) => v.held)).toBe(true);
});
