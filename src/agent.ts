// The agent: joins the etcd lease and elections, link facts from the kernel,
// and the VIP controllers. Every fact change only asks the controllers for
// another pass; they decide from the facts as they are at that moment.
//
// Ordering rules that keep "never two owners" (DESIGN.md):
// - leftover VIPs from an earlier run are removed before any campaign (the
//   election deletes this node's stale keys, which hands the VIP to the next
//   candidate at once);
// - a lost proof, lost key, link down or shutdown removes the address first,
//   and only then talks to etcd (resign, revoke, new lease);
// - leadership from etcd is never enough: the controller also requires the
//   lease's fence on our own clock, and puts that fence into the kernel as
//   the address lifetime.
import type { Etcd3 } from "etcd3";
import type { Settings, VipSettings } from "./config/index.ts";
import { AgentLease, connectEtcd, type ElectionState, monotonicClock, VipElection } from "./election/index.ts";
import { describeEtcdError } from "./election/etcd-error.ts";
import type { Clock } from "./election/fence.ts";
import { ApiServerGate } from "./health/gate.ts";
import type { HealthReport } from "./health/server.ts";
import { VipdMetrics } from "./health/vipd-metrics.ts";
import { Announcer } from "./kernel/announce.ts";
import { LinkEvents, type KernelEvent } from "./kernel/link-events.ts";
import { type Link, Rtnl } from "./kernel/rtnl.ts";
import { describeError, type Logger } from "./log.ts";
import { VipController } from "./vip/controller.ts";
import { decideCandidacy, type VipFacts } from "./vip/decision.ts";
import type { AnnouncePort } from "./vip/ports.ts";

type LinkState = VipFacts["link"];

interface VipEntry {
  readonly settings: VipSettings;
  readonly controller: VipController;
  election: VipElection | null;
  /** Why this node is (not) a candidate, for /status. */
  candidacy: string;
  /** A campaign attempt or withdrawal in progress; candidacy changes wait for it. */
  busy: Promise<void> | null;
  retry: ReturnType<typeof setTimeout> | null;
  /** Clock when etcd last made us leader; the winner's side of a failover starts there. */
  electedAt: number | null;
  /** Clock when we released the VIP; the loser's side ends when another node leads. */
  releasedAt: number | null;
}

export interface VipStatus {
  ip: string;
  link: string;
  /** Node etcd names as holder of the election, null when unknown or empty. */
  leader: string | null;
  /** Whether this node has the address on its link now. */
  owner: boolean;
  /** When this node acquired it (ISO 8601), null when it does not hold it. */
  since: string | null;
  role: ElectionState["role"];
  candidacy: string;
  reason: string;
  /** The election queue as this node last read it, holder first. */
  queue: { node: string; lease: string }[];
}

export interface AgentStatus {
  node: string;
  vips: VipStatus[];
  etcd: { endpoints: readonly string[]; connected: boolean; lease: string | null; ttl: number | null; fenceRemainingMs: number | null; lastError: string | null };
  gate: { open: boolean; reason: string; lastProbeMs: number | null } | null;
}

const HEARTBEAT_MS = 250;
const STALL_MS = 2000;
const ETCD_RETRY_MAX_MS = 5000;
const CAMPAIGN_RETRY_MS = 1000;
/** Budget for each etcd call on the way out; the whole stop stays under a second. */
const STOP_RPC_MS = 600;

export class Agent {
  private readonly clock: Clock;
  private readonly rtnl: Rtnl;
  private events: LinkEvents | null = null;
  private readonly links = new Map<string, { state: LinkState; link: Link | null }>();
  private readonly announcers = new Map<string, { key: string; port: Announcer }>();
  private readonly vips: VipEntry[];
  private client: Etcd3 | null = null;
  private lease: AgentLease | null = null;
  private leaseGranted = false;
  private etcdError: string | null = "not connected yet";
  private stopping = false;
  private heartbeatAt: number;
  private readonly heartbeat: ReturnType<typeof setInterval>;
  private sessionEnded: (() => void) | null = null;
  private sessionLoop: Promise<void> | null = null;
  /** The kube-apiserver gate; null when none is configured (always open). */
  readonly gate: ApiServerGate | null;
  readonly metrics = new VipdMetrics();

