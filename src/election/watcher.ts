// Keeps a ClusterView current: one range read of everything under vipd's
// prefix, then one watch from the revision after it (design.md §7). One
// stream per agent, whatever the number of VIPs.
//
// A watch can go quiet without an error: its member may be cut off from the
// cluster, or its TCP connection half-open. Two guards:
// - the stream requires a leader (EtcdConnection.watch), so a member that
//   loses its leader cancels it;
// - our own heartbeats are a probe: each one that commits at revision R
//   must come back through the watch within a second. If it does not, the
//   watch is stalled; the view is read again, on a new connection when the
//   connection says one would help (reconnect.ts).
// On any cancel or error the view is read again from scratch (level-
// triggered: no event is trusted to have arrived). Failed re-reads back off
// (100 ms doubling to 1 s), but a committed heartbeat ends the wait: etcd
// takes writes again, so the view is read at once (etcdAnswered), and a
// standby's takeover, which waits for the view, is not held up by it.
//
// The watch is opened first, from "now", and the read is made at the
// revision etcd reports when the watch is created. Reading first and then
// watching from the revision after the read would make the watch "unsynced"
// whenever anything is written in between (our own registration, say), and
// etcd serves unsynced watches from a loop that runs every 100 ms: every
// event, our first heartbeats included, would arrive up to 100 ms late.
import type { IWatchResponse } from "etcd3";
import { type EtcdConnection, type WatchStream, within } from "./connection.ts";
import { compareRevisions, prefixEnd } from "./keys.ts";
import { type Clock, type Timed, untimed } from "../seams.ts";
import type { ClusterView, KvEvent } from "./view.ts";

export interface WatcherOptions {
  readonly conn: EtcdConnection;
  readonly view: ClusterView;
  readonly clock: Clock;
  /** The view changed (or was read again). */
  readonly changed: () => void;
  readonly warn: (reason: string) => void;
  readonly rpcTimeoutMs?: number;
  /** How long our own committed write may take to show up in the watch. Default 1000 ms. */
  readonly progressMs?: number;
  /** Measures what each response and read hold the event loop for (the agent's loop watch). */
  readonly timed?: Timed;
}

