// The agent's one etcd lease, shared by all its VIP elections, kept alive by
// our own loop over the raw LeaseKeepAlive stream.
//
// Why not etcd3's lease() helper: its `lost` event fires only after about
// 2×TTL, long after another node may have taken over. Here the deadline comes
// from the fence (fence.ts) and a timer fires `expired` at that deadline even
// when etcd is unreachable, frozen, or the stream hangs silently.
//
// Matching acks to sends: the stream carries no request IDs, so we keep at
// most ONE keepalive outstanding. An ack then answers exactly the request in
// flight, and its send time is the one we recorded. An ack that arrives with
// nothing in flight, or on a stream we have abandoned, proves nothing we can
// date and is ignored. A request unanswered for too long abandons the stream
// (a new one is opened); the deadline keeps running meanwhile.
import type { Etcd3, IDuplexStream, ILeaseKeepAliveRequest, ILeaseKeepAliveResponse } from "etcd3";
import { within } from "./client.ts";
import { Emitter } from "./emitter.ts";
import { checkLeaseTtl, type Clock, DEFAULT_MARGIN_MS, Fence, monotonicClock } from "./fence.ts";

export interface LeaseEvents extends Record<string, unknown> {
  granted: { id: string; ttl: number; deadline: number };
  renewed: { id: string; ttl: number; deadline: number; rttMs: number };
  /** Our deadline passed without an ack. The lease may still live at the server; we can no longer prove it. */
  expired: { id: string; deadline: number; reason: string };
  /** The server says the lease does not exist (ack with TTL ≤ 0). Final. */
  lost: { id: string; reason: string };
  /** The keepalive stream broke or stalled and is being reopened. */
  "stream-error": { id: string; reason: string; retryInMs: number };
}

export interface AgentLeaseOptions {
  clock?: Clock;
  marginMs?: number;
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
  readonly #client: Etcd3;
  readonly #marginMs: number;
  readonly #rpcTimeoutMs: number;
  readonly #maxBackoffMs: number;

  #etcdId: string | null = null;
  #ttl = 0;
  #fence: Fence;
  #running = false;
  #stream: KeepAliveStream | null = null;
  #opening = false;
  #inflight: { sentAt: number } | null = null;
  #backoffMs = 0;
  #ticker: ReturnType<typeof setInterval> | null = null;
  #expiryTimer: ReturnType<typeof setTimeout> | null = null;
  #reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  #expiredFor: number | null = null;