  private constructor(
    readonly settings: Settings,
    private readonly log: Logger,
    clock: Clock,
  ) {
    this.clock = clock;
    this.rtnl = Rtnl.open();
    this.heartbeatAt = clock();
    // /healthz reports a stalled loop: this timer only runs when the loop does.
    this.heartbeat = setInterval(() => {
      this.heartbeatAt = this.clock();
    }, HEARTBEAT_MS);
    this.gate = settings.apiServer ? new ApiServerGate(settings.apiServer) : null;
    this.gate?.on("probe", (p) => this.metrics.gateProbe(p.latencyMs));
    this.gate?.onChange((c) => {
      this.metrics.gate(c.open);
      // A new kind of failure while closed (a wrong CA after "not ready yet")
      // is news to the operator; a changed reason while open is not.
      if (c.kind === "reason") return c.open ? this.log.debug("kube-apiserver gate", { reason: c.reason }) : this.log.warn("kube-apiserver gate still closed", { reason: c.reason });
      const fields = { node: settings.nodeName, reason: c.reason };
      if (c.open) this.log.info("kube-apiserver gate opened", fields);
      else this.log.warn("kube-apiserver gate closed", fields);
      for (const e of this.vips) this.reconsider(e);
    });
    this.metrics.gate(this.gateOpen());
    this.vips = settings.vips.map((v) => this.entry(v));
  }

  private gateOpen(): boolean {
    return this.gate ? this.gate.open : true;
  }

  /**
   * Starts the agent: removes leftover VIPs, watches links, then connects to
   * etcd and campaigns in the background (retrying until etcd answers).
   */
  static async start(settings: Settings, log: Logger, opts: { clock?: Clock } = {}): Promise<Agent> {
    const agent = new Agent(settings, log, opts.clock ?? monotonicClock);
    try {
      for (const name of new Set(settings.vips.map((v) => v.link))) {
        await agent.refreshLink(name);
        const state = agent.links.get(name)?.state;
        if (state !== "up") log.warn(`link ${name} is ${state === "absent" ? "missing" : state}; its VIPs wait for it`, { link: name });
      }
      await agent.removeLeftovers();
      agent.events = LinkEvents.open((e) => agent.onKernelEvent(e));
    } catch (err) {
      agent.closeKernel();
      throw err;
    }
    agent.gate?.start();
    agent.sessionLoop = agent.runSessions();
    return agent;
  }

  private entry(v: VipSettings): VipEntry {
    this.metrics.declareVip(v.ip, v.link);
    // The closures below read `e` only when called, after it is assigned.
    let e: VipEntry;
    const facts = (): VipFacts => ({
      leader: e.election?.state.role === "leader",
      fenceLifetime: this.leaseGranted && this.lease ? this.lease.kernelLifetime() : null,
      link: this.links.get(v.link)?.state ?? "absent",
      gateOpen: this.gateOpen(),
      stopping: this.stopping,
    });
    const controller = new VipController(v.ip, v.link, facts, {
      kernel: this.rtnl,
      announcer: (link) => this.announcer(link),
      announce: {
        burst: this.settings.announce.burst,
        burstIntervalMs: this.settings.announce.burstInterval * 1000,
        refreshMs: this.settings.announce.refresh * 1000,
      },
      clock: this.clock,
      onChange: (c) => {
        const fields = { vip: c.ip, link: c.link, node: this.settings.nodeName, reason: c.reason };
        this.metrics.ownership(c.ip, c.link, c.held, c.code);
        if (c.held) {
          this.log.info("acquired VIP", fields);
          if (e.electedAt !== null) this.metrics.failover(c.ip, c.at - e.electedAt);
          e.electedAt = null;
        } else {
          this.log.warn("released VIP", fields);
          e.releasedAt = c.at;
        }
      },
      onAnnounced: (n) => this.metrics.announced(v.ip, n),
      onError: (op, err) => this.log.error(`${op} failed`, { vip: v.ip, error: describeError(err) }),
      winReason: () => {
        const s = e.election?.state;
        return s?.role === "leader" ? `elected: ${s.reason}` : "elected";
      },
    });
    e = { settings: v, controller, election: null, candidacy: "not started", busy: null, retry: null, electedAt: null, releasedAt: null };
    return e;
  }

  // ---- kernel facts ---------------------------------------------------------

  private async refreshLink(name: string): Promise<void> {
    let link: Link | null = null;
    try {
      link = await this.rtnl.link(name);
    } catch (err) {
      if ((err as { code?: string }).code !== "ENODEV") throw err;
    }
    this.setLink(name, link);
  }

