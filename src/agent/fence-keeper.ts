// The agent's side of the kernel fence (design.md §5): opens nftables when
// the kernel has it and falls back to address lifetimes when it does not,
// names what an earlier run's table guarded, rebuilds the table when it
// changes or goes, and reads it back every FENCE_CHECK_MS so that no VIP is
// held without a whole fence. The slots see only the FencePort it hands out.
import { ENOENT } from "../kernel/errno.ts";
import { KernelError } from "../kernel/error.ts";
import type { SlowSends } from "../kernel/netlink.ts";
import { NftFence, nftablesMissing } from "../kernel/nft-fence.ts";
import { describeError, type Logger } from "../log.ts";
import { type Clock, type Intervals, realTimers, type Timed } from "../seams.ts";
import { type FencePort, lifetimeOnlyFence } from "../vip/ports.ts";

/**
 * How often the fence table is read back and compared with what it must
 * hold (check()). Polled rather than followed by nftables events: the
 * event group carries every element refresh (each heartbeat) to vipd, and a
 * build that failed sends no event at all. A link's VIP is unfenced for at
 * most this long after its chain goes, which matters only if its holder
 * also loses its proof meanwhile.
 */
export const FENCE_CHECK_MS = 1000;
/** A slot on a link whose fence cannot be rebuilt stays out this long after the last check that found it so. */
export const FENCE_STAND_DOWN_MS = 3 * FENCE_CHECK_MS;

/** A kernel request that stayed slow through its resends: what it carried (a lifetime, an element timeout) counts late by lastMs. */
export const slowSendsWarning = (log: Logger) => (s: SlowSends) =>
  log.warn(`${s.operation}: the kernel took ${s.lastMs.toFixed(1)} ms on the last of ${s.sends} sends; what it carried counts that much late`, { messages: s.messages });

export interface FenceKeeperDeps {
  readonly clock: Clock;
  readonly log: Logger;
  readonly timers?: Intervals;
  /** Every VIP the table must guard now: those configured, and those still on their way out. */
  readonly guarded: () => readonly string[];
  /** True once the agent stops: nothing is built any more. */
  readonly stopping: () => boolean;
  /** Every VIP stands down for `ms` with `reason`: the table cannot be made whole. */
  readonly standDown: (reason: string, ms: number) => void;
  /** Measures building each nftables batch (the agent's loop watch). */
  readonly timed?: Timed;
}

export class FenceKeeper {
  readonly #d: FenceKeeperDeps;
  readonly #timers: Intervals;
  #nft: NftFence | null = null;
  #port: FencePort = lifetimeOnlyFence;
  #timer: unknown = null;
  #checking = false;
  /** What the last check found wrong with the fence ("" when whole), to say each change once. */
  #problems = "";

  constructor(deps: FenceKeeperDeps) {
    this.#d = deps;
    this.#timers = deps.timers ?? realTimers;
  }

  /** What the slots fence through: nftables once open() found it, the address lifetime alone before and without. */
  get port(): FencePort {
    return this.#port;
  }

  /**
   * Every VIP the fence table an earlier run left here names; empty when
   * there is none, or no nftables (open() finds that out and says so).
   */
  async previousTable(): Promise<string[]> {
    try {
      this.#nft = NftFence.open({ clock: this.#d.clock, onSlowSends: slowSendsWarning(this.#d.log), timed: this.#d.timed });
      return await this.#nft.leftovers();
    } catch (err) {
      if (!nftablesMissing(err)) throw err;
      this.#nft?.close();
      this.#nft = null;
      return [];
    }
  }

