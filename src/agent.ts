// The agent: wires the etcd session, the link watch, the kernel fence, the
// kube-apiserver gate and one slot per VIP, and reports health and status.
// It holds no ownership logic of its own: facts flow in (session, links,
// gate), each slot decides, its controller applies (design.md §8).
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
import { type FenceMode, minimumHold } from "./election/proof.ts";
import { type Clock, monotonicClock } from "./seams.ts";
import { Session } from "./election/session.ts";
import { ApiServerGate } from "./health/gate.ts";
import type { HealthReport } from "./health/server.ts";
import { VipdMetrics } from "./health/vipd-metrics.ts";
import { claimNetnsLock, type NetnsLock, type RequestHandler } from "./kernel/netns-lock.ts";
import { NftFence, nftablesMissing } from "./kernel/nft-fence.ts";
import { ENOENT } from "./kernel/errno.ts";
import { KernelError } from "./kernel/error.ts";
import { formatMac } from "./kernel/ip.ts";
import { Rtnl } from "./kernel/rtnl.ts";
import { describeError, type Logger } from "./log.ts";
import { HookRunner } from "./agent/hooks.ts";
import { LinkWatch } from "./agent/links.ts";
import { diffSettings, type SettingsDiff } from "./agent/reload.ts";
import { Slot, type VipStatus } from "./agent/slot.ts";
import { type FencePort, lifetimeOnlyFence } from "./vip/ports.ts";

export type { VipStatus } from "./agent/slot.ts";

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

export interface AgentOptions {
  clock?: Clock;
  /** This run's identity (tests pass one to play another machine). */
  identity?: (holdMs: number) => Incarnation;
  version?: string;
}

/** What a reload changed; `leaving` names removed VIPs whose release was still under way when it answered. */
export interface ReloadOutcome extends SettingsDiff {
  readonly leaving: readonly string[];
}

/** The agent cannot start because of a conflict that no retry fixes: exit 2. */
export class StartRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StartRefused";
  }
}

/**
 * The event loop stalls when this timer stops running; /healthz says so.
 * The health server runs on the same loop, so a probe gets no answer while
 * the stall lasts (its timeout is what catches it); requests answered once
 * the loop runs again, for LOOP_STALL_MS after the stall, get 503 naming it,
 * whether the runtime serves them before or after this timer catches up.
 */
const LOOP_TICK_MS = 1000;
const LOOP_STALL_MS = 2000;
/** Budget for each etcd call on the way out; the whole stop stays well under a second. */
const STOP_RPC_MS = 600;
/** How long a reload waits for removed VIPs to be released before it answers; they finish later if need be. */
const RELOAD_WAIT_MS = 5000;
/**
 * How often the fence table is read back and compared with what it must
 * hold (#checkFence). Polled rather than followed by nftables events: the
 * event group carries every element refresh (each heartbeat) to vipd, and a
 * build that failed sends no event at all. A link's VIP is unfenced for at
 * most this long after its chain goes, which matters only if its holder
 * also loses its proof meanwhile.
 */
const FENCE_CHECK_MS = 1000;
/** A slot on a link whose fence cannot be rebuilt stays out this long after the last check that found it so. */
const FENCE_STAND_DOWN_MS = 3 * FENCE_CHECK_MS;

export class Agent {
  readonly metrics = new VipdMetrics();
  /** The kube-apiserver gate; null when none is configured (always open). */
  readonly gate: ApiServerGate | null;
  /** Resolves with a reason when the agent must stop because of a conflict no retry fixes (exit 2). */
  readonly fatal: Promise<string>;
  #fatal!: (reason: string) => void;
  readonly #clock: Clock;
  readonly #rtnl: Rtnl;
  #links: LinkWatch | null = null;
  #nft: NftFence | null = null;
  #fence: FencePort = lifetimeOnlyFence;
  #conn: EtcdConnection | null = null;
  #session: Session | null = null;
  #slots: Slot[] = [];
  #holdMs: number;
  #stopping = false;
  #loopAt: number;
  /** The last stall the loop timer saw: how long, and when it ended. */
  #lastStall: { ms: number; endedAt: number } | null = null;
  readonly #loopTimer: ReturnType<typeof setInterval>;
  #fenceTimer: ReturnType<typeof setInterval> | null = null;
  #fenceChecking = false;
  /** What the last check found wrong with the fence ("" when whole), to say each change once. */
  #fenceProblems = "";
  #updateQueued = false;
  #lock: NetnsLock | null = null;
  #resetsCounted = 0;
  readonly #hooks: HookRunner;
  #drained: string | null = null;
  #settings: Settings;
  /** Removed VIPs not yet released, by address: the same address on another link waits for them. */
  readonly #leaving = new Map<string, Promise<void>>();
  #reloading: Promise<unknown> = Promise.resolve();

