// The narrow seams between a VIP controller and the world. The agent wires
// real implementations (kernel/rtnl.ts, kernel/nft-fence.ts,
// kernel/announce.ts); tests pass plain objects.
import type { FenceMode } from "../election/proof.ts";

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

/**
 * The kernel fence (design.md §5): what keeps the kernel from answering for
 * a VIP past its proof, even when vipd is frozen or dead.
 */
export interface FencePort {
  readonly mode: FenceMode;
  /** Lets the VIP's traffic through until deadline() (read when the request leaves); null or past: fenced. */
  allow(ip: string, deadline: () => number | null): Promise<void>;
  /** Fences the VIP at once. */
  deny(ip: string): Promise<void>;
}

/** The fence when nftables is missing: the address lifetime is all there is. */
export const lifetimeOnlyFence: FencePort = {
  mode: "lifetime",
  allow: async () => {},
  deny: async () => {},
};

/** Announcements for one link. */
export interface AnnouncePort {
  announceOnce(ip: string): void;
  /** `guard` is asked right before each round; a "no" ends the burst. */
  burst(ip: string, opts: { count: number; intervalMs: number; signal?: AbortSignal; guard?: () => boolean }): Promise<number>;
}
