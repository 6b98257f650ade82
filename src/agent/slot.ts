// One VIP on this node: the shell around its queue reducer (queue-state.ts),
// its controller, which makes the kernel match the decision (design.md §8),
// and its conflict watch, which probes for strangers using the address (§12).
//
// Every fact change that concerns the VIP steps the reducer with the facts as
// they are now (slots.ts says which do); the shell runs what it asks for: a
// write through the election port (one at a time, its result stepped back
// in), a poke of the controller, and one timer for the next moment the facts
// change by themselves (a proof running out, another node's claim running
// out, a paused write going again). The agents ahead falling silent is the
// one moment every heartbeat of theirs moves: the slot waits for it on the
// agent's shared silence watch (silence-watch.ts), not on a timer of its own.
//
// The one ordering rule lives in #release(): the address (and its fence
// element) goes first, and only then is etcd told, because telling etcd lets
// the next node take over at once (design.md, invariant I4).
//
// About 420 lines: it wires three parts, runs every effect and chooses
// between its timer and the silence watch; the decisions are in
// queue-state.ts, what it says in slot-news.ts, /status in vip-status.ts.
import type { VipSettings } from "../config/index.ts";
import { describeEtcdError } from "../election/etcd-error.ts";
import { type Clock, realTimers, type Timeouts } from "../seams.ts";
import { describeError, type Logger } from "../log.ts";
import { type AnnounceSettings, VipController } from "../vip/controller.ts";
import { decideCandidacy, type VipFacts } from "../vip/decision.ts";
import type { AddressKernel, FencePort } from "../vip/ports.ts";
import { type Conflict, ConflictWatch, type SlotState } from "./conflict.ts";
import type { ElectionFacts, ElectionPort } from "./election-port.ts";
import type { HookSink } from "./hooks.ts";
import type { LinkWatch } from "./links.ts";
import { conflictNews, hookNews, ownershipNews, type SlotMetrics } from "./slot-news.ts";
import { initialQueueState, isQueued, PROBING, type QueueEffect, type QueueEvent, type QueueFacts, type QueueState, step, vipFacts } from "./queue-state.ts";
import { type Standing, standing } from "./standing.ts";
import type { SilenceWaiter, SilenceWaits } from "./silence-watch.ts";
import { type VipStatus, vipStatus } from "./vip-status.ts";

export type { VipStatus } from "./vip-status.ts";

export interface SlotDeps {
  readonly vip: VipSettings;
  readonly node: string;
  readonly election: ElectionPort;
  readonly links: Pick<LinkWatch, "state" | "probe" | "macs" | "announcer">;
  readonly gateOpen: () => boolean;
  readonly stopping: () => boolean;
  readonly kernel: AddressKernel;
  readonly fence: FencePort;
  readonly announce: AnnounceSettings;
  /** Between address-conflict probes while standing or holding, ms; 0: no conflict detection. */
  readonly probeIntervalMs: number;
  readonly clock: Clock;
  readonly log: Logger;
  readonly metrics: SlotMetrics;
  /** State-change hooks: told of every ownership change after it happened; never waited for. */
  readonly hooks: HookSink;
  /** Endpoints, for etcd errors as sentences. */
  readonly endpoints: readonly string[];
  /** The slot's timer and the conflict watch's; real ones by default. */
  readonly timers?: Timeouts;
  /** Where to wait for the agents ahead to fall silent; absent: the slot's own timer, re-armed as they speak. */
  readonly silence?: SilenceWaits;
}

/** Between release passes of a stopping slot whose address the kernel would not remove. */
const STOP_RETRY_MS = 250;

export class Slot implements SilenceWaiter {
  readonly controller: VipController;
  readonly #d: SlotDeps;
  readonly #conflict: ConflictWatch;
  readonly #timers: Timeouts;
  #state: QueueState;
  #timer: unknown = null;
  #timerAt = Infinity;
  #pending: QueueEvent[] = [];
  #stepping = false;
  /** The election's facts the last step was taken with. */
  #seen: ElectionFacts | null = null;
  /** Set by remove(): resolved once the VIP is out of the kernel and the queue. */
  #removal: { done: Promise<void>; resolve: () => void } | null = null;

