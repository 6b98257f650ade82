// The agent's etcd lease. It proves nothing any more (design.md §3: the
// heartbeats do); it only makes etcd delete the keys of a run that vanished
// — its agent record, heartbeat and election keys — a TTL after its last
// keepalive, so a node that is gone for good leaves no queue entries behind.
//
// That is also why a new raft leader stretching every lease (etcd renews
// all leases by a TTL plus an election timeout on each new term) no longer
// slows failover: it only delays this cleanup.
//
// Keepalives go over the raw LeaseKeepAlive stream with at most one request
// in flight, so an ack answers exactly the request we sent. A request
// unanswered for a third of the TTL means the stream (or its connection)
// may have stalled: the connection is asked (EtcdConnection.stalled), and
// when it replaces itself the stream is reopened on the new one. A member
// that is only frozen keeps the stream: the ack comes when it runs again.
import type { Etcd3, IDuplexStream, ILeaseKeepAliveRequest, ILeaseKeepAliveResponse } from "etcd3";
import { within } from "./connection.ts";
import { type Clock, Emitter, monotonicClock } from "../seams.ts";

export interface LeaseEvents extends Record<string, unknown> {
  renewed: { id: string; ttl: number; rttMs: number };
  /** The server says the lease does not exist (ack with TTL ≤ 0): every key on it is gone. Final. */
  lost: { id: string; reason: string };
  /** The keepalive stream broke or stalled and is being reopened. */
  "stream-error": { id: string; reason: string; retryInMs: number };
}

/** What the lease needs of the connection: the current client, and to report a stream that stalled (it may replace itself). */
export interface LeaseConnection {
  readonly client: Etcd3;
  stalled(silentMs: number): { reset: boolean; why: string };
  onReset(fn: () => void): () => void;
}

export interface AgentLeaseOptions {
  clock?: Clock;
  /** Deadline for unary calls (grant). Default 2000 ms. */
  rpcTimeoutMs?: number;
  /** Longest wait before reopening a broken stream. Default 1000 ms. */
  maxBackoffMs?: number;
}

type KeepAliveStream = IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>;

/** etcd lease IDs travel as decimal int64 strings; people read them in hex (as etcdctl prints them). */
export const leaseHex = (decimal: string) => BigInt(decimal).toString(16);

export class AgentLease extends Emitter<LeaseEvents> {
  readonly clock: Clock;
  readonly #conn: LeaseConnection;
  readonly #rpcTimeoutMs: number;
  readonly #maxBackoffMs: number;

  #etcdId: string | null = null;
  #ttl = 0;
  #running = false;
  #stream: KeepAliveStream | null = null;
  #opening = false;
  #inflight: { sentAt: number } | null = null;
  #lastAckAt: number | null = null;
  #backoffMs = 0;
  #ticker: ReturnType<typeof setInterval> | null = null;
  #reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  #unsubscribe: (() => void) | null = null;

  constructor(conn: LeaseConnection, opts: AgentLeaseOptions = {}) {
    super();
    this.#conn = conn;
    this.clock = opts.clock ?? monotonicClock;
    this.#rpcTimeoutMs = opts.rpcTimeoutMs ?? 2000;
    this.#maxBackoffMs = opts.maxBackoffMs ?? 1000;
  }