export class Watcher {
  readonly #o: WatcherOptions;
  readonly #prefix: Buffer;
  #stream: WatchStream | null = null;
  #active = false;
  #synced = false;
  #backoffMs = 0;
  #failures = 0;
  /** When the stream last brought anything (or the view was read); the silence the connection is told of. */
  #lastHeardAt = 0;
  #retry: ReturnType<typeof setTimeout> | null = null;
  #unsubscribe: (() => void) | null = null;
  /** Our committed writes the watch has not delivered yet, oldest first, with when each is due. */
  #expected: { revision: string; due: number }[] = [];
  /** One timer, for the oldest: a watch that keeps up never lets it fire. */
  #expectTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(opts: WatcherOptions) {
    this.#o = opts;
    this.#prefix = Buffer.from(opts.view.prefix);
  }

  /** Whether the view reflects a read and a live watch (false while re-reading). */
  get synced(): boolean {
    return this.#synced;
  }

  /** Reads everything and starts watching. Rejects if the first read fails. */
  async start(): Promise<void> {
    this.#active = true;
    this.#lastHeardAt = this.#o.clock();
    // The stream on a replaced connection may hang silently: read again on the new one.
    this.#unsubscribe = this.#o.conn.onReset(() => this.#fail("etcd connection replaced", { reset: false }));
    await this.#sync();
  }

  close(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = null;
    this.#active = false;
    this.#synced = false;
    this.#drop();
    if (this.#retry) clearTimeout(this.#retry);
    this.#retry = null;
    this.#forgetExpected();
  }

  /**
   * etcd committed one of our writes: a re-read waiting out its backoff
   * goes now. The backoff spares an etcd that answers nothing; this one does.
   */
  etcdAnswered(): void {
    if (!this.#active || !this.#retry) return;
    clearTimeout(this.#retry);
    this.#retry = null;
    this.#resync();
  }

  /**
   * One of our writes committed at `revision`: the watch must deliver it
   * within progressMs, or it is considered stalled.
   */
  expect(revision: string): void {
    if (!this.#synced || compareRevisions(this.#o.view.revision, revision) >= 0) return;
    this.#expected.push({ revision, due: this.#o.clock() + (this.#o.progressMs ?? 1000) });
    if (!this.#expectTimer) this.#armExpected();
  }

  #armExpected(): void {
    const oldest = this.#expected[0];
    if (!oldest) return;
    this.#expectTimer = setTimeout(() => {
      this.#expectTimer = null;
      this.#delivered();
      const late = this.#expected[0];
      if (!late) return;
      if (!this.#active || !this.#synced) return this.#forgetExpected();
      if (this.#o.clock() < late.due) return this.#armExpected();
      // The view is read again from scratch, which answers every expectation.
      this.#forgetExpected();
      const what = `watch did not deliver revision ${late.revision} within ${this.#o.progressMs ?? 1000} ms`;
      const d = this.#o.conn.stalled(Math.round(this.#o.clock() - this.#lastHeardAt));
      if (d.reset) return this.#o.warn(`${what}; reconnecting: ${d.why}`);
      this.#fail(`${what}; same connection: ${d.why}`, { reset: false });
    }, Math.max(0, oldest.due - this.#o.clock()));
  }

  /** Drops the expectations the view has caught up with, and re-arms for the oldest left. */
  #delivered(): void {
    if (this.#expected.length === 0) return;
    const at = this.#o.view.revision;
    const left = this.#expected.filter((e) => compareRevisions(at, e.revision) < 0);
    if (left.length === this.#expected.length) return;
    this.#expected = left;
    if (this.#expectTimer) clearTimeout(this.#expectTimer);
    this.#expectTimer = null;
    this.#armExpected();
  }

  #forgetExpected(): void {
    this.#expected = [];
    if (this.#expectTimer) clearTimeout(this.#expectTimer);
    this.#expectTimer = null;
  }

  async #sync(): Promise<void> {
    this.#drop();
    const { conn, view, clock } = this.#o;
    const timeoutMs = this.#o.rpcTimeoutMs ?? 2000;
    const stream = await conn.watch();
    if (!this.#active) {
      stream.cancel();
      return;
    }
    this.#stream = stream;
    // Events that arrive while the read is under way wait for it.
    let early: { r: IWatchResponse; at: number }[] | null = [];
    const created = new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`etcd did not create the watch within ${timeoutMs} ms`)), timeoutMs);
      stream.on("data", (r: IWatchResponse) => {
        if (r.created) {
          clearTimeout(timer);
          resolve(r.header.revision);
        }
        if (early) early.push({ r, at: clock() });
        else this.#onData(stream, r, clock());
      });
      stream.on("error", (err: Error) => {
        clearTimeout(timer);
        reject(err);
        this.#streamFailed(stream, `watch: ${err.message}`);
      });
      stream.on("end", () => this.#streamFailed(stream, "watch stream ended"));
    });
    stream.write({ create_request: { key: this.#prefix, range_end: prefixEnd(this.#prefix) } });
    const revision = await created;
    // The state the watch continues from: everything after `revision` comes through it.
    const res = await conn.client.kv.range({ key: this.#prefix, range_end: prefixEnd(this.#prefix), revision }, within(timeoutMs));
    if (!this.#active || stream !== this.#stream) return;
    (this.#o.timed ?? untimed)("view read", () => view.load(res.kvs, revision, clock()), `${res.kvs.length} keys`);
    const pending = early;
    early = null;
    for (const { r, at } of pending) this.#onData(stream, r, at);
    this.#synced = true;
    this.#lastHeardAt = clock();
    this.#delivered();
    this.#failures = 0;
    this.#backoffMs = 0;
    this.#o.changed();
  }

  #onData(stream: WatchStream, r: IWatchResponse, receivedAt: number): void {
    if (stream !== this.#stream) return;
    this.#lastHeardAt = Math.max(this.#lastHeardAt, receivedAt);
    if (r.canceled) return this.#streamFailed(stream, `watch canceled by etcd: ${r.cancel_reason || (r.compact_revision !== "0" ? "history compacted" : "no reason given")}`);
    if (r.events.length === 0) {
      // Created, or a progress notice: the view is current up to the header.
      if (!r.created) {
        this.#o.view.advance(r.header.revision);
        this.#delivered();
      }
      return;
    }
    const events: KvEvent[] = r.events.map((e) => ({ type: e.type === "Delete" ? "delete" : "put", kv: e.kv }));
    (this.#o.timed ?? untimed)("watch batch", () => {
      this.#o.view.apply(events, receivedAt);
      this.#delivered();
      this.#o.changed();
    }, `${events.length} events`);
  }

  #streamFailed(stream: WatchStream, reason: string): void {
    if (stream !== this.#stream) return;
    this.#fail(reason);
  }

  #fail(reason: string, opts: { reset?: boolean } = {}): void {
    this.#drop();
    if (!this.#active) return;
    this.#synced = false;
    this.#failures++;
    // Twice in a row on the same connection: a new one, if it can help (which calls back here once).
    if (this.#failures >= 2 && opts.reset !== false && this.#o.conn.stalled(Math.round(this.#o.clock() - this.#lastHeardAt)).reset) {
      this.#failures = 0;
      return;
    }
    this.#backoffMs = Math.min(1000, this.#backoffMs ? this.#backoffMs * 2 : 100);
    this.#o.warn(`${reason}; reading the view again in ${this.#backoffMs} ms`);
    this.#o.changed();
    if (this.#retry) clearTimeout(this.#retry);
    this.#retry = setTimeout(() => {
      this.#retry = null;
      this.#resync();
    }, this.#backoffMs);
  }

  #resync(): void {
    this.#sync().catch((err: unknown) => this.#fail(`reading vipd's keys: ${err instanceof Error ? err.message : String(err)}`));
  }

  #drop(): void {
    const s = this.#stream;
    this.#stream = null;
    if (s) {
      try {
        s.cancel();
      } catch {
        // already closed
      }
    }
  }
}
