// The narrow seams between a VIP controller and the world. The agent wires
// real implementations (kernel/rtnl.ts, kernel/announce.ts); tests pass plain
// objects.

/** The two address operations a controller needs from rtnetlink. */
export interface AddressKernel {
  /**
   * Adds the address, or refreshes its lifetime if it is already there. The
   * lifetime is asked for right before the request goes to the kernel; null
   * means "no longer allowed": nothing is sent and the promise rejects.
   */
  replaceAddress(link: string, ip: string, lifetime: () => number | null): Promise<void>;
  /** Removes it; false when it was not there. */
  deleteAddress(link: string, ip: string): Promise<boolean>;
}

/** Announcements for one link. */
export interface AnnouncePort {
  announceOnce(ip: string): void;
  /** `guard` is asked right before each round; a "no" ends the burst. */
  burst(ip: string, opts: { count: number; intervalMs: number; signal?: AbortSignal; guard?: () => boolean }): Promise<number>;
}

export interface Timers {
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

export const realTimers: Timers = {
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (h) => clearInterval(h as ReturnType<typeof setInterval>),
};
