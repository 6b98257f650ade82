// The kube-apiserver gate: a node may campaign for (and keep) the VIP only
// while its own API server answers. The VIP exists so that clients reach a
// working Kubernetes API; a node whose API server crash-loops must let
// another node serve it.
//
// The rule, pure in `stepGate` and applied by ApiServerGate to each probe:
//
//   * The gate starts CLOSED: before the API server has ever been ready
//     (cluster bootstrap) there is nothing to send clients to.
//   * CLOSED → OPEN after `rise` consecutive successful probes (2xx).
//   * OPEN → CLOSED after `fall` consecutive failed probes.
//   * Anti-flap hold-down: once the gate has closed after having been open,
//     it reopens only after `rise` consecutive successes AND `holdDown`
//     without a single failed probe (measured from the last failure, which is
//     at or after the close). Default holdDown = max(10 s, 5 × interval).
//
// Why from the last failure and not only from the close: with a window
// measured from the close, an API server that is up 3 s and down 3 s would
// reopen the gate every ~12 s and the VIP would follow it around. Requiring a
// quiet window means a gate that keeps flapping stays closed until the
// flapping stops: flapping for 30 s costs at most one move of the VIP (the
// close), and the node rejoins the election queue at the back once its API
// server has been steady for holdDown. The first opening (bootstrap) has no
// hold-down: there is no move to damp, and the cluster waits for this VIP.
import type { Settings } from "../config/settings.ts";
import { type Clock, Emitter, type Intervals, monotonicClock, realTimers, type Timeouts } from "../seams.ts";
import { makeProbe, type Probe, type ProbeFetch, type ProbeOutcome } from "./probe.ts";

export interface GateRule {
  rise: number;
  fall: number;
  holdDownMs: number;
}

export interface GateState {
  readonly open: boolean;
  /** Why the gate is as it is, in one sentence. */
  readonly reason: string;
  readonly consecutiveSuccesses: number;
  readonly consecutiveFailures: number;
  /** Clock time of the last close of an open gate; null while it has never been open. */
  readonly closedAt: number | null;
  readonly lastFailureAt: number | null;
}

export const NOT_READY_YET = "kube-apiserver has not been ready yet";

export function initialGate(): GateState {
  return { open: false, reason: NOT_READY_YET, consecutiveSuccesses: 0, consecutiveFailures: 0, closedAt: null, lastFailureAt: null };
}

/** The hold-down after a close, ms: max(10 s, 5 × interval). */
export function defaultHoldDownMs(intervalSeconds: number): number {
  return Math.max(10_000, 5 * intervalSeconds * 1000);
}

/** The gate after one probe that completed at `now` (ms, monotonic). Pure. */
export function stepGate(rule: GateRule, s: GateState, probe: ProbeOutcome, now: number): GateState {
  if (!probe.ok) {
    const failures = s.consecutiveFailures + 1;
    const base = { consecutiveSuccesses: 0, consecutiveFailures: failures, lastFailureAt: now };
    if (s.open) {
      if (failures < rule.fall) return { ...s, ...base };
      return { ...s, ...base, open: false, closedAt: now, reason: `kube-apiserver not ready: ${probe.detail} (${failures} failed probes in a row)` };
    }
    const reason = s.closedAt === null ? `${NOT_READY_YET}: ${probe.detail}` : `kube-apiserver not ready: ${probe.detail}`;
    return { ...s, ...base, reason };
  }
  const successes = s.consecutiveSuccesses + 1;
  const base = { consecutiveSuccesses: successes, consecutiveFailures: 0 };
  if (s.open) return { ...s, ...base };
  if (successes < rule.rise) return { ...s, ...base };
  if (s.closedAt !== null && s.lastFailureAt !== null && now - s.lastFailureAt < rule.holdDownMs) {
    const reason = `kube-apiserver answers again (${probe.detail}) but the gate stays closed until it has gone ` +
      `${rule.holdDownMs / 1000} s without a failed probe (anti-flap hold-down)`;
    return { ...s, ...base, reason };
  }
  return { ...s, ...base, open: true, reason: `kube-apiserver ready: ${probe.detail}` };
}

export interface GateChange {
  readonly open: boolean;
  readonly reason: string;
  /** "opened"/"closed" when `open` flipped; "reason" when only the reason changed (e.g. a new kind of failure while closed). */
  readonly kind: "opened" | "closed" | "reason";
}

export interface LastProbe {
  readonly ok: boolean;
  readonly detail: string;
  readonly latencyMs: number;
  /** Clock time the probe completed. */
  readonly at: number;
}

export interface GateCounts {
  readonly probes: number;
  readonly successes: number;
  readonly failures: number;
  readonly consecutiveSuccesses: number;
  readonly consecutiveFailures: number;
}

export type ApiServerGateOptions = NonNullable<Settings["apiServer"]> & {
  /** Seconds; default max(10, 5 × interval). */
  holdDown?: number;
};