  constructor(client: Etcd3, opts: AgentLeaseOptions = {}) {
    super();
    this.#client = client;
    this.clock = opts.clock ?? monotonicClock;
    this.#marginMs = opts.marginMs ?? DEFAULT_MARGIN_MS;
    this.#rpcTimeoutMs = opts.rpcTimeoutMs ?? 2000;
    this.#maxBackoffMs = opts.maxBackoffMs ?? 1000;
    this.#fence = new Fence(this.clock, this.#marginMs);
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
  /** Monotonic ms after which the lease is unproven, or null (never granted, lost, revoked). */
  get deadline(): number | null {
    return this.#fence.deadline;
  }
  valid(now = this.clock()): boolean {
    return this.#fence.valid(now);
  }
  kernelLifetime(now = this.clock()): number | null {
    return this.#fence.kernelLifetime(now);
  }

  /**
   * Grants a new lease and starts keeping it alive. Calling it again (after
   * `lost` or `expired`) abandons the previous lease without revoking it; call
   * revoke() first to free its keys at once.
   */
  async grant(ttl: number): Promise<void> {
    checkLeaseTtl(ttl, this.#marginMs);
    this.#stop();
    this.#fence = new Fence(this.clock, this.#marginMs);
    this.#etcdId = null;
    // The grant is the first proof: the server starts the TTL after it receives the request.
    const sentAt = this.clock();
    const res = await this.#client.leaseClient.leaseGrant({ TTL: ttl }, within(this.#rpcTimeoutMs));
    if (res.error) throw new Error(`granting an etcd lease of ${ttl} s: ${res.error}`);
    this.#etcdId = res.ID;
    this.#ttl = Number(res.TTL);
    const out = this.#fence.ack(sentAt, this.#ttl);
    if (out.kind === "lost") throw new Error(`granting an etcd lease of ${ttl} s: server returned TTL ${res.TTL}`);
    this.#running = true;
    this.#backoffMs = 0;
    this.#armExpiry();
    // One keepalive every TTL/6 (at least 250 ms): several chances per TTL,
    // so one slow round trip does not cost the deadline.
    const every = Math.max(250, Math.floor((this.#ttl * 1000) / 6));
    this.#ticker = setInterval(() => this.#tick(), every);
    this.emit("granted", { id: this.id, ttl: this.#ttl, deadline: out.deadline });
    this.#openStream();
  }

  /**
   * Stops the keepalives and revokes the lease, which deletes every key on it
   * (all our election keys) so the next candidates take over at once instead
   * of after a TTL. Uses its own fresh timeout: it usually runs at shutdown,
   * when the caller's budget may already be spent. The fence is invalidated
   * before the call: from here on nothing is proven, whatever the outcome.
   */
  async revoke(timeoutMs = 1000): Promise<void> {
    const id = this.#etcdId;
    this.#stop();
    this.#fence.invalidate();
    if (id === null) return;
    await this.#client.leaseClient.leaseRevoke({ ID: id }, within(timeoutMs));
  }

  /** Stops keepalives without revoking (the lease then expires at the server after its TTL). */
  close(): void {
    this.#stop();
  }

  #stop(): void {
    this.#running = false;
    if (this.#ticker) clearInterval(this.#ticker);
    if (this.#expiryTimer) clearTimeout(this.#expiryTimer);
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    this.#ticker = this.#expiryTimer = this.#reconnectTimer = null;
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
    const now = this.clock();
    if (this.#inflight) {
      // A keepalive unanswered for a third of the TTL: the stream (or its
      // connection) is probably wedged. Reopen it; the deadline keeps running.
      const stallMs = Math.max(1000, (this.#ttl * 1000) / 3);
      if (now - this.#inflight.sentAt > stallMs) {
        this.#streamFailed(`keepalive unanswered for ${Math.round(now - this.#inflight.sentAt)} ms`);
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
    this.#client.leaseClient.leaseKeepAlive().then(
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
    // Only an ack on the current stream, for our lease, answering the request
    // in flight can be dated; anything else is ignored (see the file comment).
    if (stream !== this.#stream || !this.#inflight || res.ID !== this.#etcdId) return;
    const { sentAt } = this.#inflight;
    this.#inflight = null;
    const now = this.clock();
    const ttl = Number(res.TTL);
    const out = this.#fence.ack(sentAt, ttl);
    if (out.kind === "lost") {
      const id = this.id;
      this.#stop();
      this.emit("lost", { id, reason: "lease revoked or expired at the server (keepalive TTL 0)" });
      return;
    }
    this.#backoffMs = 0;
    if (out.moved) this.#armExpiry();
    this.emit("renewed", { id: this.id, ttl, deadline: out.deadline, rttMs: now - sentAt });
  }

  #armExpiry(): void {
    if (this.#expiryTimer) clearTimeout(this.#expiryTimer);
    this.#expiryTimer = null;
    const deadline = this.#fence.deadline;
    if (deadline === null || !this.#running) return;
    this.#expiryTimer = setTimeout(() => {
      this.#expiryTimer = null;
      // Timers may fire a little early; never report expiry before the deadline.
      if (this.clock() < deadline) return this.#armExpiry();
      if (this.#expiredFor === deadline) return;
      this.#expiredFor = deadline;
      // Keepalives go on: if etcd answers again with TTL > 0 the lease (and
      // every key on it) still exists and a fresh proof starts; `renewed`
      // tells the owner so.
      this.emit("expired", { id: this.id, deadline, reason: "keepalive deadline passed without ack" });
    }, Math.max(0, deadline - this.clock()));
  }
}
