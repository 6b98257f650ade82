// Every metric vipd exports, defined in one place, behind methods named for
// what happened. The agent reports facts ("acquired 10.0.0.5 on eth0 because
// it was elected", "a keepalive came back in 3 ms") and never builds a metric
// name or a label set.
//
// Inputs are in milliseconds, as everywhere else in vipd; series are in
// seconds, as Prometheus wants. Label values are VIP addresses, link names,
// and transition reasons — reasons are short fixed tokens (see
// TRANSITION_REASONS), never free text, so the number of series stays small.
import type { ReleaseCode } from "../vip/decision.ts";
import { HOOK_EVENTS, HOOK_RESULTS, type HookEvent, type HookResult } from "../vip/hook-events.ts";
import { BUILD } from "../version.ts";
import { Counter, Gauge, Histogram, newRegistry, PROMETHEUS_CONTENT_TYPE, type Registry, renderRegistry, seconds } from "./metrics.ts";
import { registerProcessMetrics } from "./process-metrics.ts";

/**
 * Transition reasons: "elected" for an acquisition, a ReleaseCode
 * (vip/decision.ts) for a release. Derived from the one type, so the table
 * and the codes the agent uses cannot disagree.
 */
export const TRANSITION_REASONS: readonly ("elected" | ReleaseCode)[] = [
  "elected", // first in the queue, proven, nobody else's claim in force
  "shutdown", // the agent is stopping
  "removed", // the VIP left the configuration (a reload)
  "link-down", // the VIP's link went away or down
  "gate-closed", // the kube-apiserver gate closed
  "drained", // an operator drained this node (vipd drain)
  "conflict", // another machine answers for the address
  "withdrawn", // the kernel kept refusing the address; standing down for a while
  "handover", // an operator moved the VIP (vipd handover)
  "fence-expired", // no committed heartbeat proves our key any more
  "not-elected", // no longer first in the queue (deposed, or the key is gone)
  "claimed", // (never a release in practice: an acquisition that waits for another's claim)
] satisfies readonly ("elected" | ReleaseCode)[];

/** How a configuration reload ended: applied, refused as invalid, or failed to apply (nothing changed). */
export const RELOAD_RESULTS = ["reloaded", "invalid", "failed"] as const;

// Failover: from a graceful hand-over (tens of ms) to lease expiry (TTL + 0.5 s, TTL up to tens of seconds).
const FAILOVER_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 4, 5, 7.5, 10, 15, 30, 60];
// Heartbeat and probe round trips on a LAN: sub-millisecond to a hold time.
const RTT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
// Hooks: a quick script (milliseconds) to the longest timeout (300 s).
const HOOK_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
// Event-loop stalls: from the 0.1 s that is logged to a frozen process's seconds and more.
const STALL_BUCKETS = [0.1, 0.25, 0.5, 1, 2, 5, 10, 30];

export interface VipdMetricsOptions {
  /** Wall clock in ms for transition timestamps (default Date.now). */
  wallClock?: () => number;
  /** What vipd_build_info names (default: this build's). */
  build?: { version: string; commit: string };
}

export class VipdMetrics {
  readonly registry: Registry = newRegistry();
  readonly contentType = PROMETHEUS_CONTENT_TYPE;
  readonly #wall: () => number;

  readonly #held: Gauge<"vip" | "link">;
  readonly #transitions: Counter<"vip" | "direction" | "reason">;
  readonly #lastTransition: Gauge<"vip">;
  readonly #failover: Histogram<"vip">;
  readonly #heartbeatRtt: Histogram<string>;
  readonly #proofRemaining: Gauge<string>;
  readonly #announcements: Counter<"vip">;
  readonly #gateOpen: Gauge<string>;
  readonly #gateProbe: Histogram<string>;
  #gateRegistered = false;
  readonly #etcdUp: Gauge<string>;
  readonly #heartbeats: Counter<"result">;
  readonly #takeovers: Counter<"vip">;
  readonly #reconnects: Counter<string>;
  readonly #hookRuns: Counter<"event" | "result">;
  readonly #hookDuration: Histogram<"event">;
  readonly #drained: Gauge<string>;
  #isDrained = false;
  readonly #drains: Counter<string>;
  readonly #handovers: Counter<"vip" | "direction">;
  readonly #conflict: Gauge<"vip">;
  readonly #reloads: Counter<"result">;
  readonly #lastReloadOk: Gauge<string>;
  readonly #loopStalls: Histogram<string>;

