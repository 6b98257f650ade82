// The wire decoders under fuzz (fuzz.test.ts): each with its contract, a
// source of valid encodings to mutate, and the round loop that checks it.
// The loop runs in a Worker, started by the test: a decoder stuck in a loop
// cannot be interrupted on its own thread, but a worker can be terminated,
// and the round it was on is in shared memory for the report.
// One file over the usual length: it is a table, one entry per decoder (14),
// each a few lines of contract and generator, read side by side.
import { ipFromBytes, parseIp } from "../ip.ts";
import { type ArpPacket, decodeArp, encodeArp, gratuitousReply, gratuitousRequest, probe } from "./arp.ts";
import { type Address, decodeAddress, deleteAddressRequest, IFA_LABEL, newAddressRequest, RTM_NEWADDR } from "./address.ts";
import {
  decodeEthernet,
  decodeSockaddrLl,
  encodeEthernet,
  encodeSockaddrLl,
  type EthernetFrame,
  EtherType,
  type LinkLayerAddress,
} from "./ethernet.ts";
import { WireError } from "./error.ts";
import { decodeLink, encodeIfinfomsg, IFLA_ADDRESS, IFLA_IFNAME, IFLA_INFO_KIND, IFLA_LINKINFO, IFLA_MTU, IFLA_OPERSTATE, type Link, RTM_NEWLINK } from "./link.ts";
import {
  dadSolicitation,
  type NeighborAdvertisement,
  type NeighborSolicitation,
  decodeNeighborAdvertisement,
  decodeNeighborSolicitation,
  encodeNeighborAdvertisement,
  encodeNeighborSolicitation,
  icmpv6Checksum,
  solicitedNodeAddress,
  unsolicitedAdvertisement,
} from "./ndp.ts";
import {
  type Attr,
  attrString,
  attrU32,
  decodeError,
  decodeSockaddrNl,
  encodeAttrs,
  encodeMessage,
  encodeSockaddrNl,
  HOST_LE,
  NLA_F_NESTED,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLM_F_MULTI,
  NLMSG_ERROR,
  NLMSGERR_ATTR_MSG,
  NLMSGERR_ATTR_OFFS,
  parseAttrs,
  parseMessages,
  readString,
  readU32,
} from "./netlink.ts";
import { decodeSetElements, deleteSetElements, getSetElements, newSetElements, NFPROTO_INET, type SetElements, type TableRef } from "./nftables.ts";
import { prng, int, pick, bytes, type Rand } from "../../seeded.ts";

const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, at), (at += p.length);
  return out;
};

/**
 * How a decoder refuses bytes it cannot read (wire/error.ts): it returns a
 * WireError and never throws. Anything thrown (a RangeError from a DataView
 * read past the end, a TypeError from an undefined) is an accident.
 */
export type Contract = "returns WireError" | "never fails";

export interface Decoder {
  readonly name: string;
  readonly contract: Contract;
  readonly decode: (b: Uint8Array) => unknown;
  /** A valid encoding, different each call, for the mutations to start from. */
  readonly valid: (rand: Rand) => Uint8Array;
  /** Puts a checksum right again after a mutation, so the checks behind it see the damage too. */
  readonly repair?: (b: Uint8Array) => void;
  /** What a decoded value must look like, whatever the bytes: a short read that throws nothing is an accident too. */
  readonly wellFormed?: (value: never) => boolean;
}

// ---- Valid encodings. ---------------------------------------------------------

const ip4 = (rand: Rand) => ipFromBytes(Uint8Array.of(10 + int(rand, 200), int(rand, 256), int(rand, 256), 1 + int(rand, 254)));
const ip6 = (rand: Rand) => ipFromBytes(concat(Uint8Array.of(0x20, 0x01), bytes(rand, 14)));
const ip = (rand: Rand) => (rand() < 0.5 ? ip4(rand) : ip6(rand));
const mac = (rand: Rand) => concat(Uint8Array.of(0x02), bytes(rand, 5));
const name = (rand: Rand) => pick(rand, ["eth0", "enp0s31f6", "br0.100", "vipd", "proven4", "a", "x".repeat(15)]);

