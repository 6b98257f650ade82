// A netlink socket driven without ever blocking the event loop: the fd is
// non-blocking, and waiting for a reply is a 1 ms timer between recvfrom calls;
// events (listen) arrive through the runtime's own readiness wait, no timer.
// The agent's fence deadlines run on the same loop, so a blocking recv here
// could keep a VIP past the moment it must be dropped.
//
// Longer than most files here (about 550 lines) and kept whole: it is one
// concept, the exchange on one socket. Requests, batches answered message by
// message, resends of slow sends, dumps and the event stream (whose drain
// markers are requests too) share the sequence numbers, the one-at-a-time
// queue and the receive loop; the bytes themselves are wire/netlink.ts's.
import {
  AF_NETLINK,
  attachFilter,
  bind,
  close,
  connect,
  getsockname,
  MSG_DONTWAIT,
  MSG_PEEK,
  MSG_TRUNC,
  NETLINK_EXT_ACK,
  NETLINK_GET_STRICT_CHK,
  NETLINK_ROUTE,
  recvfrom,
  sendto,
  setsockoptInt,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_RAW,
  socket,
  SOL_NETLINK,
  SOL_SOCKET,
} from "./ffi/libc.ts";
import { type Clock, monotonicClock, type Timed, untimed } from "../seams.ts";
import { EAGAIN, EBADF, EBADMSG, EINTR, EMSGSIZE, ENOBUFS, ETIMEDOUT } from "./errno.ts";
import { KernelError } from "./error.ts";
import type { Request } from "./wire/link.ts";
import {
  decodeError,
  decodeSockaddrNl,
  encodeMessage,
  encodeSockaddrNl,
  HOST_LE,
  type NetlinkMessage,
  NLM_F_ACK,
  NLM_F_DUMP_INTR,
  NLM_F_EXCL,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_NOOP,
  NLMSG_OVERRUN,
  NLM_F_REQUEST,
  parseMessages,
  SOCKADDR_NL_LEN,
  view,
} from "./wire/netlink.ts";
import { WireError } from "./wire/error.ts";


// Event bursts (a link flap on a node with many addresses) must not overflow
// the queue between two polls; 4 MiB is what iproute2's `ip monitor` asks for.
const RCVBUF = 4 << 20;
// A dump datagram is at most 32 KiB; twice that leaves room for any kernel.
const RECV_BUF = 64 << 10;
// An event socket whose queue brought nothing for this long has been read empty.
const SETTLED_MS = 50;
/** Room for a peek that only asks whether anything is queued. */
const PEEK_BUF = new Uint8Array(1);
// A sendto to the kernel runs the request to completion before it returns,
// so it only takes long when the request waited for a lock (rtnl_lock, the
// nf_tables commit mutex). Longer than this from building the request to the
// end of sendto, and what a request built from the clock carried (a
// lifetime, a timeout) started counting late.
const SLOW_SEND_MS = 2;
// The kernel carries out every message of a datagram inside the sendto, about
// 20 µs for an address or a set element: a heartbeat's refresh of 100 VIPs
// takes 2 ms by itself, and would count as slow and go three times. So each
// item adds to what counts as slow, generously (five times that cost), as
// an item applied this late is still far inside the fence's margin. An item
// is a message, or each set element of an nftables element message
// (Outgoing.items): one message carries the elements of all of a set's VIPs.
const SLOW_SEND_PER_ITEM_MS = 0.1;
// Sends of one request built from the clock, the first included. Each resend
// tightens what the kernel holds; three waits in a row mean the lock is
// contended for good: the last send stands, and the socket's owner hears of
// it (NetlinkOptions.onSlowSends), since what it carried counts late.
const MAX_SENDS = 3;

/**
 * A request built from the clock whose last send was slow, and not sent
 * again (MAX_SENDS reached, or one that must create what it names): what it
 * carried started counting late.
 */
export interface SlowSends {
  readonly operation: string;
  readonly sends: number;
  /** Milliseconds from building the last send to the end of its sendto: how late what it carried started counting. */
  readonly lastMs: number;
  /** Messages in each datagram. */
  readonly messages: number;
}

