// IPv6 Neighbor Discovery inside its IPv6 header (RFC 8200 §3), as vipd
// uses it: Neighbor Advertisements (RFC 4861 §4.4) that move neighbours'
// caches to a new owner of an IPv6 VIP, and the Neighbor Solicitation of
// Duplicate Address Detection (RFC 4862 §5.4) that asks whether anyone else
// owns it. Pure: values to bytes and back, checksum included.
import { WireError } from "./error.ts";

export const IPV6_HEADER_LENGTH = 40;
export const NEXT_HEADER_ICMPV6 = 58;
export const ICMPV6_NEIGHBOR_SOLICITATION = 135;
export const ICMPV6_NEIGHBOR_ADVERTISEMENT = 136;
/** RFC 4861 §7.1.1 and §7.1.2: receivers drop ND messages whose hop limit is not 255, proving they were not routed. */
export const ND_HOP_LIMIT = 255;
/** Both messages are 24 bytes before their options: type, code, checksum, 4 bytes of flags or reserved, target. */
const ND_LENGTH = 24;
const OPTION_SOURCE_LINK_LAYER_ADDRESS = 1;
const OPTION_TARGET_LINK_LAYER_ADDRESS = 2;
const UNSPECIFIED: Uint8Array = new Uint8Array(16);

/** ff02::1, the all-nodes link-local multicast group. */
export const ALL_NODES: Uint8Array = Uint8Array.from([0xff, 0x02, ...Array<number>(13).fill(0), 0x01]);
/** 33:33:00:00:00:01: ff02::1 mapped to Ethernet multicast, RFC 2464 §7 (33:33 + low 32 bits). */
export const ALL_NODES_MAC: Uint8Array = Uint8Array.from([0x33, 0x33, 0, 0, 0, 0x01]);

export interface NeighborAdvertisement {
  /** 16 bytes: an address of the sending interface (RFC 4861 §4.4). */
  readonly source: Uint8Array;
  /** 16 bytes. */
  readonly destination: Uint8Array;
  readonly hopLimit: number;
  readonly router: boolean;
  readonly solicited: boolean;
  readonly override: boolean;
  /** 16 bytes. */
  readonly target: Uint8Array;
  /** 6 bytes: the Target Link-Layer Address option, if present. */
  readonly targetMac: Uint8Array | null;
}

/**
 * Unsolicited NA for a new owner of `ip`: to all nodes, R=0 (vipd is no
 * router), S=0 (nobody asked: RFC 4861 §7.2.6), O=1 so receivers replace the
 * old owner's MAC in existing entries (§7.2.5). The source is the VIP itself:
 * it is assigned to the interface by the time we announce, which §4.4 asks
 * for, and it spares a lookup of the link-local address.
 */
export function unsolicitedAdvertisement(mac: Uint8Array, ip: Uint8Array): NeighborAdvertisement {
  return {
    source: ip,
    destination: ALL_NODES,
    hopLimit: ND_HOP_LIMIT,
    router: false,
    solicited: false,
    override: true,
    target: ip,
    targetMac: mac,
  };
}

/**
 * IPv6 header (RFC 8200 §3) then ICMPv6 NA (RFC 4861 §4.4):
 *
 *   0   4 bits   version 6
 *       8 bits   traffic class 0
 *       20 bits  flow label 0
 *   4   2 bytes  payload length (ICMPv6 message)
 *   6   1 byte   next header 58 (ICMPv6)
 *   7   1 byte   hop limit
 *   8   16 bytes source address
 *   24  16 bytes destination address
 *   -- ICMPv6 --
 *   40  1 byte   type 136
 *   41  1 byte   code 0
 *   42  2 bytes  checksum, RFC 4443 §2.3 over the pseudo-header, RFC 8200 §8.1
 *   44  1 bit R, 1 bit S, 1 bit O, 29 bits reserved (zero)
 *   48  16 bytes target address
 *   -- option, RFC 4861 §4.6.1 --
 *   64  1 byte   type 2 (Target Link-Layer Address)
 *   65  1 byte   length 1 (units of 8 bytes)
 *   66  6 bytes  link-layer address
 */