function randomAttrs(rand: Rand, depth = 0): Attr[] {
  return Array.from({ length: int(rand, 5) }, () => {
    const type = int(rand, 40);
    if (depth < 3 && rand() < 0.25) return { type: type | NLA_F_NESTED, data: encodeAttrs(randomAttrs(rand, depth + 1)) };
    return pick(rand, [attrU32(type, int(rand, 2 ** 32)), attrString(type, name(rand)), { type, data: bytes(rand, int(rand, 24)) }]);
  });
}

function addressPayload(rand: Rand): Uint8Array {
  const at = { ip: ip(rand), index: 1 + int(rand, 1000) };
  const req = rand() < 0.8 ? newAddressRequest(at, int(rand, 3600), rand() < 0.5) : deleteAddressRequest(at);
  // A label, as replies for IPv4 carry.
  return rand() < 0.3 ? concat(req.payload, encodeAttrs([attrString(IFA_LABEL, name(rand))])) : req.payload;
}

function linkPayload(rand: Rand): Uint8Array {
  const hdr = encodeIfinfomsg(1 + int(rand, 1000));
  new DataView(hdr.buffer).setUint32(8, int(rand, 2 ** 32), HOST_LE); // ifi_flags
  const attrs: Attr[] = [attrString(IFLA_IFNAME, name(rand)), attrU32(IFLA_MTU, 68 + int(rand, 9000)), { type: IFLA_ADDRESS, data: mac(rand) }];
  attrs.push({ type: IFLA_OPERSTATE, data: Uint8Array.of(int(rand, 8)) });
  if (rand() < 0.5) attrs.push({ type: IFLA_LINKINFO | NLA_F_NESTED, data: encodeAttrs([attrString(IFLA_INFO_KIND, pick(rand, ["veth", "macvlan", "bridge"]))]) });
  for (let i = attrs.length - 1; i > 0; i--) {
    const j = int(rand, i + 1);
    [attrs[i], attrs[j]] = [attrs[j]!, attrs[i]!];
  }
  return concat(hdr, encodeAttrs(attrs));
}

/** vipd's inet table: the family byte is the only thing the table adds. */
const VIPD: TableRef = { family: NFPROTO_INET, name: "vipd" };

function setElementsRequest(rand: Rand) {
  const keys = Array.from({ length: int(rand, 5) }, () => ip(rand).bytes);
  const r = rand();
  if (r < 0.6) return newSetElements(VIPD, name(rand), keys.map((key) => ({ key, timeoutMs: int(rand, 2 ** 40), expirationMs: int(rand, 2 ** 30) })), rand() < 0.3 ? int(rand, 100) : undefined);
  if (r < 0.9) return deleteSetElements(VIPD, name(rand), keys);
  return getSetElements(VIPD, name(rand));
}

/** NLMSG_ERROR's payload as the kernel sends it: errno, the request echoed (or its header only), extended ACK attributes. */
function errorPayload(rand: Rand): { flags: number; payload: Uint8Array } {
  const request = encodeMessage({ ...setElementsRequest(rand), seq: int(rand, 2 ** 32), pid: int(rand, 2 ** 32) });
  const capped = rand() < 0.5;
  const tlvs = rand() < 0.6;
  const errno = new Uint8Array(4);
  new DataView(errno.buffer).setInt32(0, -int(rand, 134), HOST_LE);
  const ack = tlvs ? encodeAttrs([attrString(NLMSGERR_ATTR_MSG, pick(rand, ["Exceeds maximum", "No such file or directory", ""])), attrU32(NLMSGERR_ATTR_OFFS, int(rand, 64))]) : new Uint8Array();
  return { flags: (capped ? NLM_F_CAPPED : 0) | (tlvs ? NLM_F_ACK_TLVS : 0), payload: concat(errno, capped ? request.subarray(0, 16) : request, ack) };
}

/** decodeError reads a message, not bytes: its flags travel in the first two bytes of the input. */
function errorInput(rand: Rand): Uint8Array {
  const { flags, payload } = errorPayload(rand);
  const head = new Uint8Array(2);
  new DataView(head.buffer).setUint16(0, flags, HOST_LE);
  return concat(head, payload);
}
function decodeErrorInput(b: Uint8Array): unknown {
  if (b.length < 2) return null;
  const flags = new DataView(b.buffer, b.byteOffset, b.byteLength).getUint16(0, HOST_LE);
  return decodeError({ type: NLMSG_ERROR, flags, seq: 1, pid: 0, payload: b.subarray(2) });
}

