// Kernel events for links and addresses, for the applier to reconcile on. The
// events only say "look again"; consumers must not build state from them alone,
// which is also why a lost batch (ENOBUFS) is reported as a single "overrun".
import { NetlinkSocket, type Received } from "./netlink.ts";
import { type Address, decodeAddress, RTM_DELADDR, RTM_NEWADDR } from "./wire/address.ts";
import { encodeBpf, notFromPortFilter } from "./wire/bpf.ts";
import { decodeLink, type Link, RTM_DELLINK, RTM_NEWLINK } from "./wire/link.ts";
import { WireError } from "./wire/error.ts";
import type { NetlinkMessage } from "./wire/netlink.ts";

export type KernelEvent =
  | { type: "link"; link: Link; deleted: boolean }
  | { type: "address"; address: Address; deleted: boolean }
  /**
   * ENOBUFS: events were lost, the consumer must re-read the state. One loss
   * brings two: at once, and once it has drained (NetlinkSocket.listen), when
   * a re-read sees every lost change and no event queued before follows.
   */
  | { type: "overrun" };

// Multicast groups (linux/rtnetlink.h, the legacy RTMGRP_* bitmask for bind).
export const RTMGRP_LINK = 0x1;
export const RTMGRP_IPV4_IFADDR = 0x10;
export const RTMGRP_IPV6_IFADDR = 0x100;

export class LinkEvents {
  private constructor(
    private readonly sock: NetlinkSocket,
    private readonly onEvent: (e: KernelEvent) => void,
  ) {
    // No timer: the socket is read when the kernel has something (listen).
    sock.listen((batch) => this.deliver(batch));
  }

  /**
   * Subscribes in the calling thread's current namespace. `ownPort`: the
   * port ID of the caller's own rtnetlink request socket, whose changes
   * (echoed back as notifications) are no news and are dropped by the kernel.
   */
  static open(onEvent: (e: KernelEvent) => void, opts: { ownPort?: number } = {}): LinkEvents {
    const sock = NetlinkSocket.open({
      groups: RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR,
      kernelOnly: true,
      ...(opts.ownPort !== undefined ? { filter: encodeBpf(notFromPortFilter(opts.ownPort)) } : {}),
    });
    return new LinkEvents(sock, onEvent);
  }

  close(): void {
    this.sock.close();
  }

  private deliver(batch: Received): void {
    let overrun = batch.overrun;
    const events: KernelEvent[] = [];
    for (const m of batch.messages) {
      const e = toEvent(m);
      if (e === "lost") overrun = true;
      else if (e) events.push(e);
    }
    // The overrun goes first: whatever follows is newer than the gap.
    if (overrun) this.onEvent({ type: "overrun" });
    for (const e of events) this.onEvent(e);
  }
}

function toEvent(m: NetlinkMessage): KernelEvent | null | "lost" {
  switch (m.type) {
    case RTM_NEWLINK:
    case RTM_DELLINK: {
      const link = decodeLink(m.payload);
      return link instanceof WireError ? "lost" : { type: "link", link, deleted: m.type === RTM_DELLINK };
    }
    case RTM_NEWADDR:
    case RTM_DELADDR: {
      const address = decodeAddress(m.payload);
      if (address === null) return null;
      return address instanceof WireError ? "lost" : { type: "address", address, deleted: m.type === RTM_DELADDR };
    }
    default:
      return null;
  }
}
