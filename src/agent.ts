// The agent: wires the etcd session, the link watch, the kernel fence, the
// kube-apiserver gate and one slot per VIP, and starts and stops them in
// order. It holds no ownership logic of its own: facts flow in (session,
// links, gate), each slot decides, its controller applies (design.md §8).
// What it wires lives under agent/: the fence (fence-keeper.ts), reload
// (reloader.ts), the slots as a set (slots.ts), /healthz, /status and
// /metrics (surfaces.ts), the event-loop watch and the operator's notices.
//
// Start-up order (design.md §6, invariant I6): every VIP an earlier run may
// have left answering is removed from every link *before* the session
// registers, because registering clears that run's keys and lets the next
// node take over at once: the VIPs of the table that run left (read before
// the table is rebuilt) and those configured now, and, at registration,
// every VIP its last heartbeat claimed. Only then is the table rebuilt, with
// nothing allowed.
import { etcdTls, type Settings, type VipSettings } from "./config/index.ts";
import { EtcdConnection } from "./election/connection.ts";
import { currentIncarnation, type Incarnation } from "./election/incarnation.ts";
import { minimumHold } from "./election/proof.ts";
import { Session } from "./election/session.ts";
import { ApiServerGate } from "./health/gate.ts";
import type { HealthReport } from "./health/server.ts";
import { VipdMetrics } from "./health/vipd-metrics.ts";
import { claimNetnsLock, type NetnsLock, type RequestHandler } from "./kernel/netns-lock.ts";
import { Rtnl } from "./kernel/rtnl.ts";
import { describeError, type Logger } from "./log.ts";
import { type Clock, monotonicClock, type Timed } from "./seams.ts";
import { FenceKeeper, slowSendsWarning } from "./agent/fence-keeper.ts";
import { HookRunner } from "./agent/hooks.ts";
import { LinkWatch } from "./agent/links.ts";
import { LoopWatch } from "./agent/loop-watch.ts";
import { SharedIntervals } from "./shared-ticks.ts";
import { Notices } from "./agent/notices.ts";
import { PublishedMacs } from "./agent/published-macs.ts";
import { hookSettings, Reloader, type ReloadOutcome } from "./agent/reloader.ts";
import { type ElectionNews, sessionNews, sessionPort } from "./agent/election-port.ts";
import { SilenceWatch } from "./agent/silence-watch.ts";
import { Slot } from "./agent/slot.ts";
import { Slots } from "./agent/slots.ts";
import { type AgentStatus, Surfaces } from "./agent/surfaces.ts";

export type { VipStatus } from "./agent/slot.ts";
export type { AgentStatus } from "./agent/surfaces.ts";
export type { ReloadOutcome } from "./agent/reloader.ts";

export interface AgentOptions {
  clock?: Clock;
  /** This run's identity (tests pass one to play another machine). */
  identity?: (holdMs: number) => Incarnation;
  version?: string;
}

/** The agent cannot start because of a conflict that no retry fixes: exit 2. */
export class StartRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StartRefused";
  }
}

/**
 * Budget for each etcd call on the way out (leave, then revoke). Two of them
 * plus the local work (tens of ms) keep the promise of README and
 * deploy/vipd.service, an exit within 1.2 s of SIGTERM even with etcd frozen;
 * at 600 ms each the exit took 1230 ms (test/agent/stop-etcd-gone.test.ts).
 */
const STOP_RPC_MS = 550;