export interface NetlinkOptions {
  /** NETLINK_ROUTE (the default), or NETLINK_NETFILTER for nftables. */
  protocol?: number;
  /** Multicast group bitmask to join (RTMGRP_*); 0 for a request-only socket. */
  groups?: number;
  /** Default timeout for request(); 5 s. */
  timeoutMs?: number;
  /**
   * Milliseconds, monotonic: the clock that requests built at send time read,
   * used to time building and sending one. Injectable so tests can make a send slow.
   */
  clock?: Clock;
  /** A classic BPF program (wire/bpf.ts) the kernel runs on each datagram before queueing it. */
  filter?: Uint8Array;
  /**
   * Connect to the kernel (port 0), so that the kernel refuses unicast from
   * any other sender to this socket. Required by listen(), which reads with
   * read(2) and so cannot see who sent a datagram.
   */
  kernelOnly?: boolean;
  /** Told when a request built from the clock was still slow on its last send (the agent logs it). */
  onSlowSends?: (slow: SlowSends) => void;
  /** Measures building each request (an nftables batch, a dump request), named by its operation, for the agent's loop watch. */
  timed?: Timed;
}

/** One message to send; `operation`, when given, names it in the error if the kernel refuses it. */
export interface Outgoing extends Request {
  readonly operation?: string;
  /**
   * What the kernel carries out for this message, for what counts as a slow
   * send (SLOW_SEND_PER_ITEM_MS): the elements of a set element message;
   * 1 when absent.
   */
  readonly items?: number;
}

/**
 * One message, or several sent in one datagram: an nfnetlink batch, where the
 * kernel answers each message that asked for NLM_F_ACK and every one it refuses.
 */
export type Requests = Outgoing | readonly Outgoing[];

export interface Received {
  messages: NetlinkMessage[];
  /** ENOBUFS: the kernel dropped messages because the queue was full. */
  overrun: boolean;
}

export class NetlinkSocket {
  private seq = Math.floor(Math.random() * 0x7fffffff);
  private closed = false;
  private queue: Promise<unknown> = Promise.resolve();
  private listening: { stop(): Promise<void> } | null = null;
  private readonly buf = new Uint8Array(RECV_BUF);
  private readonly from = new Uint8Array(SOCKADDR_NL_LEN);
  private readonly kernel = encodeSockaddrNl(0, 0);

  private constructor(
    private readonly fd: number,
    private readonly timeoutMs: number,
    private readonly clock: Clock,
    private readonly kernelOnly: boolean,
    private readonly onSlowSends: ((slow: SlowSends) => void) | undefined,
    private readonly timed: Timed,
  ) {}

