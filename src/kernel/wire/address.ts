// rtnetlink address messages (linux/if_addr.h): RTM_NEWADDR, RTM_DELADDR and
// the RTM_GETADDR dump, and the decoding of their replies and events. Pure.
import { type IpAddress, ipFromBytes } from "../ip.ts";
import type { Request } from "./link.ts";
import {
  type Attr,
  attrMap,
  attrU32,
  encodeAttrs,
  HOST_LE,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  NLM_F_REQUEST,
  parseAttrs,
  readU32,
  view,
} from "./netlink.ts";
import { WireError } from "./error.ts";

export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_GETADDR = 22;

export const IFA_ADDRESS = 1;
export const IFA_LOCAL = 2;
export const IFA_LABEL = 3;
export const IFA_CACHEINFO = 6;
export const IFA_FLAGS = 8;

export const IFA_F_SECONDARY = 0x01;
export const IFA_F_NODAD = 0x02;
export const IFA_F_DADFAILED = 0x08;
export const IFA_F_DEPRECATED = 0x20;
export const IFA_F_TENTATIVE = 0x40;
export const IFA_F_PERMANENT = 0x80;

export const RT_SCOPE_UNIVERSE = 0;
/** ifa_cacheinfo's "forever". */
export const INFINITY_LIFE_TIME = 0xffffffff;

const AF_INET = 2;
const AF_INET6 = 10;

export const IFADDRMSG_LEN = 8;
export const CACHEINFO_LEN = 16;

export interface Address {
  family: 4 | 6;
  /** Canonical text. */
  address: string;
  prefixLength: number;
  linkIndex: number;
  /** IFA_F_* (from IFA_FLAGS when present: ifa_flags holds only the low 8 bits). */
  flags: number;
  /** Seconds; Infinity when forever. */
  validLifetime: number;
  preferredLifetime: number;
}

/**
 * ifaddrmsg, 8 bytes:
 *   u8  ifa_family     AF_INET / AF_INET6
 *   u8  ifa_prefixlen
 *   u8  ifa_flags      low 8 bits of IFA_F_*; IFA_FLAGS carries all 32
 *   u8  ifa_scope      RT_SCOPE_*
 *   u32 ifa_index
 */
export function encodeIfaddrmsg(family: number, prefixLength: number, flags: number, scope: number, index: number): Uint8Array {
  const out = new Uint8Array(IFADDRMSG_LEN);
  const v = view(out);
  v.setUint8(0, family);
  v.setUint8(1, prefixLength);
  v.setUint8(2, flags & 0xff);
  v.setUint8(3, scope);
  v.setUint32(4, index, HOST_LE);
  return out;
}

/**
 * struct ifa_cacheinfo, 16 bytes:
 *   u32 ifa_prefered   seconds
 *   u32 ifa_valid      seconds
 *   u32 cstamp         created, hundredths of a second since boot (replies only)
 *   u32 tstamp         updated, likewise
 */
export function encodeCacheinfo(preferred: number, valid: number): Uint8Array {
  const out = new Uint8Array(CACHEINFO_LEN);
  const v = view(out);
  v.setUint32(0, preferred, HOST_LE);
  v.setUint32(4, valid, HOST_LE);
  return out;
}

export interface HostAddress {
  readonly ip: IpAddress;
  readonly index: number;
}

/** /32 or /128: a VIP is a single host address, never a subnet with its own route. */
export const hostPrefix = (ip: IpAddress) => (ip.family === 4 ? 32 : 128);

function withAttrs(hdr: Uint8Array, attrs: readonly Attr[]): Uint8Array {
  const body = encodeAttrs(attrs);
  const out = new Uint8Array(hdr.byteLength + body.byteLength);
  out.set(hdr);
  out.set(body, hdr.byteLength);
  return out;
}

/**
 * The address as both IFA_LOCAL and IFA_ADDRESS, like `ip addr add` without a
 * peer: IPv4 keys on IFA_LOCAL, IPv6 takes either, and equal values mean "no peer".
 */
function addressAttrs(ip: IpAddress): Attr[] {
  return [
    { type: IFA_LOCAL, data: ip.bytes },
    { type: IFA_ADDRESS, data: ip.bytes },
  ];
}

/**
 * RTM_NEWADDR for a VIP: a host address, scope global, valid = preferred =
 * lifetime seconds. The finite lifetime is the kernel fence: the kernel drops
 * the address by itself unless it is refreshed. IPv6 gets IFA_F_NODAD so the
 * address is usable at once instead of tentative for a second or more.
 * `replace` refreshes an existing address (NLM_F_REPLACE); otherwise an
 * existing one is EEXIST (NLM_F_EXCL).
 */