  private setLink(name: string, link: Link | null): void {
    // IFF_UP alone is not enough: a cut cable (no carrier) must count as down.
    const state: LinkState = !link ? "absent" : link.up && link.lowerUp ? "up" : "down";
    const before = this.links.get(name);
    this.links.set(name, { state, link });
    const ann = this.announcers.get(name);
    if (ann && (!link || ann.key !== announcerKey(link))) {
      ann.port.close();
      this.announcers.delete(name);
    }
    if (before && before.state !== state) {
      this.log.info(`link ${name} is ${state}`, { link: name, state });
      for (const e of this.vips) if (e.settings.link === name) this.reconsider(e);
    }
  }

  private announcer(name: string): AnnouncePort | null {
    const link = this.links.get(name)?.link;
    if (!link) return null;
    const have = this.announcers.get(name);
    if (have) return have.port;
    try {
      const port = Announcer.open({ index: link.index, name: link.name, mac: link.mac });
      this.announcers.set(name, { key: announcerKey(link), port });
      return port;
    } catch (err) {
      this.log.error("opening announcer failed", { link: name, error: describeError(err) });
      return null;
    }
  }

  private async removeLeftovers(): Promise<void> {
    for (const { settings: v } of this.vips) {
      if (this.links.get(v.link)?.state === "absent") continue;
      if (await this.rtnl.deleteAddress(v.link, v.ip)) {
        this.log.warn("removed VIP left on the link by an earlier run", { vip: v.ip, link: v.link });
      }
    }
  }

  private onKernelEvent(e: KernelEvent): void {
    if (this.stopping) return;
    if (e.type === "overrun") {
      this.log.warn("kernel events were lost; re-reading links");
      for (const name of this.links.keys()) void this.refreshLink(name).catch((err) => this.log.error("re-reading link failed", { link: name, error: describeError(err) }));
      this.pokeAll();
      return;
    }
    if (e.type === "link") {
      const name = [...this.links.keys()].find((n) => n === e.link.name || this.links.get(n)?.link?.index === e.link.index);
      if (name) this.setLink(name, e.deleted || e.link.name !== name ? null : e.link);
      return;
    }
    // Only news matters: our VIP gone while we hold it (someone removed it, or
    // its kernel lifetime ran out), or present while we do not (someone added
    // it). Events that match what we believe are our own doing — every
    // lifetime refresh is an RTM_NEWADDR — and reacting to them would make
    // each refresh trigger the next.
    for (const v of this.vips) {
      if (v.settings.ip !== e.address.address) continue;
      if (e.address.linkIndex !== this.links.get(v.settings.link)?.link?.index) continue;
      if (e.deleted === v.controller.held) {
        if (e.deleted) this.log.warn("VIP disappeared from the link; re-checking", { vip: v.settings.ip });
        void v.controller.kernelChanged();
      }
    }
  }

  // ---- etcd session ---------------------------------------------------------

  /** Connects, grants the lease, campaigns; on a lost lease, starts over. */
  private async runSessions(): Promise<void> {
    let backoff = 250;
    while (!this.stopping) {
      try {
        this.client ??= connectEtcd({
          endpoints: this.settings.etcd.endpoints,
          tls: tlsFiles(this.settings),
        });
        const lease = new AgentLease(this.client, { clock: this.clock });
        this.watchLease(lease);
        this.lease = lease;
        await lease.grant(this.settings.election.leaseTTL);
        if (this.stopping) break;
        this.leaseGranted = true;
        this.etcdError = null;
        backoff = 250;
        this.log.info("etcd lease granted", { lease: lease.id, ttl: lease.ttl });
        for (const e of this.vips) this.reconsider(e);
        await new Promise<void>((resolve) => {
          this.sessionEnded = resolve;
        });
      } catch (err) {
        if (this.stopping) break;
        this.etcdError = describeEtcdError(err, this.settings.etcd.endpoints);
        this.log.warn("etcd not ready; retrying", { error: this.etcdError, retryInMs: backoff });
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(ETCD_RETRY_MAX_MS, backoff * 2);
      }
    }
  }

  private watchLease(lease: AgentLease): void {
    lease.on("renewed", ({ rttMs, deadline }) => {
      if (this.lease !== lease) return;
      this.etcdError = null;
      this.metrics.keepalive(rttMs, deadline - this.clock());
      this.pokeAll();
    });
    lease.on("expired", ({ reason }) => {
      if (this.lease !== lease) return;
      this.etcdError = reason;
      this.log.warn("lease not proven; releasing VIPs", { lease: lease.id, reason });
      this.metrics.leaseExpired();
      // Elections stay: if etcd answers again with TTL > 0, the lease never
      // expired at the server, so no key of ours was lost and no one else can
      // have been elected ahead of us.
      this.pokeAll();
    });
    lease.on("lost", ({ reason }) => {
      if (this.lease !== lease) return;
      this.etcdError = reason;
      this.log.warn("lease lost; starting a new session", { lease: lease.id, reason });
      this.metrics.leaseExpired();
      this.leaseGranted = false;
      void this.endSession();
    });
    lease.on("stream-error", ({ reason }) => {
      if (this.lease === lease) this.log.debug("keepalive stream error", { reason });
    });
  }

