// ARP for Ethernet and IPv4 (RFC 826), and the three forms vipd sends: the
// gratuitous request and reply that move neighbours' caches to a new owner of
// a VIP, and the probe that asks whether anyone already owns it. Pure.
import { WireError } from "./error.ts";

const refused = (problem: string) => new WireError(`decoding ARP packet: ${problem}`);

export const Operation = Object.freeze({ REQUEST: 1, REPLY: 2 });

export const PACKET_LENGTH = 28;

const HTYPE_ETHERNET = 1;
const PTYPE_IPV4 = 0x0800;
const ZERO_MAC = new Uint8Array(6);
const ZERO_IP = new Uint8Array(4);

export interface ArpPacket {
  readonly operation: number;
  /** 6 bytes. */
  readonly senderMac: Uint8Array;
  /** 4 bytes. */
  readonly senderIp: Uint8Array;
  /** 6 bytes. */
  readonly targetMac: Uint8Array;
  /** 4 bytes. */
  readonly targetIp: Uint8Array;
}

/**
 * RFC 826 packet, Ethernet/IPv4 only:
 *
 *   0   2 bytes  ar$hrd  hardware type, 1 = Ethernet
 *   2   2 bytes  ar$pro  protocol type, 0x0800 = IPv4
 *   4   1 byte   ar$hln  hardware address length, 6
 *   5   1 byte   ar$pln  protocol address length, 4
 *   6   2 bytes  ar$op   1 = request, 2 = reply
 *   8   6 bytes  ar$sha  sender hardware address
 *   14  4 bytes  ar$spa  sender protocol address
 *   18  6 bytes  ar$tha  target hardware address
 *   24  4 bytes  ar$tpa  target protocol address
 */
export function encodeArp(p: ArpPacket): Uint8Array {
  check(p);
  const out = new Uint8Array(PACKET_LENGTH);
  const v = new DataView(out.buffer);
  v.setUint16(0, HTYPE_ETHERNET);
  v.setUint16(2, PTYPE_IPV4);
  v.setUint8(4, 6);
  v.setUint8(5, 4);
  v.setUint16(6, p.operation);
  out.set(p.senderMac, 8);
  out.set(p.senderIp, 14);
  out.set(p.targetMac, 18);
  out.set(p.targetIp, 24);
  return out;
}

/** Decodes an ARP packet; trailing bytes (Ethernet padding) are ignored. */
export function decodeArp(bytes: Uint8Array): ArpPacket | WireError {
  if (bytes.length < PACKET_LENGTH) return refused(`${bytes.length} bytes, need ${PACKET_LENGTH}`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const htype = v.getUint16(0);
  const ptype = v.getUint16(2);
  if (htype !== HTYPE_ETHERNET) return refused(`hardware type ${htype}, not Ethernet (1)`);
  if (ptype !== PTYPE_IPV4) return refused(`protocol type 0x${ptype.toString(16)}, not IPv4 (0x0800)`);
  if (v.getUint8(4) !== 6 || v.getUint8(5) !== 4) {
    return refused(`address lengths ${v.getUint8(4)}/${v.getUint8(5)}, not 6/4`);
  }
  const operation = v.getUint16(6);
  if (operation !== Operation.REQUEST && operation !== Operation.REPLY) {
    return refused(`operation ${operation}, not request (1) or reply (2)`);
  }
  return {
    operation,
    senderMac: bytes.slice(8, 14),
    senderIp: bytes.slice(14, 18),
    targetMac: bytes.slice(18, 24),
    targetIp: bytes.slice(24, 28),
  };
}

/**
 * ARP Announcement, RFC 5227 §3 (the "gratuitous ARP request"): sender and
 * target protocol address are both the announced IP; the target hardware
 * address is ignored by receivers and SHOULD be zero. Linux updates an
 * existing neighbour entry from it even with arp_accept=0.
 */
export function gratuitousRequest(mac: Uint8Array, ip: Uint8Array): ArpPacket {
  return { operation: Operation.REQUEST, senderMac: mac, senderIp: ip, targetMac: ZERO_MAC, targetIp: ip };
}

/**
 * Gratuitous ARP reply, RFC 5944 §4.6: as the request, but with the target
 * hardware address also set to the new owner's MAC. Sent besides the request
 * because some stacks (older Windows, some routers) only act on one of the two
 * forms; RFC 5227 §3 explains why requests are preferred but both are in use.
 */
export function gratuitousReply(mac: Uint8Array, ip: Uint8Array): ArpPacket {
  return { operation: Operation.REPLY, senderMac: mac, senderIp: ip, targetMac: mac, targetIp: ip };
}

/**
 * ARP Probe, RFC 5227 §2.1.1: a request with sender IP 0.0.0.0 so that no
 * receiver adds or updates a cache entry for the prober, and target hardware
 * address zero. An owner of `ip` answers with a reply (Linux: unicast to us).
 */
export function probe(mac: Uint8Array, ip: Uint8Array): ArpPacket {
  return { operation: Operation.REQUEST, senderMac: mac, senderIp: ZERO_IP, targetMac: ZERO_MAC, targetIp: ip };
}

function check(p: ArpPacket): void {
  if (p.operation !== Operation.REQUEST && p.operation !== Operation.REPLY) {
    throw new RangeError(`ARP operation ${p.operation} is neither request (1) nor reply (2)`);
  }
  for (const [name, b, n] of [
    ["sender MAC", p.senderMac, 6],
    ["sender IP", p.senderIp, 4],
    ["target MAC", p.targetMac, 6],
    ["target IP", p.targetIp, 4],
  ] as const) {
    if (b.length !== n) throw new RangeError(`ARP ${name} has ${b.length} bytes, not ${n}`);
  }
}
