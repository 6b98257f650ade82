// One timer for every slot that waits for the agents ahead of it to fall
// silent (design.md §3, §8). A slot queued behind a live holder would
// otherwise re-arm a timer of its own at every heartbeat of that holder, and
// a standby of 100 VIPs re-decide each of them four times a second per peer.
// Here a waiting slot names the agent it waits on longest and that agent's
// silence deadline, once; heartbeats move nothing here. The timer fires at
// the earliest deadline among the agents waited on, reads each one's latest
// deadline from the view (heardUntil), and wakes only the slots whose agent
// really has been silent that long; for an agent that spoke meanwhile it
// waits on, one check per silence window. A woken slot decides with the
// facts as they are then: the takeover itself, the rank stagger after it
// (its own timer, now that nothing ahead can move it) and the transaction
// shared by every VIP woken in the same turn are the slot's and the
// session's, as before.
import { type Clock, realTimers, type Timeouts } from "../seams.ts";

export interface SilenceWaiter {
  /** The agent waited on has been silent until the deadline: the takeover's moment may have come. */
  due(): void;
}

/** What a slot needs of the watch. */
export interface SilenceWaits {
  /** Wake `w` once `node` has been silent until `until` (its silence deadline as the view said), or later if it speaks meanwhile. Replaces w's earlier wait. */
  wait(w: SilenceWaiter, node: string, until: number): void;
  cancel(w: SilenceWaiter): void;
}

export interface SilenceWatchDeps {
  readonly clock: Clock;
  /** When the latest heartbeat heard from the agent stops counting; null: none heard (then the deadline each waiter was told stands). */
  readonly heardUntil: (node: string) => number | null;
  readonly timers?: Timeouts;
}

export class SilenceWatch implements SilenceWaits {
  readonly #d: SilenceWatchDeps;
  readonly #timers: Timeouts;
  /** Agent → its waiters, each with the deadline it was told (which counts only while the agent was never heard). */
  readonly #byNode = new Map<string, Map<SilenceWaiter, number>>();
  readonly #nodeOf = new Map<SilenceWaiter, string>();
  #timer: unknown = null;
  #timerAt = Infinity;
  /** Wakes so far, and checks that found the agent alive: for tests and benchmarks. */
  wakes = 0;
  rechecks = 0;

  constructor(deps: SilenceWatchDeps) {
    this.#d = deps;
    this.#timers = deps.timers ?? realTimers;
  }

  /** Slots waiting now. */
  get waiting(): number {
    return this.#nodeOf.size;
  }

  wait(w: SilenceWaiter, node: string, until: number): void {
    const had = this.#nodeOf.get(w);
    if (had === node && this.#byNode.get(node)?.get(w) === until) return;
    if (had !== undefined) this.#remove(w, had);
    let waiters = this.#byNode.get(node);
    if (!waiters) this.#byNode.set(node, (waiters = new Map()));
    waiters.set(w, until);
    this.#nodeOf.set(w, node);
    const at = this.#d.heardUntil(node) ?? until;
    if (at < this.#timerAt) this.#arm(at);
  }

  cancel(w: SilenceWaiter): void {
    const node = this.#nodeOf.get(w);
    // The timer stays: when it fires it finds nothing to wake, and arms for what is left.
    if (node !== undefined) this.#remove(w, node);
  }

  /** Stops the timer and forgets every waiter. */
  close(): void {
    if (this.#timer !== null) this.#timers.clearTimeout(this.#timer);
    this.#timer = null;
    this.#timerAt = Infinity;
    this.#byNode.clear();
    this.#nodeOf.clear();
  }

  #remove(w: SilenceWaiter, node: string): void {
    this.#nodeOf.delete(w);
    const waiters = this.#byNode.get(node);
    waiters?.delete(w);
    if (waiters?.size === 0) this.#byNode.delete(node);
  }

  #arm(at: number): void {
    if (this.#timer !== null) this.#timers.clearTimeout(this.#timer);
    this.#timer = null;
    this.#timerAt = at;
    if (at === Infinity) return;
    // A millisecond late, as a slot's own timer: "silent until" is reached, not approached.
    this.#timer = this.#timers.setTimeout(() => {
      this.#timer = null;
      this.#timerAt = Infinity;
      this.#check();
    }, Math.max(0, at - this.#d.clock()) + 1);
  }

  #check(): void {
    const now = this.#d.clock();
    const woken: SilenceWaiter[] = [];
    let next = Infinity;
    for (const [node, waiters] of this.#byNode) {
      const heard = this.#d.heardUntil(node);
      if (heard !== null && heard > now) {
        // It spoke: every waiter's deadline is its latest heartbeat's.
        this.rechecks++;
        next = Math.min(next, heard);
        continue;
      }
      for (const [w, until] of waiters) {
        const deadline = heard ?? until;
        if (deadline > now) {
          next = Math.min(next, deadline);
          continue;
        }
        waiters.delete(w);
        this.#nodeOf.delete(w);
        woken.push(w);
      }
      if (waiters.size === 0) this.#byNode.delete(node);
    }
    this.#arm(next);
    this.wakes += woken.length;
    // In one turn: the takeovers they ask for share a transaction (queue-writer.ts).
    for (const w of woken) w.due();
  }
}
