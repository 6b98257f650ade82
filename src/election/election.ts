// One VIP's election, over the agent's shared lease. The algorithm is etcd's
// own (clientv3/concurrency): each candidate puts a key under the VIP's
// prefix, attached to its lease; the candidates form a FIFO queue ordered by
// the keys' create revision, and the first is the leader. A key disappears
// when its owner resigns or when its lease is revoked or expires, and the
// queue moves on. That is also why a departing agent revokes its lease: every
// key it holds leaves the queue at once instead of after a TTL.
//
// Unlike etcd3's Campaign this object can campaign again after an error or
// after losing its key, and it watches the whole VIP prefix rather than only
// the predecessor: followers must know who leads (for `vipd status`), and on
// any change we simply read the queue again (level-triggered, one range).
//
// Leadership is only a fact from etcd. The agent may hold the VIP only while
// it is leader AND lease.valid(now) — this class never looks at the fence.
import type { Etcd3, IDuplexStream, IKeyValue, IWatchRequest, IWatchResponse } from "etcd3";
import { within } from "./client.ts";
import { Emitter } from "./emitter.ts";
import { type AgentLease, leaseHex } from "./lease.ts";

export interface Candidate {
  node: string;
  /** Lease ID in hex. */
  leaseId: string;
  createRevision: number;
  key: string;
}

export type ElectionState =
  | { role: "leader"; since: number; reason: string }
  | { role: "follower"; leader: (Candidate & { since: number }) | null; reason: string }
  | { role: "out"; reason: string };

export interface ElectionEvents extends Record<string, unknown> {
  state: ElectionState;
  /** Our key is gone from etcd (resigned elsewhere, deleted by an operator, lease revoked or expired). */
  "lost-key": { key: string; reason: string };
  /** A transient etcd problem; the election retries by itself. */
  warning: { reason: string };
}

export interface VipElectionOptions {
  /** Key prefix, e.g. "/vipd/vip/". The VIP's keys live under `${prefix}${vip}/`. */
  prefix: string;
  vip: string;
  node: string;
  /** Deadline for each etcd call. Default 2000 ms. */
  rpcTimeoutMs?: number;
  maxBackoffMs?: number;
}

type WatchStream = IDuplexStream<IWatchRequest, IWatchResponse>;

/** The end of etcd's prefix range: the prefix with its last byte incremented. */
function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

const vipPrefix = (prefix: string, vip: string) => Buffer.from(`${prefix}${vip}/`);

function toCandidate(kv: IKeyValue): Candidate {
  return {
    node: kv.value.toString(),
    leaseId: leaseHex(kv.lease),
    createRevision: Number(kv.create_revision),
    key: kv.key.toString(),
  };
}

async function readQueue(client: Etcd3, prefix: Buffer, timeoutMs: number): Promise<{ queue: Candidate[]; kvs: IKeyValue[]; revision: string }> {
  const res = await client.kv.range({ key: prefix, range_end: prefixEnd(prefix) }, within(timeoutMs));
  const kvs = [...res.kvs].sort((a, b) => {
    const d = BigInt(a.create_revision) - BigInt(b.create_revision);
    return d < 0n ? -1 : d > 0n ? 1 : 0;
  });
  return { queue: kvs.map(toCandidate), kvs, revision: res.header.revision };
}

export class VipElection extends Emitter<ElectionEvents> {
  readonly #client: Etcd3;
  readonly #lease: AgentLease;
  readonly #opts: Required<VipElectionOptions>;
  readonly #prefix: Buffer;

  #key: string | null = null;
  #leaseEtcdId: string | null = null;
  #state: ElectionState = { role: "out", reason: "not campaigning" };
  #queue: Candidate[] = [];
  #leaderSince = new Map<string, number>();
  #active = false;
  #watch: WatchStream | null = null;
  #evaluating = false;
  #dirty = false;
  #retryTimer: ReturnType<typeof setTimeout> | null = null;
  #backoffMs = 0;

