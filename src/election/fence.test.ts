import { describe, expect, test } from "bun:test";
import { checkLeaseTtl, Fence, fenceDeadline, kernelLifetime, minimumTtl } from "./fence.ts";

/** A clock the test moves by hand. */
function fakeClock(start = 10_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms), set: (ms: number) => void (t = ms) };
}

describe("fence arithmetic", () => {
  test("deadline = send time + TTL − margin", () => {
    expect(fenceDeadline(1000, 3)).toBe(3750);
    expect(fenceDeadline(1000, 3, 0)).toBe(4000);
    expect(fenceDeadline(1000, 10, 500)).toBe(10500);
  });

  test.each([
    // [deadline, now, lifetime]
    [3750, 1000, 1], // 2750 left: 1750 after the kernel's second of slack → 1 s
    [3750, 1749, 1], // exactly 2001 left → 1
    [3750, 1750, 1], // exactly 2000 left → 1
    [3750, 1751, null], // 1999 left: less than a whole second after slack
    [3750, 3750, null],
    [3750, 9999, null],
    [13_750, 1000, 11],
    [13_750, 1750, 11],
    [13_750, 1751, 10],
  ] as const)("kernel lifetime: deadline %d at %d → %p", (deadline, now, want) => {
    expect(kernelLifetime(deadline, now)).toBe(want);
  });

  test("no deadline cannot be fenced", () => {
    expect(kernelLifetime(null, 0)).toBeNull();
  });

  test("minimum TTL is 3 s with the default margin, and grows with the margin", () => {
    expect(minimumTtl()).toBe(3);
    expect(minimumTtl(0)).toBe(2);
    expect(minimumTtl(1500)).toBe(4);
    expect(() => checkLeaseTtl(2)).toThrow(/too short to fence.*at least 3 s/);
    expect(() => checkLeaseTtl(3.5)).toThrow(RangeError);
    expect(() => checkLeaseTtl(3)).not.toThrow();
  });
});

describe("Fence", () => {
  test("unproven until the first ack", () => {
    const c = fakeClock();
    const f = new Fence(c.now);
    expect(f.deadline).toBeNull();
    expect(f.valid()).toBe(false);
    expect(f.kernelLifetime()).toBeNull();
  });

  test("an ack moves the deadline to its send time + TTL − margin, not to its arrival", () => {
    const c = fakeClock(10_000);
    const f = new Fence(c.now);
    const sentAt = c.now();
    c.advance(400); // round trip
    expect(f.ack(sentAt, 3)).toEqual({ kind: "renewed", deadline: 12_750, moved: true });
    expect(f.valid()).toBe(true);
    expect(f.remainingMs()).toBe(2350);
    expect(f.kernelLifetime()).toBe(1);
    c.set(12_749);
    expect(f.valid()).toBe(true);
    c.set(12_750);
    expect(f.valid()).toBe(false);
    expect(f.remainingMs()).toBe(0);
  });

  test("acks out of order: an older send never pulls the deadline back", () => {
    const c = fakeClock(0);
    const f = new Fence(c.now, 250);
    f.ack(2000, 3); // newer send answered first
    expect(f.deadline).toBe(4750);
    expect(f.ack(1000, 3)).toEqual({ kind: "renewed", deadline: 4750, moved: false });
    expect(f.deadline).toBe(4750);
    expect(f.ack(2500, 3)).toEqual({ kind: "renewed", deadline: 5250, moved: true });
  });

  test("TTL 0 (or less) means the lease is gone, and stays gone", () => {
    const c = fakeClock(0);
    const f = new Fence(c.now);
    f.ack(0, 3);
    expect(f.ack(100, 0)).toEqual({ kind: "lost" });
    expect(f.deadline).toBeNull();
    expect(f.valid()).toBe(false);
    expect(f.lost).toBe(true);
    // A late ack for an earlier send cannot resurrect it.
    expect(f.ack(50, 3)).toEqual({ kind: "lost" });
    expect(new Fence(c.now).ack(0, -1)).toEqual({ kind: "lost" });
  });

  test("invalidate drops the proof at once", () => {
    const c = fakeClock(0);
    const f = new Fence(c.now);
    f.ack(0, 30);
    f.invalidate();
    expect(f.valid()).toBe(false);
    expect(f.kernelLifetime()).toBeNull();
  });
});
