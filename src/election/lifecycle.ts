// The session's lifecycle (design.md §2–§7): grant a lease, register this
// run under its node name, read and watch the cluster view, run the
// heartbeat; on a lost record or lease tear all of it down and start again,
// with a backoff while etcd does not answer; on a stop, leave every queue
// and revoke the lease. It owns the session's resources (lease, watch,
// heartbeat), made through SessionParts so that its decisions are tested
// with fakes, and turns what they report into the session's events.
import type { Logger } from "../log.ts";
import type { Clock, Timed } from "../seams.ts";
import { type EtcdConnection, within } from "./connection.ts";
import { describeEtcdError } from "./etcd-error.ts";
import { etcdVersionWarning } from "./etcd-version.ts";
import { Heartbeat } from "./heartbeat.ts";
import { describeIncarnation } from "./incarnation.ts";
import { AgentLease } from "./lease.ts";
import { HEARTBEAT_INTERVAL_MS, standbyInterval } from "./proof.ts";
import type { QueueWriter } from "./queue-writer.ts";
import { stallAfter } from "./reconnect.ts";
import { type Registration, SessionFatalError } from "./registration.ts";
import type { SessionEvents, SessionSettings } from "./session.ts";
import type { Guarded, Registered, Self } from "./transactions.ts";
import type { ClusterView } from "./view.ts";
import { Watcher } from "./watcher.ts";

/** The lease one registration lives on (lease.ts). */
export type SessionLease = Pick<AgentLease, "id" | "etcdId" | "ttl" | "grant" | "revoke" | "close" | "on">;
/** The watch that keeps the cluster view current (watcher.ts). */
export type SessionWatch = Pick<Watcher, "synced" | "start" | "close" | "expect" | "etcdAnswered">;
/** The heartbeat and the proofs it gives (heartbeat.ts). */
export type SessionHeartbeat = Pick<Heartbeat, "start" | "stop" | "beat" | "on" | "provenSince" | "lastCommitAt" | "paceMs" | "prove" | "releasing" | "gone" | "putAlongside">;

/**
 * What one session runs, made anew for each registration. The agent's are
 * etcd's (`etcdParts`); the loop's tests pass plain fakes.
 */
export interface SessionParts {
  lease(): SessionLease;
  /** etcd's version, for the warning about its known bugs. */
  etcdVersion(): Promise<string>;
  watch(changed: () => void): SessionWatch;
  heartbeat(h: { lease: string; agentRevision: string; guard: () => readonly Guarded[]; claims: () => readonly string[]; busy: () => boolean }): SessionHeartbeat;
}

export interface LifecyclePort {
  readonly settings: SessionSettings;
  readonly log: Logger;
  readonly clock: Clock;
  readonly run: string;
  readonly parts: SessionParts;
  readonly registration: Pick<Registration, "refuseLegacy" | "refuseNewerLayout" | "claim" | "publishMacs">;
  readonly queues: Pick<QueueWriter, "guard" | "claims" | "letGo" | "busy" | "newHeads">;
  readonly emit: <K extends keyof SessionEvents>(event: K, payload: SessionEvents[K]) => void;
  /** Waits before the next attempt to establish a session; tests pass their own. */
  readonly sleep?: (ms: number) => Promise<void>;
}

