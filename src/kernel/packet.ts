// An AF_PACKET socket bound to one link: whole Ethernet frames out and in.
// Thin: it moves bytes and turns failures into KernelErrors; the codecs in
// wire/ decide what the bytes mean.
import {
  AF_PACKET,
  attachFilter,
  bind,
  close,
  MSG_DONTWAIT,
  recvfrom,
  sendto,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_RAW,
  socket,
} from "./ffi/libc.ts";
import { EAGAIN, EBADF, EBADMSG, EINTR, EIO } from "./errno.ts";
import { KernelError } from "./error.ts";
import type { LinkRef } from "./link-ref.ts";
import { WireError } from "./wire/error.ts";
import { decodeSockaddrLl, encodeSockaddrLl, PacketType, SOCKADDR_LL_LENGTH } from "./wire/ethernet.ts";

/** Jumbo frames included; longer frames are truncated and dropped. */
const RECEIVE_BUFFER = 9216;
/**
 * How long to wait before asking the socket again when it has nothing. The
 * socket is non-blocking because a blocking recvfrom through FFI would stop
 * the whole event loop, including lease keepalives. Frames queue in the
 * socket meanwhile, and a probe only needs every answer by its deadline, so
 * a longer pause loses nothing and costs fewer wakeups: 30 in a 300 ms
 * probe, where 1 ms made 300, for each VIP at once.
 */
const POLL_MS = 10;

export interface ReceivedFrame {
  readonly frame: Uint8Array;
  readonly packetType: number;
}

export class PacketSocket {
  private fd: number;

  private constructor(
    fd: number,
    readonly link: LinkRef,
  ) {
    this.fd = fd;
  }

  /**
   * Opens a raw packet socket in the calling thread's current network
   * namespace, bound to `link`, receiving frames of `etherType` (0: none, for
   * a socket that only sends and should not queue a copy of every frame).
   * `filter`, an encoded classic BPF program (wire/bpf.ts), keeps only the
   * frames it accepts.
   */
  static open(link: LinkRef, etherType: number, filter?: Uint8Array): PacketSocket {
    // Protocol 0 at socket() so that nothing is queued from other links in the
    // moment before bind() narrows the socket to one link and one EtherType,
    // and nothing unfiltered before the filter is attached.
    const fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw new KernelError(`opening a packet socket for ${link.name}`, -fd);
    if (filter) {
      const f = attachFilter(fd, filter);
      if (f < 0) {
        close(fd);
        throw new KernelError(`attaching a filter to a packet socket for ${link.name}`, -f);
      }
    }
    const r = bind(fd, encodeSockaddrLl({ protocol: etherType, ifindex: link.index }));
    if (r < 0) {
      close(fd);
      throw new KernelError(`binding a packet socket to ${link.name} (index ${link.index})`, -r);
    }
    return new PacketSocket(fd, link);
  }

  get closed(): boolean {
    return this.fd < 0;
  }

  /**
   * Sends one whole frame (Ethernet header included) on the bound link.
   * `operation` names what the frame is for, so the error reads as the
   * caller's intent ("ENETDOWN: announcing 192.0.2.15 on eth0").
   */
  send(frame: Uint8Array, operation: string): void {
    if (this.fd < 0) throw new KernelError(operation, EBADF, "socket closed");
    // No address: a bound SOCK_RAW packet socket sends on its bound link, and
    // the destination MAC is in the frame itself.
    for (;;) {
      const n = sendto(this.fd, frame, 0, null);
      if (n === -EINTR) continue;
      if (n < 0) throw new KernelError(operation, -n);
      if (n !== frame.length) throw new KernelError(operation, EIO, `sent ${n} of ${frame.length} bytes`);
      return;
    }
  }

  /** One frame if one is queued now, else null. Never blocks. */
  tryReceive(operation: string): ReceivedFrame | null {
    if (this.fd < 0) throw new KernelError(operation, EBADF, "socket closed");
    const buf = new Uint8Array(RECEIVE_BUFFER);
    const from = new Uint8Array(SOCKADDR_LL_LENGTH);
    for (;;) {
      const n = recvfrom(this.fd, buf, MSG_DONTWAIT, from);
      if (n === -EINTR) continue;
      if (n === -EAGAIN) return null;
      if (n < 0) throw new KernelError(operation, -n);
      const sender = decodeSockaddrLl(from);
      if (sender instanceof WireError) throw new KernelError(operation, EBADMSG, sender.message);
      return { frame: buf.slice(0, n), packetType: sender.packetType ?? PacketType.HOST };
    }
  }

  /**
   * Waits for the next frame until `deadline` (performance.now() time), polling
   * every POLL_MS so the event loop keeps running. Null at the deadline or abort.
   */
  async receive(operation: string, deadline: number, signal?: AbortSignal): Promise<ReceivedFrame | null> {
    for (;;) {
      if (signal?.aborted || this.fd < 0) return null;
      const got = this.tryReceive(operation);
      if (got) return got;
      if (performance.now() >= deadline) return null;
      await Bun.sleep(Math.min(POLL_MS, Math.max(0, deadline - performance.now())));
    }
  }

  close(): void {
    if (this.fd < 0) return;
    close(this.fd);
    this.fd = -1;
  }
}
