// One VIP's controller: level-triggered. Any change of facts asks for a pass;
// a pass computes the decision from the facts *now* and makes the kernel
// match it. Passes never overlap: a request during a pass runs one more pass
// after it, so the last word always comes from the latest facts.
//
// Holding is two kernel writes, fence first: the nftables element that lets
// the VIP's traffic through until the proof's deadline, then the address
// with its lifetime. Releasing is the reverse: fence, then address
// (design.md §5). Both read the deadline when their request leaves, never
// before an await: a process frozen in between must not send a stale one
// (invariant I2).
//
// The kernel may answer for the VIP (serving, which heartbeats claim and
// which I4 waits for) until the address is confirmed gone or everything we
// gave the kernel has run out. A closed fence alone is not enough: without
// nftables it is no fence at all, and with it the address outlives the
// element, so whoever drops the fence next (a reload, a stop) would let it
// answer again.
import { addressLifetime, KERNEL_LIFETIME_SLACK_MS } from "../election/proof.ts";
import { decideHold, type HoldDecision, type VipFacts } from "./decision.ts";
import { type Clock, type Intervals, realTimers } from "../seams.ts";
import type { AddressKernel, AnnouncePort, FencePort } from "./ports.ts";

export interface AnnounceSettings {
  /** Announcement rounds right after acquiring the address. */
  readonly burst: number;
  readonly burstIntervalMs: number;
  /** Period of refresh announcements while holding; 0 turns them off. */
  readonly refreshMs: number;
}

export interface OwnershipChange {
  readonly ip: string;
  readonly link: string;
  readonly held: boolean;
  readonly reason: string;
  /** Short token for metrics: "elected" when acquired, a ReleaseCode when released. */
  readonly code: string;
  /** Clock reading (ms) when the kernel confirmed the change. */
  readonly at: number;
}

export interface ControllerDeps {
  readonly kernel: AddressKernel;
  readonly fence: FencePort;
  /** The announcer for a link, or null when it cannot be opened right now. */
  readonly announcer: (link: string) => AnnouncePort | null;
  readonly announce: AnnounceSettings;
  readonly clock: Clock;
  readonly timers?: Intervals;
  readonly onChange: (c: OwnershipChange) => void;
  readonly onError: (op: string, err: unknown) => void;
  /** Adding the VIP failed `consecutive` times in a row (reset by a success). */
  readonly onHoldFailed?: (err: unknown, consecutive: number) => void;
  /** Frames sent for this VIP (bursts and refreshes). */
  readonly onAnnounced?: (frames: number) => void;
  /** Why we won, for the log line ("predecessor cp-2 left"); asked at acquisition. */
  readonly winReason?: () => string;
}

export class VipController {
  /** Whether the address is on the link by our hand (as far as the kernel confirmed). */
  held = false;
  since: number | null = null;
  lastDecision: HoldDecision | null = null;
  /** A hold began, and no release has confirmed the address gone since. */
  private mayAnswer = false;
  /**
   * Clock time by which everything sent to the kernel has run out: the
   * latest fence deadline, or address lifetime plus the kernel's slack.
   * Raised when a request reads its deadline, right before it leaves.
   */
  private answersUntil = -Infinity;
  /**
   * The kernel confirmed the address is not on the link and no event has said
   * otherwise since: a follower need not ask again on every heartbeat.
   */
  private knownAbsent = false;
  /** The last fence request of a release failed: the next pass sends it again. */
  private denyFailed = false;
  private failures = 0;
  private running: Promise<void> | null = null;
  private again = false;
  private burstAbort: AbortController | null = null;
  private refresh: unknown = null;
  private readonly timers: Intervals;

  constructor(
    readonly ip: string,
    readonly link: string,
    private readonly facts: () => VipFacts,
    private readonly deps: ControllerDeps,
  ) {
    this.timers = deps.timers ?? realTimers;
  }

  /**
   * The kernel may be answering for the VIP: from the moment a hold begins
   * until a release has confirmed the address gone, or until what the
   * kernel was given has run out. Heartbeats claim the VIP while this is
   * true (design.md §4), and etcd hears of a release only after (I4).
   */
  get serving(): boolean {
    return this.mayAnswer && this.deps.clock() < this.answersUntil;
  }