/** The parts of a session against etcd. */
export function etcdParts(o: {
  conn: EtcdConnection;
  view: ClusterView;
  me: Self;
  settings: SessionSettings;
  clock: Clock;
  log: Logger;
  rpcTimeoutMs: number;
  nextSeq: () => number;
  timed?: Timed;
}): SessionParts {
  const stallMs = stallAfter(o.settings.holdMs, HEARTBEAT_INTERVAL_MS);
  return {
    lease: () => new AgentLease(o.conn, { clock: o.clock, rpcTimeoutMs: o.rpcTimeoutMs }),
    etcdVersion: async () => (await o.conn.client.maintenance.status(within(o.rpcTimeoutMs))).version,
    watch: (changed) =>
      new Watcher({
        conn: o.conn, view: o.view, clock: o.clock, changed, rpcTimeoutMs: o.rpcTimeoutMs, progressMs: stallMs, timed: o.timed,
        warn: (reason) => o.log.warn("etcd watch", { reason }),
      }),
    heartbeat: (h) =>
      new Heartbeat({
        conn: o.conn, clock: o.clock, prefix: o.me.prefix, node: o.me.node, run: o.me.run, nextSeq: o.nextSeq,
        lease: h.lease, agentRevision: h.agentRevision, guard: h.guard, claims: h.claims, busy: h.busy,
        idleIntervalMs: standbyInterval(o.settings.holdMs),
        timeoutMs: Math.min(o.settings.holdMs, 2000), stallMs,
      }),
  };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5000;

export class Lifecycle {
  readonly #p: LifecyclePort;
  #lease: SessionLease | null = null;
  #watcher: SessionWatch | null = null;
  #heartbeat: SessionHeartbeat | null = null;
  #agentRevision: string | null = null;
  #ready = false;
  #stopped = false;
  /** stop()'s budget, for undoing a registration that was still under way when it came. */
  #stopTimeoutMs = 600;
  #lastError: string | null = "connecting";
  #lastHeartbeatError: string | null = null;
  #versionChecked = false;
  #ended: (() => void) | null = null;
  #loop: Promise<void> | null = null;

  constructor(port: LifecyclePort) {
    this.#p = port;
  }

  /** Starts connecting and registering in the background. */
  start(): void {
    this.#loop ??= this.#run();
  }

  /** Registered, with the view read and the heartbeat running (the view may be being read again). */
  get established(): boolean {
    return this.#ready;
  }
  /** Established, and the view is current. */
  get ready(): boolean {
    return this.#ready && (this.#watcher?.synced ?? false);
  }
  get lastError(): string | null {
    return this.#lastError;
  }
  get lastHeartbeatError(): string | null {
    return this.#lastHeartbeatError;
  }
  /** The running heartbeat; null: none runs. */
  get heartbeat(): SessionHeartbeat | null {
    return this.#heartbeat;
  }
  /** The lease of the current (or last) registration, for /status. */
  get lease(): SessionLease | null {
    return this.#lease;
  }

  /** The registration every write is guarded by; null while there is none. */
  registered(): Registered | null {
    return this.#agentRevision === null || !this.#lease ? null : { agentRevision: this.#agentRevision, lease: this.#lease.etcdId };
  }

  /** A write of ours committed at this revision: the watch must show it within its progress check (design.md §7). */
  expect(revision: string): void {
    this.#watcher?.expect(revision);
  }

  /**
   * Stops for good: `leave` (releasing every key, with a heartbeat that
   * claims nothing) and the lease's revocation, each with its own short
   * deadline, when a session is established. The caller has removed every
   * address first.
   */
  async stop(timeoutMs: number, leave: () => Promise<void>): Promise<void> {
    this.#stopped = true;
    this.#stopTimeoutMs = timeoutMs;
    this.#heartbeat?.stop();
    const errors: string[] = [];
    if (this.#ready) {
      await leave().catch((e: unknown) => errors.push(describeEtcdError(e, this.#p.settings.endpoints)));
      await this.#lease?.revoke(timeoutMs).catch((e: unknown) => errors.push(describeEtcdError(e, this.#p.settings.endpoints)));
    }
    this.#end();
    await this.#loop;
    if (errors.length) throw new Error(errors.join("; "));
  }

  async #run(): Promise<void> {
    let backoff = RETRY_MIN_MS;
    while (!this.#stopped) {
      try {
        await this.#establish();
        if (this.#stopped) {
          await this.#abandon();
          break;
        }
        backoff = RETRY_MIN_MS;
        this.#ready = true;
        this.#lastError = null;
        this.#p.log.info("etcd session established", { node: this.#p.settings.node, lease: this.#lease!.id, holdMs: this.#p.settings.holdMs });
        this.#p.emit("changed", {});
        await new Promise<void>((resolve) => {
          this.#ended = resolve;
        });
      } catch (err) {
        if (this.#stopped) {
          await this.#abandon();
          break;
        }
        if (err instanceof SessionFatalError) {
          this.#lastError = err.message;
          this.#stopped = true;
          this.#teardown();
          this.#p.emit("fatal", { reason: err.message });
          break;
        }
        this.#lastError = describeEtcdError(err, this.#p.settings.endpoints);
        this.#p.log.warn("etcd not ready; retrying", { error: this.#lastError, retryInMs: backoff });
        this.#teardown();
        await (this.#p.sleep ?? sleep)(backoff);
        backoff = Math.min(RETRY_MAX_MS, backoff * 2);
        continue;
      }
      this.#teardown();
    }
  }

  async #establish(): Promise<void> {
    const { log, clock, parts, settings } = this.#p;
    const t0 = clock();
    const lease = parts.lease();
    this.#lease = lease;
    lease.on("lost", ({ reason }) => this.#lose(`etcd lease ${lease.id}: ${reason}`));
    lease.on("stream-error", ({ reason }) => log.debug("keepalive stream error", { reason }));
    // Four independent reads and a grant: one round trip, not five.
    const [version] = await Promise.all([
      this.#versionChecked ? null : parts.etcdVersion(),
      this.#p.registration.refuseLegacy(),
      this.#p.registration.refuseNewerLayout(),
      lease.grant(settings.leaseTtlS),
    ]);
    if (version !== null) {
      this.#versionChecked = true;
      const warning = etcdVersionWarning(version);
      if (warning) log.warn(warning, { etcdVersion: version });
    }
    const t1 = clock();
    this.#agentRevision = await this.#p.registration.claim(lease.etcdId);
    const t2 = clock();
    const watcher = parts.watch(() => this.#viewChanged());
    this.#watcher = watcher;
    await watcher.start();
    this.#startHeartbeat(lease.etcdId, this.#agentRevision);
    log.debug("etcd session phases", { leaseMs: Math.round(t1 - t0), registerMs: Math.round(t2 - t1), viewMs: Math.round(clock() - t2) });
  }

  #startHeartbeat(lease: string, agentRevision: string): void {
    const q = this.#p.queues;
    const hb = this.#p.parts.heartbeat({ lease, agentRevision, guard: () => q.guard(), claims: () => q.claims(), busy: () => q.busy() });
    this.#heartbeat = hb;
    hb.on("committed", ({ revision, rttMs }) => {
      this.#p.emit("heartbeat", { result: "committed", rttMs });
      this.#lastHeartbeatError = null;
      this.#watcher?.etcdAnswered();
      this.#watcher?.expect(revision);
      const reg = this.registered();
      if (reg) void this.#p.registration.publishMacs(reg);
      this.#p.emit("changed", {});
    });
    hb.on("failed", ({ reason }) => {
      this.#p.emit("heartbeat", { result: "failed" });
      this.#lastHeartbeatError = describeEtcdError(new Error(reason), this.#p.settings.endpoints);
    });
    hb.on("stalled", ({ silentMs, reconnected, why }) =>
      this.#p.log.warn(reconnected ? "etcd answered no heartbeat; reconnecting" : "etcd answered no heartbeat; keeping the connection", { silentMs, why }));
    hb.on("deposed", ({ keys, revision }) => {
      this.#p.emit("heartbeat", { result: "deposed" });
      // The heartbeat forgot those keys' proofs (only theirs: a key this VIP
      // got since, a new join, is proven on its own). A watch that has not
      // shown the deletion by then is stalled, silently: probe it.
      this.#watcher?.expect(revision);
      // A heartbeat sent before one of our own releases committed after it
      // (they may take different connections): that key's absence is no news.
      const vips = [...new Set(keys.filter((k) => !this.#p.queues.letGo(k)).map((k) => k.vip))];
      if (vips.length) this.#p.emit("deposed", { vips });
      this.#p.emit("changed", {});
    });
    hb.on("evicted", ({ reason, by }) => {
      if (by && by.run !== this.#p.run) {
        this.#stopped = true;
        this.#end();
        this.#p.emit("fatal", { reason: `node name "${this.#p.settings.node}" was taken over by another vipd (${describeIncarnation(by)}) while this one could not reach etcd; stopping` });
        return;
      }
      this.#lose(reason);
    });
    hb.start();
  }

  /**
   * A node that just became first in a queue (its predecessor released, or
   * was taken over) needs a proof now, not at the next interval: graceful
   * hand-over costs one round trip instead of up to a standby's interval.
   * Heading a queue, it schedules the next at the holder's pace. Which
   * queues we head is looked at only where the view changed
   * (QueueWriter.newHeads): a standby's peers' heartbeats change none.
   */
  #viewChanged(): void {
    if (this.#p.queues.newHeads()) this.#heartbeat?.beat();
    this.#p.emit("changed", {});
  }

  #lose(reason: string): void {
    if (!this.#ready) return;
    this.#ready = false;
    this.#lastError = reason;
    this.#p.log.warn("etcd session lost; registering again", { reason });
    this.#end();
    this.#p.emit("lost", { reason });
  }

  /**
   * A stop that came while a session was being established: stop() found
   * nothing ready to release, but the registration may have committed
   * meanwhile. Revoking its lease deletes every key on it (agent record,
   * heartbeat, MACs) now rather than a lease TTL later.
   */
  async #abandon(): Promise<void> {
    const lease = this.#lease;
    this.#teardown();
    await lease?.revoke(this.#stopTimeoutMs).catch((e: unknown) =>
      this.#p.log.warn("stopped while registering; our keys expire with the lease", { error: describeEtcdError(e, this.#p.settings.endpoints) }));
  }

  /** Ends the current session: the loop wakes up and, unless stopped, establishes a new one. */
  #end(): void {
    const done = this.#ended;
    this.#ended = null;
    this.#teardown();
    done?.();
  }

  #teardown(): void {
    this.#ready = false;
    this.#heartbeat?.stop();
    this.#heartbeat = null;
    this.#watcher?.close();
    this.#watcher = null;
    this.#lease?.close();
    this.#agentRevision = null;
  }

}
