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
import { Counter, Gauge, Histogram, newRegistry, PROMETHEUS_CONTENT_TYPE, type Registry, renderRegistry, seconds } from "./metrics.ts";

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

// Failover: from a graceful hand-over (tens of ms) to lease expiry (TTL + 0.5 s, TTL up to tens of seconds).
const FAILOVER_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 4, 5, 7.5, 10, 15, 30, 60];
// Heartbeat and probe round trips on a LAN: sub-millisecond to a hold time.
const RTT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export interface VipdMetricsOptions {
  /** Wall clock in ms for transition timestamps (default Date.now). */
  wallClock?: () => number;
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
  readonly #etcdUp: Gauge<string>;
  readonly #heartbeats: Counter<"result">;
  readonly #takeovers: Counter<"vip">;
  readonly #reconnects: Counter<string>;

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
    this.#gateOpen = new Gauge({
      name: "vipd_gate_open", help: "1 while the kube-apiserver gate is open (or no gate is configured), else 0.",
      registers,
    });
    this.#gateProbe = new Histogram({
      name: "vipd_gate_probe_seconds", help: "Duration of kube-apiserver readiness probes.",
      buckets: RTT_BUCKETS, registers,
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
  }

  /** Makes the VIP's series exist (held 0, no announcements) before anything happens to it. */
  declareVip(vip: string, link: string): void {
    this.#held.set({ vip, link }, 0);
    this.#announcements.inc({ vip }, 0);
    this.#failover.zero({ vip });
    this.#takeovers.inc({ vip }, 0);
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

  /** The agent replaced its etcd connection `n` more times. */
  reconnected(n = 1): void {
    this.#reconnects.inc(n);
  }

  /** `count` announcements (ARP or NA frames) sent for the VIP. */
  announced(vip: string, count = 1): void {
    this.#announcements.inc({ vip }, count);
  }

  /** The gate's state; call with true when no gate is configured. */
  gate(open: boolean): void {
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
