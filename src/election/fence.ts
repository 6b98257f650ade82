// The fence: how long this agent can *prove* that its etcd lease is alive at
// the server, by its own monotonic clock (DESIGN.md, "never two owners").
//
// A keepalive sent at local time s and acknowledged with TTL T proves that the
// server renewed the lease after s, so it cannot expire before s + T (the
// server measures T on its own clock from when it received the request, which
// is later than s). We stop trusting the lease at
//
//     deadline = s + T·1000 − margin
//
// where the margin (250 ms) covers clock-rate drift between the two machines
// and our own scheduling delay. Nothing else moves the deadline: not a sent
// keepalive, not a reconnected stream, only an acknowledged one.
//
// The kernel fence is an address lifetime in whole seconds, and the kernel may
// remove an expired address up to about a second late, so the lifetime handed
// to the kernel is floor((deadline − now − 1000) / 1000). Below one second the
// address cannot be fenced at all and must be dropped now.
//
// This file is pure: the clock is injected (milliseconds, monotonic).

export type Clock = () => number;

/** The process's monotonic clock, in milliseconds. */
export const monotonicClock: Clock = () => performance.now();

export const DEFAULT_MARGIN_MS = 250;
/** How late the kernel may remove an address whose lifetime ran out. */
export const KERNEL_SLACK_MS = 1000;

/** The proof a lease grant or keepalive acknowledgement gives. */
export function fenceDeadline(sentAtMs: number, ttlSeconds: number, marginMs = DEFAULT_MARGIN_MS): number {
  return sentAtMs + ttlSeconds * 1000 - marginMs;
}

/** Whole seconds of address lifetime the kernel may be given, or null: cannot fence, drop the VIP now. */
export function kernelLifetime(deadline: number | null, now: number): number | null {
  if (deadline === null) return null;
  const s = Math.floor((deadline - now - KERNEL_SLACK_MS) / 1000);
  return s >= 1 ? s : null;
}

/**
 * The smallest lease TTL (seconds) that can be fenced at all: right after an
 * acknowledgement (zero round trip) the kernel must get at least one second,
 * i.e. T·1000 − margin − 1000 ≥ 1000. With the default margin that is 3 s.
 * At TTL 3 a keepalive may be late by about 0.7 s before the VIP is dropped;
 * each extra second of TTL adds a second of tolerance.
 */
export function minimumTtl(marginMs = DEFAULT_MARGIN_MS): number {
  return Math.ceil((KERNEL_SLACK_MS + 1000 + marginMs) / 1000);
}

/** Throws a RangeError naming the problem if `ttl` cannot be fenced. */
export function checkLeaseTtl(ttl: number, marginMs = DEFAULT_MARGIN_MS): void {
  const min = minimumTtl(marginMs);
  if (!Number.isInteger(ttl) || ttl < min) {
    throw new RangeError(
      `lease TTL ${ttl} s is too short to fence: the kernel removes addresses in whole seconds and up to 1 s late, ` +
        `so the TTL must be a whole number of at least ${min} s`,
    );
  }
}

export type AckOutcome =
  /** The deadline is now `deadline`; `moved` is false for an ack that proves less than one already seen. */
  | { kind: "renewed"; deadline: number; moved: boolean }
  /** TTL ≤ 0: the lease no longer exists at the server. Final. */
  | { kind: "lost" };

/** The deadline of one lease. Starts unproven (no deadline). */
export class Fence {
  #deadline: number | null = null;
  #lost = false;

  constructor(
    readonly clock: Clock = monotonicClock,
    readonly marginMs = DEFAULT_MARGIN_MS,
  ) {}

  get deadline(): number | null {
    return this.#deadline;
  }

  get lost(): boolean {
    return this.#lost;
  }

  /**
   * Records an acknowledgement of a request sent at `sentAt` with TTL `ttl`.
   * Each ack is an independent proof, so the deadline is the latest of them:
   * an ack for an older send (out of order, or a stale request) never pulls
   * the deadline back, and never pushes it past what its own send proves.
   */
  ack(sentAt: number, ttl: number): AckOutcome {
    if (this.#lost || !(ttl > 0)) {
      this.invalidate();
      return { kind: "lost" };
    }
    const d = fenceDeadline(sentAt, ttl, this.marginMs);
    const moved = this.#deadline === null || d > this.#deadline;
    if (moved) this.#deadline = d;
    return { kind: "renewed", deadline: this.#deadline!, moved };
  }

  /** The lease is gone (TTL 0, revoked): nothing proves it any more. */
  invalidate(): void {
    this.#lost = true;
    this.#deadline = null;
  }

  valid(now = this.clock()): boolean {
    return this.#deadline !== null && now < this.#deadline;
  }

  remainingMs(now = this.clock()): number {
    return this.#deadline === null ? 0 : Math.max(0, this.#deadline - now);
  }

  kernelLifetime(now = this.clock()): number | null {
    return kernelLifetime(this.#deadline, now);
  }
}