/** One datagram of a dump: several messages back to back, the last perhaps without its padding. */
function datagram(rand: Rand): Uint8Array {
  const messages = Array.from({ length: 1 + int(rand, 3) }, () => {
    const r = rand();
    const body = r < 0.3 ? { type: RTM_NEWADDR, flags: NLM_F_MULTI, payload: addressPayload(rand) } : r < 0.6 ? { type: RTM_NEWLINK, flags: NLM_F_MULTI, payload: linkPayload(rand) } : r < 0.8 ? setElementsRequest(rand) : { type: NLMSG_ERROR, ...errorPayload(rand) };
    return encodeMessage({ ...body, seq: int(rand, 2 ** 32), pid: 0 });
  });
  const out = concat(...messages);
  const len = new DataView(messages.at(-1)!.buffer).getUint32(0, HOST_LE);
  return rand() < 0.3 ? out.subarray(0, out.length - messages.at(-1)!.length + len) : out;
}

const arpPacket = (rand: Rand) => encodeArp(pick(rand, [gratuitousRequest, gratuitousReply, probe])(mac(rand), ip4(rand).bytes));
const ndPacket = (rand: Rand) => {
  const target = ip6(rand).bytes;
  if (rand() < 0.5) return encodeNeighborAdvertisement(unsolicitedAdvertisement(mac(rand), target));
  if (rand() < 0.5) return encodeNeighborSolicitation(dadSolicitation(target));
  return encodeNeighborSolicitation({ source: ip6(rand).bytes, destination: solicitedNodeAddress(target), hopLimit: 255, target, sourceMac: mac(rand) });
};

/** Makes the ICMPv6 checksum of an IPv6 packet right again, as far as the bytes allow. */
function repairNd(x: Uint8Array): void {
  if (x.length < 44) return;
  const icmp = x.slice(40, 40 + Math.min(x.length - 40, (x[4]! << 8) | x[5]!));
  if (icmp.length < 4) return;
  icmp.set([0, 0], 2);
  const sum = icmpv6Checksum(x.slice(8, 24), x.slice(24, 40), icmp);
  x.set([sum >> 8, sum & 0xff], 42);
}

// ---- The decoders. ------------------------------------------------------------

const sized = (b: unknown, n: number) => b instanceof Uint8Array && b.length === n;
const u32 = (n: unknown) => typeof n === "number" && Number.isInteger(n) && n >= 0 && n <= 0xffffffff;