export class Agent {
  readonly metrics = new VipdMetrics();
  /** The kube-apiserver gate; null when none is configured (always open). */
  readonly gate: ApiServerGate | null;
  /** Resolves with a reason when the agent must stop because of a conflict no retry fixes (exit 2). */
  readonly fatal: Promise<string>;
  #fatal!: (reason: string) => void;
  readonly #clock: Clock;
  readonly #rtnl: Rtnl;
  readonly #fence: FenceKeeper;
  readonly #loop: LoopWatch;
  readonly #surfaces: Surfaces;
  readonly #notices: Notices;
  #links: LinkWatch | null = null;
  #conn: EtcdConnection | null = null;
  #session: Session | null = null;
  #reloader: Reloader | null = null;
  readonly #slots: Slots;
  /** What changed in the election since the slots last looked; null before the session. */
  #news: (() => ElectionNews) | null = null;
  /** Where slots queued behind live agents wait for them to fall silent: one timer for all. */
  readonly #silence: SilenceWatch;
  #holdMs: number;
  /** What the other agents' conflict probes may hear from us: published by the session (design.md §12). */
  readonly #macs = new PublishedMacs();
  #stopping = false;
  #lock: NetnsLock | null = null;
  readonly #hooks: HookRunner;
  #settings: Settings;

