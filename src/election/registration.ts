// A run's registration under its node name (design.md §2, §6, invariants
// I6, I7): refusing to run beside vipd 0.1 or a newer layout major (an agent
// record of one, layout.ts), judging the run that registered
// the name before, clearing its keys when that is safe, writing our record,
// first heartbeat and MACs on our lease, and the MACs again when they change.
//
// Everything it needs of etcd is KvCalls (transactions built in
// transactions.ts), so its verdicts run against a stand-in etcd in its tests.
import { describeError, type Logger } from "../log.ts";
import type { Clock } from "../seams.ts";
import { describeEtcdError } from "./etcd-error.ts";
import { decodeIncarnation, describeIncarnation, encodeIncarnation, type Incarnation, judge, processAlive } from "./incarnation.ts";
import { AGENTS, agentKey, decodeHeartbeat, encodeMacs, heartbeatKey, type MacsValue, prefixEnd } from "./keys.ts";
import { LAYOUT, newerLayoutProblem } from "./layout.ts";
import { silenceWindow } from "./proof.ts";
import {
  clearTxn,
  deleteTxn,
  electionKeysRange,
  heartbeatPut,
  type KvCalls,
  legacyRange,
  macsTxn,
  ownElectionKeys,
  previousRunTxn,
  type Registered,
  registerTxn,
  type Self,
} from "./transactions.ts";

/** A problem no retry can fix: the agent must stop. */
export class SessionFatalError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SessionFatalError";
  }
}