  constructor(deps: SlotDeps) {
    this.#d = deps;
    this.#timers = deps.timers ?? realTimers;
    this.#state = initialQueueState(deps.node);
    const { vip, metrics, log, node, election } = deps;
    metrics.declareVip(vip.ip, vip.link);
    this.#conflict = new ConflictWatch({
      vip: vip.ip,
      link: vip.link,
      intervalMs: deps.probeIntervalMs,
      // The first probe runs while the session registers and reads the view;
      // its answers are judged once the view (and so the agents' MACs) is read.
      probe: async () => {
        const answered = await deps.links.probe(vip.link, vip.ip);
        await election.whenReady();
        return answered;
      },
      agentMacs: () => election.agentMacs(),
      ownMacs: () => new Set(deps.links.macs().values()),
      clock: deps.clock,
      ...(deps.timers ? { timers: deps.timers } : {}),
      onChange: (c, before) => {
        conflictNews(deps, c, before);
        this.update();
      },
      onProbed: () => this.update(),
      onProbeFailed: (err) => log.warn("probing for other machines that use the VIP failed", { vip: vip.ip, link: vip.link, error: describeError(err) }),
    });
    this.controller = new VipController(vip.ip, vip.link, () => this.#facts(), {
      kernel: deps.kernel,
      fence: deps.fence,
      announcer: (link) => deps.links.announcer(link),
      announce: deps.announce,
      clock: deps.clock,
      onChange: (c) => {
        ownershipNews(deps, c, election.read(vip.ip).handover?.to ?? null);
        // A new holder probes at once: the node before it may have let go because of a stranger.
        this.#conflict.update(this.#probeState(this.#facts()));
        this.#dispatch({ type: "ownership", held: c.held, at: c.at });
        hookNews(deps, c);
      },
      onError: (op, err) => log.error(`${op} failed`, { vip: vip.ip, error: describeError(err) }),
      onHoldFailed: (err, n) => this.#dispatch({ type: "hold-failed", consecutive: n, error: describeError(err) }),
      onAnnounced: (n) => metrics.announced(vip.ip, n),
      winReason: () => this.#state.winReason,
    });
  }

  get vip(): VipSettings {
    return this.#d.vip;
  }

  /** The queue reducer's phase (queue-state.ts): out, joining, queued, head, taking-over, leaving, removed. */
  get phase(): QueueState["phase"] {
    return this.#state.phase;
  }

  /** Why this node does (not) stand, and the decision, for /healthz. */
  get withdrawnReason(): string | null {
    return this.#state.withdrawn?.reason ?? null;
  }

  /**
   * Stands down for at least `ms` from now because the kernel cannot guard
   * the VIP (its link's fence is broken and could not be rebuilt): releases
   * it if held, leaves its queue, and says why on /healthz. Called again
   * while the cause lasts, it only extends the time; said once.
   */
  standDown(reason: string, ms: number): void {
    this.#dispatch({ type: "stand-down", reason, until: this.#d.clock() + ms });
  }

  /** Another machine that is not a vipd agent answers for the VIP (the last probe found it); null: none. */
  get conflict(): Conflict | null {
    return this.#conflict.conflict;
  }

  /** Some fact changed: decide candidacy, queue moves and holding again. */
  update(): void {
    this.#dispatch({ type: "update" });
    this.#conflict.update(this.#probeState(this.#facts()));
  }

  /** The reducer's next moment came (the slot's timer, or the silence watch: the agents ahead fell silent). */
  due(): void {
    this.#dispatch({ type: "due" });
    this.#conflict.update(this.#probeState(this.#facts()));
  }

  /**
   * Whether our own heartbeats' proofs concern the slot: its key heads the
   * queue (each committed heartbeat proves it anew), or a proof covers it.
   * A slot queued behind others has none to follow.
   */
  get followsProofs(): boolean {
    const e = this.#seen;
    return e === null || e.head || e.proof !== null;
  }

  /**
   * The VIP left the configuration (a reload): release it and leave its
   * queue for good, through #release(), so the address goes first (invariant
   * I4). Resolves once the kernel no longer answers for it and our key is
   * out of the queue; the slot may then be dropped.
   */
  remove(): Promise<void> {
    if (!this.#removal) {
      let resolve!: () => void;
      const done = new Promise<void>((r) => (resolve = r));
      this.#removal = { done, resolve };
      this.#dispatch({ type: "remove" });
      this.#conflict.update(this.#probeState(this.#facts()));
      // The kernel side ends with the controller's pass: look again then.
      void this.controller.poke().then(() => this.update());
    }
    return this.#removal.done;
  }

  /** Whether this node stands for the VIP (in its queue, or holding it), and if not, why: /healthz, /status, `vipd wait --for standing`. */
  standing(): Standing {
    const { vip, node, links } = this.#d;
    const e = this.#read();
    const f = this.#queueFacts(e);
    const queue = e.queue.map((c) => c.node);
    const at = queue.indexOf(node);
    // Joined a moment ago and not in the view yet: at the back.
    const ahead = !isQueued(this.#state, f) ? null : at >= 0 ? queue.slice(0, at) : queue;
    return standing({
      link: vip.link,
      linkState: links.state(vip.link),
      candidacy: decideCandidacy(vipFacts(this.#state, f.vip)),
      sessionReady: e.ready,
      held: this.controller.held,
      ahead,
      pending: this.#state.candidacy === PROBING ? PROBING : "joining the queue",
    });
  }

  /** Our key is gone (a takeover, an operator): the proof is already void; let go now. */
  deposed(): void {
    this.#d.log.warn("our election key is gone; releasing", { vip: this.#d.vip.ip });
    this.update();
  }

  /**
   * Removes the address (and fence element) for good: the agent is stopping.
   * Resolves once the kernel cannot answer for the VIP any more, even
   * without the fence table: Agent.stop tells etcd and drops the table only
   * then (I4). A delete the kernel refuses is tried again until it goes
   * through or the address has run out by itself (at most H + 3 s).
   */
  async stop(): Promise<void> {
    this.#disarm();
    this.#conflict.stop();
    await this.controller.poke();
    while (this.controller.serving) {
      await new Promise((r) => this.#timers.setTimeout(() => r(undefined), STOP_RETRY_MS));
      await this.controller.poke();
    }
  }

  #read(): ElectionFacts {
    return this.#d.election.read(this.#d.vip.ip);
  }

  #queueFacts(e: ElectionFacts): QueueFacts {
    const { links, vip, clock } = this.#d;
    return {
      vip: {
        now: clock(),
        head: e.head,
        proof: e.proof,
        claimedUntil: e.claimedUntil,
        held: this.controller.held,
        link: links.state(vip.link),
        gateOpen: this.#d.gateOpen(),
        stopping: this.#d.stopping(),
        drained: e.drained,
        conflict: this.#conflict.conflict?.reason ?? null,
        yielding: e.yielding,
      },
      registered: e.registered,
      ready: e.ready,
      queue: e.queue,
      mine: e.mine,
      takeoverAt: e.takeoverAt,
      serving: this.controller.serving,
      clearToStand: this.#conflict.clearToStand(),
      handover: e.handover,
    };
  }

  /** The controller's facts: the reducer's, read now. */
  #facts(): VipFacts {
    return vipFacts(this.#state, this.#queueFacts(this.#read()).vip);
  }

  /**
   * Steps the reducer and runs its effects. An event raised while effects
   * run (a fake port that answers at once) waits for them: effects always
   * run in the order their steps were taken.
   */
  #dispatch(e: QueueEvent): void {
    this.#pending.push(e);
    if (this.#stepping) return;
    this.#stepping = true;
    try {
      for (let next = this.#pending.shift(); next; next = this.#pending.shift()) {
        const e = this.#read();
        this.#seen = e;
        const r = step(this.#state, this.#queueFacts(e), next);
        this.#state = r.state;
        for (const fx of r.effects) this.#run(fx);
      }
    } finally {
      this.#stepping = false;
    }
  }

  #run(fx: QueueEffect): void {
    const { vip, log, metrics } = this.#d;
    switch (fx.type) {
      case "join": return void this.#join(fx.before);
      case "release": return void this.#release(fx.reason);
      case "takeover": return void this.#takeover(fx.silentMs);
      case "poke": return this.#poke();
      case "arm": return this.#armOrWait(fx.at, fx.own);
      case "log": return log[fx.level](fx.message, { vip: vip.ip, ...fx.fields });
      case "failover": return metrics.failover(vip.ip, fx.ms);
      case "took-over": return metrics.tookOver(vip.ip);
      case "left":
        this.#disarm();
        this.#conflict.stop();
        return this.#removal?.resolve();
    }
  }

  /** A pass of the controller; the kernel letting go of the VIP is news: a release may wait for it (I4). */
  #poke(): void {
    const serving = this.controller.serving;
    void this.controller.poke().then(() => {
      if (serving && !this.controller.serving) this.update();
    });
  }

  async #join(before: readonly string[]): Promise<void> {
    try {
      await this.#d.election.join(this.#d.vip.ip);
    } catch (err) {
      return this.#dispatch({ type: "join-failed", error: describeEtcdError(err, this.#d.endpoints) });
    }
    this.#dispatch({ type: "joined", before });
  }

  /** The address goes first; only then may the next candidate be told (invariant I4). */
  async #release(reason: string): Promise<void> {
    const { election, vip } = this.#d;
    await this.controller.poke();
    // The kernel may still answer (a delete it refused): do not let the next node in yet.
    if (this.controller.serving) return this.#dispatch({ type: "kernel-answers" });
    const key = this.#read().mine;
    try {
      await election.release(vip.ip);
    } catch (err) {
      return this.#dispatch({ type: "release-failed", error: describeEtcdError(err, this.#d.endpoints) });
    }
    this.#dispatch({ type: "released", key, reason });
  }

  async #takeover(silentMs: number): Promise<void> {
    let r: { took: boolean; from: string[] };
    try {
      r = await this.#d.election.takeover(this.#d.vip.ip);
    } catch (err) {
      return this.#dispatch({ type: "takeover-failed", error: describeEtcdError(err, this.#d.endpoints) });
    }
    this.#dispatch({ type: "took", took: r.took, from: r.from, silentMs });
  }

  /**
   * The reducer's next moment. When it is the takeover's and the agent ahead
   * it waits on longest still speaks, every heartbeat of that agent would
   * move it: the silence watch wakes the slot when the agent has been silent
   * long enough, and the timer covers the slot's own next moment. Once that
   * agent is silent, only the stagger is left: the timer, like any moment.
   */
  #armOrWait(at: number, own: number): void {
    const silence = this.#d.silence;
    const w = silence && at < own ? this.#seen?.waitsOn : null;
    if (silence && w && w.silentAfter > this.#d.clock()) {
      silence.wait(this, w.node, w.silentAfter);
      return this.#arm(own);
    }
    silence?.cancel(this);
    this.#arm(at);
  }

  /** The one timer: at the reducer's next moment; re-armed only when that moment moves. */
  #arm(at: number): void {
    if (at === this.#timerAt) return;
    this.#stopTimer();
    this.#timerAt = at;
    if (at === Infinity) return;
    this.#timer = this.#timers.setTimeout(() => {
      this.#timer = null;
      this.#timerAt = Infinity;
      this.due();
    }, Math.max(0, at - this.#d.clock()) + 1);
  }

  #stopTimer(): void {
    if (this.#timer !== null) this.#timers.clearTimeout(this.#timer);
    this.#timer = null;
    this.#timerAt = Infinity;
  }

  #disarm(): void {
    this.#stopTimer();
    this.#d.silence?.cancel(this);
  }

  /**
   * What the conflict watch needs: whether we would stand but for a conflict,
   * and whether we hold. Before the session is ready too, so that the first
   * probe overlaps registration instead of delaying the first join.
   */
  #probeState(facts: VipFacts): SlotState {
    const wantsToStand = decideCandidacy({ ...facts, conflict: null }).stand;
    return { wantsToStand, held: this.controller.held };
  }

  /** For /status. */
  status(wallNow: number): VipStatus {
    const c = this.controller;
    return vipStatus({
      vip: this.#d.vip, election: this.#read(), held: c.held, since: c.since, decision: c.lastDecision, candidacy: this.#state.candidacy,
      winReason: this.#state.winReason, conflict: this.#conflict.conflict, standing: this.standing(), now: this.#d.clock(), wallNow,
    });
  }
}