  constructor(opts: VipdMetricsOptions = {}) {
    this.#wall = opts.wallClock ?? Date.now;
    const registers = [this.registry];
    this.#held = new Gauge({
      name: "vipd_vip_held", help: "1 while this node holds the VIP on the link, else 0.",
      labelNames: ["vip", "link"] as const, registers,
    });
    this.#transitions = new Counter({
      name: "vipd_ownership_transitions_total", help: "Times this node acquired or released the VIP, by reason.",
      labelNames: ["vip", "direction", "reason"] as const, registers,
    });
    this.#lastTransition = new Gauge({
      name: "vipd_last_transition_timestamp_seconds", help: "Unix time of this node's last acquire or release of the VIP.",
      labelNames: ["vip"] as const, registers,
    });
    this.#failover = new Histogram({
      name: "vipd_failover_seconds",
      help: "Failover duration this node saw: from losing the VIP until another node holds it, or from the old holder leaving until this node holds it.",
      labelNames: ["vip"] as const, buckets: FAILOVER_BUCKETS, registers,
    });
    this.#heartbeatRtt = new Histogram({
      name: "vipd_heartbeat_rtt_seconds", help: "Round trip of committed etcd heartbeats.",
      buckets: RTT_BUCKETS, registers,
    });
    this.#proofRemaining = new Gauge({
      name: "vipd_proof_remaining_seconds", help: "Time left on the shortest proof of this node's queue keys (its kernel fence deadline); 0 when there is none.",
      registers,
    });
    this.#announcements = new Counter({
      name: "vipd_announcements_total", help: "Gratuitous ARPs and unsolicited neighbour advertisements sent for the VIP.",
      labelNames: ["vip"] as const, registers,
    });
    // Registered by the first gate(): without a gate there is no series, not
    // a constant 1 that an alert on "gate closed" could never tell apart
    // from a gate that is open.
    this.#gateOpen = new Gauge({
      name: "vipd_gate_open", help: "1 while the kube-apiserver gate is open, else 0; absent when no gate is configured.",
      registers: [],
    });
    this.#gateProbe = new Histogram({
      name: "vipd_gate_probe_seconds", help: "Duration of kube-apiserver readiness probes.",
      buckets: RTT_BUCKETS, registers: [],
    });
    this.#etcdUp = new Gauge({ name: "vipd_etcd_up", help: "1 while the agent's etcd session is good, else 0.", registers });
    this.#heartbeats = new Counter({
      name: "vipd_heartbeats_total", help: "Heartbeat transactions by result: committed, failed (no answer or an etcd error), deposed (a guarded key was gone).",
      labelNames: ["result"] as const, registers,
    });
    this.#takeovers = new Counter({
      name: "vipd_takeovers_total", help: "Times this node took a VIP's queue over from silent agents ahead of it.",
      labelNames: ["vip"] as const, registers,
    });
    this.#reconnects = new Counter({
      name: "vipd_etcd_reconnects_total", help: "Times a stalled etcd stream or call made the agent replace its connection.",
      registers,
    });
    this.#hookRuns = new Counter({
      name: "vipd_hook_runs_total",
      help: "State-change hook runs by event and result: ok, failed (non-zero exit or a signal), timeout (killed), missing (the program could not be started).",
      labelNames: ["event", "result"] as const, registers,
    });
    this.#hookDuration = new Histogram({
      name: "vipd_hook_duration_seconds", help: "How long state-change hooks ran, by event.",
      labelNames: ["event"] as const, buckets: HOOK_BUCKETS, registers,
    });
    for (const event of HOOK_EVENTS) {
      for (const result of HOOK_RESULTS) this.#hookRuns.inc({ event, result }, 0);
      this.#hookDuration.zero({ event });
    }
    this.#drained = new Gauge({ name: "vipd_drained", help: "1 while an operator has this node drained (vipd drain), else 0.", registers });
    this.#drains = new Counter({ name: "vipd_drains_total", help: "Times this node was drained (vipd drain).", registers });
    this.#handovers = new Counter({
      name: "vipd_handovers_total",
      help: "Requested hand-overs (vipd handover) this node took part in: direction out = it handed the VIP over, in = it took the VIP over.",
      labelNames: ["vip", "direction"] as const, registers,
    });
    this.#drained.set(0);
    this.#drains.inc(0);
    this.#conflict = new Gauge({
      name: "vipd_address_conflict",
      help: "1 while a machine that is not a vipd agent answers ARP or neighbour solicitations for the VIP (this node then neither stands for it nor holds it), else 0.",
      labelNames: ["vip"] as const, registers,
    });
    this.#reloads = new Counter({
      name: "vipd_config_reloads_total",
      help: "Configuration reloads (SIGHUP, vipd reload) by result: reloaded, invalid (the file did not validate), failed (it could not be applied); the last two change nothing.",
      labelNames: ["result"] as const, registers,
    });
    for (const result of RELOAD_RESULTS) this.#reloads.inc({ result }, 0);
    this.#lastReloadOk = new Gauge({
      name: "vipd_config_last_reload_successful",
      help: "0 when the last configuration reload was refused or failed (vipd runs as before), else 1.",
      registers,
    });
    this.#lastReloadOk.set(1);
    this.#loopStalls = new Histogram({
      name: "vipd_event_loop_stall_seconds",
      help: "Event-loop stalls over 0.1 s (a late 1 s timer, or one of the agent's tasks running that long), by duration; _count is how many.",
      buckets: STALL_BUCKETS, registers,
    });
    const build = opts.build ?? BUILD;
    new Gauge({
      name: "vipd_build_info", help: "Always 1; the labels name this vipd's version and commit.",
      labelNames: ["version", "commit"] as const, registers,
    }).set({ version: build.version, commit: build.commit }, 1);
    registerProcessMetrics(this.registry);
  }

  /** A configuration reload ended (see RELOAD_RESULTS). */
  configReload(result: (typeof RELOAD_RESULTS)[number]): void {
    this.#reloads.inc({ result });
    this.#lastReloadOk.set(result === "reloaded" ? 1 : 0);
  }

  /** The event loop stalled for stalledMs (over 100 ms: agent/loop-watch.ts). */
  loopStall(stalledMs: number): void {
    this.#loopStalls.observe(seconds(stalledMs));
  }

  /** Makes the VIP's series exist (held 0, no announcements) before anything happens to it. */
  declareVip(vip: string, link: string): void {
    this.#held.set({ vip, link }, 0);
    this.#announcements.inc({ vip }, 0);
    this.#failover.zero({ vip });
    this.#takeovers.inc({ vip }, 0);
    for (const direction of ["in", "out"]) this.#handovers.inc({ vip, direction }, 0);
    this.#conflict.set({ vip }, 0);
  }

  /**
   * Removes every series of a VIP that left the configuration (a reload), so
   * /metrics lists only the VIPs this node runs. A VIP added back starts
   * from zero, which Prometheus reads as a counter reset.
   */
  forgetVip(vip: string, link: string): void {
    this.#held.remove({ vip, link });
    for (const direction of ["acquired", "released"]) {
      for (const reason of TRANSITION_REASONS) this.#transitions.remove({ vip, direction, reason });
    }
    this.#lastTransition.remove({ vip });
    this.#failover.remove({ vip });
    this.#announcements.remove({ vip });
    this.#takeovers.remove({ vip });
    for (const direction of ["in", "out"]) this.#handovers.remove({ vip, direction });
    this.#conflict.remove({ vip });
  }

  /** This node acquired (held = true) or released the VIP on a link, at wall time atMs (default now). */
  ownership(vip: string, link: string, held: boolean, reason: string, atMs: number = this.#wall()): void {
    this.#held.set({ vip, link }, held ? 1 : 0);
    this.#transitions.inc({ vip, direction: held ? "acquired" : "released", reason });
    this.#lastTransition.set({ vip }, seconds(atMs));
  }

  /** A failover this node saw, in ms (see vipd_failover_seconds' help). */
  failover(vip: string, durationMs: number): void {
    this.#failover.observe({ vip }, seconds(durationMs));
  }

  /** A heartbeat's outcome; a committed one with its round trip. */
  heartbeat(result: "committed" | "failed" | "deposed", rttMs?: number): void {
    this.#heartbeats.inc({ result });
    if (rttMs !== undefined) this.#heartbeatRtt.observe(seconds(rttMs));
  }

  /** Time left on the shortest proof; null (none, or past it) exports 0. */
  proofRemaining(remainingMs: number | null): void {
    this.#proofRemaining.set(remainingMs === null ? 0 : Math.max(0, seconds(remainingMs)));
  }

  tookOver(vip: string): void {
    this.#takeovers.inc({ vip });
  }

  /** Whether an operator has this node drained; becoming drained counts one drain. */
  drained(drained: boolean): void {
    if (drained && !this.#isDrained) this.#drains.inc();
    this.#isDrained = drained;
    this.#drained.set(drained ? 1 : 0);
  }

  /** A requested hand-over moved the VIP away from this node (out) or to it (in). */
  handover(vip: string, direction: "in" | "out"): void {
    this.#handovers.inc({ vip, direction });
  }

  /** Whether a machine that is not a vipd agent answers for the VIP (the last probe found one). */
  addressConflict(vip: string, conflict: boolean): void {
    this.#conflict.set({ vip }, conflict ? 1 : 0);
  }

  /** A state-change hook ran (or could not start) for durationMs. */
  hookRan(event: HookEvent, result: HookResult, durationMs: number): void {
    this.#hookRuns.inc({ event, result });
    this.#hookDuration.observe({ event }, seconds(durationMs));
  }

  /** The agent replaced its etcd connection `n` more times. */
  reconnected(n = 1): void {
    this.#reconnects.inc(n);
  }

  /** `count` announcements (ARP or NA frames) sent for the VIP. */
  announced(vip: string, count = 1): void {
    this.#announcements.inc({ vip }, count);
  }

  /** The gate's state; never called when no gate is configured, so its series stay absent. */
  gate(open: boolean): void {
    if (!this.#gateRegistered) {
      this.registry.registerMetric(this.#gateOpen);
      this.registry.registerMetric(this.#gateProbe);
      this.#gateRegistered = true;
    }
    this.#gateOpen.set(open ? 1 : 0);
  }

  /** One kube-apiserver probe finished after latencyMs. */
  gateProbe(latencyMs: number): void {
    this.#gateProbe.observe(seconds(latencyMs));
  }

  etcdUp(up: boolean): void {
    this.#etcdUp.set(up ? 1 : 0);
  }

  /** The text exposition, for GET /metrics (served with `contentType`). */
  render(): Promise<string> {
    return renderRegistry(this.registry);
  }
}
