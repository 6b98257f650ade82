// rtnetlink link messages (linux/rtnetlink.h, linux/if_link.h): the RTM_GETLINK
// request and the RTM_NEWLINK/RTM_DELLINK replies and events. Pure.
import {
  attrMap,
  attrString,
  attrU32,
  encodeAttrs,
  HOST_LE,
  NLM_F_ACK,
  NLM_F_DUMP,
  NLM_F_REQUEST,
  parseAttrs,
  readString,
  readU32,
  view,
} from "./netlink.ts";
import { WireError } from "./error.ts";

export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;

export const IFLA_ADDRESS = 1;
export const IFLA_IFNAME = 3;
export const IFLA_MTU = 4;
export const IFLA_OPERSTATE = 16;
export const IFLA_LINKINFO = 18;
export const IFLA_EXT_MASK = 29;
export const IFLA_INFO_KIND = 1;

// Skip the ~1 KiB of counters each link reply would otherwise carry.
export const RTEXT_FILTER_SKIP_STATS = 1 << 3;

export const IFF_UP = 0x1;
export const IFF_LOWER_UP = 0x10000;

export const IFINFOMSG_LEN = 16;
export const IFNAMSIZ = 16;

/** RFC 2863 operational states, in the kernel's numbering (IF_OPER_*). */
export const OPER_STATES = ["unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up"] as const;
export type OperState = (typeof OPER_STATES)[number];

export interface Link {
  index: number;
  name: string;
  /** Hardware address; empty for links without one. */
  mac: Uint8Array;
  mtu: number;
  /** ifi_flags (IFF_*). */
  flags: number;
  /** IFF_UP: administratively up. */
  up: boolean;
  /** IFF_LOWER_UP: carrier. */
  lowerUp: boolean;
  operState: OperState;
  /** IFLA_INFO_KIND ("veth", "macvlan", …); absent for physical links. */
  kind?: string;
}

/** A request for the socket layer to frame with its own sequence number. */
export interface Request {
  readonly type: number;
  readonly flags: number;
  readonly payload: Uint8Array;
}

/**
 * ifinfomsg, 16 bytes:
 *   u8  ifi_family   AF_UNSPEC
 *   u8  pad
 *   u16 ifi_type     ARPHRD_*
 *   i32 ifi_index
 *   u32 ifi_flags    IFF_*
 *   u32 ifi_change   mask of flags to change (requests only)
 */
export function encodeIfinfomsg(index: number): Uint8Array {
  const out = new Uint8Array(IFINFOMSG_LEN);
  view(out).setInt32(4, index, HOST_LE);
  return out;
}

/**
 * RTM_GETLINK for one link, by index or by name. By name it is looked up in the
 * socket's own namespace, which is why vipd never uses if_nametoindex (that
 * would ask the namespace of whichever thread happens to call it).
 */
export function getLinkRequest(ref: { index: number } | { name: string }): Request {
  const attrs = [attrU32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)];
  if ("name" in ref) attrs.unshift(attrString(IFLA_IFNAME, ref.name));
  const hdr = encodeIfinfomsg("index" in ref ? ref.index : 0);
  const body = encodeAttrs(attrs);
  const payload = new Uint8Array(hdr.byteLength + body.byteLength);
  payload.set(hdr);
  payload.set(body, hdr.byteLength);
  return { type: RTM_GETLINK, flags: NLM_F_REQUEST | NLM_F_ACK, payload };
}

/** RTM_GETLINK for every link in the socket's namespace: a dump, one RTM_NEWLINK each. */
export function getLinksRequest(): Request {
  const hdr = encodeIfinfomsg(0);
  const body = encodeAttrs([attrU32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)]);
  const payload = new Uint8Array(hdr.byteLength + body.byteLength);
  payload.set(hdr);
  payload.set(body, hdr.byteLength);
  return { type: RTM_GETLINK, flags: NLM_F_REQUEST | NLM_F_DUMP, payload };
}

/** Decodes the payload of RTM_NEWLINK / RTM_DELLINK. */
export function decodeLink(payload: Uint8Array): Link | WireError {
  if (payload.byteLength < IFINFOMSG_LEN) return new WireError(`ifinfomsg truncated: ${payload.byteLength} bytes, need ${IFINFOMSG_LEN}`);
  const v = view(payload);
  const index = v.getInt32(4, HOST_LE);
  const flags = v.getUint32(8, HOST_LE);
  const attrs = parseAttrs(payload.subarray(IFINFOMSG_LEN));
  if (attrs instanceof WireError) return attrs;
  const a = attrMap(attrs);

  const nameAttr = a.get(IFLA_IFNAME);
  if (!nameAttr) return new WireError(`link ${index} without IFLA_IFNAME`);
  const mtuAttr = a.get(IFLA_MTU);
  const mtu = mtuAttr ? readU32(mtuAttr, `link ${index} IFLA_MTU`) : 0;
  if (mtu instanceof WireError) return mtu;
  const oper = a.get(IFLA_OPERSTATE)?.[0] ?? 0;

  const link: Link = {
    index,
    name: readString(nameAttr),
    mac: new Uint8Array(a.get(IFLA_ADDRESS) ?? []),
    mtu,
    flags,
    up: (flags & IFF_UP) !== 0,
    lowerUp: (flags & IFF_LOWER_UP) !== 0,
    // A state newer than this code reads as "unknown", as RFC 2863 tools do.
    operState: OPER_STATES[oper] ?? "unknown",
  };
  const info = a.get(IFLA_LINKINFO);
  if (info) {
    const nested = parseAttrs(info);
    if (nested instanceof WireError) return new WireError(`link ${index} IFLA_LINKINFO: ${nested.message}`);
    const kind = attrMap(nested).get(IFLA_INFO_KIND);
    if (kind) link.kind = readString(kind);
  }
  return link;
}
