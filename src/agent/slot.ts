// One VIP on this node: whether to stand for it (candidacy), its place in
// etcd's queue (join, release, takeover through the session), its
// controller, which makes the kernel match the decision (design.md §8), and
// its conflict watch, which probes for strangers using the address (§12).
//
// Every fact change calls update(): decide again from the facts as they are
// now, poke the controller when that changes anything, and arm one timer
// for the next moment the facts change by themselves (a proof running out,
// another node's claim running out, the agents ahead falling silent).
//
// The one ordering rule lives in withdraw(): the address (and its fence
// element) goes first, and only then is etcd told, because telling etcd lets
// the next node take over at once (design.md, invariant I4).
import type { VipSettings } from "../config/index.ts";
import { describeEtcdError } from "../election/etcd-error.ts";
import type { Clock } from "../seams.ts";
import type { Session } from "../election/session.ts";
import type { VipdMetrics } from "../health/vipd-metrics.ts";
import { describeError, type Logger } from "../log.ts";
import { type AnnounceSettings, VipController } from "../vip/controller.ts";
import { decideCandidacy, decideHold, type VipFacts } from "../vip/decision.ts";
import type { AddressKernel, FencePort } from "../vip/ports.ts";
import { type Conflict, ConflictWatch, type SlotState } from "./conflict.ts";
import type { HookSink } from "./hooks.ts";
import type { LinkWatch } from "./links.ts";
import { describeStanding, type Standing, standing } from "./standing.ts";

export interface SlotDeps {
  readonly vip: VipSettings;
  readonly node: string;
  readonly session: Session;
  readonly links: LinkWatch;
  readonly gateOpen: () => boolean;
  readonly stopping: () => boolean;
  readonly kernel: AddressKernel;
  readonly fence: FencePort;
  readonly announce: AnnounceSettings;
  /** Between address-conflict probes while standing or holding, ms; 0: no conflict detection. */
  readonly probeIntervalMs: number;
  readonly clock: Clock;
  readonly log: Logger;
  readonly metrics: VipdMetrics;
  /** State-change hooks: told of every ownership change after it happened; never waited for. */
  readonly hooks: HookSink;
  /** Endpoints, for etcd errors as sentences. */
  readonly endpoints: readonly string[];
}

export interface VipStatus {
  ip: string;
  link: string;
  /** The node first in the queue, null when nobody stands. */
  leader: string | null;
  /** Whether this node has the address on its link now. */
  owner: boolean;
  /** When this node acquired it (ISO 8601), null when it does not hold it. */
  since: string | null;
  role: "holder" | "first" | "waiting" | "out";
  /** In the VIP's queue or holding it, for a reason that still holds (standing.ts). */
  standing: boolean;
  /** What it stands as ("holding", "first in the queue", "waiting behind cp-1"), or `not standing: link enp0s2 missing`. */
  standingReason: string;
  candidacy: string;
  reason: string;
  /** The queue as this node last read it, first in line first. */
  queue: { node: string; host: string | null }[];
  /** A hand-over in progress (`vipd handover`): to whom, asked by whom and when; null: none. */
  handover: { to: string; by: string; at: string } | null;
  /** Machines that are not vipd agents answering for the VIP (their MACs), and since when (ISO 8601); null: none seen. */
  conflict: { macs: string[]; since: string } | null;
}

/** Releases an operator (or the configuration) asked for. */
const PLANNED: ReadonlySet<string> = new Set(["shutdown", "removed", "drained", "handover"]);
/** Consecutive failures to add the address before the node stands down for it. */
export const HOLD_FAILURES_TO_WITHDRAW = 3;
/** How long a node stands down after the kernel kept refusing the address. */
export const WITHDRAW_MS = 30_000;
/** Retry after a failed join or release. */
const RETRY_MS = 1000;
/** Retry after a takeover that failed: soon, since every moment counts towards the failover. */
const TAKEOVER_RETRY_MS = 100;
/** Between release passes of a stopping slot whose address the kernel would not remove. */
const STOP_RETRY_MS = 250;
/** How long a committed join may take to show in the view before the slot joins again. */
const JOIN_VISIBLE_MS = 2000;
/** The candidacy while the first conflict probe runs: ready, not standing yet. */
const PROBING = "probing for another machine that uses the address before standing";

