// What the agent shows the outside: /healthz (health), /status (status) and
// /metrics (metrics). Each reads the agent's parts as they are at the
// moment it is asked, through AgentView, and changes nothing but the
// gauges it samples.
import type { Settings } from "../config/index.ts";
import type { EtcdConnection } from "../election/connection.ts";
import { type FenceMode, HEARTBEAT_INTERVAL_MS } from "../election/proof.ts";
import type { Session } from "../election/session.ts";
import type { ApiServerGate } from "../health/gate.ts";
import type { HealthReport } from "../health/server.ts";
import type { VipdMetrics } from "../health/vipd-metrics.ts";
import type { Clock } from "../seams.ts";
import type { LoopWatch } from "./loop-watch.ts";
import type { Slot, VipStatus } from "./slot.ts";

export interface AgentStatus {
  node: string;
  vips: VipStatus[];
  etcd: {
    endpoints: readonly string[];
    connected: boolean;
    lease: string | null;
    ttl: number | null;
    holdMs: number;
    /** Since the last committed heartbeat; null before the first. */
    lastHeartbeatMs: number | null;
    lastError: string | null;
    /** Every agent etcd knows, and how long ago this node last heard its heartbeat. */
    agents: { node: string; host: string | null; silentForMs: number | null }[];
  };
  fence: { mode: FenceMode };
  /** Why this node is drained (`vipd drain`); null: it is not. */
  drained: string | null;
  /** Every drained node, and who drained it when (as the command recorded it). */
  drains: { node: string; by: string | null; at: string | null; reason: string | null }[];
  gate: { open: boolean; reason: string; lastProbeMs: number | null } | null;
}

/** The agent's parts, read when a surface is asked; null for those not there yet (before start, while etcd is unknown). */
export interface AgentView {
  readonly clock: Clock;
  readonly metrics: VipdMetrics;
  readonly gate: ApiServerGate | null;
  readonly loop: LoopWatch;
  settings(): Settings;
  session(): Session | null;
  connection(): EtcdConnection | null;
  slots(): readonly Slot[];
  /** The hold time in force (raised without nftables). */
  holdMs(): number;
  fenceMode(): FenceMode;
  stopping(): boolean;
}

export class Surfaces {
  readonly #a: AgentView;
  /** Connection resets already added to the metric. */
  #resetsCounted = 0;

  constructor(view: AgentView) {
    this.#a = view;
  }

  health(): HealthReport {
    const a = this.#a;
    const now = a.clock();
    const session = a.session();
    const slots = a.slots();
    if (a.stopping()) return { ok: false, reason: "shutting down" };
    const stalled = a.loop.problem();
    if (stalled) return { ok: false, reason: stalled };
    if (!session?.ready) return { ok: false, reason: `etcd session not established: ${session?.lastError ?? "connecting"}` };
    // etcd may hold our heartbeats back for a hold less one interval before
    // this fails, whatever our pace: a standby's commits are further apart
    // (design.md §3), which is no sign of a slower etcd.
    const beat = session.lastHeartbeatAt;
    if (beat === null || now - beat > a.holdMs() + session.heartbeatPaceMs - HEARTBEAT_INTERVAL_MS) {
      const since = beat === null ? "none committed yet" : `none committed for ${Math.round(now - beat)} ms`;
      return { ok: false, reason: `etcd heartbeat: ${since}${session.lastHeartbeatError ? `: ${session.lastHeartbeatError}` : ""}` };
    }
    // A VIP whose link is missing or down has nobody here to stand for it:
    // the node is up but not doing its job, and only an operator can fix
    // it (a wrong link name, a NIC that never came up). Before the gate, as
    // a slot's own candidacy puts it: the link is what to look at first.
    const cannot = slots.flatMap((s) => {
      const st = s.standing();
      return !st.standing && st.fault ? [`${s.vip.ip} not standing: ${st.reason}`] : [];
    });
    if (cannot.length) return { ok: false, reason: cannot.join("; ") };
    // A closed gate keeps this node out of the elections; probes should see why.
    if (a.gate && !a.gate.open) return { ok: false, reason: `kube-apiserver gate closed: ${a.gate.reason}` };
    const withdrawn = slots.find((s) => s.withdrawnReason !== null);
    if (withdrawn) return { ok: false, reason: `cannot hold ${withdrawn.vip.ip} on ${withdrawn.vip.link}: ${withdrawn.withdrawnReason}` };
    // The VIP stays dark on purpose, on every node: an operator must find the stranger.
    const conflict = slots.find((s) => s.conflict !== null)?.conflict;
    if (conflict) return { ok: false, reason: conflict.reason };
    return { ok: true, reason: "" };
  }

  status(): AgentStatus {
    const a = this.#a;
    const now = a.clock();
    const wall = Date.now();
    const session = a.session();
    const settings = a.settings();
    const info = session?.describe();
    const beat = session?.lastHeartbeatAt ?? null;
    const gate = a.gate;
    return {
      node: settings.nodeName,
      vips: a.slots().map((s) => s.status(wall)),
      etcd: {
        endpoints: settings.etcd.endpoints,
        connected: session?.ready ?? false,
        lease: info?.lease ?? null,
        ttl: info?.ttl ?? null,
        holdMs: a.holdMs(),
        lastHeartbeatMs: beat === null ? null : Math.round(now - beat),
        lastError: session?.lastError ?? null,
        agents: info?.agents ?? [],
      },
      fence: { mode: a.fenceMode() },
      drained: session?.drained ?? null,
      drains: (session?.view.drains() ?? []).map((d) => ({ node: d.node, by: d.drain?.by ?? null, at: d.drain?.at ?? null, reason: d.drain?.reason ?? null })),
      gate: gate ? { open: gate.open, reason: gate.reason, lastProbeMs: gate.lastProbe ? Math.round(gate.lastProbe.latencyMs) : null } : null,
    };
  }

  /** Prometheus exposition; gauges that are states are sampled now. */
  metrics(): Promise<string> {
    const a = this.#a;
    const now = a.clock();
    const session = a.session();
    a.metrics.etcdUp(session?.ready ?? false);
    const resets = a.connection()?.resets ?? 0;
    if (resets > this.#resetsCounted) a.metrics.reconnected(resets - this.#resetsCounted);
    this.#resetsCounted = resets;
    const proofs = a.slots().map((s) => session?.proof(s.vip.ip) ?? null).filter((d): d is number => d !== null);
    a.metrics.proofRemaining(proofs.length ? Math.min(...proofs) - now : null);
    return a.metrics.render();
  }
}