  /** Drops everything bound to the dead lease: VIPs first, then elections. */
  private async endSession(): Promise<void> {
    await Promise.all(this.vips.map((e) => e.controller.poke()));
    for (const e of this.vips) {
      e.election?.close();
      e.election = null;
    }
    this.lease?.close();
    const done = this.sessionEnded;
    this.sessionEnded = null;
    done?.();
  }

  // ---- candidacy --------------------------------------------------------------

  private pokeAll(): void {
    for (const e of this.vips) void e.controller.poke();
  }

  /** Brings this VIP's candidacy in line with the facts, then re-applies. */
  private reconsider(e: VipEntry): void {
    void e.controller.poke();
    if (e.busy) {
      void e.busy.then(() => this.reconsider(e));
      return;
    }
    const c = decideCandidacy({ link: this.links.get(e.settings.link)?.state ?? "absent", gateOpen: this.gateOpen(), stopping: this.stopping });
    e.candidacy = c.reason;
    if (c.stand && !e.election && this.leaseGranted && !this.stopping) e.busy = this.campaign(e).finally(() => (e.busy = null));
    else if (!c.stand && e.election) e.busy = this.withdraw(e, c.reason).finally(() => (e.busy = null));
  }

  private async campaign(e: VipEntry): Promise<void> {
    const lease = this.lease;
    const client = this.client;
    if (!lease || !client) return;
    const election = new VipElection(client, lease, {
      prefix: electionPrefix(this.settings),
      vip: e.settings.ip,
      node: this.settings.nodeName,
    });
    e.election = election;
    election.on("state", (s) => {
      if (e.election !== election) return;
      if (s.role === "follower") {
        this.log.info("following", { vip: e.settings.ip, holder: s.leader?.node ?? null, reason: s.reason });
        // The loser's side of a failover: from our release until etcd names another holder.
        if (s.leader && s.leader.node !== this.settings.nodeName && e.releasedAt !== null) {
          this.metrics.failover(e.settings.ip, this.clock() - e.releasedAt);
          e.releasedAt = null;
        }
      }
      if (s.role === "leader") {
        e.electedAt = this.clock();
        this.log.debug("elected", { vip: e.settings.ip, reason: s.reason });
      }
      void e.controller.poke();
    });
    election.on("lost-key", ({ reason }) => {
      if (e.election !== election) return;
      this.log.warn("election key gone", { vip: e.settings.ip, reason });
      e.election = null;
      // Remove first (the controller sees leader=false now), then stand again.
      void e.controller.poke().then(() => this.scheduleRetry(e));
    });
    election.on("warning", ({ reason }) => this.log.debug("election", { vip: e.settings.ip, reason }));
    try {
      await election.campaign();
    } catch (err) {
      if (e.election === election) e.election = null;
      election.close();
      this.log.warn("campaign failed; retrying", { vip: e.settings.ip, error: describeEtcdError(err, this.settings.etcd.endpoints) });
      this.scheduleRetry(e);
    }
  }

  private scheduleRetry(e: VipEntry): void {
    if (e.retry || this.stopping) return;
    e.retry = setTimeout(() => {
      e.retry = null;
      this.reconsider(e);
    }, CAMPAIGN_RETRY_MS);
  }

  private async withdraw(e: VipEntry, reason: string): Promise<void> {
    const election = e.election;
    e.election = null;
    // The address goes first; only then may the next candidate be told.
    await e.controller.poke();
    this.log.info("withdrew from election", { vip: e.settings.ip, reason });
    await election?.resign(reason).catch((err) => this.log.warn("resign failed; the key will expire with the lease", { vip: e.settings.ip, error: describeError(err) }));
  }

  // ---- surfaces -----------------------------------------------------------------