export interface RegistrationPort {
  readonly me: Self;
  readonly identity: Incarnation;
  readonly kv: KvCalls;
  readonly clock: Clock;
  readonly log: Logger;
  readonly rpcTimeoutMs: number;
  /** Names etcd's endpoints in errors. */
  readonly endpoints: readonly string[];
  /** VIPs this agent's kernel may be answering for: the first heartbeat claims them. */
  readonly serving: () => Iterable<string>;
  /** The MAC of each VIP's link and of every link; absent: none published. */
  readonly macs?: (() => MacsValue) | undefined;
  readonly processAlive?: ((pid: number, start: string) => boolean) | undefined;
  /** Removes a dead run's claimed VIPs from every link; rejects when it cannot (design.md §6). Absent: its window is waited out. */
  readonly removeLeftovers?: ((claims: readonly string[]) => Promise<void>) | undefined;
  /** The hold time the view knows for a node whose record cannot be read. */
  readonly holdOf: (node: string) => number;
  /** The heartbeat key's sequence numbers, shared with every other write of it. */
  readonly nextSeq: () => number;
  /** Waits this long on the timers; tests pass their own. */
  readonly sleep?: (ms: number) => Promise<void>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class Registration {
  readonly #p: RegistrationPort;
  /** The MACs in etcd, as this process last wrote them, under which registration, and the object they were encoded from (the agent hands out the same one while they stay the same). */
  #published: { agentRevision: string; value: string; from?: MacsValue } | null = null;
  #macsWriting = false;

  constructor(port: RegistrationPort) {
    this.#p = port;
  }

  /** vipd 0.1 elected by another layout: running beside it could make two holders. */
  async refuseLegacy(): Promise<void> {
    const range = legacyRange(this.#p.me.prefix);
    const res = await this.#p.kv.range(range, this.#p.rpcTimeoutMs);
    if (Number(res.count) > 0) {
      throw new SessionFatalError(
        `etcd holds vipd 0.1 election keys under ${range.key!.toString()}: a vipd 0.1 agent may still be running, and the two versions would each elect a holder. ` +
          "Stop every vipd 0.1 agent first (their keys leave with their leases, a few seconds later), then start this version",
      );
    }
  }

  /**
   * A record of a higher layout major: this build cannot know what that
   * layout means, so it must not run beside it (layout.ts, design.md §2).
   */
  async refuseNewerLayout(): Promise<void> {
    const key = Buffer.from(`${this.#p.me.prefix}${AGENTS}`);
    const res = await this.#p.kv.range({ key, range_end: prefixEnd(key) }, this.#p.rpcTimeoutMs);
    const records = res.kvs.map((kv) => ({ node: kv.key.toString().slice(key.length), value: kv.value.toString() }));
    const problem = newerLayoutProblem(records, LAYOUT, `vipd ${this.#p.identity.version}`);
    if (problem) throw new SessionFatalError(problem);
  }

  /**
   * Claims this node name for this run on `lease` (design.md §6, invariant
   * I7) and returns our record's create revision. Another run's record is
   * cleared at once when that run is provably dead (same kernel, its PID
   * gone) and nothing it left can answer; a run elsewhere is cleared only
   * after its heartbeat has been silent for its window; a live one is
   * refused (SessionFatalError).
   */
  async claim(lease: string): Promise<string> {
    const { me, identity, log } = this.#p;
    for (let attempt = 0; ; attempt++) {
      if (attempt > 5) throw new Error(`registering as node ${me.node}: the record kept changing under us`);
      const read = await this.#p.kv.txn(previousRunTxn(me), this.#p.rpcTimeoutMs);
      const agent = read.responses[0]?.response_range?.kvs[0];
      const beat = read.responses[1]?.response_range?.kvs[0];
      if (!agent) {
        const macs = this.#p.macs ? encodeMacs(this.#p.macs()) : null;
        const first = heartbeatPut(me, lease, this.#p.nextSeq(), [...this.#p.serving()]);
        const res = await this.#p.kv.txn(registerTxn(me, lease, encodeIncarnation(identity), first, macs), this.#p.rpcTimeoutMs);
        if (!res.succeeded) continue;
        const agentRevision = res.header.revision;
        if (macs !== null) this.#published = { agentRevision, value: macs };
        // Election keys under our node name left by an earlier registration: none of them is guarded by this one.
        const leftover = await this.#ownElectionKeys();
        if (leftover.length > 0) await this.#p.kv.txn(deleteTxn(leftover), this.#p.rpcTimeoutMs);
        return agentRevision;
      }
      const other = decodeIncarnation(agent.value.toString());
      const beatRevision = beat?.mod_revision ?? "0";
      if (other?.run === identity.run) {
        // Our own record from before the session was lost: start over cleanly.
        await this.#clear(agent.mod_revision, beatRevision);
        continue;
      }
      const verdict = other ? judge(identity, other, this.#p.processAlive ?? processAlive) : { kind: "elsewhere" as const };
      const who = other ? describeIncarnation(other) : `a record vipd cannot read at ${agentKey(me.prefix, me.node)}`;
      if (verdict.kind === "alive") {
        throw new SessionFatalError(`another vipd already runs as node "${me.node}" on this machine (${who}): stop it, or give this one its own --node-name`);
      }
      const here = verdict.kind === "dead" && verdict.here && (await this.#removedClaimsOf(other!, beat?.value));
      if (!here) {
        const windowMs = silenceWindow(other?.holdMs ?? this.#p.holdOf(me.node));
        log.warn(`node name "${me.node}" is registered by another run of vipd (${who}); waiting ${Math.round(windowMs)} ms for its heartbeat to fall silent`);
        if (await this.#heardWithin(beatRevision, windowMs)) {
          throw new SessionFatalError(
            `node name "${me.node}" is in use by a live vipd elsewhere (${who}): its heartbeat moved within the last ${Math.round(windowMs)} ms. ` +
              "Give each node its own --node-name (a cloned VM keeps its host name)",
          );
        }
      }
      if (await this.#clear(agent.mod_revision, beatRevision)) {
        log.info("cleared the keys of this node's previous run", { previous: who, verdict: here ? "dead, here" : verdict.kind });
      }
    }
  }

  /**
   * Writes our MACs when they differ from what this registration last wrote
   * (a VIP link that appeared, or came back with another MAC). Guarded by our
   * agent record like every write; a failure is tried again after the next
   * committed heartbeat.
   */
  async publishMacs(reg: Registered): Promise<void> {
    const macs = this.#p.macs;
    if (!macs || this.#macsWriting) return;
    // The agent hands out the same object while its MACs stay the same: no encoding per heartbeat.
    const current = macs();
    if (this.#published?.agentRevision === reg.agentRevision && this.#published.from === current) return;
    const value = encodeMacs(current);
    if (this.#published?.agentRevision === reg.agentRevision && this.#published.value === value) {
      this.#published = { ...this.#published, from: current };
      return;
    }
    this.#macsWriting = true;
    try {
      const res = await this.#p.kv.txn(macsTxn(this.#p.me, reg, value), this.#p.rpcTimeoutMs);
      // Our record gone: the next registration writes them.
      if (res.succeeded) this.#published = { agentRevision: reg.agentRevision, value, from: current };
    } catch (err) {
      this.#p.log.warn("publishing this node's MACs failed; retrying after the next heartbeat", { error: describeEtcdError(err, this.#p.endpoints) });
    } finally {
      this.#macsWriting = false;
    }
  }

  /**
   * Whether nothing a dead run of ours, here, claimed in its last heartbeat
   * can still answer: each claimed VIP removed from every link. Those claims
   * are what keeps the other nodes off its VIPs; clearing them at once is
   * safe only then. Otherwise its window must pass first (false).
   */
  async #removedClaimsOf(other: Incarnation, beat: Buffer | undefined): Promise<boolean> {
    // Its heartbeat deleted by hand: the other views keep its last claims, which only it knew.
    const hb = beat ? decodeHeartbeat(beat.toString()) : null;
    const claims = hb?.run === other.run ? hb.claims : null;
    const remove = this.#p.removeLeftovers;
    if (claims === null || (claims.length > 0 && !remove)) {
      this.#p.log.warn("cannot tell which VIPs the previous run of this node claimed; waiting out its window", { heartbeat: beat?.toString().slice(0, 200) ?? "(none)" });
      return false;
    }
    if (claims.length === 0) return true;
    try {
      await remove!(claims);
      return true;
    } catch (err) {
      this.#p.log.warn("could not remove the VIPs the previous run of this node claimed; waiting out its window", { claims: claims.join(", "), error: describeError(err) });
      return false;
    }
  }

  /** Polls our node name's heartbeat key for a change of revision within windowMs. */
  async #heardWithin(revision: string, windowMs: number): Promise<boolean> {
    const { clock } = this.#p;
    const key = Buffer.from(heartbeatKey(this.#p.me.prefix, this.#p.me.node));
    const end = clock() + windowMs;
    while (clock() < end) {
      await (this.#p.sleep ?? sleep)(Math.min(250, Math.max(0, end - clock())));
      const res = await this.#p.kv.range({ key, keys_only: true }, this.#p.rpcTimeoutMs);
      if ((res.kvs[0]?.mod_revision ?? "0") !== revision) return true;
    }
    return false;
  }

  /** Deletes another (dead) run's record, heartbeat and election keys under our node name, if nothing of it moved since we read it. */
  async #clear(agentRevision: string, beatRevision: string): Promise<boolean> {
    const keys = await this.#ownElectionKeys();
    const res = await this.#p.kv.txn(clearTxn(this.#p.me, agentRevision, beatRevision, keys), this.#p.rpcTimeoutMs);
    return res.succeeded;
  }

  async #ownElectionKeys(): Promise<Buffer[]> {
    const res = await this.#p.kv.range(electionKeysRange(this.#p.me.prefix), this.#p.rpcTimeoutMs);
    return ownElectionKeys(res, this.#p.me.node);
  }
}