export function encodeNeighborAdvertisement(na: NeighborAdvertisement): Uint8Array {
  check(na);
  const icmp = new Uint8Array(ND_LENGTH + (na.targetMac ? 8 : 0));
  icmp[0] = ICMPV6_NEIGHBOR_ADVERTISEMENT;
  icmp[4] = (na.router ? 0x80 : 0) | (na.solicited ? 0x40 : 0) | (na.override ? 0x20 : 0);
  icmp.set(na.target, 8);
  if (na.targetMac) {
    icmp[24] = OPTION_TARGET_LINK_LAYER_ADDRESS;
    icmp[25] = 1;
    icmp.set(na.targetMac, 26);
  }
  return ipv6Packet(na.source, na.destination, na.hopLimit, icmp);
}

/**
 * Decodes an IPv6 packet holding an NA and applies the validity checks of
 * RFC 4861 §7.1.2 that the bytes alone allow: hop limit 255, code 0, length,
 * checksum, target not multicast, S=0 when sent to a multicast group, and
 * no zero-length option. Bytes after the IPv6 payload (Ethernet padding) are ignored.
 */
export function decodeNeighborAdvertisement(bytes: Uint8Array): NeighborAdvertisement | WireError {
  const fail = (problem: string) => new WireError(`decoding neighbor advertisement: ${problem}`);
  const nd = decodeNd(bytes, ICMPV6_NEIGHBOR_ADVERTISEMENT, fail);
  if (nd instanceof WireError) return nd;
  const { source, destination, hopLimit, icmp } = nd;
  const flags = icmp[4]!;
  const na = {
    source,
    destination,
    hopLimit,
    router: (flags & 0x80) !== 0,
    solicited: (flags & 0x40) !== 0,
    override: (flags & 0x20) !== 0,
    target: icmp.slice(8, 24),
  };
  if (na.target[0] === 0xff) return fail("target is a multicast address");
  if (destination[0] === 0xff && na.solicited) return fail("solicited flag set on an advertisement to a multicast group");
  const options = linkLayerOptions(icmp, fail);
  if (options instanceof WireError) return options;
  return { ...na, targetMac: options.get(OPTION_TARGET_LINK_LAYER_ADDRESS) ?? null };
}

// ---- Neighbor Solicitation, for Duplicate Address Detection. ----------------

export interface NeighborSolicitation {
  /** 16 bytes: :: (unspecified) for DAD. */
  readonly source: Uint8Array;
  /** 16 bytes: for DAD, the target's solicited-node multicast address. */
  readonly destination: Uint8Array;
  readonly hopLimit: number;
  /** 16 bytes: the address asked about. */
  readonly target: Uint8Array;
  /** 6 bytes: the Source Link-Layer Address option, if present (never with source ::). */
  readonly sourceMac: Uint8Array | null;
}

/**
 * The solicited-node multicast address of `ip`, RFC 4291 §2.7.1:
 * ff02::1:ff00:0/104 followed by the low 24 bits of the address. Every node
 * joins the group of each of its addresses, so a solicitation sent there
 * reaches whoever owns `ip`, and few others.
 */
export function solicitedNodeAddress(ip: Uint8Array): Uint8Array {
  checkLength("address", ip, 16);
  return Uint8Array.from([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, ip[13]!, ip[14]!, ip[15]!]);
}

/** An IPv6 multicast address mapped to Ethernet, RFC 2464 §7: 33:33 and its low 32 bits. */
export function multicastMac(group: Uint8Array): Uint8Array {
  checkLength("group", group, 16);
  if (group[0] !== 0xff) throw new RangeError("not an IPv6 multicast address");
  return Uint8Array.from([0x33, 0x33, group[12]!, group[13]!, group[14]!, group[15]!]);
}

/**
 * The Duplicate Address Detection probe for `ip`, RFC 4862 §5.4.2: source ::
 * so that no receiver creates or updates a cache entry for the prober, and
 * (RFC 4861 §7.2.2) therefore no Source Link-Layer Address option; to the
 * target's solicited-node group. An owner answers with an NA to all nodes
 * (RFC 4861 §7.2.4: it cannot answer ::), carrying its MAC in the Target
 * Link-Layer Address option. No nonce (RFC 7527): it only helps a prober
 * recognise its own solicitation looped back by the network, and vipd tells
 * its own frames apart by their packet type.
 */
export function dadSolicitation(ip: Uint8Array): NeighborSolicitation {
  return { source: UNSPECIFIED, destination: solicitedNodeAddress(ip), hopLimit: ND_HOP_LIMIT, target: ip, sourceMac: null };
}