  health(): HealthReport {
    const now = this.clock();
    if (this.stopping) return { ok: false, reason: "shutting down" };
    if (now - this.heartbeatAt > STALL_MS) return { ok: false, reason: `event loop stalled for ${Math.round(now - this.heartbeatAt)} ms` };
    if (!this.leaseGranted || !this.lease) return { ok: false, reason: `etcd session not established: ${this.etcdError ?? "connecting"}` };
    if (!this.lease.valid(now)) return { ok: false, reason: `etcd lease not proven: ${this.etcdError ?? "keepalive deadline passed"}` };
    // A closed gate keeps this node out of the elections; probes should see why.
    if (this.gate && !this.gate.open) return { ok: false, reason: `kube-apiserver gate closed: ${this.gate.reason}` };
    return { ok: true, reason: "" };
  }

  status(): AgentStatus {
    const now = this.clock();
    const wall = Date.now();
    const lease = this.leaseGranted ? this.lease : null;
    const deadline = lease?.deadline ?? null;
    return {
      node: this.settings.nodeName,
      vips: this.vips.map((e) => {
        const s = e.election?.state ?? { role: "out" as const, reason: e.candidacy };
        const leader = s.role === "leader" ? this.settings.nodeName : s.role === "follower" ? (s.leader?.node ?? null) : null;
        const since = e.controller.since;
        return {
          ip: e.settings.ip,
          link: e.settings.link,
          leader,
          owner: e.controller.held,
          since: since === null ? null : new Date(wall - (now - since)).toISOString(),
          role: s.role,
          candidacy: e.candidacy,
          reason: e.controller.lastDecision && !e.controller.lastDecision.hold ? e.controller.lastDecision.reason : s.reason,
          queue: (e.election?.candidates ?? []).map((c) => ({ node: c.node, lease: c.leaseId })),
        };
      }),
      etcd: {
        endpoints: this.settings.etcd.endpoints,
        connected: this.leaseGranted && (lease?.valid(now) ?? false),
        lease: lease ? lease.id : null,
        ttl: lease ? lease.ttl : null,
        fenceRemainingMs: deadline === null ? null : Math.max(0, Math.round(deadline - now)),
        lastError: this.etcdError,
      },
      gate: this.gate
        ? { open: this.gate.open, reason: this.gate.reason, lastProbeMs: this.gate.lastProbe ? Math.round(this.gate.lastProbe.latencyMs) : null }
        : null,
    };
  }

  /** Prometheus exposition; gauges that are states are sampled now. */
  renderMetrics(): Promise<string> {
    const now = this.clock();
    const lease = this.leaseGranted ? this.lease : null;
    this.metrics.etcdUp(lease?.valid(now) ?? false);
    const deadline = lease?.deadline ?? null;
    this.metrics.fenceRemaining(deadline === null ? null : deadline - now);
    return this.metrics.render();
  }

  // ---- stop ---------------------------------------------------------------------

  /**
   * Graceful stop: remove every VIP, then leave the elections and revoke the
   * lease so the next candidates take over at once. Bounded: each etcd call
   * has its own short deadline, so this returns well within a second even
   * when etcd is gone.
   */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.gate?.stop();
    for (const e of this.vips) if (e.retry) clearTimeout(e.retry);
    await Promise.all(this.vips.map((e) => e.controller.poke()));
    const lease = this.leaseGranted ? this.lease : null;
    const goodbyes: Promise<unknown>[] = this.vips.flatMap((e) => (e.election ? [e.election.resign("shutting down", STOP_RPC_MS)] : []));
    if (lease) goodbyes.push(lease.revoke(STOP_RPC_MS));
    const results = await Promise.allSettled(goodbyes);
    for (const r of results) {
      if (r.status === "rejected") this.log.warn("leaving etcd cleanly failed; keys expire with the lease", { error: describeError(r.reason) });
    }
    for (const e of this.vips) e.election?.close();
    this.lease?.close();
    this.sessionEnded?.();
    this.client?.close();
    this.closeKernel();
    await this.sessionLoop;
  }

  private closeKernel(): void {
    clearInterval(this.heartbeat);
    this.gate?.stop();
    this.events?.close();
    for (const a of this.announcers.values()) a.port.close();
    this.announcers.clear();
    this.rtnl.close();
  }
}

function announcerKey(link: Link): string {
  return `${link.index}/${Array.from(link.mac).join(",")}`;
}

/** Election keys live under `${prefix}vip/<address>/<lease>`, leaving the prefix room for more. */
export function electionPrefix(s: Settings): string {
  return `${s.etcd.prefix}vip/`;
}

function tlsFiles(s: Settings) {
  const t = s.etcd.tls;
  if (!t?.caFile && !t?.certFile) return undefined;
  return { caFile: t.caFile ?? "", certFile: t.certFile ?? "", keyFile: t.keyFile ?? "" };
}