  private constructor(
    settings: Settings,
    private readonly log: Logger,
    clock: Clock,
  ) {
    this.#settings = settings;
    this.#clock = clock;
    this.#holdMs = settings.election.holdTime;
    this.fatal = new Promise((resolve) => (this.#fatal = resolve));
    // Opened first: if it throws, no timer of the loop watch keeps the process alive.
    this.#rtnl = Rtnl.open({ onSlowSends: slowSendsWarning(log), timed: (task, fn, items) => this.#loop.timed(task, fn, items) });
    // The loop watch's tick, the fence read-back and the gate's probes share one 1 s timer: one wakeup a second, not three.
    const ticks = new SharedIntervals();
    this.#loop = new LoopWatch({ clock, log, timers: ticks, stalled: (ms) => this.metrics.loopStall(ms) });
    this.#silence = new SilenceWatch({ clock, heardUntil: (node) => this.#session?.view.heardUntil(node) ?? null });
    this.#slots = new Slots({
      make: (vip) => this.#newSlot(vip),
      log,
      timed: this.#loop.timed,
      news: () => this.#news?.() ?? null,
      // The slots act on a drain themselves; the operator hears of it once.
      beforeUpdate: () => {
        if (this.#session?.ready) this.#notices.drain(this.#session.drained);
      },
    });
    this.#fence = new FenceKeeper({
      clock, log, guarded: () => this.#guarded(), stopping: () => this.#stopping,
      standDown: (reason, ms) => this.#slots.standDown(reason, ms), timed: this.#loop.timed, timers: ticks,
    });
    // Hooks start with vipd's own environment, as an operator's notify script expects.
    this.#hooks = new HookRunner({ hooks: hookSettings(settings), log, metrics: this.metrics, env: process.env });
    this.#hooks.checkPrograms();
    this.#notices = new Notices({ log, metrics: this.metrics, node: () => this.#settings.nodeName });
    // Its probes start on the same tick as well.
    this.gate = settings.apiServer ? new ApiServerGate(settings.apiServer, { ticks }) : null;
    this.gate?.on("probe", (p) => this.metrics.gateProbe(p.latencyMs));
    this.gate?.onChange((c) => {
      if (this.#notices.gate(c)) this.#slots.updateAll();
    });
    if (this.gate) this.metrics.gate(this.gate.open);
    this.#surfaces = new Surfaces({
      clock, metrics: this.metrics, gate: this.gate, loop: this.#loop, settings: () => this.#settings, session: () => this.#session,
      connection: () => this.#conn, slots: () => this.#slots.all, holdMs: () => this.#holdMs, fenceMode: () => this.#fence.port.mode, stopping: () => this.#stopping,
    });
  }

  /**
   * Starts the agent: reads the links, builds the fence, removes leftover
   * VIPs, then connects to etcd and stands for the VIPs in the background
   * (retrying until etcd answers).
   */
  static async start(settings: Settings, log: Logger, opts: AgentOptions = {}): Promise<Agent> {
    // Before anything touches the kernel: a second vipd here would otherwise
    // tear down the first one's fence and VIPs as leftovers.
    const claim = claimNetnsLock();
    if (!claim.ok) {
      throw new StartRefused(`another vipd already runs in this network namespace${claim.holder ? ` (pid ${claim.holder})` : ""}: one vipd per node; stop it first`);
    }
    const agent = new Agent(settings, log, opts.clock ?? monotonicClock);
    agent.#lock = claim.lock;
    try {
      await agent.#startKernel();
    } catch (err) {
      agent.#closeKernel();
      throw err;
    }
    agent.#fence.startChecks();
    const identity = (opts.identity ?? ((holdMs) => currentIncarnation({ holdMs, version: opts.version ?? "dev" })))(agent.#holdMs);
    agent.#startSession(identity);
    agent.gate?.start();
    return agent;
  }

  async #startKernel(): Promise<void> {
    const { settings, log } = this;
    const links = await LinkWatch.open(settings.vips.map((v) => v.link), this.#rtnl, log, this.#slots.linkEvents);
    this.#links = links;
    // The watch follows link events, so its indexes spare each address
    // request a lookup by name.
    this.#rtnl.useLinkIndex((name) => links.link(name)?.index ?? null);
    for (const name of links.names()) {
      const state = links.state(name);
      if (state !== "up") log.warn(`link ${name} is ${state === "absent" ? "missing" : state}; its VIPs wait for it`, { link: name });
    }
    // The old table names what the earlier run guarded, on whatever link;
    // it keeps fencing those VIPs while they are removed, so it is rebuilt after.
    const previous = await this.#fence.previousTable();
    await this.#removeLeftovers([...previous, ...settings.vips.map((v) => v.ip)], "removed VIP left on the link by an earlier run");
    if ((await this.#fence.open()) === "lifetime") {
      const min = minimumHold("lifetime");
      if (this.#holdMs < min) {
        this.log.warn(`hold time raised from ${this.#holdMs} ms to ${min} ms, the least an address-lifetime fence can keep`);
        this.#holdMs = min;
      }
    }
    this.#reloader = new Reloader({
      log, links, hooks: this.#hooks, deleteAddress: (link, ip) => this.#rtnl.deleteAddress(link, ip),
      settings: () => this.#settings, setSettings: (s) => (this.#settings = s), slots: this.#slots,
      metrics: this.metrics, configureFence: () => this.#fence.configure(), stopping: () => this.#stopping,
    });
  }

  /**
   * Removes each of `vips` from every link that has it, except VIPs this
   * run serves itself: whatever an earlier run left must stop answering
   * before its keys are cleared. Throws when the kernel refuses, so that
   * nothing goes on as if it were clean.
   */
  async #removeLeftovers(vips: readonly string[], message: string): Promise<void> {
    const own = new Set(this.#slots.serving());
    for (const vip of new Set(vips)) {
      if (own.has(vip)) continue;
      for (const link of await this.#rtnl.deleteAddressEverywhere(vip)) this.log.warn(message, { vip, link });
    }
  }

  #startSession(identity: Incarnation): void {
    const s = this.settings;
    const tls = etcdTls(s.etcd);
    this.#conn = new EtcdConnection({
      endpoints: s.etcd.endpoints, tls, holdMs: this.#holdMs, clock: this.#clock, log: this.log, ...(s.etcd.serverName ? { tlsServerName: s.etcd.serverName } : {}),
    });
    const session = new Session({
      settings: { endpoints: s.etcd.endpoints, prefix: s.etcd.prefix, node: s.nodeName, holdMs: this.#holdMs, leaseTtlS: s.election.leaseTTL },
      conn: this.#conn,
      identity,
      clock: this.#clock,
      log: this.log,
      serving: () => this.#slots.serving(),
      macs: () => this.#macs.of(this.#settings.vips, this.#links),
      // A dead run of ours, here: what it claimed goes from every link before its keys go.
      removeLeftovers: (claims) => this.#removeLeftovers(claims, "removed a VIP the previous run claimed"),
      timed: this.#loop.timed,
    });
    this.#session = session;
    this.#news = sessionNews(session);
    for (const vip of s.vips) this.#slots.add(vip);
    // Each slot the change concerns decides again, not every slot (design.md §8).
    session.on("changed", () => this.#slots.electionChanged());
    session.on("deposed", ({ vips }) => this.#slots.deposed(vips));
    session.on("lost", () => this.#slots.updateAll());
    session.on("heartbeat", ({ result, rttMs }) => this.metrics.heartbeat(result, rttMs));
    session.on("fatal", ({ reason }) => {
      this.log.error(reason);
      this.#fatal(reason);
    });
    session.start();
    // Decide once now: the first conflict probe runs while the session registers.
    this.#slots.updateAll();
  }

  /** One VIP's slot (at start, or added by a reload). */
  #newSlot(vip: VipSettings): Slot {
    const s = this.#settings;
    return new Slot({
      vip,
      node: s.nodeName,
      election: sessionPort(this.#session!, this.#clock),
      silence: this.#silence,
      links: this.#links!,
      gateOpen: () => (this.gate ? this.gate.open : true),
      stopping: () => this.#stopping,
      kernel: this.#rtnl,
      fence: this.#fence.port,
      announce: {
        burst: s.announce.burst,
        burstIntervalMs: s.announce.burstInterval * 1000,
        refreshMs: s.announce.refresh * 1000,
      },
      probeIntervalMs: s.announce.probeInterval * 1000,
      clock: this.#clock,
      log: this.log,
      metrics: this.metrics,
      hooks: this.#hooks,
      endpoints: s.etcd.endpoints,
    });
  }

  // ---- reload -------------------------------------------------------------------

  /**
   * Runs a new configuration's VIPs (agent/reloader.ts): removed ones are
   * released, added ones stand, kept ones are not touched. Resolves once
   * the removed VIPs are released, or after a while with those still under
   * way in `leaving`; rejects, changing nothing, when the fence cannot guard
   * the new VIPs.
   */
  reload(next: Settings): Promise<ReloadOutcome> {
    return this.#reloader!.reload(next);
  }

  /** Measures a big synchronous task of the agent's: a stall's log line names the longest (agent/loop-watch.ts). */
  get timed(): Timed {
    return this.#loop.timed;
  }

  /** The settings in force: those the agent started with, with the VIPs (and live settings) of the last reload. */
  get settings(): Settings {
    return this.#settings;
  }

  /** Answers requests on the network namespace's vipd socket (`vipd reload`). */
  serve(handler: RequestHandler): void {
    this.#lock?.serve(handler);
  }

  /** Every VIP the fence guards: those configured, and those still on their way out. */
  #guarded(): string[] {
    return [...new Set([...this.#settings.vips, ...this.#slots.all.map((s) => s.vip)].map((v) => v.ip))];
  }

  // ---- surfaces (agent/surfaces.ts) -----------------------------------------------

  health(): HealthReport {
    return this.#surfaces.health();
  }

  status(): AgentStatus {
    return this.#surfaces.status();
  }

  /** Prometheus exposition; gauges that are states are sampled now. */
  renderMetrics(): Promise<string> {
    return this.#surfaces.metrics();
  }

  /** The hold time in force (raised to 3 s without nftables). */
  get holdMs(): number {
    return this.#holdMs;
  }

  // ---- stop ---------------------------------------------------------------------

  /**
   * Graceful stop: fence and remove every VIP, then leave the queues and
   * revoke the lease so the next candidates take over at once, then remove
   * the fence table. Each etcd call has its own short deadline, so this
   * returns within 1.2 s even when etcd is gone.
   */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    this.gate?.stop();
    await this.#slots.stop();
    this.#silence.close();
    await this.#session?.stop(STOP_RPC_MS).catch((err) => this.log.warn("leaving etcd cleanly failed; our keys expire with the lease", { error: describeError(err) }));
    await this.#fence.remove();
    this.#conn?.close();
    // After the VIPs are gone and etcd was told: a hook (the shutdown's own
    // "released") may finish, for at most one hook timeout. Nothing runs: no wait.
    await this.#hooks.stop();
    this.#closeKernel();
  }

  #closeKernel(): void {
    this.#loop.close();
    this.#fence.close();
    this.gate?.stop();
    this.#links?.close();
    this.#rtnl.close();
    this.#lock?.release();
  }
}