export const DECODERS: readonly Decoder[] = [
  { name: "netlink parseMessages", contract: "returns WireError", decode: parseMessages, valid: datagram },
  { name: "netlink parseAttrs", contract: "returns WireError", decode: parseAttrs, valid: (rand) => encodeAttrs(randomAttrs(rand)) },
  { name: "netlink readU32", contract: "returns WireError", decode: (b) => readU32(b, "fuzz"), valid: (rand) => bytes(rand, 4) },
  { name: "netlink readString", contract: "never fails", decode: readString, valid: (rand) => attrString(1, name(rand)).data },
  { name: "netlink decodeError", contract: "returns WireError", decode: decodeErrorInput, valid: errorInput },
  { name: "netlink decodeSockaddrNl", contract: "returns WireError", decode: decodeSockaddrNl, valid: (rand) => encodeSockaddrNl(int(rand, 2 ** 32), int(rand, 2 ** 32)) },
  {
    name: "address decodeAddress",
    contract: "returns WireError",
    decode: decodeAddress,
    valid: addressPayload,
    wellFormed: (a: Address) => parseIp(a.address)?.family === a.family && u32(a.linkIndex) && u32(a.flags),
  },
  { name: "link decodeLink", contract: "returns WireError", decode: decodeLink, valid: linkPayload, wellFormed: (l: Link) => typeof l.name === "string" && u32(l.mtu) },
  {
    name: "nftables decodeSetElements",
    contract: "returns WireError",
    decode: decodeSetElements,
    valid: (rand) => setElementsRequest(rand).payload,
    wellFormed: (s: SetElements) => s.elements.every((e) => e.key instanceof Uint8Array && [e.timeoutMs, e.expirationMs].every((ms) => ms === undefined || ms >= 0)),
  },
  {
    name: "ethernet decodeEthernet",
    contract: "returns WireError",
    decode: decodeEthernet,
    valid: (rand) => {
      const [etherType, payload] = rand() < 0.5 ? [EtherType.ARP, arpPacket(rand)] : [EtherType.IPv6, ndPacket(rand)];
      return encodeEthernet({ destination: rand() < 0.5 ? mac(rand) : new Uint8Array(6).fill(0xff), source: mac(rand), etherType, payload });
    },
    wellFormed: (f: EthernetFrame) => sized(f.destination, 6) && sized(f.source, 6) && f.etherType >= 0x0600,
  },
  {
    name: "ethernet decodeSockaddrLl",
    contract: "returns WireError",
    decode: decodeSockaddrLl,
    valid: (rand) => encodeSockaddrLl({ protocol: pick(rand, [0x0806, 0x86dd, 0]), ifindex: int(rand, 2 ** 31), packetType: int(rand, 5), address: mac(rand).subarray(0, int(rand, 7)) }),
    wellFormed: (a: LinkLayerAddress) => (a.address?.length ?? 0) <= 8,
  },
  {
    name: "arp decodeArp",
    contract: "returns WireError",
    decode: decodeArp,
    valid: arpPacket,
    wellFormed: (p: ArpPacket) => sized(p.senderMac, 6) && sized(p.senderIp, 4) && sized(p.targetMac, 6) && sized(p.targetIp, 4) && [1, 2].includes(p.operation),
  },
  {
    name: "ndp decodeNeighborAdvertisement",
    contract: "returns WireError",
    decode: decodeNeighborAdvertisement,
    valid: ndPacket,
    repair: repairNd,
    wellFormed: (na: NeighborAdvertisement) => [na.source, na.destination, na.target].every((a) => sized(a, 16)) && (na.targetMac === null || sized(na.targetMac, 6)),
  },
  {
    name: "ndp decodeNeighborSolicitation",
    contract: "returns WireError",
    decode: decodeNeighborSolicitation,
    valid: ndPacket,
    repair: repairNd,
    wellFormed: (ns: NeighborSolicitation) => [ns.source, ns.destination, ns.target].every((a) => sized(a, 16)) && (ns.sourceMac === null || sized(ns.sourceMac, 6)),
  },
];

// ---- Mutations. ---------------------------------------------------------------

/** Values a length or count field is most likely to be wrong with. */
const EDGES = [0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 19, 20, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xfffc, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffc, 0xffffffff];

function mutate(b: Uint8Array, rand: Rand, d: Decoder): Uint8Array {
  let x = b.slice();
  for (let n = 1 + int(rand, 3); n > 0; n--) {
    const at = int(rand, x.length + 1);
    switch (int(rand, 8)) {
      case 0:
        x = x.slice(0, at); // truncated
        break;
      case 1:
        if (x.length > 0) x[int(rand, x.length)]! ^= 1 << int(rand, 8); // a bit flipped
        break;
      case 2:
        if (x.length > 0) x[int(rand, x.length)] = int(rand, 256);
        break;
      case 3: {
        // A length field (or anything) set to an edge value, 16 or 32 bits, either byte order.
        const width = rand() < 0.5 ? 2 : 4;
        if (x.length < width) break;
        const off = int(rand, x.length - width + 1) & ~(rand() < 0.7 ? width - 1 : 0);
        const v = new DataView(x.buffer, x.byteOffset, x.byteLength);
        const edge = pick(rand, EDGES);
        if (width === 2) v.setUint16(off, edge & 0xffff, rand() < 0.5);
        else v.setUint32(off, edge >>> 0, rand() < 0.5);
        break;
      }
      case 4:
        x = concat(x.slice(0, at), bytes(rand, 1 + int(rand, 8)), x.slice(at)); // bytes inserted
        break;
      case 5:
        x = concat(x.slice(0, at), x.slice(at + 1 + int(rand, 8))); // bytes removed
        break;
      case 6:
        x = concat(x, rand() < 0.5 ? bytes(rand, int(rand, 64)) : d.valid(rand)); // trailing bytes, or another message
        break;
      default:
        x.fill(pick(rand, [0, 0xff]), at, at + 1 + int(rand, 16));
    }
  }
  if (d.repair && rand() < 0.5) d.repair(x);
  return x;
}