  /** Lease ID in hex, as etcdctl shows it. */
  get id(): string {
    return leaseHex(this.etcdId);
  }
  /** Lease ID as etcd's API carries it (decimal int64 string). */
  get etcdId(): string {
    if (this.#etcdId === null) throw new Error("lease not granted yet");
    return this.#etcdId;
  }
  get ttl(): number {
    return this.#ttl;
  }
  /** Local clock of the last acknowledged keepalive (or the grant); null before. */
  get lastAckAt(): number | null {
    return this.#lastAckAt;
  }

  /** Grants a new lease and starts keeping it alive. */
  async grant(ttl: number): Promise<void> {
    this.#stop();
    this.#etcdId = null;
    const res = await this.#conn.client.leaseClient.leaseGrant({ TTL: ttl }, within(this.#rpcTimeoutMs));
    if (res.error) throw new Error(`granting an etcd lease of ${ttl} s: ${res.error}`);
    if (!(Number(res.TTL) > 0)) throw new Error(`granting an etcd lease of ${ttl} s: server returned TTL ${res.TTL}`);
    this.#etcdId = res.ID;
    this.#ttl = Number(res.TTL);
    this.#lastAckAt = this.clock();
    this.#running = true;
    this.#backoffMs = 0;
    // One keepalive every TTL/6 (at least 250 ms): several chances per TTL.
    const every = Math.max(250, Math.floor((this.#ttl * 1000) / 6));
    this.#ticker = setInterval(() => this.#tick(), every);
    // The stream on a replaced connection may hang silently: reopen it on the new one.
    this.#unsubscribe = this.#conn.onReset(() => {
      this.#dropStream();
      this.#openStream();
    });
    this.#openStream();
  }

  /**
   * Stops the keepalives and revokes the lease, which deletes every key on it
   * at once instead of after a TTL. Uses its own fresh timeout: it runs at
   * shutdown, when the caller's budget may already be spent.
   */
  async revoke(timeoutMs = 1000): Promise<void> {
    const id = this.#etcdId;
    this.#stop();
    if (id === null) return;
    await this.#conn.client.leaseClient.leaseRevoke({ ID: id }, within(timeoutMs));
  }

  /** Stops keepalives without revoking (the lease then expires at the server after its TTL). */
  close(): void {
    this.#stop();
  }

  #stop(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = null;
    this.#running = false;
    if (this.#ticker) clearInterval(this.#ticker);
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    this.#ticker = this.#reconnectTimer = null;
    this.#dropStream();
  }

  #dropStream(): void {
    const s = this.#stream;
    this.#stream = null;
    this.#inflight = null;
    if (s) {
      try {
        s.cancel();
      } catch {
        // already closed
      }
    }
  }

  #tick(): void {
    if (!this.#running || !this.#stream) return;
    if (this.#inflight) {
      // Unanswered for a third of the TTL: the stream or its connection is
      // wedged. A new stream on the same HTTP/2 connection would wedge too.
      const stallMs = Math.max(1000, (this.#ttl * 1000) / 3);
      const waited = this.clock() - this.#inflight.sentAt;
      if (waited > stallMs) {
        // Reopens the stream itself, through onReset, when it reconnects.
        const d = this.#conn.stalled(Math.round(waited));
        if (d.reset) this.emit("stream-error", { id: this.id, reason: `keepalive unanswered for ${Math.round(waited)} ms; reconnected: ${d.why}`, retryInMs: 0 });
      }
      return;
    }
    this.#send();
  }

  #send(): void {
    const s = this.#stream;
    if (!s || this.#inflight) return;
    this.#inflight = { sentAt: this.clock() };
    try {
      s.write({ ID: this.etcdId });
    } catch (e) {
      this.#streamFailed(`writing keepalive: ${String(e)}`);
    }
  }

  #openStream(): void {
    if (!this.#running || this.#stream || this.#opening) return;
    this.#opening = true;
    const id = this.#etcdId;
    this.#conn.client.leaseClient.leaseKeepAlive().then(
      (stream) => {
        this.#opening = false;
        if (!this.#running || this.#etcdId !== id) {
          stream.cancel();
          return;
        }
        this.#stream = stream;
        stream.on("data", (res) => this.#onAck(stream, res));
        stream.on("error", (err) => {
          if (this.#stream === stream) this.#streamFailed(`keepalive stream: ${err.message}`);
        });
        stream.on("end", () => {
          if (this.#stream === stream) this.#streamFailed("keepalive stream ended");
        });
        this.#send();
      },
      (err: unknown) => {
        this.#opening = false;
        if (this.#running && this.#etcdId === id) this.#streamFailed(`opening keepalive stream: ${String(err)}`);
      },
    );
  }

  #streamFailed(reason: string): void {
    this.#dropStream();
    if (!this.#running) return;
    this.#backoffMs = Math.min(this.#maxBackoffMs, this.#backoffMs ? this.#backoffMs * 2 : 100);
    this.emit("stream-error", { id: this.id, reason, retryInMs: this.#backoffMs });
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = null;
      this.#openStream();
    }, this.#backoffMs);
  }

  #onAck(stream: KeepAliveStream, res: ILeaseKeepAliveResponse): void {
    if (stream !== this.#stream || !this.#inflight || res.ID !== this.#etcdId) return;
    const { sentAt } = this.#inflight;
    this.#inflight = null;
    if (!(Number(res.TTL) > 0)) {
      const id = this.id;
      this.#stop();
      this.emit("lost", { id, reason: "lease revoked or expired at the server (keepalive TTL 0)" });
      return;
    }
    this.#backoffMs = 0;
    this.#lastAckAt = this.clock();
    this.emit("renewed", { id: this.id, ttl: Number(res.TTL), rttMs: this.#lastAckAt - sentAt });
  }
}
