// Ethernet II framing and the link-layer socket address (struct sockaddr_ll)
// that AF_PACKET sockets bind to. Pure: values to bytes and back, no syscalls.
import { WireError } from "./error.ts";

/** EtherType values used by vipd (IEEE 802 numbers, network order on the wire). */
export const EtherType = Object.freeze({
  IPv4: 0x0800,
  ARP: 0x0806,
  IPv6: 0x86dd,
});

export const HEADER_LENGTH = 14;

/**
 * IEEE 802.3 minimum frame is 64 bytes including the 4-byte FCS the NIC appends,
 * so 60 bytes as handed to the driver. Many drivers pad short frames themselves,
 * but veth and some virtual NICs forward them as they are, and a few switches
 * drop runts: padding here makes every frame valid on every link.
 */
export const MIN_FRAME_LENGTH = 60;

// Typed arrays with elements cannot be frozen: treat these constants as read-only.
export const BROADCAST: Uint8Array = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

export interface EthernetFrame {
  /** 6 bytes. */
  readonly destination: Uint8Array;
  /** 6 bytes. */
  readonly source: Uint8Array;
  readonly etherType: number;
  readonly payload: Uint8Array;
}

const refused = (what: string, problem: string) => new WireError(`decoding ${what}: ${problem}`);

/**
 * Ethernet II header (IEEE 802.3 §3.1.1, "DIX" form with a type field):
 *
 *   0      6 bytes  destination MAC
 *   6      6 bytes  source MAC
 *   12     2 bytes  EtherType, big-endian
 *   14     …        payload, zero-padded to MIN_FRAME_LENGTH
 */
export function encodeEthernet(frame: EthernetFrame): Uint8Array {
  checkMac("destination", frame.destination);
  checkMac("source", frame.source);
  const out = new Uint8Array(Math.max(MIN_FRAME_LENGTH, HEADER_LENGTH + frame.payload.length));
  out.set(frame.destination, 0);
  out.set(frame.source, 6);
  new DataView(out.buffer).setUint16(12, frame.etherType);
  out.set(frame.payload, HEADER_LENGTH);
  return out;
}

/**
 * Decodes an Ethernet II frame. The payload keeps any trailing padding: the
 * header carries no length, so only the upper protocol knows where it ends.
 * 802.1Q tags are not expected: the kernel strips them before AF_PACKET sees
 * the frame when the VLAN is a link of its own.
 */
export function decodeEthernet(bytes: Uint8Array): EthernetFrame | WireError {
  if (bytes.length < HEADER_LENGTH) return refused("Ethernet frame", `${bytes.length} bytes, need at least ${HEADER_LENGTH}`);
  const etherType = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint16(12);
  // Values up to 1500 are an 802.3 length, not a type: not a frame vipd speaks.
  if (etherType < 0x0600) return refused("Ethernet frame", `length field 0x${hex16(etherType)} instead of an EtherType`);
  return {
    destination: bytes.slice(0, 6),
    source: bytes.slice(6, 12),
    etherType,
    payload: bytes.slice(HEADER_LENGTH),
  };
}

/** Linux packet types (sll_pkttype, <linux/if_packet.h>). */
export const PacketType = Object.freeze({
  HOST: 0,
  BROADCAST: 1,
  MULTICAST: 2,
  OTHERHOST: 3,
  /** A copy of a frame this host sent, looped back to packet sockets. */
  OUTGOING: 4,
});

export interface LinkLayerAddress {
  /** EtherType the socket receives (0: none). */
  readonly protocol: number;
  readonly ifindex: number;
  readonly packetType?: number;
  /** Up to 8 bytes; 6 for Ethernet. Empty when binding. */
  readonly address?: Uint8Array;
}

export const SOCKADDR_LL_LENGTH = 20;
const AF_PACKET = 17;
const ARPHRD_ETHER = 1;

/**
 * struct sockaddr_ll (<linux/if_packet.h>, packet(7)). Family, ifindex and
 * hatype are in host byte order and the protocol in network order, so the
 * same struct mixes both; vipd runs on little-endian hosts only (x86_64, arm64).
 *
 *   0   2 bytes  sll_family    AF_PACKET            host order
 *   2   2 bytes  sll_protocol  EtherType            network order
 *   4   4 bytes  sll_ifindex                        host order
 *   8   2 bytes  sll_hatype    ARPHRD_ETHER         host order
 *   10  1 byte   sll_pkttype   PACKET_*
 *   11  1 byte   sll_halen     address length
 *   12  8 bytes  sll_addr      hardware address, zero-padded
 */
export function encodeSockaddrLl(a: LinkLayerAddress): Uint8Array {
  const out = new Uint8Array(SOCKADDR_LL_LENGTH);
  const v = new DataView(out.buffer);
  const addr = a.address ?? new Uint8Array(0);
  if (addr.length > 8) throw new RangeError(`sockaddr_ll holds at most 8 address bytes, not ${addr.length}`);
  v.setUint16(0, AF_PACKET, true);
  v.setUint16(2, a.protocol);
  v.setInt32(4, a.ifindex, true);
  v.setUint16(8, ARPHRD_ETHER, true);
  v.setUint8(10, a.packetType ?? 0);
  v.setUint8(11, addr.length);
  out.set(addr, 12);
  return out;
}

export function decodeSockaddrLl(bytes: Uint8Array): LinkLayerAddress | WireError {
  if (bytes.length < SOCKADDR_LL_LENGTH) return refused("sockaddr_ll", `${bytes.length} bytes, need ${SOCKADDR_LL_LENGTH}`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (v.getUint16(0, true) !== AF_PACKET) return refused("sockaddr_ll", `family ${v.getUint16(0, true)}, not AF_PACKET`);
  const halen = Math.min(v.getUint8(11), 8);
  return {
    protocol: v.getUint16(2),
    ifindex: v.getInt32(4, true),
    packetType: v.getUint8(10),
    address: bytes.slice(12, 12 + halen),
  };
}

export function checkMac(field: string, mac: Uint8Array): void {
  if (mac.length !== 6) throw new RangeError(`${field} MAC has ${mac.length} bytes, not 6`);
}

function hex16(n: number): string {
  return n.toString(16).padStart(4, "0");
}
