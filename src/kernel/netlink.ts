// A netlink socket driven without ever blocking the event loop: the fd is
// non-blocking, and waiting for a reply is a 1 ms timer between recvfrom calls.
// The agent's fence deadlines run on the same loop, so a blocking recv here
// could keep a VIP past the moment it must be dropped.
import {
  AF_NETLINK,
  bind,
  close,
  MSG_DONTWAIT,
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
  NLM_F_DUMP_INTR,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_NOOP,
  NLMSG_OVERRUN,
  parseMessages,
  SOCKADDR_NL_LEN,
  view,
  WireError,
} from "./wire/netlink.ts";


// Event bursts (a link flap on a node with many addresses) must not overflow
// the queue between two polls; 4 MiB is what iproute2's `ip monitor` asks for.
const RCVBUF = 4 << 20;
// A dump datagram is at most 32 KiB; twice that leaves room for any kernel.
const RECV_BUF = 64 << 10;

export interface NetlinkOptions {
  /** Multicast group bitmask to join (RTMGRP_*); 0 for a request-only socket. */
  groups?: number;
  /** Default timeout for request(); 5 s. */
  timeoutMs?: number;
}

export interface Received {
  messages: NetlinkMessage[];
  /** ENOBUFS: the kernel dropped messages because the queue was full. */
  overrun: boolean;
}

export class NetlinkSocket {
  private seq = Math.floor(Math.random() * 0x7fffffff);
  private closed = false;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly buf = new Uint8Array(RECV_BUF);
  private readonly from = new Uint8Array(SOCKADDR_NL_LEN);
  private readonly kernel = encodeSockaddrNl(0, 0);

  private constructor(
    private readonly fd: number,
    private readonly timeoutMs: number,
  ) {}

  /** Opens a NETLINK_ROUTE socket in the calling thread's current namespace. */
  static open(opts: NetlinkOptions = {}): NetlinkSocket {
    const op = "opening a netlink socket";
    const fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
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
    const r = bind(fd, encodeSockaddrNl(0, opts.groups ?? 0));
    if (r < 0) fail("binding", r);
    return new NetlinkSocket(fd, opts.timeoutMs ?? 5000);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    close(this.fd);
  }

  /**
   * Sends req with a fresh sequence number and collects the replies that carry
   * it, up to the ACK (NLMSG_ERROR with 0), an error, or NLMSG_DONE for a dump.
   * Requests on one socket run one at a time so replies never interleave.
   *
   * `req` may be a function: it is then called synchronously right before the
   * datagram is sent, not when the request was queued. A request built from
   * facts that expire (an address lifetime from a lease deadline) must be
   * built from the facts at the moment it leaves, however long it waited.
   */
  request(req: Request | (() => Request), operation: string, timeoutMs = this.timeoutMs): Promise<NetlinkMessage[]> {
    const run = this.queue.then(() => this.exchange(req, operation, timeoutMs));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async exchange(req: Request | (() => Request), operation: string, timeoutMs: number): Promise<NetlinkMessage[]> {
    if (this.closed) throw new KernelError(operation, EBADF, "netlink socket closed");
    const message = typeof req === "function" ? req() : req;
    this.seq = (this.seq + 1) >>> 0;
    const seq = this.seq;
    const sent = sendto(this.fd, encodeMessage({ ...message, seq, pid: 0 }), 0, this.kernel);
    if (sent < 0) throw new KernelError(operation, -sent);

    const deadline = performance.now() + timeoutMs;
    const replies: NetlinkMessage[] = [];
    let interrupted = false;
    for (;;) {
      const got = this.receive(operation);
      if (got === null) {
        if (performance.now() > deadline) throw new KernelError(operation, ETIMEDOUT, `no reply from the kernel in ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 1));
        if (this.closed) throw new KernelError(operation, EBADF, "netlink socket closed");
        continue;
      }
      if (got === "overrun") throw new KernelError(operation, ENOBUFS, "reply lost: receive queue overrun");
      for (const m of got) {
        // Leftovers of an earlier request that timed out: not ours.
        if (m.seq !== seq) continue;
        if (m.type === NLMSG_NOOP || m.type === NLMSG_OVERRUN) continue;
        // Set on any part of a dump that raced with a change to what it lists.
        if (m.flags & NLM_F_DUMP_INTR) interrupted = true;
        if (m.type === NLMSG_ERROR) {
          const e = decodeError(m);
          if (e instanceof WireError) throw new KernelError(operation, EBADMSG, e.message);
          if (e.errno !== 0) throw new KernelError(operation, e.errno, e.message);
          return replies;
        }
        if (m.type === NLMSG_DONE) {
          // A dump that fails part-way reports -errno in NLMSG_DONE's payload.
          const err = m.payload.byteLength >= 4 ? -view(m.payload).getInt32(0, HOST_LE) : 0;
          if (err > 0) throw new KernelError(operation, err);
          // The listing may be inconsistent; the caller's next pass will ask again.
          if (interrupted) throw new KernelError(operation, EAGAIN, "dump interrupted by a concurrent change");
          return replies;
        }
        replies.push(m);
      }
    }
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
