// Every metric vipd exports, defined in one place, behind methods named for
// what happened. The agent reports facts ("acquired 10.0.0.5 on eth0 because
// it was elected", "a keepalive came back in 3 ms") and never builds a metric
// name or a label set.
//
// Inputs are in milliseconds, as everywhere else in vipd; series are in
// seconds, as Prometheus wants. Label values are VIP addresses, link names,
// and transition reasons — reasons are short fixed tokens (see
// TRANSITION_REASONS), never free text, so the number of series stays small.
import { Counter, Gauge, Histogram, newRegistry, PROMETHEUS_CONTENT_TYPE, type Registry, renderRegistry, seconds } from "./metrics.ts";

/** Reasons the agent is expected to use; any short token works, these keep dashboards consistent. */
export const TRANSITION_REASONS = [
  "elected", // won the election (first in the queue) with everything healthy
  "resigned", // gave it up on purpose (graceful stop)
  "gate-closed", // the kube-apiserver gate closed
  "fence-expired", // could no longer prove the lease alive
  "key-lost", // our election key disappeared (revoked, expired, deleted)
  "link-down", // the VIP's link went away or down
  "shutdown", // the agent is stopping
] as const;

// Failover: from a graceful hand-over (tens of ms) to lease expiry (TTL + 0.5 s, TTL up to tens of seconds).
const FAILOVER_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 4, 5, 7.5, 10, 15, 30, 60];
// Keepalive and probe round trips on a LAN: sub-millisecond to a TTL.
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
  readonly #keepaliveRtt: Histogram<string>;
  readonly #fenceRemaining: Gauge<string>;
  readonly #announcements: Counter<"vip">;
  readonly #gateOpen: Gauge<string>;
  readonly #gateProbe: Histogram<string>;
  readonly #etcdUp: Gauge<string>;
  readonly #renewals: Counter<string>;
  readonly #expiries: Counter<string>;

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
    this.#keepaliveRtt = new Histogram({
      name: "vipd_keepalive_rtt_seconds", help: "Round trip of acknowledged etcd lease keepalives.",
      buckets: RTT_BUCKETS, registers,
    });
    this.#fenceRemaining = new Gauge({
      name: "vipd_fence_remaining_seconds", help: "Time left before the fence deadline (the lease can no longer be proven alive); 0 when there is none.",
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
    this.#renewals = new Counter({ name: "vipd_lease_renewals_total", help: "Acknowledged etcd lease keepalives.", registers });
    this.#expiries = new Counter({
      name: "vipd_lease_expiries_total", help: "Times the agent's lease was lost (fence deadline passed or lease gone at etcd).",
      registers,
    });
  }

  /** Makes the VIP's series exist (held 0, no announcements) before anything happens to it. */
  declareVip(vip: string, link: string): void {
    this.#held.set({ vip, link }, 0);
    this.#announcements.inc({ vip }, 0);
    this.#failover.zero({ vip });
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

  /** An acknowledged keepalive: its round trip and the fence time left after it. */
  keepalive(rttMs: number, remainingMs: number): void {
    this.#renewals.inc();
    this.#keepaliveRtt.observe(seconds(rttMs));
    this.fenceRemaining(remainingMs);
  }

  /** Time left before the fence deadline; null (no lease, or past it) exports 0. */
  fenceRemaining(remainingMs: number | null): void {
    this.#fenceRemaining.set(remainingMs === null ? 0 : Math.max(0, seconds(remainingMs)));
  }

  /** The lease was lost: the fence deadline passed or etcd no longer has it. */
  leaseExpired(): void {
    this.#expiries.inc();
    this.#fenceRemaining.set(0);
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