  private constructor(
    settings: Settings,
    private readonly log: Logger,
    clock: Clock,
  ) {
    this.#settings = settings;
    this.#clock = clock;
    this.#holdMs = settings.election.holdTime;
    this.fatal = new Promise((resolve) => (this.#fatal = resolve));
    this.#rtnl = Rtnl.open();
    this.#loopAt = clock();
    this.#loopTimer = setInterval(() => this.#loopTick(), LOOP_TICK_MS);
    // Hooks start with vipd's own environment, as an operator's notify script expects.
    this.#hooks = new HookRunner({ hooks: hookSettings(settings), log, metrics: this.metrics, env: process.env });
    this.#hooks.checkPrograms();
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
      this.#updateAll();
    });
    if (this.gate) this.metrics.gate(this.gate.open);
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
    agent.#fenceTimer = setInterval(() => void agent.#checkFence(), FENCE_CHECK_MS);
    const identity = (opts.identity ?? ((holdMs) => currentIncarnation({ holdMs, version: opts.version ?? "dev" })))(agent.#holdMs);
    agent.#startSession(identity);
    agent.gate?.start();
    return agent;
  }

  async #startKernel(): Promise<void> {
    const { settings, log } = this;
    const links = await LinkWatch.open(settings.vips.map((v) => v.link), this.#rtnl, log, {
      link: (name) => {
        for (const s of this.#slots) if (s.vip.link === name) s.update();
      },
      address: (name, address, deleted) => {
        // Only news matters: our VIP gone while we hold it, or present while we
        // do not. Every lifetime refresh is an RTM_NEWADDR too; reacting to
        // those would make each refresh trigger the next.
        const slot = this.#slots.find((s) => s.vip.link === name && s.vip.ip === address.address);
        if (!slot || deleted !== slot.controller.held) return;
        if (deleted) log.warn("VIP disappeared from the link; re-checking", { vip: address.address });
        void slot.controller.kernelChanged();
      },
      overrun: () => {
        for (const s of this.#slots) void s.controller.kernelChanged();
      },
    });
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
    const previous = await this.#previousTable();
    await this.#removeLeftovers([...previous, ...settings.vips.map((v) => v.ip)], "removed VIP left on the link by an earlier run");
    await this.#openFence();
  }

  /**
   * Every VIP the fence table an earlier run left here names; empty when
   * there is none, or no nftables (#openFence finds that out and says so).
   */
  async #previousTable(): Promise<string[]> {
    try {
      this.#nft = NftFence.open({ clock: this.#clock });
      return await this.#nft.leftovers();
    } catch (err) {
      if (!nftablesMissing(err)) throw err;
      this.#nft?.close();
      this.#nft = null;
      return [];
    }
  }