  /**
   * nftables when the kernel has it; otherwise the address lifetime alone
   * (the caller raises the hold time to what that can keep). Building the
   * table is the probe: a kernel without nftables refuses the socket or the
   * chain. Resolves with the mode in force.
   */
  async open(): Promise<FencePort["mode"]> {
    let nft: NftFence;
    try {
      nft = this.#nft ?? NftFence.open({ clock: this.#d.clock, onSlowSends: slowSendsWarning(this.#d.log), timed: this.#d.timed });
      this.#nft = nft;
      await this.configure();
    } catch (err) {
      const missing = nftablesMissing(err);
      if (!missing) throw err;
      this.#nft?.close();
      this.#nft = null;
      this.#d.log.warn("nftables unavailable; fencing with address lifetimes only (whole seconds, removed up to 1 s late)", { reason: missing });
      return this.#port.mode;
    }
    // Someone flushed the ruleset (`nft flush ruleset`, a firewall reload):
    // the table is gone. Build it again, keeping what is allowed, and retry once.
    const again = async <T>(op: () => Promise<T>): Promise<T> => {
      try {
        return await op();
      } catch (err) {
        if (!(err instanceof KernelError) || err.errno !== ENOENT || this.#d.stopping()) throw err;
        this.#d.log.warn("vipd's nftables table is gone; building it again", { error: describeError(err) });
        await this.configure();
        return op();
      }
    };
    this.#port = {
      mode: "nftables",
      allow: (ip, deadline) => again(() => nft.allow(ip, deadline)),
      deny: (ip) => again(() => nft.deny(ip)),
    };
    return this.#port.mode;
  }

  /** Reads the table back every FENCE_CHECK_MS from now on (nothing to check without nftables). */
  startChecks(): void {
    if (this.#timer === null) this.#timer = this.#timers.setInterval(() => void this.check(), FENCE_CHECK_MS);
  }

  /** (Re)builds the fence tables for the VIPs guarded now, keeping what is allowed. */
  async configure(): Promise<void> {
    const nft = this.#nft;
    if (!nft || this.#d.stopping()) return;
    try {
      await nft.configure({ vips: this.#d.guarded() });
    } catch (err) {
      if (!nftablesMissing(err)) this.#d.log.error("building the nftables fence failed", { error: describeError(err) });
      throw err;
    }
  }

  /**
   * Level-triggered: both tables must hold their hooked chains with every
   * rule. When they do not (someone deleted a chain, or a build failed),
   * says so and builds them again; if they are still short after that,
   * every VIP stands down until they are whole (the chains serve every
   * link at once), so that none is held without a fence.
   */
  async check(): Promise<void> {
    const nft = this.#nft;
    const { log } = this.#d;
    if (!nft || this.#d.stopping() || this.#checking) return;
    this.#checking = true;
    try {
      let problems = await nft.problems();
      if (problems.length > 0) {
        const text = problems.join("; ");
        if (text !== this.#problems) log.warn("vipd's nftables fence is incomplete; building it again", { problems: text });
        this.#problems = text;
        // Logged inside; the check that follows says what is still wrong.
        await this.configure().catch(() => {});
        if (this.#d.stopping()) return;
        problems = await nft.problems();
      }
      if (problems.length > 0) this.#d.standDown(`the nftables fence cannot be rebuilt: ${problems.join("; ")}`, FENCE_STAND_DOWN_MS);
      if (problems.length === 0 && this.#problems !== "") {
        log.info("vipd's nftables fence is whole again", { was: this.#problems });
        this.#problems = "";
      }
    } catch (err) {
      log.warn("checking the nftables fence failed", { error: describeError(err) });
    } finally {
      this.#checking = false;
    }
  }

  /** Removes the table on a graceful stop, once every VIP is gone: nothing is left to guard. */
  async remove(): Promise<void> {
    if (!this.#nft) return;
    await this.#nft.remove().catch((err) => this.#d.log.warn("removing the nftables fence failed", { error: describeError(err) }));
  }

  /** Stops the checks and closes the socket; the table stays as it is. */
  close(): void {
    if (this.#timer !== null) this.#timers.clearInterval(this.#timer);
    this.#timer = null;
    this.#nft?.close();
  }
}