export class Slot {
  readonly controller: VipController;
  readonly #d: SlotDeps;
  readonly #conflict: ConflictWatch;
  #candidacy = "not started";
  #busy: Promise<void> | null = null;
  #withdrawn: { reason: string; until: number } | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #timerAt = Infinity;
  #appliedDeadline: number | null = null;
  #head = false;
  #headSince: number | null = null;
  #winReason = "first in the queue";
  #lastQueue: string[] = [];
  #releasedAt: number | null = null;
  #tookFrom: string | null = null;
  #joinedAt: number | null = null;
  /** The create revision of the key we just released, while the view still shows it: not queued any more. */
  #released: string | null = null;
  /** Set by remove(): the VIP left the configuration; resolved once it is out of the kernel and the queue. */
  #removal: { done: Promise<void>; resolve: () => void } | null = null;

  constructor(deps: SlotDeps) {
    this.#d = deps;
    const { vip, metrics, log, node } = deps;
    metrics.declareVip(vip.ip, vip.link);
    this.#conflict = new ConflictWatch({
      vip: vip.ip,
      link: vip.link,
      intervalMs: deps.probeIntervalMs,
      // The first probe runs while the session registers and reads the view;
      // its answers are judged once the view (and so the agents' MACs) is read.
      probe: async () => {
        const answered = await deps.links.probe(vip.link, vip.ip);
        await this.#sessionReady();
        return answered;
      },
      agentMacs: () => deps.session.view.agentMacs(),
      ownMacs: () => new Set(deps.links.macs().values()),
      clock: deps.clock,
      onChange: (c, before) => this.#conflictChanged(c, before),
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
        const fields = { vip: c.ip, link: c.link, node, reason: c.reason };
        metrics.ownership(c.ip, c.link, c.held, c.code);
        // A new holder probes at once: the node before it may have let go because of a stranger.
        this.#conflict.update(this.#probeState(this.#facts()));
        if (c.held) {
          log.info("acquired VIP", fields);
          if (this.#headSince !== null) metrics.failover(c.ip, c.at - this.#headSince);
          if (deps.session.view.handover(vip.ip)?.request?.to === node) metrics.handover(vip.ip, "in");
        } else {
          // An operator's or the config's doing is news, not trouble.
          if (PLANNED.has(c.code)) log.info("released VIP", fields);
          else log.warn("released VIP", fields);
          if (c.code === "handover") metrics.handover(vip.ip, "out");
          this.#releasedAt = c.at;
        }
        deps.hooks.changed({ vip: c.ip, link: c.link, node, held: c.held, code: c.code, reason: c.reason });
      },
      onError: (op, err) => log.error(`${op} failed`, { vip: vip.ip, error: describeError(err) }),
      onHoldFailed: (err, n) => this.#holdFailed(err, n),
      onAnnounced: (n) => metrics.announced(vip.ip, n),
      winReason: () => this.#winReason,
    });
  }

  get vip(): VipSettings {
    return this.#d.vip;
  }

  /** Why this node does (not) stand, and the decision, for /healthz. */
  get withdrawnReason(): string | null {
    return this.#withdrawn?.reason ?? null;
  }

  /**
   * Stands down for at least `ms` from now because the kernel cannot guard
   * the VIP (its link's fence is broken and could not be rebuilt): releases
   * it if held, leaves its queue, and says why on /healthz. Called again
   * while the cause lasts, it only extends the time; said once.
   */
  standDown(reason: string, ms: number): void {
    const until = this.#d.clock() + ms;
    if (this.#withdrawn) {
      this.#withdrawn = { reason: this.#withdrawn.reason, until: Math.max(until, this.#withdrawn.until) };
      return;
    }
    this.#withdrawn = { reason, until };
    this.#d.log.error("cannot hold the VIP; letting another node take it", { vip: this.#d.vip.ip, reason });
    this.update();
  }

  /** Another machine that is not a vipd agent answers for the VIP (the last probe found it); null: none. */
  get conflict(): Conflict | null {
    return this.#conflict.conflict;
  }

  #facts(): VipFacts {
    const { session, vip, clock, links } = this.#d;
    const now = clock();
    return {
      now,
      head: session.isHead(vip.ip),
      proof: session.proof(vip.ip),
      claimedUntil: session.claimedElsewhereUntil(vip.ip),
      held: this.controller.held,
      link: links.state(vip.link),
      gateOpen: this.#d.gateOpen(),
      withdrawn: this.#withdrawn && this.#withdrawn.until > now ? this.#withdrawn.reason : null,
      stopping: this.#d.stopping(),
      removed: this.#removal !== null,
      drained: session.drained,
      conflict: this.#conflict.conflict?.reason ?? null,
      yielding: session.yielding(vip.ip),
    };
  }

  /** Some fact changed: decide candidacy and holding again. */
  update(): void {
    const { session, vip, clock } = this.#d;
    const now = clock();
    if (this.#withdrawn && this.#withdrawn.until <= now) {
      this.#d.log.info("standing for the VIP again", { vip: vip.ip, after: this.#withdrawn.reason });
      this.#withdrawn = null;
    }
    const facts = this.#facts();
    this.#noteQueue(facts.head);
    const c = decideCandidacy(facts);
    this.#candidacy = c.reason;
    const mine = session.mine(vip.ip);
    if (mine) this.#joinedAt = null;
    if (mine?.createRevision !== this.#released) this.#released = null;
    if (session.ready && !this.#busy) {
      // Our own key reaches the view through the watch a moment after the
      // join commits; until then, we are queued all the same. A key we
      // released leaves the view as late: until then, we are out.
      const queued = this.#queued(now);
      // Not before a probe found no stranger: a takeover later must not wait for one.
      const probed = this.#conflict.clearToStand();
      if (c.stand && !queued && !probed) this.#candidacy = PROBING;
      if (c.stand && !queued && probed) this.#run(this.#join());
      else if (!c.stand && queued) this.#run(this.#withdraw(c.reason));
    }
    const d = decideHold(facts);
    if (d.hold ? !this.controller.held || d.deadline !== this.#appliedDeadline : this.controller.held || this.controller.serving) {
      this.#appliedDeadline = d.hold ? d.deadline : null;
      void this.controller.poke();
    }
    this.#arm(facts);
    this.#conflict.update(this.#probeState(facts));
    if (this.#removal && this.#left()) {
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = null;
      this.#conflict.stop();
      this.#removal.resolve();
    }
  }

  /**
   * The VIP left the configuration (a reload): release it and leave its
   * queue for good, through withdraw(), so the address goes first (invariant
   * I4). Resolves once the kernel no longer answers for it and our key is
   * out of the queue; the slot may then be dropped.
   */
  remove(): Promise<void> {
    if (!this.#removal) {
      let resolve!: () => void;
      const done = new Promise<void>((r) => (resolve = r));
      this.#removal = { done, resolve };
      this.update();
      // The kernel side ends with the controller's pass: look again then.
      void this.controller.poke().then(() => this.update());
    }
    return this.#removal.done;
  }

  /** Nothing of ours is left: no address, no fence element, no key in the queue, nothing in flight. */
  #left(): boolean {
    const { session, vip, clock } = this.#d;
    const joining = this.#joinedAt !== null && clock() - this.#joinedAt < JOIN_VISIBLE_MS;
    return !this.controller.held && !this.controller.serving && !this.#busy && !joining && session.mine(vip.ip) === undefined;
  }

  /**
   * Our key is in the queue, as far as we know: the view shows it and we did
   * not release it, or we joined a moment ago and the view has not caught up.
   */
  #queued(now: number): boolean {
    const { session, vip } = this.#d;
    const joining = this.#joinedAt !== null && now - this.#joinedAt < JOIN_VISIBLE_MS;
    return (session.mine(vip.ip) !== undefined && this.#released === null) || joining;
  }

  /** Whether this node stands for the VIP (in its queue, or holding it), and if not, why: /healthz, /status, `vipd wait --for standing`. */
  standing(): Standing {
    const { session, vip, node, links, clock } = this.#d;
    const facts = this.#facts();
    const queue = session.view.queue(vip.ip).map((c) => c.node);
    const at = queue.indexOf(node);
    // Joined a moment ago and not in the view yet: at the back.
    const ahead = !this.#queued(clock()) ? null : at >= 0 ? queue.slice(0, at) : queue;
    return standing({
      link: vip.link,
      linkState: links.state(vip.link),
      candidacy: decideCandidacy(facts),
      sessionReady: session.ready,
      held: facts.held,
      ahead,
      pending: this.#candidacy === PROBING ? PROBING : "joining the queue",
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
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#conflict.stop();
    await this.controller.poke();
    while (this.controller.serving) {
      await new Promise((r) => setTimeout(r, STOP_RETRY_MS));
      await this.controller.poke();
    }
  }

  /** The next moment facts change by themselves. */
  #arm(f: VipFacts): void {
    const { session, vip } = this.#d;
    const candidates: number[] = [];
    if (f.proof !== null && (this.controller.held || this.controller.serving)) candidates.push(f.proof);
    if (f.head && !f.held && f.claimedUntil !== null) candidates.push(f.claimedUntil);
    const takeover = session.takeoverAt(vip.ip);
    if (takeover !== null) candidates.push(takeover);
    if (this.#withdrawn) candidates.push(this.#withdrawn.until);
    const at = Math.min(...candidates);
    if (at === this.#timerAt) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#timerAt = at;
    if (at === Infinity) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#timerAt = Infinity;
      this.#due();
    }, Math.max(0, at - this.#d.clock()) + 1);
  }

  #due(): void {
    const { session, vip, clock } = this.#d;
    const at = session.takeoverAt(vip.ip);
    if (at !== null && at <= clock() && !this.#busy && session.ready) this.#run(this.#takeover());
    this.update();
  }

  #run(p: Promise<void>): void {
    this.#busy = p.finally(() => {
      this.#busy = null;
      this.update();
    });
  }

  async #join(): Promise<void> {
    const { session, vip, log } = this.#d;
    const before = session.view.queue(vip.ip);
    try {
      await session.join(vip.ip);
      this.#joinedAt = this.#d.clock();
      this.#winReason = before.length === 0 ? "first in the queue when it joined" : `joined behind ${before.map((c) => c.node).join(", ")}`;
      log.info("standing for VIP", { vip: vip.ip, queue: before.map((c) => c.node).join(",") || "(empty)" });
    } catch (err) {
      log.warn("joining the queue failed; retrying", { vip: vip.ip, error: describeEtcdError(err, this.#d.endpoints) });
      await new Promise((r) => setTimeout(r, RETRY_MS));
    }
  }

  /** The address goes first; only then may the next candidate be told (invariant I4). */
  async #withdraw(reason: string): Promise<void> {
    const { session, vip, log } = this.#d;
    await this.controller.poke();
    if (this.controller.serving) {
      // The fence could not be confirmed closed: do not let the next node in yet.
      await new Promise((r) => setTimeout(r, RETRY_MS));
      return;
    }
    const key = session.mine(vip.ip);
    try {
      await session.release([vip.ip]);
      // A join whose key the view has not shown yet is undone as well.
      this.#joinedAt = null;
      this.#released = key?.createRevision ?? null;
      log.info("withdrew from the VIP's queue", { vip: vip.ip, reason });
    } catch (err) {
      log.warn("leaving the queue failed; retrying", { vip: vip.ip, error: describeEtcdError(err, this.#d.endpoints) });
      await new Promise((r) => setTimeout(r, RETRY_MS));
    }
  }

  async #takeover(): Promise<void> {
    const { session, vip, log, clock } = this.#d;
    const ahead = session.view.queue(vip.ip).map((c) => c.node);
    const silent = ahead.length ? Math.round(clock() - (session.view.heartbeat(ahead[0]!)?.receivedAt ?? clock())) : 0;
    try {
      const r = await session.takeover(vip.ip);
      // Someone spoke meanwhile, and our view has not caught up yet: give it a moment.
      if (!r.took) await new Promise((res) => setTimeout(res, TAKEOVER_RETRY_MS / 2));
      if (r.took && r.from.length) {
        this.#d.metrics.tookOver(vip.ip);
        this.#tookFrom = r.from.join(", ");
        this.#winReason = `took over from ${this.#tookFrom}: no heartbeat for ${silent} ms`;
        log.info("took the VIP's queue over", { vip: vip.ip, from: this.#tookFrom, silentMs: silent });
      }
    } catch (err) {
      // etcd may be electing a leader (the old one went with the holder): try again soon.
      log.warn("takeover failed; retrying", { vip: vip.ip, error: describeEtcdError(err, this.#d.endpoints) });
      await new Promise((r) => setTimeout(r, TAKEOVER_RETRY_MS));
    }
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

  /** Resolves once the session is established and its view read. */
  #sessionReady(): Promise<void> {
    const { session } = this.#d;
    if (session.ready) return Promise.resolve();
    return new Promise((resolve) => {
      const off = session.on("changed", () => {
        if (!session.ready) return;
        off();
        resolve();
      });
    });
  }

  /** Said once when a stranger is found and once when it is gone; the decision does the rest. */
  #conflictChanged(c: Conflict | null, before: Conflict | null): void {
    const { vip, log, metrics } = this.#d;
    metrics.addressConflict(vip.ip, c !== null);
    if (c) {
      log.error("address conflict: a machine that is not a vipd agent answers for the VIP; neither standing for it nor holding it until that stops", {
        vip: vip.ip, link: vip.link, macs: c.macs.join(", "), reason: c.reason,
      });
    } else {
      log.info("address conflict cleared: only vipd agents answer for the VIP; standing for it again", { vip: vip.ip, link: vip.link, was: before?.macs.join(", ") });
    }
    this.update();
  }

  #holdFailed(err: unknown, consecutive: number): void {
    if (consecutive < HOLD_FAILURES_TO_WITHDRAW || this.#withdrawn) return;
    const reason = `the kernel refused the address ${consecutive} times (${describeError(err)}); standing down for ${WITHDRAW_MS / 1000} s`;
    this.#withdrawn = { reason, until: this.#d.clock() + WITHDRAW_MS };
    this.#d.log.error("cannot hold the VIP; letting another node take it", { vip: this.#d.vip.ip, reason });
    this.update();
  }

  /** Notes when we became first in the queue, and why, for the log and the failover metric. */
  #noteQueue(head: boolean): void {
    const { session, vip, clock, metrics, node } = this.#d;
    const queue = session.view.queue(vip.ip).map((c) => c.node);
    if (head && !this.#head) {
      this.#headSince = clock();
      const gone = this.#lastQueue.filter((n) => n !== node && !queue.includes(n));
      const asked = session.view.handover(vip.ip)?.request;
      if (gone.length && !this.#tookFrom) {
        this.#winReason = asked?.to === node ? `${gone.join(", ")} handed it over (asked by ${asked.by} at ${asked.at})` : `${gone.join(", ")} left the queue`;
      }
      this.#tookFrom = null;
    }
    if (!head) this.#headSince = null;
    // The loser's side of a failover: from our release until another node is first.
    if (this.#releasedAt !== null && queue[0] && queue[0] !== node) {
      metrics.failover(vip.ip, clock() - this.#releasedAt);
      this.#releasedAt = null;
    }
    this.#head = head;
    this.#lastQueue = queue;
  }

  status(wallNow: number): VipStatus {
    const { session, vip, clock } = this.#d;
    const now = clock();
    const queue = session.view.queue(vip.ip);
    const mine = session.mine(vip.ip);
    const role = this.controller.held ? "holder" : session.isHead(vip.ip) ? "first" : mine ? "waiting" : "out";
    const since = this.controller.since;
    const d = this.controller.lastDecision;
    const asked = session.view.handover(vip.ip)?.request;
    const conflict = this.#conflict.conflict;
    const standing = this.standing();
    return {
      ip: vip.ip,
      link: vip.link,
      leader: queue[0]?.node ?? null,
      owner: this.controller.held,
      since: since === null ? null : new Date(wallNow - (now - since)).toISOString(),
      role,
      standing: standing.standing,
      standingReason: describeStanding(standing),
      candidacy: this.#candidacy,
      reason: d && !d.hold ? d.reason : this.controller.held ? this.#winReason : this.#candidacy,
      queue: queue.map((c) => ({ node: c.node, host: session.view.agent(c.node)?.incarnation?.host ?? null })),
      handover: asked ? { to: asked.to, by: asked.by, at: asked.at } : null,
      conflict: conflict ? { macs: [...conflict.macs], since: new Date(wallNow - (now - conflict.since)).toISOString() } : null,
    };
  }
}