  constructor(client: Etcd3, lease: AgentLease, opts: VipElectionOptions) {
    super();
    this.#client = client;
    this.#lease = lease;
    this.#opts = { rpcTimeoutMs: 2000, maxBackoffMs: 1000, ...opts };
    this.#prefix = vipPrefix(opts.prefix, opts.vip);
  }

  /** The ordered candidates for a VIP, first = leader (for `vipd status` and /status). */
  static async queue(client: Etcd3, prefix: string, vip: string, timeoutMs = 2000): Promise<Candidate[]> {
    return (await readQueue(client, vipPrefix(prefix, vip), timeoutMs)).queue;
  }

  get state(): ElectionState {
    return this.#state;
  }
  get key(): string | null {
    return this.#key;
  }
  get candidates(): readonly Candidate[] {
    return this.#queue;
  }

  /**
   * Joins the queue with the lease's current ID and starts following it.
   *
   * A key of this node under a *different* lease is deleted first. It is left
   * from an earlier run of this agent (crash, kill -9, a lease we gave up on)
   * and sits in the queue until its lease expires; if it is first, every
   * candidate, this node included, would wait up to a whole TTL for nobody.
   * Precondition for safety: the caller has already removed this VIP from
   * this node's links, because the earlier run's address may still be there
   * under its kernel lifetime, and deleting its key lets the next candidate
   * take over now.
   */
  async campaign(): Promise<void> {
    const t = this.#opts.rpcTimeoutMs;
    const leaseId = this.#lease.etcdId;
    const key = `${this.#prefix.toString()}${this.#lease.id}`;
    this.#stopWatch();
    this.#key = key;
    this.#leaseEtcdId = leaseId;
    this.#active = true;

    const { kvs } = await readQueue(this.#client, this.#prefix, t);
    for (const kv of kvs) {
      if (kv.value.toString() !== this.#opts.node || kv.lease === leaseId) continue;
      // Only if it has not changed since we read it (it is ours to remove, nothing else).
      await this.#client.kv.txn({
        compare: [{ key: kv.key, target: "Mod", result: "Equal", mod_revision: kv.mod_revision }],
        success: [{ request_delete_range: { key: kv.key } }],
      }, within(t));
    }
    const k = Buffer.from(key);
    await this.#client.kv.txn({
      compare: [{ key: k, target: "Create", result: "Equal", create_revision: 0 }],
      success: [{ request_put: { key: k, value: Buffer.from(this.#opts.node), lease: leaseId } }],
      failure: [{ request_range: { key: k } }],
    }, within(t));
    await this.#evaluate("campaign");
  }

  /**
   * Leaves the queue: deletes our key so the next candidate's watch fires now.
   * Uses its own fresh timeout, independent of whatever the caller was doing:
   * resign runs while shutting down or after losing a health check, often
   * with the caller's budget already spent, and a resign that never reaches
   * etcd leaves the key until the lease expires — the next candidate then
   * waits a whole TTL.
   */
  async resign(reason = "resigned", timeoutMs = 1000): Promise<void> {
    const key = this.#key;
    this.#active = false;
    this.#stopWatch();
    this.#setState({ role: "out", reason });
    if (key) await this.#client.kv.deleteRange({ key: Buffer.from(key) }, within(timeoutMs));
  }

  /** Stops following etcd without touching the key. */
  close(): void {
    this.#active = false;
    this.#stopWatch();
  }

  #setState(s: ElectionState): void {
    const p = this.#state;
    const same =
      p.role === s.role &&
      (p.role !== "follower" || s.role !== "follower" || p.leader?.key === s.leader?.key);
    this.#state = s;
    if (!same) this.emit("state", s);
  }

  /** Reads the queue and derives our role. Serialised; events during a read ask for one more pass. */
  async #evaluate(cause: string): Promise<void> {
    if (this.#evaluating) {
      this.#dirty = true;
      return;
    }
    this.#evaluating = true;
    try {
      do {
        this.#dirty = false;
        if (!this.#active) return;
        const { queue, revision } = await readQueue(this.#client, this.#prefix, this.#opts.rpcTimeoutMs);
        if (!this.#active) return;
        this.#apply(queue, cause);
        if (this.#active && !this.#watch) this.#startWatch(revision);
      } while (this.#dirty);
      this.#backoffMs = 0;
    } catch (e) {
      this.#retry(`reading election queue for ${this.#opts.vip}: ${String(e)}`);
    } finally {
      this.#evaluating = false;
    }
  }

  #apply(queue: Candidate[], cause: string): void {
    const before = this.#queue;
    this.#queue = queue;
    const now = Date.now();
    const first = queue[0];
    if (first && !this.#leaderSince.has(first.key)) this.#leaderSince = new Map([[first.key, now]]);
    const mine = queue.findIndex((c) => c.key === this.#key);
    if (mine < 0) {
      const reason = "key deleted (resigned, removed by an operator, or lease revoked or expired)";
      this.#active = false;
      this.#stopWatch();
      this.#setState({ role: "out", reason });
      this.emit("lost-key", { key: this.#key ?? "", reason });
      return;
    }
    // Name who left ahead of us, for the log.
    const gone = before.filter((c) => !queue.some((q) => q.key === c.key) && c.key !== this.#key);
    const why = gone.length
      ? `predecessor ${gone.map((c) => c.node).join(", ")} left`
      : cause === "campaign" ? (mine === 0 ? "first in the queue when it joined" : "joined the queue") : cause;
    if (mine === 0) {
      const since = this.#state.role === "leader" ? this.#state.since : now;
      this.#setState({ role: "leader", since, reason: why });
    } else {
      this.#setState({ role: "follower", leader: { ...first!, since: this.#leaderSince.get(first!.key) ?? now }, reason: why });
    }
  }

  #startWatch(afterRevision: string): void {
    this.#client.watchClient.watch().then(
      (stream) => {
        if (!this.#active || this.#watch) {
          stream.cancel();
          return;
        }
        this.#watch = stream;
        const fail = (why: string) => {
          if (this.#watch !== stream) return;
          this.#stopWatch();
          this.#retry(why);
        };
        stream.on("data", (res) => {
          if (this.#watch !== stream) return;
          if (res.canceled) return fail(`watch canceled: ${res.cancel_reason || "compacted"}`);
          const mineGone = res.events.some((e) => e.type === "Delete" && e.kv.key.toString() === this.#key);
          if (res.events.length) void this.#evaluate(mineGone ? "own key deleted" : "queue changed");
        });
        stream.on("error", (err) => fail(`watch: ${err.message}`));
        stream.on("end", () => fail("watch stream ended"));
        stream.write({
          create_request: {
            key: this.#prefix,
            range_end: prefixEnd(this.#prefix),
            // Everything after the queue we just read: no change is missed.
            start_revision: (BigInt(afterRevision) + 1n).toString(),
          },
        });
      },
      (err: unknown) => this.#retry(`opening watch: ${String(err)}`),
    );
  }

  #stopWatch(): void {
    const w = this.#watch;
    this.#watch = null;
    if (w) {
      try {
        w.cancel();
      } catch {
        // already closed
      }
    }
  }

  /** On any etcd error: wait (capped backoff), then read the queue again and re-watch. */
  #retry(reason: string): void {
    if (!this.#active) return;
    this.#backoffMs = Math.min(this.#opts.maxBackoffMs, this.#backoffMs ? this.#backoffMs * 2 : 100);
    this.emit("warning", { reason: `${reason}; retrying in ${this.#backoffMs} ms` });
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      this.#stopWatch();
      void this.#evaluate("reconnected");
    }, this.#backoffMs);
  }
}