/**
 * IPv6 header (as for the NA above) then ICMPv6 NS (RFC 4861 §4.3):
 *
 *   -- ICMPv6 --
 *   40  1 byte   type 135
 *   41  1 byte   code 0
 *   42  2 bytes  checksum, RFC 4443 §2.3 over the pseudo-header, RFC 8200 §8.1
 *   44  4 bytes  reserved (zero)
 *   48  16 bytes target address
 *   -- option, RFC 4861 §4.6.1, only with a source address --
 *   64  1 byte   type 1 (Source Link-Layer Address)
 *   65  1 byte   length 1 (units of 8 bytes)
 *   66  6 bytes  link-layer address
 */
export function encodeNeighborSolicitation(ns: NeighborSolicitation): Uint8Array {
  checkNs(ns);
  const icmp = new Uint8Array(ND_LENGTH + (ns.sourceMac ? 8 : 0));
  icmp[0] = ICMPV6_NEIGHBOR_SOLICITATION;
  icmp.set(ns.target, 8);
  if (ns.sourceMac) {
    icmp[24] = OPTION_SOURCE_LINK_LAYER_ADDRESS;
    icmp[25] = 1;
    icmp.set(ns.sourceMac, 26);
  }
  return ipv6Packet(ns.source, ns.destination, ns.hopLimit, icmp);
}

/**
 * Decodes an IPv6 packet holding an NS and applies the validity checks of
 * RFC 4861 §7.1.1 that the bytes alone allow: hop limit 255, code 0, length,
 * checksum, target not multicast, no zero-length option, and from :: only to
 * a solicited-node group and without a Source Link-Layer Address option.
 */
export function decodeNeighborSolicitation(bytes: Uint8Array): NeighborSolicitation | WireError {
  const fail = (problem: string) => new WireError(`decoding neighbor solicitation: ${problem}`);
  const nd = decodeNd(bytes, ICMPV6_NEIGHBOR_SOLICITATION, fail);
  if (nd instanceof WireError) return nd;
  const { source, destination, hopLimit, icmp } = nd;
  const target = icmp.slice(8, 24);
  if (target[0] === 0xff) return fail("target is a multicast address");
  const options = linkLayerOptions(icmp, fail);
  if (options instanceof WireError) return options;
  if (source.every((b) => b === 0)) {
    if (!sameBytes(destination, solicitedNodeAddress(target))) return fail("from the unspecified address, but not to the target's solicited-node group");
    if (options.has(OPTION_SOURCE_LINK_LAYER_ADDRESS)) return fail("from the unspecified address, yet with a source link-layer address");
  }
  return { source, destination, hopLimit, target, sourceMac: options.get(OPTION_SOURCE_LINK_LAYER_ADDRESS) ?? null };
}

// ---- Shared. -----------------------------------------------------------------

/** IPv6 header (RFC 8200 §3) around an ICMPv6 message whose checksum field is zero; fills the checksum in. */
function ipv6Packet(source: Uint8Array, destination: Uint8Array, hopLimit: number, icmp: Uint8Array): Uint8Array {
  const out = new Uint8Array(IPV6_HEADER_LENGTH + icmp.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, 6 << 28);
  v.setUint16(4, icmp.length);
  v.setUint8(6, NEXT_HEADER_ICMPV6);
  v.setUint8(7, hopLimit);
  out.set(source, 8);
  out.set(destination, 24);
  out.set(icmp, IPV6_HEADER_LENGTH);
  v.setUint16(42, icmpv6Checksum(source, destination, icmp));
  return out;
}

/**
 * The checks both ND messages share: an IPv6 header with ICMPv6 next, hop
 * limit 255, the expected type, code 0, at least 24 bytes, a valid checksum.
 */