  /** Asks for a pass; resolves when a pass that started after this call has finished. */
  poke(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.loop().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  /** The kernel reported a change of this address (added or removed by someone): verify on the next pass. */
  kernelChanged(): Promise<void> {
    this.knownAbsent = false;
    return this.poke();
  }

  private async loop(): Promise<void> {
    do {
      this.again = false;
      await this.pass();
    } while (this.again);
  }

  private async pass(): Promise<void> {
    const d = decideHold(this.facts());
    this.lastDecision = d;
    if (d.hold) await this.hold();
    else await this.release(d.reason, d.code);
  }

  /** The deadline by the facts at this instant; null when the VIP may not be held. */
  private deadlineNow = (): number | null => {
    const d = decideHold(this.facts());
    return d.hold ? d.deadline : null;
  };

  private async hold(): Promise<void> {
    this.knownAbsent = false;
    this.mayAnswer = true;
    const { kernel, fence, clock } = this.deps;
    // Set when the proof ran too short to send the address at all: no refusal of the kernel's.
    let unsent = false;
    const deadline = (): number | null => {
      const d = this.deadlineNow();
      if (d !== null) this.answersUntil = Math.max(this.answersUntil, d);
      return d;
    };
    const lifetime = (): number | null => {
      const now = clock();
      const s = addressLifetime(fence.mode, this.deadlineNow(), now);
      if (s === null) unsent = true;
      else this.answersUntil = Math.max(this.answersUntil, now + s * 1000 + KERNEL_LIFETIME_SLACK_MS);
      return s;
    };
    try {
      await fence.allow(this.ip, deadline);
      // Refreshing the lifetime of an address we already hold is the same
      // request as adding it: NLM_F_REPLACE makes it idempotent.
      await kernel.replaceAddress(this.link, this.ip, lifetime);
    } catch (err) {
      this.deps.onError(`holding ${this.ip} on ${this.link}`, err);
      // We may or may not have it now; the next pass decides again. If the
      // kernel did add it, the fence and its lifetime still bound it. A proof
      // too short for a lifetime (a slow etcd without nftables: 2 s needed)
      // is not the kernel refusing: it must not stand the slot down.
      if (unsent) return;
      this.failures++;
      this.deps.onHoldFailed?.(err, this.failures);
      return;
    }
    this.failures = 0;
    if (this.held) return;
    this.held = true;
    this.since = clock();
    // The address is on the link and its fence admits it: neighbours learn
    // first, and the rest (the log line, metrics, the conflict probe, the
    // queue's reducer, hooks) waits one microtask. Controllers whose
    // requests the kernel confirmed in one batch resume in the same turn,
    // so every one of them announces before any does that work: at 100
    // VIPs the last one's first gratuitous ARP left after the others'
    // bookkeeping, about 0.8 ms each. The burst's guard still asks the
    // facts right before it sends.
    this.startAnnouncing();
    await null;
    this.deps.onChange({ ip: this.ip, link: this.link, held: true, reason: this.deps.winReason?.() ?? "elected", code: "elected", at: this.since });
  }

  private async release(reason: string, code: string): Promise<void> {
    this.stopAnnouncing();
    const wasHeld = this.held;
    // Set before the await: from here on nothing may treat the VIP as ours.
    this.held = false;
    this.since = null;
    if (!wasHeld && this.knownAbsent && !this.serving && !this.denyFailed) return;
    try {
      await this.deps.fence.deny(this.ip);
      this.denyFailed = false;
    } catch (err) {
      this.denyFailed = true;
      this.deps.onError(`fencing ${this.ip} on ${this.link}`, err);
    }
    let gone = false;
    try {
      await this.deps.kernel.deleteAddress(this.link, this.ip);
      gone = true;
    } catch (err) {
      // ENODEV: the link went away, and the address with it.
      gone = (err as { code?: string }).code === "ENODEV";
      this.deps.onError(`removing ${this.ip} from ${this.link}`, err);
    }
    // Only an address confirmed gone ends the claim before the deadlines do (see serving).
    if (gone) {
      this.knownAbsent = true;
      this.mayAnswer = false;
    }
    if (wasHeld) this.deps.onChange({ ip: this.ip, link: this.link, held: false, reason, code, at: this.deps.clock() });
  }

  private startAnnouncing(): void {
    const port = this.deps.announcer(this.link);
    if (!port) {
      this.deps.onError(`announcing ${this.ip} on ${this.link}`, new Error("no announcer for the link"));
      return;
    }
    const { burst, burstIntervalMs, refreshMs } = this.deps.announce;
    const abort = new AbortController();
    this.burstAbort = abort;
    const guard = () => this.mayAnnounce();
    port
      .burst(this.ip, { count: burst, intervalMs: burstIntervalMs, signal: abort.signal, guard })
      .then((n) => this.counted(n))
      // An aborted burst (we released the VIP mid-burst) is not a failure.
      .catch((err) => abort.signal.aborted || this.deps.onError(`announcing ${this.ip} on ${this.link}`, err));
    if (refreshMs > 0) {
      // Caches that missed the burst (a switch port that came up late, a host
      // that dropped the frame) converge on the next refresh.
      this.refresh = this.timers.setInterval(() => {
        if (!guard()) return void this.poke();
        try {
          port.announceOnce(this.ip);
          // A round is 2 frames for IPv4 (request + reply), 1 for IPv6.
          this.counted(this.ip.includes(":") ? 1 : 2);
        } catch (err) {
          this.deps.onError(`announcing ${this.ip} on ${this.link}`, err);
        }
      }, refreshMs);
    }
  }

  private counted(frames: number): void {
    this.deps.onAnnounced?.(frames);
  }

  /**
   * Whether an announcement may go out *now*: we hold the address and the
   * facts, read at this instant, still allow it. Timers that fire after a
   * freeze run before the pass that would release the VIP; this check keeps
   * them from announcing an address that another node may already own.
   */
  private mayAnnounce(): boolean {
    return this.held && decideHold(this.facts()).hold;
  }

  private stopAnnouncing(): void {
    this.burstAbort?.abort();
    this.burstAbort = null;
    if (this.refresh !== null) this.timers.clearInterval(this.refresh);
    this.refresh = null;
  }
}