// ---- One decoder's run. -----------------------------------------------------

export interface Report {
  readonly name: string;
  readonly rounds: number;
  /** Calls that decoded something, were refused, or gave null (not a message for vipd). */
  readonly decoded: number;
  readonly refused: number;
  readonly nulls: number;
  readonly slowestMs: number;
  /** The first few accidents, each with its round and input. */
  readonly failures: string[];
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

type Outcome = { kind: "decoded"; value: unknown } | { kind: "refused"; message: string } | { kind: "null" } | { kind: "accident"; what: string };

function call(d: Decoder, input: Uint8Array): Outcome {
  let value: unknown;
  try {
    value = d.decode(input);
  } catch (e) {
    return { kind: "accident", what: `threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}` };
  }
  if (value instanceof WireError) return d.contract === "returns WireError" ? { kind: "refused", message: value.message } : { kind: "accident", what: `returned ${value.message}` };
  if (value === null || value === undefined) return { kind: "null" };
  if (d.wellFormed && !d.wellFormed(value as never)) return { kind: "accident", what: `decoded a malformed value ${Bun.inspect(value).slice(0, 300)}` };
  return { kind: "decoded", value };
}

/**
 * `rounds` inputs: a third random bytes, the rest mutated valid encodings.
 * Each is decoded twice, once where it starts a buffer and once in the
 * middle of a larger one (byteOffset not 0, garbage on either side): the
 * two must agree, or the decoder reads outside its view. It must not change
 * its input either. `progress[0]` holds the round under way, for a report
 * if the round never ends.
 */
export function run(d: Decoder, seed: number, rounds: number, progress?: Int32Array): Report {
  const rand = prng(seed);
  const failures: string[] = [];
  const counts = { decoded: 0, refused: 0, null: 0 };
  let slowestMs = 0;
  for (let round = 0; round < rounds; round++) {
    if (progress) Atomics.store(progress, 0, round);
    const input = rand() < 0.33 ? bytes(rand, int(rand, rand() < 0.8 ? 96 : 1024)) : mutate(d.valid(rand), rand, d);
    const before = input.slice();
    const pad = 1 + int(rand, 64);
    const host = concat(bytes(rand, pad), input, bytes(rand, int(rand, 64)));
    const inside = host.subarray(pad, pad + input.length);

    const t0 = performance.now();
    const a = call(d, input);
    slowestMs = Math.max(slowestMs, performance.now() - t0);
    const b = call(d, inside);
    const fail = (what: string) => failures.length < 5 && failures.push(`${d.name}, seed 0x${seed.toString(16)}, round ${round}: ${what}; input ${hex(before)}`);
    if (a.kind === "accident") fail(a.what);
    else if (b.kind === "accident") fail(`inside a larger buffer: ${b.what}`);
    else if (!Bun.deepEquals(a, b)) fail(`at offset ${pad} of a larger buffer it decodes differently: ${Bun.inspect(a).slice(0, 200)} then ${Bun.inspect(b).slice(0, 200)}`);
    else if (!Bun.deepEquals(input, before)) fail("the decoder changed its input");
    else counts[a.kind === "decoded" ? "decoded" : a.kind === "refused" ? "refused" : "null"]++;
  }
  return { name: d.name, rounds, decoded: counts.decoded, refused: counts.refused, nulls: counts.null, slowestMs, failures };
}

// In a worker: run the decoder asked for and post the report.
declare const self: Worker;
if (!Bun.isMainThread) {
  self.onmessage = (e: MessageEvent<{ name: string; seed: number; rounds: number; progress: SharedArrayBuffer }>) => {
    const d = DECODERS.find((x) => x.name === e.data.name)!;
    self.postMessage(run(d, e.data.seed, e.data.rounds, new Int32Array(e.data.progress)));
  };
}