  /**
   * nftables when the kernel has it; otherwise the address lifetime alone,
   * with its longer minimum hold. Building the table is the probe: a kernel
   * without nftables refuses the socket or the chain.
   */
  async #openFence(): Promise<void> {
    let nft: NftFence;
    try {
      nft = this.#nft ?? NftFence.open({ clock: this.#clock });
      this.#nft = nft;
      await this.#configureFence();
    } catch (err) {
      const missing = nftablesMissing(err);
      if (!missing) throw err;
      this.#nft?.close();
      this.#nft = null;
      const min = minimumHold("lifetime");
      this.log.warn("nftables unavailable; fencing with address lifetimes only (whole seconds, removed up to 1 s late)", { reason: missing });
      if (this.#holdMs < min) {
        this.log.warn(`hold time raised from ${this.#holdMs} ms to ${min} ms, the least an address-lifetime fence can keep`);
        this.#holdMs = min;
      }
      return;
    }
    // Someone flushed the ruleset (`nft flush ruleset`, a firewall reload):
    // the table is gone. Build it again, keeping what is allowed, and retry once.
    const again = async <T>(op: () => Promise<T>): Promise<T> => {
      try {
        return await op();
      } catch (err) {
        if (!(err instanceof KernelError) || err.errno !== ENOENT || this.#stopping) throw err;
        this.log.warn("vipd's nftables table is gone; building it again", { error: describeError(err) });
        await this.#configureFence();
        return op();
      }
    };
    this.#fence = {
      mode: "nftables",
      allow: (ip, deadline) => again(() => nft.allow(ip, deadline)),
      deny: (ip) => again(() => nft.deny(ip)),
    };
  }

  /** (Re)builds the fence tables for the VIPs configured now, keeping what is allowed. */
  async #configureFence(): Promise<void> {
    const nft = this.#nft;
    if (!nft || this.#stopping) return;
    try {
      await nft.configure({ vips: this.#guarded() });
    } catch (err) {
      if (!nftablesMissing(err)) this.log.error("building the nftables fence failed", { error: describeError(err) });
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
  async #checkFence(): Promise<void> {
    const nft = this.#nft;
    if (!nft || this.#stopping || this.#fenceChecking) return;
    this.#fenceChecking = true;
    try {
      let problems = await nft.problems();
      if (problems.length > 0) {
        const text = problems.join("; ");
        if (text !== this.#fenceProblems) this.log.warn("vipd's nftables fence is incomplete; building it again", { problems: text });
        this.#fenceProblems = text;
        // Logged inside; the check that follows says what is still wrong.
        await this.#configureFence().catch(() => {});
        if (this.#stopping) return;
        problems = await nft.problems();
      }
      if (problems.length > 0) {
        const reason = `the nftables fence cannot be rebuilt: ${problems.join("; ")}`;
        for (const s of this.#slots) s.standDown(reason, FENCE_STAND_DOWN_MS);
      }
      if (problems.length === 0 && this.#fenceProblems !== "") {
        this.log.info("vipd's nftables fence is whole again", { was: this.#fenceProblems });
        this.#fenceProblems = "";
      }
    } catch (err) {
      this.log.warn("checking the nftables fence failed", { error: describeError(err) });
    } finally {
      this.#fenceChecking = false;
    }
  }

  /**
   * Removes each of `vips` from every link that has it, except VIPs this
   * run serves itself: whatever an earlier run left must stop answering
   * before its keys are cleared. Throws when the kernel refuses, so that
   * nothing goes on as if it were clean.
   */
  async #removeLeftovers(vips: readonly string[], message: string): Promise<void> {
    const own = new Set(this.#slots.filter((s) => s.controller.serving).map((s) => s.vip.ip));
    for (const vip of new Set(vips)) {
      if (own.has(vip)) continue;
      for (const link of await this.#rtnl.deleteAddressEverywhere(vip)) this.log.warn(message, { vip, link });
    }
  }

  #startSession(identity: Incarnation): void {
    const s = this.settings;
    const tls = etcdTls(s.etcd);
    this.#conn = new EtcdConnection({
      endpoints: s.etcd.endpoints, tls, holdMs: this.#holdMs, clock: this.#clock, ...(s.etcd.serverName ? { tlsServerName: s.etcd.serverName } : {}),
    });
    const session = new Session({
      settings: { endpoints: s.etcd.endpoints, tls, prefix: s.etcd.prefix, node: s.nodeName, holdMs: this.#holdMs, leaseTtlS: s.election.leaseTTL },
      conn: this.#conn,
      identity,
      clock: this.#clock,
      log: this.log,
      serving: () => this.#slots.filter((x) => x.controller.serving).map((x) => x.vip.ip),
      macs: () => this.#macs(),
      // A dead run of ours, here: what it claimed goes from every link before its keys go.
      removeLeftovers: (claims) => this.#removeLeftovers(claims, "removed a VIP the previous run claimed"),
    });
    this.#session = session;
    this.#slots = s.vips.map((vip) => this.#newSlot(vip));
    session.on("changed", () => this.#updateAll());
    session.on("deposed", ({ vips }) => {
      for (const slot of this.#slots) if (vips.includes(slot.vip.ip)) slot.deposed();
    });
    session.on("lost", () => this.#updateAll());
    session.on("heartbeat", ({ result, rttMs }) => this.metrics.heartbeat(result, rttMs));
    session.on("fatal", ({ reason }) => {
      this.log.error(reason);
      this.#fatal(reason);
    });
    session.start();
    // Decide once now: the first conflict probe runs while the session registers.
    this.#updateAll();
  }

  /**
   * What the other agents' conflict probes may hear from us: the MAC of each
   * VIP's link that exists now, by VIP, and that of every link in this
   * namespace, by `link/<name>` (any of them answers ARP for a VIP we hold
   * when it is on the segment too: design.md §12).
   */
  #macs(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const v of this.#settings.vips) {
      const link = this.#links?.link(v.link);
      if (link) out[v.ip] = formatMac(link.mac);
    }
    for (const [name, mac] of this.#links?.macs() ?? []) out[`link/${name}`] = mac;
    return out;
  }

  /** One VIP's slot (at start, or added by a reload). */
  #newSlot(vip: VipSettings): Slot {
    const s = this.#settings;
    return new Slot({
      vip,
      node: s.nodeName,
      session: this.#session!,
      links: this.#links!,
      gateOpen: () => (this.gate ? this.gate.open : true),
      stopping: () => this.#stopping,
      kernel: this.#rtnl,
      fence: this.#fence,
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

  /** Many facts change at once (a watch response, a heartbeat): decide once per tick. */
  #updateAll(): void {
    if (this.#updateQueued) return;
    this.#updateQueued = true;
    queueMicrotask(() => {
      this.#updateQueued = false;
      this.#noteDrain();
      for (const s of this.#slots) s.update();
    });
  }

  /** Says when an operator drains or undrains this node; the slots act on it themselves. */
  #noteDrain(): void {
    const session = this.#session;
    if (!session?.ready) return;
    const drained = session.drained;
    if (drained === this.#drained) return;
    if (drained) this.log.info("this node is drained: standing for no VIP until `vipd undrain`", { node: this.settings.nodeName, reason: drained });
    else if (this.#drained) this.log.info("this node is no longer drained: standing for its VIPs again", { node: this.settings.nodeName });
    this.#drained = drained;
    this.metrics.drained(drained !== null);
  }

  // ---- reload -------------------------------------------------------------------

  /**
   * Runs a new configuration's VIPs (reload.ts says what changed). Removed
   * VIPs are released and leave their queues, the kernel first (invariant
   * I4); added ones stand; kept ones are not touched: no release, no
   * announcement. Other settings stay as they are, except those reload.ts
   * lists as live, which the caller applies. Resolves once the removed VIPs
   * are released, or after RELOAD_WAIT_MS with those still under way in
   * `leaving` (etcd unreachable, say): they finish on their own. Rejects,
   * changing nothing, when the fence cannot guard the new VIPs.
   */
  reload(next: Settings): Promise<ReloadOutcome> {
    const run = this.#reloading.then(() => this.#reload(next));
    this.#reloading = run.catch(() => {});
    return run;
  }

  /** The settings in force: those the agent started with, with the VIPs (and live settings) of the last reload. */
  get settings(): Settings {
    return this.#settings;
  }

  /** Answers requests on the network namespace's vipd socket (`vipd reload`). */
  serve(handler: RequestHandler): void {
    this.#lock?.serve(handler);
  }

  async #reload(next: Settings): Promise<ReloadOutcome> {
    if (this.#stopping) throw new Error("vipd is shutting down");
    const diff = diffSettings(this.#settings, next);
    const links = this.#links!;
    const learned: string[] = [];
    for (const link of new Set(diff.added.map((v) => v.link))) {
      if (links.names().includes(link)) continue;
      await links.watch(link);
      learned.push(link);
      const state = links.state(link);
      if (state !== "up") this.log.warn(`link ${link} is ${state === "absent" ? "missing" : state}; its VIPs wait for it`, { link });
    }
    const before = this.#settings;
    this.#settings = diff.inForce;
    if (diff.live.some((path) => path.startsWith("hooks."))) {
      // For the runs that start from now on; a run under way keeps its own.
      this.#hooks.configure(hookSettings(diff.inForce));
      this.#hooks.checkPrograms();
    }
    try {
      // Old and new VIPs alike are guarded while they change hands: guarding more is always safe.
      await this.#configureFence();
    } catch (err) {
      this.#settings = before;
      for (const link of learned) links.forget(link);
      throw new Error(`the nftables fence cannot guard the new VIPs (${describeError(err)}); nothing changed`);
    }
    const leaving = new Set(diff.removed.map((v) => v.ip));
    const removed = Promise.all(diff.removed.map((v) => this.#remove(v).then(() => leaving.delete(v.ip))));
    for (const v of diff.added) {
      this.#add(v).catch((err) => this.log.error("standing for an added VIP failed", { vip: v.ip, link: v.link, error: describeError(err) }));
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([removed, new Promise((r) => (timer = setTimeout(r, RELOAD_WAIT_MS)))]);
    clearTimeout(timer);
    return { ...diff, leaving: [...leaving] };
  }

  /** Releases a VIP that left the configuration, then forgets it: slot, metrics, link, fence guard. */
  #remove(vip: VipSettings): Promise<void> {
    const slot = this.#slots.find((s) => s.vip === vip);
    // Added by an earlier reload and not standing yet: #add finds it unwanted.
    if (!slot) return Promise.resolve();
    this.log.info("VIP removed from the configuration; releasing it", { vip: vip.ip, link: vip.link });
    const done = slot.remove().then(async () => {
      this.#slots = this.#slots.filter((s) => s !== slot);
      this.metrics.forgetVip(vip.ip, vip.link);
      this.#forgetUnusedLinks();
      this.log.info("VIP released and out of its queue", { vip: vip.ip, link: vip.link });
      // Only now that nothing of it is left does the fence stop guarding it. Logged inside.
      await this.#configureFence().catch(() => {});
    });
    this.#leaving.set(vip.ip, done);
    void done.finally(() => {
      if (this.#leaving.get(vip.ip) === done) this.#leaving.delete(vip.ip);
    });
    return done;
  }

  /**
   * Stands for a VIP a reload added, once the removed VIPs are released:
   * the same address on another link (a VIP that moved) must be gone first,
   * and a heartbeat guards no more keys than the configuration allows VIPs
   * (one etcd transaction). Without etcd neither could proceed anyway.
   */
  async #add(vip: VipSettings): Promise<void> {
    await Promise.all(this.#leaving.values());
    const wanted = () => !this.#stopping && this.#settings.vips.includes(vip) && !this.#slots.some((s) => s.vip.ip === vip.ip);
    if (!wanted()) return;
    // As at start (invariant I6): an address this run did not put there goes before the node stands.
    if (this.#links?.state(vip.link) !== "absent" && (await this.#rtnl.deleteAddress(vip.link, vip.ip))) {
      this.log.warn("removed the VIP from the link, where this run had not put it", { vip: vip.ip, link: vip.link });
    }
    if (!wanted()) return;
    const slot = this.#newSlot(vip);
    this.#slots.push(slot);
    this.log.info("VIP added to the configuration; standing for it", { vip: vip.ip, link: vip.link });
    slot.update();
  }

  /** Every VIP the fence guards: those configured, and those still on their way out. */
  #guarded(): string[] {
    return [...new Set([...this.#settings.vips, ...this.#slots.map((s) => s.vip)].map((v) => v.ip))];
  }

  #forgetUnusedLinks(): void {
    const links = this.#links;
    if (!links) return;
    const used = new Set([...this.#settings.vips, ...this.#slots.map((s) => s.vip)].map((v) => v.link));
    for (const name of links.names()) if (!used.has(name)) links.forget(name);
  }

  // ---- surfaces -----------------------------------------------------------------

  #loopTick(): void {
    const now = this.#clock();
    const gap = now - this.#loopAt;
    this.#loopAt = now;
    if (gap <= LOOP_STALL_MS) return;
    this.#lastStall = { ms: Math.round(gap), endedAt: now };
    // Nothing ran meanwhile: proofs may have run out and VIPs moved; the fence kept that safe.
    this.log.warn(`event loop stalled for ${Math.round(gap)} ms (process frozen, or starved of CPU)`, { stalledMs: Math.round(gap) });
  }

  health(): HealthReport {
    const now = this.#clock();
    const session = this.#session;
    if (this.#stopping) return { ok: false, reason: "shutting down" };
    if (now - this.#loopAt > LOOP_STALL_MS) return { ok: false, reason: `event loop stalled for ${Math.round(now - this.#loopAt)} ms` };
    const stall = this.#lastStall;
    if (stall && now - stall.endedAt < LOOP_STALL_MS) {
      return { ok: false, reason: `event loop stalled for ${stall.ms} ms, until ${Math.round(now - stall.endedAt)} ms ago` };
    }
    if (!session?.ready) return { ok: false, reason: `etcd session not established: ${session?.lastError ?? "connecting"}` };
    const beat = session.lastHeartbeatAt;
    if (beat === null || now - beat > this.#holdMs) {
      const since = beat === null ? "none committed yet" : `none committed for ${Math.round(now - beat)} ms`;
      return { ok: false, reason: `etcd heartbeat: ${since}${session.lastHeartbeatError ? `: ${session.lastHeartbeatError}` : ""}` };
    }
    // A VIP whose link is missing or down has nobody here to stand for it:
    // the node is up but not doing its job, and only an operator can fix
    // it (a wrong link name, a NIC that never came up). Before the gate, as
    // a slot's own candidacy puts it: the link is what to look at first.
    const cannot = this.#slots.flatMap((s) => {
      const st = s.standing();
      return !st.standing && st.fault ? [`${s.vip.ip} not standing: ${st.reason}`] : [];
    });
    if (cannot.length) return { ok: false, reason: cannot.join("; ") };
    // A closed gate keeps this node out of the elections; probes should see why.
    if (this.gate && !this.gate.open) return { ok: false, reason: `kube-apiserver gate closed: ${this.gate.reason}` };
    const withdrawn = this.#slots.find((s) => s.withdrawnReason !== null);
    if (withdrawn) return { ok: false, reason: `cannot hold ${withdrawn.vip.ip} on ${withdrawn.vip.link}: ${withdrawn.withdrawnReason}` };
    // The VIP stays dark on purpose, on every node: an operator must find the stranger.
    const conflict = this.#slots.find((s) => s.conflict !== null)?.conflict;
    if (conflict) return { ok: false, reason: conflict.reason };
    return { ok: true, reason: "" };
  }

  status(): AgentStatus {
    const now = this.#clock();
    const wall = Date.now();
    const session = this.#session;
    const info = session?.describe();
    const beat = session?.lastHeartbeatAt ?? null;
    return {
      node: this.settings.nodeName,
      vips: this.#slots.map((s) => s.status(wall)),
      etcd: {
        endpoints: this.settings.etcd.endpoints,
        connected: session?.ready ?? false,
        lease: info?.lease ?? null,
        ttl: info?.ttl ?? null,
        holdMs: this.#holdMs,
        lastHeartbeatMs: beat === null ? null : Math.round(now - beat),
        lastError: session?.lastError ?? null,
        agents: info?.agents ?? [],
      },
      fence: { mode: this.#fence.mode },
      drained: session?.drained ?? null,
      drains: (session?.view.drains() ?? []).map((d) => ({ node: d.node, by: d.drain?.by ?? null, at: d.drain?.at ?? null, reason: d.drain?.reason ?? null })),
      gate: this.gate
        ? { open: this.gate.open, reason: this.gate.reason, lastProbeMs: this.gate.lastProbe ? Math.round(this.gate.lastProbe.latencyMs) : null }
        : null,
    };
  }

  /** Prometheus exposition; gauges that are states are sampled now. */
  renderMetrics(): Promise<string> {
    const now = this.#clock();
    const session = this.#session;
    this.metrics.etcdUp(session?.ready ?? false);
    const resets = this.#conn?.resets ?? 0;
    if (resets > this.#resetsCounted) this.metrics.reconnected(resets - this.#resetsCounted);
    this.#resetsCounted = resets;
    const proofs = this.#slots.map((s) => session?.proof(s.vip.ip) ?? null).filter((d): d is number => d !== null);
    this.metrics.proofRemaining(proofs.length ? Math.min(...proofs) - now : null);
    return this.metrics.render();
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
   * returns well within a second even when etcd is gone.
   */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    this.gate?.stop();
    await Promise.all(this.#slots.map((s) => s.stop()));
    await this.#session?.stop(STOP_RPC_MS).catch((err) => this.log.warn("leaving etcd cleanly failed; our keys expire with the lease", { error: describeError(err) }));
    if (this.#nft) {
      await this.#nft.remove().catch((err) => this.log.warn("removing the nftables fence failed", { error: describeError(err) }));
    }
    this.#conn?.close();
    // After the VIPs are gone and etcd was told: a hook (the shutdown's own
    // "released") may finish, for at most one hook timeout. Nothing runs: no wait.
    await this.#hooks.stop();
    this.#closeKernel();
  }

  #closeKernel(): void {
    clearInterval(this.#loopTimer);
    if (this.#fenceTimer) clearInterval(this.#fenceTimer);
    this.gate?.stop();
    this.#links?.close();
    this.#nft?.close();
    this.#rtnl.close();
    this.#lock?.release();
  }
}

function hookSettings(s: Settings) {
  return { ...s.hooks, timeoutMs: s.hooks.timeout * 1000 };
}