function decodeNd(
  bytes: Uint8Array,
  type: number,
  fail: (problem: string) => WireError,
): { source: Uint8Array; destination: Uint8Array; hopLimit: number; icmp: Uint8Array } | WireError {
  if (bytes.length < IPV6_HEADER_LENGTH) return fail(`${bytes.length} bytes, need an IPv6 header of ${IPV6_HEADER_LENGTH}`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = v.getUint8(0) >> 4;
  if (version !== 6) return fail(`IP version ${version}, not 6`);
  const payloadLength = v.getUint16(4);
  if (IPV6_HEADER_LENGTH + payloadLength > bytes.length) {
    return fail(`payload length ${payloadLength} exceeds the ${bytes.length - IPV6_HEADER_LENGTH} bytes present`);
  }
  // Extension headers are not followed: ND messages carry none in practice, and
  // §7.1.1 and §7.1.2 do not require accepting them.
  const nextHeader = v.getUint8(6);
  if (nextHeader !== NEXT_HEADER_ICMPV6) return fail(`next header ${nextHeader}, not ICMPv6 (58)`);
  const hopLimit = v.getUint8(7);
  if (hopLimit !== ND_HOP_LIMIT) return fail(`hop limit ${hopLimit}, not 255`);
  const source = bytes.slice(8, 24);
  const destination = bytes.slice(24, 40);
  const icmp = bytes.subarray(IPV6_HEADER_LENGTH, IPV6_HEADER_LENGTH + payloadLength);
  if (icmp.length < ND_LENGTH) return fail(`ICMPv6 length ${icmp.length}, need at least ${ND_LENGTH}`);
  if (icmp[0] !== type) return fail(`ICMPv6 type ${icmp[0]}, not ${type}`);
  if (icmp[1] !== 0) return fail(`ICMPv6 code ${icmp[1]}, not 0`);
  if (icmpv6Checksum(source, destination, icmp) !== 0) {
    const got = (icmp[2]! << 8) | icmp[3]!;
    return fail(`bad checksum 0x${got.toString(16).padStart(4, "0")}`);
  }
  return { source, destination, hopLimit, icmp };
}

/**
 * The Ethernet link-layer address options (RFC 4861 §4.6.1: 8 bytes long) of
 * an ND message, first of each type. Every option is walked, so one of
 * length 0 is refused wherever it is; others are skipped, as §4.6 requires.
 */
function linkLayerOptions(icmp: Uint8Array, fail: (problem: string) => WireError): Map<number, Uint8Array> | WireError {
  const found = new Map<number, Uint8Array>();
  for (let off = ND_LENGTH; off < icmp.length; ) {
    if (off + 2 > icmp.length) return fail(`truncated option at byte ${off}`);
    const optType = icmp[off]!;
    const optLength = icmp[off + 1]! * 8;
    if (optLength === 0) return fail(`option ${optType} at byte ${off} has length 0`);
    if (off + optLength > icmp.length) return fail(`option ${optType} at byte ${off} runs past the message`);
    const linkLayer = optType === OPTION_SOURCE_LINK_LAYER_ADDRESS || optType === OPTION_TARGET_LINK_LAYER_ADDRESS;
    if (linkLayer && optLength === 8 && !found.has(optType)) found.set(optType, icmp.slice(off + 2, off + 8));
    off += optLength;
  }
  return found;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * ICMPv6 checksum (RFC 4443 §2.3): the 16-bit one's complement of the one's
 * complement sum over the pseudo-header of RFC 8200 §8.1 and the message.
 *
 *   pseudo-header: source (16), destination (16), upper-layer length (4),
 *                  zero (3), next header 58 (1)
 *
 * Computed over a message whose checksum field holds zero, it yields the value
 * to store; over a message with its checksum in place, it yields 0 when valid.
 */
export function icmpv6Checksum(source: Uint8Array, destination: Uint8Array, message: Uint8Array): number {
  let sum = 0;
  const add = (b: Uint8Array) => {
    for (let i = 0; i < b.length; i += 2) sum += (b[i]! << 8) | (b[i + 1] ?? 0);
  };
  add(source);
  add(destination);
  sum += (message.length >>> 16) + (message.length & 0xffff);
  sum += NEXT_HEADER_ICMPV6;
  add(message);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function check(na: NeighborAdvertisement): void {
  checkLength("NA source", na.source, 16);
  checkLength("NA destination", na.destination, 16);
  checkLength("NA target", na.target, 16);
  if (na.targetMac) checkLength("NA target MAC", na.targetMac, 6);
  checkHopLimit(na.hopLimit);
}

function checkNs(ns: NeighborSolicitation): void {
  checkLength("NS source", ns.source, 16);
  checkLength("NS destination", ns.destination, 16);
  checkLength("NS target", ns.target, 16);
  if (ns.sourceMac) checkLength("NS source MAC", ns.sourceMac, 6);
  checkHopLimit(ns.hopLimit);
}

function checkLength(name: string, b: Uint8Array, n: number): void {
  if (b.length !== n) throw new RangeError(`${name} has ${b.length} bytes, not ${n}`);
}

function checkHopLimit(hopLimit: number): void {
  if (!Number.isInteger(hopLimit) || hopLimit < 0 || hopLimit > 255) throw new RangeError(`hop limit ${hopLimit} out of 0..255`);
}