export interface ApiServerGateDeps {
  /** Replaces the HTTPS probe entirely (unit tests). */
  probe?: Probe;
  /** Replaces fetch inside the real probe. */
  fetch?: ProbeFetch;
  clock?: Clock;
  timers?: Timeouts;
  /**
   * Repeating timers shared with the agent's other tasks of the same period
   * (shared-ticks.ts): probes then start on their ticks, in the same
   * wakeup as the others, rather than on a timer of the gate's own.
   */
  ticks?: Intervals;
}

export interface GateEvents extends Record<string, unknown> {
  change: GateChange;
  /** Every finished probe (for the probe-latency histogram). */
  probe: LastProbe;
}

export class ApiServerGate extends Emitter<GateEvents> {
  readonly #rule: GateRule;
  readonly #intervalMs: number;
  readonly #probe: Probe;
  readonly #clock: Clock;
  readonly #timers: Timeouts;
  readonly #ticks: Intervals | null;
  #state: GateState = initialGate();
  #last: LastProbe | null = null;
  #probes = 0;
  #successes = 0;
  #timer: unknown = null;
  #running = false;
  /** With ticks: a probe is under way, and whether a tick came meanwhile (the next probe starts when it ends). */
  #probing = false;
  #tickMissed = false;

  constructor(opts: ApiServerGateOptions, deps: ApiServerGateDeps = {}) {
    super();
    if (!(opts.rise >= 1 && opts.fall >= 1)) throw new RangeError(`apiServer rise and fall must be at least 1 (got ${opts.rise}, ${opts.fall})`);
    if (!(opts.interval > 0 && opts.timeout > 0)) throw new RangeError(`apiServer interval and timeout must be positive (got ${opts.interval}, ${opts.timeout})`);
    this.#rule = {
      rise: opts.rise,
      fall: opts.fall,
      holdDownMs: opts.holdDown !== undefined ? opts.holdDown * 1000 : defaultHoldDownMs(opts.interval),
    };
    this.#intervalMs = opts.interval * 1000;
    this.#probe = deps.probe ?? makeProbe(opts, deps.fetch);
    this.#clock = deps.clock ?? monotonicClock;
    this.#timers = deps.timers ?? realTimers;
    this.#ticks = deps.ticks ?? null;
  }

  get open(): boolean {
    return this.#state.open;
  }
  get reason(): string {
    return this.#state.reason;
  }
  get rule(): Readonly<GateRule> {
    return this.#rule;
  }
  get lastProbe(): LastProbe | null {
    return this.#last;
  }
  get counts(): GateCounts {
    return {
      probes: this.#probes,
      successes: this.#successes,
      failures: this.#probes - this.#successes,
      consecutiveSuccesses: this.#state.consecutiveSuccesses,
      consecutiveFailures: this.#state.consecutiveFailures,
    };
  }

  /** Subscribes to changes (same as on("change", fn)); returns the unsubscribe function. */
  onChange(fn: (c: GateChange) => void): () => void {
    return this.on("change", fn);
  }

  /**
   * Probes now, then every interval (on shared ticks: at each tick, the
   * first one sooner). Probes never overlap: when one takes longer than the
   * interval (timeout > interval), the next starts as soon as it ends.
   */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    if (this.#ticks) this.#timer = this.#ticks.setInterval(() => this.#tick(), this.#intervalMs);
    void this.#loop();
  }

  stop(): void {
    this.#running = false;
    if (this.#timer !== null) {
      if (this.#ticks) this.#ticks.clearInterval(this.#timer);
      else this.#timers.clearTimeout(this.#timer);
    }
    this.#timer = null;
    this.#tickMissed = false;
  }

  /** Runs one probe and applies it; what start() does on each tick. */
  async probeOnce(): Promise<LastProbe> {
    const started = this.#clock();
    const outcome = await this.#probe().catch((e: unknown): ProbeOutcome => ({ ok: false, detail: `probe failed: ${String(e)}` }));
    const at = this.#clock();
    const last: LastProbe = { ok: outcome.ok, detail: outcome.detail, latencyMs: at - started, at };
    this.#last = last;
    this.#probes++;
    if (outcome.ok) this.#successes++;
    this.emit("probe", last);
    const before = this.#state;
    this.#state = stepGate(this.#rule, before, outcome, at);
    const after = this.#state;
    if (after.open !== before.open || after.reason !== before.reason) {
      const change: GateChange = {
        open: after.open,
        reason: after.reason,
        kind: after.open !== before.open ? (after.open ? "opened" : "closed") : "reason",
      };
      this.emit("change", change);
    }
    return last;
  }

  async #loop(): Promise<void> {
    if (!this.#running) return;
    const started = this.#clock();
    this.#probing = true;
    await this.probeOnce(); // never rejects: the probe resolves with failures, listener errors stay in emit()
    this.#probing = false;
    if (!this.#running) return;
    if (this.#ticks) {
      // A tick that came while the probe ran starts the next one now; otherwise the next tick will.
      if (this.#tickMissed) {
        this.#tickMissed = false;
        void this.#loop();
      }
      return;
    }
    const wait = Math.max(0, this.#intervalMs - (this.#clock() - started));
    this.#timer = this.#timers.setTimeout(() => {
      this.#timer = null;
      void this.#loop();
    }, wait);
  }

  #tick(): void {
    if (this.#probing) this.#tickMissed = true;
    else void this.#loop();
  }
}
