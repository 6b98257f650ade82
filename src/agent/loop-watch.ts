// Whether the event loop stalls: a timer that stops running is the sign
// (a frozen process, a starved CPU). Nothing runs while it stalls, so proofs
// may run out and VIPs move meanwhile; the fence kept that safe, and
// /healthz says so.
//
// The health server runs on the same loop, so a probe gets no answer while
// the stall lasts (its timeout is what catches it); requests answered once
// the loop runs again, for LOOP_STALL_MS after the stall, hear of it,
// whether the runtime serves them before or after this timer catches up.
import type { Logger } from "../log.ts";
import { type Clock, type Intervals, realTimers } from "../seams.ts";

export const LOOP_TICK_MS = 1000;
export const LOOP_STALL_MS = 2000;

export class LoopWatch {
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #timers: Intervals;
  readonly #timer: unknown;
  #at: number;
  /** The last stall the timer saw: how long, and when it ended. */
  #lastStall: { ms: number; endedAt: number } | null = null;

  constructor(deps: { clock: Clock; log: Logger; timers?: Intervals }) {
    this.#clock = deps.clock;
    this.#log = deps.log;
    this.#timers = deps.timers ?? realTimers;
    this.#at = this.#clock();
    this.#timer = this.#timers.setInterval(() => this.#tick(), LOOP_TICK_MS);
  }

  /** Why the loop is not healthy now ("" when it is): stalled at this moment, or until less than LOOP_STALL_MS ago. */
  problem(): string {
    const now = this.#clock();
    if (now - this.#at > LOOP_STALL_MS) return `event loop stalled for ${Math.round(now - this.#at)} ms`;
    const stall = this.#lastStall;
    if (stall && now - stall.endedAt < LOOP_STALL_MS) return `event loop stalled for ${stall.ms} ms, until ${Math.round(now - stall.endedAt)} ms ago`;
    return "";
  }

  close(): void {
    this.#timers.clearInterval(this.#timer);
  }

  #tick(): void {
    const now = this.#clock();
    const gap = now - this.#at;
    this.#at = now;
    if (gap <= LOOP_STALL_MS) return;
    this.#lastStall = { ms: Math.round(gap), endedAt: now };
    this.#log.warn(`event loop stalled for ${Math.round(gap)} ms (process frozen, or starved of CPU)`, { stalledMs: Math.round(gap) });
  }
}