  /** Opens a netlink socket (NETLINK_ROUTE unless told) in the calling thread's current namespace. */
  static open(opts: NetlinkOptions = {}): NetlinkSocket {
    const op = "opening a netlink socket";
    const fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, opts.protocol ?? NETLINK_ROUTE);
    if (fd < 0) throw new KernelError(op, -fd);
    const fail = (what: string, r: number): never => {
      close(fd);
      throw new KernelError(`${op}: ${what}`, -r);
    };
    // FORCE needs CAP_NET_ADMIN (which vipd has anyway); it ignores rmem_max.
    if (setsockoptInt(fd, SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF) < 0) {
      const r = setsockoptInt(fd, SOL_SOCKET, SO_RCVBUF, RCVBUF);
      if (r < 0) fail("setting SO_RCVBUF", r);
    }
    // Both are best effort: without EXT_ACK errors lack the kernel's text;
    // without STRICT_CHK (kernels before 4.20) dumps are filtered here instead.
    setsockoptInt(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1);
    setsockoptInt(fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1);
    // Before bind, which joins the groups: no datagram arrives unfiltered.
    if (opts.filter) {
      const f = attachFilter(fd, opts.filter);
      if (f < 0) fail("attaching a socket filter", f);
    }
    const r = bind(fd, encodeSockaddrNl(0, opts.groups ?? 0));
    if (r < 0) fail("binding", r);
    if (opts.kernelOnly) {
      const c = connect(fd, encodeSockaddrNl(0, 0));
      if (c < 0) fail("connecting to the kernel", c);
    }
    return new NetlinkSocket(fd, opts.timeoutMs ?? 5000, opts.clock ?? monotonicClock, opts.kernelOnly ?? false, opts.onSlowSends, opts.timed ?? untimed);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const l = this.listening;
    this.listening = null;
    if (!l) {
      close(this.fd);
      return;
    }
    // The runtime still waits on the descriptor: close it once the stream is
    // cancelled, never under a pending read (the number could be reused).
    void l.stop().finally(() => close(this.fd));
  }

  /** The port ID the kernel gave this socket (its netlink address). */
  portId(): number {
    const addr = new Uint8Array(SOCKADDR_NL_LEN);
    const r = getsockname(this.fd, addr);
    if (r < 0) throw new KernelError("reading a netlink socket's address", -r);
    const a = decodeSockaddrNl(addr);
    if (a instanceof WireError) throw new KernelError("reading a netlink socket's address", EBADMSG, a.message);
    return a.pid;
  }

  /**
   * Hands over what the kernel multicasts to this socket as it arrives,
   * with no polling timer: the runtime waits until the socket is readable
   * and reads what is queued into its own buffer, handed over chunk by
   * chunk, so an idle node wakes for nothing.
   * ENOBUFS (the kernel dropped messages) ends a stream: it is delivered as
   * an overrun and a new stream takes over the same socket. A datagram that
   * does not parse, or any other read error, is an overrun too (the
   * consumer re-reads the state); errors other than ENOBUFS are retried
   * after a pause so a broken socket cannot spin. Needs `kernelOnly`.
   */
  listen(deliver: (r: Received) => void): void {
    if (!this.kernelOnly) throw new Error("NetlinkSocket.listen needs a socket opened with kernelOnly");
    if (this.listening || this.closed) throw new Error("NetlinkSocket.listen: already listening, or closed");
    let stopped = false;
    let reader: ReturnType<ReadableStream<Uint8Array<ArrayBuffer>>["getReader"]> | null = null;
    // After ENOBUFS the kernel marks the socket congested and drops further
    // messages without another error until its queue has been read empty.
    // So a gap is reported twice: at once, and again once it has drained:
    // the congestion is over and every change queued before its end has
    // been handed over. A re-read then sees every change the congestion
    // swallowed, and no change queued before that report comes after it.
    //
    // Neither quiet nor an empty queue proves drained. A reader starved of
    // CPU (or a consumer that blocked) reads nothing for a while with
    // datagrams still queued; and the runtime reads the socket ahead into
    // its own buffer, where changes wait after the kernel's queue is empty,
    // unseen by any peek. So once the stream has been quiet for SETTLED_MS
    // and a peek finds the queue empty (which also ends the congestion), a
    // marker goes through the queue: an NLMSG_NOOP asking for an ACK, which
    // the kernel queues behind everything already queued, or, with the
    // queue full again, drops with a new ENOBUFS. The gap has drained when
    // the stream hands over that ACK: whatever came before it, from the
    // queue or the runtime's buffer, has been delivered.
    //
    // `markers`: null while no gap waits to drain; else the sequence
    // numbers of the markers sent since the last loss (an earlier one's ACK
    // proves nothing about the later loss).
    let markers: Set<number> | null = null;
    let settle: ReturnType<typeof setTimeout> | null = null;
    const again = () => {
      if (settle) clearTimeout(settle);
      settle = setTimeout(() => {
        settle = null;
        if (stopped || !markers) return;
        const peeked = recvfrom(this.fd, PEEK_BUF, MSG_PEEK | MSG_DONTWAIT, null);
        // The peek took the socket's pending error: another loss.
        if (peeked === -ENOBUFS) return lost();
        // Still queued: the stream reads it, and the next quiet tries again.
        if (peeked !== -EAGAIN) return again();
        // A marker not back by the next quiet is sent again: one sent while
        // the kernel still counted the socket congested would be dropped
        // without a word. The peek that found the queue empty has ended the
        // congestion, so that should not happen, but a second marker costs
        // little and waiting forever for a lost one would cost the re-read.
        this.seq = (this.seq + 1) >>> 0;
        const marker = encodeMessage({ type: NLMSG_NOOP, flags: NLM_F_REQUEST | NLM_F_ACK, seq: this.seq, pid: 0, payload: new Uint8Array(0) });
        if (sendto(this.fd, marker, 0, this.kernel) >= 0) markers.add(this.seq);
        again();
      }, SETTLED_MS);
    };
    const lost = () => {
      if (stopped) return;
      markers = new Set();
      deliver({ messages: [], overrun: true });
      again();
    };
    // Hands over one chunk's changes, and the second overrun where the ACK
    // that proves the gap drained sits among them.
    const received = (messages: NetlinkMessage[]) => {
      const { before, drained, after } = splitAtMarker(messages, markers);
      if (before.length > 0) deliver({ messages: before, overrun: false });
      if (drained) {
        markers = null;
        if (settle) clearTimeout(settle);
        settle = null;
        deliver({ messages: [], overrun: true });
      }
      if (after.length > 0) deliver({ messages: after, overrun: false });
    };
    const loop = async () => {
      let pauseMs = 0;
      while (!stopped) {
        if (pauseMs) await new Promise((r) => setTimeout(r, pauseMs));
        if (stopped) return;
        const r = Bun.file(this.fd).stream().getReader();
        reader = r;
        try {
          for (;;) {
            const { value, done } = await r.read();
            if (stopped) return;
            if (done) break;
            pauseMs = 0;
            if (markers) again();
            const messages = parseMessages(value);
            if (messages instanceof WireError) lost();
            else received(messages);
          }
          // The stream ended without an error. A socket has no end, so the
          // runtime gave up on a read it could not make: count it as lost.
          await r.cancel().catch(() => {});
          lost();
          pauseMs = 100;
        } catch (e) {
          // Cancel even an errored stream: otherwise the runtime may still
          // watch the descriptor for it and read a datagram into nowhere.
          await r.cancel().catch(() => {});
          if (stopped) return;
          lost();
          pauseMs = (e as { code?: string }).code === "ENOBUFS" ? 0 : Math.min(1000, Math.max(100, pauseMs * 2));
        }
      }
    };
    const done = loop();
    this.listening = {
      async stop() {
        stopped = true;
        if (settle) clearTimeout(settle);
        await reader?.cancel().catch(() => {});
        await done;
      },
    };
  }

  /**
   * Sends req, each message with a fresh sequence number, and collects the
   * replies that carry them. A single message is done at its ACK (NLMSG_ERROR
   * with 0), its error, or NLMSG_DONE for a dump; several (a batch) are done
   * when every message that asked for NLM_F_ACK has its ACK. Any error ends
   * the request, named by the refused message's own `operation` if it has one.
   * Requests on one socket run one at a time so replies never interleave.
   *
   * `req` may be a function: it is then called synchronously right before the
   * datagram is sent, not when the request was queued. A request built from
   * facts that expire (an address lifetime from a lease deadline) must be
   * built from the facts at the moment it leaves, however long it waited.
   * For the same reason, when building and sending took longer than
   * SLOW_SEND_MS (the sendto waited for a kernel lock, or the process was
   * descheduled, and what it carried started counting late), the request is
   * built and sent again at once, up to MAX_SENDS times, if it can be: an
   * update (NLM_F_REPLACE, set element updates) can, a creation that must not
   * find its object there (NLM_F_EXCL) cannot, and is sent once. The replies
   * to every send are consumed, and those of the last returned.
   */
  request(req: Requests | (() => Requests), operation: string, timeoutMs = this.timeoutMs): Promise<NetlinkMessage[]> {
    const run = this.queue.then(async () => {
      const build = typeof req === "function" ? () => untagged(req()) : untagged(req);
      return (await this.exchange(build, operation, timeoutMs, false)).replies;
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Several independent requests in one datagram, each answered on its own.
   * rtnetlink handles every message of a datagram separately (unlike an
   * nfnetlink batch, one transaction) and acknowledges each, so one refusal
   * fails only its own message: the answer maps every tag that was sent to
   * null (done) or the kernel's refusal. Every message must ask for
   * NLM_F_ACK. `build` runs right before each send, as a function given to
   * request() does, and is resent the same way when the send was slow; a
   * tag it leaves out of a resend keeps the answer to its earlier send.
   * Rejects only when the exchange itself fails (closed socket, timeout,
   * lost replies), never for one message.
   */
  requestEach<T>(build: () => readonly Tagged<T>[], operation: string, timeoutMs = this.timeoutMs): Promise<Map<T, KernelError | null>> {
    const run = this.queue.then(async () => (await this.exchange(build, operation, timeoutMs, true)).outcomes);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async exchange<T>(
    req: readonly Tagged<T>[] | (() => readonly Tagged<T>[]),
    operation: string,
    timeoutMs: number,
    each: boolean,
  ): Promise<{ replies: NetlinkMessage[]; outcomes: Map<T, KernelError | null> }> {
    if (this.closed) throw new KernelError(operation, EBADF, "netlink socket closed");
    // The listener's stream reads every datagram, replies included, and
    // takes any answer on its socket for one to its own drain markers.
    if (this.listening) throw new Error(`${operation}: NetlinkSocket.request on a socket that listens for events`);
    // Every seq sent, with the operation its error would name and its tag;
    // the seqs still owed an answer; and those of the last send, whose
    // replies are returned.
    const sentAs = new Map<number, { name: string; tag: T }>();
    const owed = new Set<number>();
    const outcomes = new Map<T, KernelError | null>();
    let last = new Set<number>();
    for (let sends = 1; ; sends++) {
      const started = this.clock();
      const messages = typeof req === "function" ? this.timed(operation, req) : req;
      // Nothing (left) to send: a resend's build may drop every tag.
      if (messages.length === 0) {
        if (sends === 1) return { replies: [], outcomes };
        break;
      }
      last = new Set();
      const frames = messages.map(({ tag, message: m }) => {
        this.seq = (this.seq + 1) >>> 0;
        sentAs.set(this.seq, { name: m.operation ?? operation, tag });
        last.add(this.seq);
        if (messages.length === 1 || m.flags & NLM_F_ACK) owed.add(this.seq);
        if (each && !outcomes.has(tag)) outcomes.set(tag, null);
        return encodeMessage({ type: m.type, flags: m.flags, payload: m.payload, seq: this.seq, pid: 0 });
      });
      const sent = sendto(this.fd, concat(frames), 0, this.kernel);
      const took = this.clock() - started;
      if (sent < 0) throw new KernelError(operation, -sent);
      // A request given as a value carries nothing read from the clock.
      if (typeof req !== "function" || took <= SLOW_SEND_MS + itemsOf(messages) * SLOW_SEND_PER_ITEM_MS) break;
      const repeatable = messages.every(({ message: m }) => !(m.flags & NLM_F_EXCL));
      if (!repeatable || sends >= MAX_SENDS) {
        this.onSlowSends?.({ operation, sends, lastMs: took, messages: messages.length });
        break;
      }
    }

    const deadline = performance.now() + timeoutMs;
    const replies: NetlinkMessage[] = [];
    let interrupted = false;
    while (owed.size > 0) {
      const got = this.receive(operation);
      if (got === null) {
        if (performance.now() > deadline) throw new KernelError(operation, ETIMEDOUT, `no reply from the kernel in ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 1));
        if (this.closed) throw new KernelError(operation, EBADF, "netlink socket closed");
        continue;
      }
      if (got === "overrun") throw new KernelError(operation, ENOBUFS, "reply lost: receive queue overrun");
      for (const m of got) {
        const sent = sentAs.get(m.seq);
        // Leftovers of an earlier request that timed out or failed: not ours.
        if (sent === undefined) continue;
        if (m.type === NLMSG_NOOP || m.type === NLMSG_OVERRUN) continue;
        // Set on any part of a dump that raced with a change to what it lists.
        if (m.flags & NLM_F_DUMP_INTR) interrupted = true;
        if (m.type === NLMSG_ERROR) {
          const e = decodeError(m);
          const refusal = e instanceof WireError ? new KernelError(sent.name, EBADMSG, e.message) : e.errno !== 0 ? new KernelError(sent.name, e.errno, e.message) : null;
          if (refusal && !each) throw refusal;
          // A resend's refusal does not undo the first one: either is the answer.
          if (refusal && outcomes.get(sent.tag) === null) outcomes.set(sent.tag, refusal);
          owed.delete(m.seq);
        } else if (m.type === NLMSG_DONE) {
          // A dump that fails part-way reports -errno in NLMSG_DONE's payload.
          const err = m.payload.byteLength >= 4 ? -view(m.payload).getInt32(0, HOST_LE) : 0;
          if (err > 0) throw new KernelError(sent.name, err);
          owed.delete(m.seq);
        } else if (last.has(m.seq)) {
          replies.push(m);
        }
      }
    }
    // The listing may be inconsistent; the caller's next pass will ask again.
    if (interrupted) throw new KernelError(operation, EAGAIN, "dump interrupted by a concurrent change");
    return { replies, outcomes };
  }

  /**
   * Reads every datagram queued now, without waiting. Used by event sockets on
   * each poll; `max` bounds one call so a flood cannot hold the loop.
   */
  drain(operation: string, max = 256): Received {
    const messages: NetlinkMessage[] = [];
    let overrun = false;
    for (let i = 0; i < max && !this.closed; i++) {
      const got = this.receive(operation);
      if (got === null) break;
      if (got === "overrun") overrun = true;
      else messages.push(...got);
    }
    return { messages, overrun };
  }

  /** One datagram from the kernel, null when none is queued, "overrun" on ENOBUFS. */
  private receive(operation: string): NetlinkMessage[] | null | "overrun" {
    for (;;) {
      const n = recvfrom(this.fd, this.buf, MSG_DONTWAIT | MSG_TRUNC, this.from);
      if (n === -EINTR) continue;
      if (n === -EAGAIN) return null;
      // The socket stays usable after ENOBUFS; only the dropped messages are gone.
      if (n === -ENOBUFS) return "overrun";
      if (n < 0) throw new KernelError(operation, -n);
      if (n > this.buf.byteLength) throw new KernelError(operation, EMSGSIZE, `netlink datagram of ${n} bytes truncated`);
      // Only the kernel may speak on this socket; another process could forge replies.
      const sender = decodeSockaddrNl(this.from);
      if (sender instanceof WireError || sender.pid !== 0) continue;
      // Copy: the receive buffer is reused by the next call.
      const msgs = parseMessages(this.buf.slice(0, n));
      if (msgs instanceof WireError) throw new KernelError(operation, EBADMSG, msgs.message);
      return msgs;
    }
  }
}

/**
 * One chunk of a listening socket's stream, split at the ACK of a drain
 * marker whose sequence number is `awaited`: the messages before it, whether
 * it was there, and those after. Every answer (NLMSG_ERROR) is left out: a
 * listening socket sends no requests, so all are answers to markers, and
 * one not awaited is late, for an earlier loss.
 */
export function splitAtMarker(messages: readonly NetlinkMessage[], awaited: ReadonlySet<number> | null): { before: NetlinkMessage[]; drained: boolean; after: NetlinkMessage[] } {
  const before: NetlinkMessage[] = [];
  const after: NetlinkMessage[] = [];
  let drained = false;
  for (const m of messages) {
    if (m.type !== NLMSG_ERROR) (drained ? after : before).push(m);
    else if (awaited?.has(m.seq)) drained = true;
  }
  return { before, drained, after };
}

/** A message sent by requestEach, and what its answer is filed under. */
export interface Tagged<T> {
  readonly tag: T;
  readonly message: Outgoing;
}

function itemsOf(messages: readonly Tagged<unknown>[]): number {
  let n = 0;
  for (const { message } of messages) n += message.items ?? 1;
  return n;
}

function untagged(req: Requests): Tagged<undefined>[] {
  return ("type" in req ? [req] : req).map((message) => ({ tag: undefined, message }));
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.byteLength;
  }
  return out;
}
