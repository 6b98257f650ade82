// IPv6 Neighbor Advertisements (RFC 4861 §4.4) inside their IPv6 header
// (RFC 8200 §3), as vipd sends them to move neighbours' caches to a new owner
// of an IPv6 VIP. Pure: values to bytes and back, checksum included.
import { WireError } from "./ethernet.ts";

export const IPV6_HEADER_LENGTH = 40;
export const NEXT_HEADER_ICMPV6 = 58;
export const ICMPV6_NEIGHBOR_ADVERTISEMENT = 136;
/** RFC 4861 §7.1.2: receivers drop ND messages whose hop limit is not 255, proving they were not routed. */
export const ND_HOP_LIMIT = 255;
const NA_LENGTH = 24;
const OPTION_TARGET_LINK_LAYER_ADDRESS = 2;

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
  const icmpLength = NA_LENGTH + (na.targetMac ? 8 : 0);
  const out = new Uint8Array(IPV6_HEADER_LENGTH + icmpLength);
  const v = new DataView(out.buffer);
  v.setUint32(0, 6 << 28);
  v.setUint16(4, icmpLength);
  v.setUint8(6, NEXT_HEADER_ICMPV6);
  v.setUint8(7, na.hopLimit);
  out.set(na.source, 8);
  out.set(na.destination, 24);
  v.setUint8(40, ICMPV6_NEIGHBOR_ADVERTISEMENT);
  v.setUint8(41, 0);
  v.setUint8(44, (na.router ? 0x80 : 0) | (na.solicited ? 0x40 : 0) | (na.override ? 0x20 : 0));
  out.set(na.target, 48);
  if (na.targetMac) {
    v.setUint8(64, OPTION_TARGET_LINK_LAYER_ADDRESS);
    v.setUint8(65, 1);
    out.set(na.targetMac, 66);
  }
  v.setUint16(42, icmpv6Checksum(na.source, na.destination, out.subarray(IPV6_HEADER_LENGTH)));
  return out;
}

/**
 * Decodes an IPv6 packet holding an NA and applies the validity checks of
 * RFC 4861 §7.1.2 that the bytes alone allow: hop limit 255, code 0, length,
 * checksum, target not multicast, S=0 when sent to a multicast group, and
 * no zero-length option. Bytes after the IPv6 payload (Ethernet padding) are ignored.
 */
export function decodeNeighborAdvertisement(bytes: Uint8Array): NeighborAdvertisement {
  const fail = (problem: string) => new WireError("neighbor advertisement", problem);
  if (bytes.length < IPV6_HEADER_LENGTH) throw fail(`${bytes.length} bytes, need an IPv6 header of ${IPV6_HEADER_LENGTH}`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = v.getUint8(0) >> 4;
  if (version !== 6) throw fail(`IP version ${version}, not 6`);
  const payloadLength = v.getUint16(4);
  if (IPV6_HEADER_LENGTH + payloadLength > bytes.length) {
    throw fail(`payload length ${payloadLength} exceeds the ${bytes.length - IPV6_HEADER_LENGTH} bytes present`);
  }
  // Extension headers are not followed: ND messages carry none in practice, and
  // §7.1.2 does not require accepting them.
  const nextHeader = v.getUint8(6);
  if (nextHeader !== NEXT_HEADER_ICMPV6) throw fail(`next header ${nextHeader}, not ICMPv6 (58)`);
  const hopLimit = v.getUint8(7);
  if (hopLimit !== ND_HOP_LIMIT) throw fail(`hop limit ${hopLimit}, not 255`);
  const source = bytes.slice(8, 24);
  const destination = bytes.slice(24, 40);
  const icmp = bytes.subarray(IPV6_HEADER_LENGTH, IPV6_HEADER_LENGTH + payloadLength);
  if (icmp.length < NA_LENGTH) throw fail(`ICMPv6 length ${icmp.length}, need at least ${NA_LENGTH}`);
  const type = icmp[0]!;
  if (type !== ICMPV6_NEIGHBOR_ADVERTISEMENT) throw fail(`ICMPv6 type ${type}, not 136`);
  if (icmp[1] !== 0) throw fail(`ICMPv6 code ${icmp[1]}, not 0`);
  const sum = icmpv6Checksum(source, destination, icmp);
  if (sum !== 0) {
    const got = (icmp[2]! << 8) | icmp[3]!;
    throw fail(`bad checksum 0x${got.toString(16).padStart(4, "0")}`);
  }
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
  if (na.target[0] === 0xff) throw fail("target is a multicast address");
  if (destination[0] === 0xff && na.solicited) throw fail("solicited flag set on an advertisement to a multicast group");
  let targetMac: Uint8Array | null = null;
  for (let off = NA_LENGTH; off < icmp.length; ) {
    if (off + 2 > icmp.length) throw fail(`truncated option at byte ${off}`);
    const optType = icmp[off]!;
    const optLength = icmp[off + 1]! * 8;
    if (optLength === 0) throw fail(`option ${optType} at byte ${off} has length 0`);
    if (off + optLength > icmp.length) throw fail(`option ${optType} at byte ${off} runs past the message`);
    // Unknown options are skipped, as §4.6 requires.
    if (optType === OPTION_TARGET_LINK_LAYER_ADDRESS && optLength === 8) targetMac = icmp.slice(off + 2, off + 8);
    off += optLength;
  }
  return { ...na, targetMac };
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
  for (const [name, b, n] of [
    ["source", na.source, 16],
    ["destination", na.destination, 16],
    ["target", na.target, 16],
  ] as const) {
    if (b.length !== n) throw new RangeError(`NA ${name} has ${b.length} bytes, not ${n}`);
  }
  if (na.targetMac && na.targetMac.length !== 6) throw new RangeError(`NA target MAC has ${na.targetMac.length} bytes, not 6`);
  if (!Number.isInteger(na.hopLimit) || na.hopLimit < 0 || na.hopLimit > 255) throw new RangeError(`hop limit ${na.hopLimit} out of 0..255`);
}