/**
 * A VIP, never the node's own source address: an IPv6 VIP is added
 * deprecated (preferred lifetime 0), which RFC 6724's rule 3 keeps from being
 * chosen as the source of the node's own connections while it still receives
 * and answers for its traffic. Left preferred, a /128 VIP could win rule 8
 * (longest matching prefix) against the node's address for a peer on the
 * same /64, and connections from the node — to etcd, to the API server —
 * would break when the VIP moves. IPv4 has no such rule and needs none: the
 * kernel prefers the address whose subnet holds the destination, and a /32
 * holds only itself.
 */
export function newAddressRequest(a: HostAddress, lifetimeSeconds: number, replace: boolean): Request {
  const flags = a.ip.family === 6 ? IFA_F_NODAD : 0;
  const hdr = encodeIfaddrmsg(a.ip.family === 4 ? AF_INET : AF_INET6, hostPrefix(a.ip), flags, RT_SCOPE_UNIVERSE, a.index);
  const preferred = a.ip.family === 6 ? 0 : lifetimeSeconds;
  const payload = withAttrs(hdr, [
    ...addressAttrs(a.ip),
    { type: IFA_CACHEINFO, data: encodeCacheinfo(preferred, lifetimeSeconds) },
    attrU32(IFA_FLAGS, flags),
  ]);
  const how = replace ? NLM_F_REPLACE : NLM_F_EXCL;
  return { type: RTM_NEWADDR, flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | how, payload };
}

export function deleteAddressRequest(a: HostAddress): Request {
  const hdr = encodeIfaddrmsg(a.ip.family === 4 ? AF_INET : AF_INET6, hostPrefix(a.ip), 0, RT_SCOPE_UNIVERSE, a.index);
  return { type: RTM_DELADDR, flags: NLM_F_REQUEST | NLM_F_ACK, payload: withAttrs(hdr, addressAttrs(a.ip)) };
}

/**
 * RTM_GETADDR dump of both families. With NETLINK_GET_STRICT_CHK the kernel
 * filters by ifa_index; without it the index is ignored, so callers filter too.
 */
export function getAddressesRequest(index: number): Request {
  return { type: RTM_GETADDR, flags: NLM_F_REQUEST | NLM_F_DUMP, payload: encodeIfaddrmsg(0, 0, 0, 0, index) };
}

const lifetime = (s: number) => (s === INFINITY_LIFE_TIME ? Infinity : s);

/**
 * Decodes the payload of RTM_NEWADDR / RTM_DELADDR. Returns null for families
 * other than IPv4 and IPv6, which a dump of AF_UNSPEC may also contain.
 */
export function decodeAddress(payload: Uint8Array): Address | null | WireError {
  if (payload.byteLength < IFADDRMSG_LEN) return new WireError(`ifaddrmsg truncated: ${payload.byteLength} bytes, need ${IFADDRMSG_LEN}`);
  const v = view(payload);
  const af = v.getUint8(0);
  if (af !== AF_INET && af !== AF_INET6) return null;
  const family = af === AF_INET ? 4 : 6;
  const prefixLength = v.getUint8(1);
  const linkIndex = v.getUint32(4, HOST_LE);
  const attrs = parseAttrs(payload.subarray(IFADDRMSG_LEN));
  if (attrs instanceof WireError) return attrs;
  const a = attrMap(attrs);

  // IFA_LOCAL is the address itself; IFA_ADDRESS is the peer on point-to-point
  // links, and the only one present for most IPv6 addresses.
  const raw = a.get(IFA_LOCAL) ?? a.get(IFA_ADDRESS);
  const want = family === 4 ? 4 : 16;
  if (!raw) return new WireError(`address on link ${linkIndex} without IFA_LOCAL or IFA_ADDRESS`);
  if (raw.byteLength !== want) return new WireError(`IPv${family} address of ${raw.byteLength} bytes, need ${want}`);

  let flags = v.getUint8(2);
  const flagsAttr = a.get(IFA_FLAGS);
  if (flagsAttr) {
    const f = readU32(flagsAttr, "IFA_FLAGS");
    if (f instanceof WireError) return f;
    flags = f;
  }
  let validLifetime = Infinity;
  let preferredLifetime = Infinity;
  const ci = a.get(IFA_CACHEINFO);
  if (ci) {
    if (ci.byteLength < CACHEINFO_LEN) return new WireError(`IFA_CACHEINFO truncated: ${ci.byteLength} bytes, need ${CACHEINFO_LEN}`);
    const cv = view(ci);
    preferredLifetime = lifetime(cv.getUint32(0, HOST_LE));
    validLifetime = lifetime(cv.getUint32(4, HOST_LE));
  }
  return { family, address: ipFromBytes(raw).text, prefixLength, linkIndex, flags, validLifetime, preferredLifetime };
}
