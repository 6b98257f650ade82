// NDP and ICMPv6 frames as annotated hex fixtures, one field per line:
// long because each fixture spells its bytes out, as the wire files' tests do.
import { describe, expect, test } from "bun:test";
import { WireError } from "./error.ts";
import { decoded, hex, refusal } from "./hex-fixture.ts";
import {
  ALL_NODES,
  dadSolicitation,
  decodeNeighborAdvertisement,
  decodeNeighborSolicitation,
  encodeNeighborAdvertisement,
  encodeNeighborSolicitation,
  icmpv6Checksum,
  multicastMac,
  solicitedNodeAddress,
  unsolicitedAdvertisement,
  type NeighborAdvertisement,
  type NeighborSolicitation,
} from "./ndp.ts";
import { prng } from "../../seeded.ts";

const A = hex("2001 0db8 0000 0000 0000 0000 0000 000a"); // 2001:db8::a
const B = hex("2001 0db8 0000 0000 0000 0000 0000 000b"); // 2001:db8::b
const VIP = hex("2001 0db8 0000 0000 0000 0000 0000 0015"); // 2001:db8::15

const cases: { name: string; na: NeighborAdvertisement; bytes: Uint8Array }[] = [
  {
    // Captured with tcpdump -xx ("[icmp6 sum ok]"): Linux answering a neighbour
    // solicitation for 2001:db8::a. Its checksum was computed by the kernel, so
    // it checks ours independently.
    name: "Linux kernel solicited NA (captured)",
    na: {
      source: A,
      destination: B,
      hopLimit: 255,
      router: false,
      solicited: true,
      override: true,
      target: A,
      targetMac: hex("e6 7f a5 fb 73 db"),
    },
    bytes: hex(`
      60 00 00 00                             // version 6, traffic class 0, flow label 0
      00 20                                   // payload length: 32
      3a                                      // next header: ICMPv6
      ff                                      // hop limit: 255
      2001 0db8 0000 0000 0000 0000 0000 000a // source: 2001:db8::a
      2001 0db8 0000 0000 0000 0000 0000 000b // destination: 2001:db8::b
      88                                      // type: 136, neighbor advertisement
      00                                      // code
      8c 02                                   // checksum
      60 00 00 00                             // R=0 S=1 O=1, reserved
      2001 0db8 0000 0000 0000 0000 0000 000a // target: 2001:db8::a
      02                                      // option: target link-layer address
      01                                      // option length: 1 × 8 bytes
      e6 7f a5 fb 73 db                       // link-layer address
    `),
  },
  {
    // Captured with tcpdump -xx: Linux defending 2001:db8::a against another
    // host's Duplicate Address Detection. It cannot answer ::, so it tells all
    // nodes (S=0), with its MAC in the option: what a probe for a VIP hears.
    name: "Linux kernel answer to a DAD probe (captured)",
    na: {
      source: A,
      destination: ALL_NODES,
      hopLimit: 255,
      router: false,
      solicited: false,
      override: true,
      target: A,
      targetMac: hex("e6 7f a5 fb 73 db"),
    },
    bytes: hex(`
      60 00 00 00                             // version 6, traffic class 0, flow label 0
      00 20                                   // payload length: 32
      3a                                      // next header: ICMPv6
      ff                                      // hop limit: 255
      2001 0db8 0000 0000 0000 0000 0000 000a // source: 2001:db8::a, the address defended
      ff02 0000 0000 0000 0000 0000 0000 0001 // destination: all nodes
      88                                      // type: 136, neighbor advertisement
      00                                      // code
      fa c2                                   // checksum
      20 00 00 00                             // R=0 S=0 O=1, reserved
      2001 0db8 0000 0000 0000 0000 0000 000a // target: 2001:db8::a
      02                                      // option: target link-layer address
      01                                      // option length: 1 × 8 bytes
      e6 7f a5 fb 73 db                       // link-layer address: the owner's
    `),
  },
  {
    name: "unsolicited NA for a VIP",
    na: unsolicitedAdvertisement(hex("02 00 00 00 00 0a"), VIP),
    bytes: hex(`
      60 00 00 00                             // version 6, traffic class 0, flow label 0
      00 20                                   // payload length: 32
      3a                                      // next header: ICMPv6
      ff                                      // hop limit: 255
      2001 0db8 0000 0000 0000 0000 0000 0015 // source: the VIP
      ff02 0000 0000 0000 0000 0000 0000 0001 // destination: all nodes
      88                                      // type: 136
      00                                      // code
      f8 f9                                   // checksum
      20 00 00 00                             // R=0 S=0 O=1, reserved
      2001 0db8 0000 0000 0000 0000 0000 0015 // target: the VIP
      02                                      // option: target link-layer address
      01                                      // option length
      02 00 00 00 00 0a                       // link-layer address: ours
    `),
  },
  {
    name: "NA without options",
    na: { ...unsolicitedAdvertisement(hex("02 00 00 00 00 0a"), VIP), targetMac: null },
    bytes: hex(`
      60 00 00 00                             // version 6, traffic class 0, flow label 0
      00 18                                   // payload length: 24
      3a                                      // next header: ICMPv6
      ff                                      // hop limit: 255
      2001 0db8 0000 0000 0000 0000 0000 0015 // source: the VIP
      ff02 0000 0000 0000 0000 0000 0000 0001 // destination: all nodes
      88                                      // type: 136
      00                                      // code
      fd 0c                                   // checksum
      20 00 00 00                             // R=0 S=0 O=1, reserved
      2001 0db8 0000 0000 0000 0000 0000 0015 // target: the VIP
    `),
  },
];

describe("neighbor advertisement", () => {
  for (const c of cases) {
    test(`${c.name}: encodes`, () => expect(encodeNeighborAdvertisement(c.na)).toEqual(c.bytes));
    test(`${c.name}: decodes`, () => expect(decodeNeighborAdvertisement(c.bytes)).toEqual(c.na));
    test(`${c.name}: checksum sums to zero`, () => expect(icmpv6Checksum(c.bytes.slice(8, 24), c.bytes.slice(24, 40), c.bytes.slice(40))).toBe(0));
  }

  test("ALL_NODES is ff02::1", () => expect(ALL_NODES).toEqual(hex("ff02 0000 0000 0000 0000 0000 0000 0001")));

  test("skips unknown options and ignores trailing padding", () => {
    const base = cases[3]!.bytes;
    const x = new Uint8Array(base.length + 16 + 6);
    x.set(base);
    x.set(hex("00 28"), 4); // payload length 40
    x.set(hex("0e 01 d5 e4 d9 59 18 0e"), 64); // nonce option (14), unknown here
    x.set(hex("02 01 02 00 00 00 00 0b"), 72);
    const sum = icmpv6Checksum(x.slice(8, 24), x.slice(24, 40), (() => {
      const m = x.slice(40, 80);
      m.set([0, 0], 2);
      return m;
    })());
    x.set([sum >> 8, sum & 0xff], 42);
    expect(decoded(decodeNeighborAdvertisement(x)).targetMac).toEqual(hex("02 00 00 00 00 0b"));
  });

  const good = cases[2]!.bytes;
  const with_ = (offset: number, ...b: number[]) => {
    const x = good.slice();
    x.set(b, offset);
    return x;
  };
  const malformed: [string, Uint8Array, RegExp][] = [
    ["shorter than an IPv6 header", good.slice(0, 39), /39 bytes, need an IPv6 header/],
    ["IPv4", with_(0, 0x45), /IP version 4, not 6/],
    ["payload length past the end", with_(4, 0x00, 0x40), /payload length 64 exceeds the 32 bytes/],
    ["next header UDP", with_(6, 17), /next header 17, not ICMPv6/],
    ["hop limit 64 (routed)", with_(7, 64), /hop limit 64, not 255/],
    ["ICMPv6 too short", with_(4, 0x00, 0x10), /ICMPv6 length 16, need at least 24/],
    ["a neighbor solicitation", with_(40, 135), /ICMPv6 type 135, not 136/],
    ["code 1", with_(41, 1), /ICMPv6 code 1, not 0/],
    ["a flipped checksum bit", with_(42, 0xf8 ^ 0x01), /bad checksum 0xf9f9/],
    ["a flipped target bit", with_(63, 0x14), /bad checksum 0xf8f9/],
  ];
  for (const [name, bytes, message] of malformed) {
    test(`rejects ${name}`, () => {
      expect(refusal(decodeNeighborAdvertisement(bytes))).toMatch(message);
    });
  }

  // Checks that need a correct checksum to be reached: encode, then decode.
  const semantic: [string, NeighborAdvertisement, RegExp][] = [
    ["a multicast target", { ...cases[2]!.na, target: ALL_NODES }, /target is a multicast address/],
    ["S=1 to a multicast group", { ...cases[2]!.na, solicited: true }, /solicited flag set/],
  ];
  for (const [name, na, message] of semantic) {
    test(`rejects ${name}`, () => expect(refusal(decodeNeighborAdvertisement(encodeNeighborAdvertisement(na)))).toMatch(message));
  }
  test("rejects a zero-length option", () => {
    const na = encodeNeighborAdvertisement(cases[2]!.na);
    na[65] = 0;
    const sum = icmpv6Checksum(na.slice(8, 24), na.slice(24, 40), (() => {
      const m = na.slice(40);
      m.set([0, 0], 2);
      return m;
    })());
    na.set([sum >> 8, sum & 0xff], 42);
    expect(refusal(decodeNeighborAdvertisement(na))).toMatch(/option 2 at byte 24 has length 0/);
  });

  test("refuses to encode wrong-sized fields", () => {
    expect(() => encodeNeighborAdvertisement({ ...cases[2]!.na, target: new Uint8Array(4) })).toThrow(/target has 4 bytes, not 16/);
    expect(() => encodeNeighborAdvertisement({ ...cases[2]!.na, targetMac: new Uint8Array(8) })).toThrow(/target MAC has 8 bytes/);
  });
});

const nsCases: { name: string; ns: NeighborSolicitation; bytes: Uint8Array }[] = [
  {
    name: "DAD probe for a VIP",
    ns: dadSolicitation(VIP),
    bytes: hex(`
      60 00 00 00                             // version 6, traffic class 0, flow label 0
      00 18                                   // payload length: 24
      3a                                      // next header: ICMPv6
      ff                                      // hop limit: 255
      0000 0000 0000 0000 0000 0000 0000 0000 // source: ::, so nobody caches us
      ff02 0000 0000 0000 0000 0001 ff00 0015 // destination: the VIP's solicited-node group
      87                                      // type: 135, neighbor solicitation
      00                                      // code
      4c c5                                   // checksum
      00 00 00 00                             // reserved
      2001 0db8 0000 0000 0000 0000 0000 0015 // target: the VIP
    `),
  },
  {
    name: "address resolution, with a source link-layer address",
    ns: { source: B, destination: solicitedNodeAddress(A), hopLimit: 255, target: A, sourceMac: hex("ca ee d1 bc b0 c9") },
    bytes: hex(`
      60 00 00 00                             // version 6, traffic class 0, flow label 0
      00 20                                   // payload length: 32
      3a                                      // next header: ICMPv6
      ff                                      // hop limit: 255
      2001 0db8 0000 0000 0000 0000 0000 000b // source: 2001:db8::b
      ff02 0000 0000 0000 0000 0001 ff00 000a // destination: solicited-node group of ::a
      87                                      // type: 135
      00                                      // code
      d0 98                                   // checksum
      00 00 00 00                             // reserved
      2001 0db8 0000 0000 0000 0000 0000 000a // target: 2001:db8::a
      01                                      // option: source link-layer address
      01                                      // option length: 1 × 8 bytes
      ca ee d1 bc b0 c9                       // link-layer address
    `),
  },
];

describe("neighbor solicitation", () => {
  for (const c of nsCases) {
    test(`${c.name}: encodes`, () => expect(encodeNeighborSolicitation(c.ns)).toEqual(c.bytes));
    test(`${c.name}: decodes`, () => expect(decodeNeighborSolicitation(c.bytes)).toEqual(c.ns));
  }

  test("Linux kernel DAD probe (captured) decodes, its nonce option skipped", () => {
    // Captured with tcpdump -xx ("[icmp6 sum ok]") while a second host added
    // 2001:db8::a. The nonce (RFC 7527) is an option vipd does not send.
    const bytes = hex(`
      60 00 00 00                             // version 6, traffic class 0, flow label 0
      00 20                                   // payload length: 32
      3a                                      // next header: ICMPv6
      ff                                      // hop limit: 255
      0000 0000 0000 0000 0000 0000 0000 0000 // source: ::
      ff02 0000 0000 0000 0000 0001 ff00 000a // destination: solicited-node group of ::a
      87                                      // type: 135
      00                                      // code
      88 4c                                   // checksum
      00 00 00 00                             // reserved
      2001 0db8 0000 0000 0000 0000 0000 000a // target: 2001:db8::a
      0e                                      // option: nonce (14)
      01                                      // option length: 1 × 8 bytes
      d5 97 43 9a 9d 53                       // nonce
    `);
    expect(decodeNeighborSolicitation(bytes)).toEqual(dadSolicitation(A));
  });

  test("solicited-node groups and their Ethernet addresses", () => {
    expect(solicitedNodeAddress(hex("2001 0db8 0000 0000 0000 0000 12ab cdef"))).toEqual(hex("ff02 0000 0000 0000 0000 0001 ffab cdef"));
    expect(multicastMac(solicitedNodeAddress(VIP))).toEqual(hex("33 33 ff 00 00 15"));
    expect(multicastMac(ALL_NODES)).toEqual(hex("33 33 00 00 00 01"));
    expect(() => multicastMac(VIP)).toThrow(/not an IPv6 multicast address/);
    expect(() => solicitedNodeAddress(new Uint8Array(4))).toThrow(/address has 4 bytes, not 16/);
  });

  const good = nsCases[0]!.bytes;
  const with_ = (offset: number, ...b: number[]) => {
    const x = good.slice();
    x.set(b, offset);
    return x;
  };
  /** An NS built from parts and checksummed, so that only the semantic check can fail. */
  const built = (ns: Partial<NeighborSolicitation>) => encodeNeighborSolicitation({ ...nsCases[0]!.ns, ...ns });
  const malformed: [string, Uint8Array, RegExp][] = [
    ["an advertisement", encodeNeighborAdvertisement(unsolicitedAdvertisement(hex("02 00 00 00 00 0a"), VIP)), /ICMPv6 type 136, not 135/],
    ["a flipped target bit", with_(63, 0x14), /bad checksum 0x4cc5/],
    ["hop limit 64 (routed)", built({ hopLimit: 64 }), /hop limit 64, not 255/],
    ["a multicast target", built({ target: ALL_NODES }), /target is a multicast address/],
    ["DAD to all nodes instead of the solicited-node group", built({ destination: ALL_NODES }), /not to the target's solicited-node group/],
    ["DAD with a source link-layer address", built({ sourceMac: hex("02 00 00 00 00 0a") }), /yet with a source link-layer address/],
  ];
  for (const [name, bytes, message] of malformed) {
    test(`rejects ${name}`, () => {
      expect(refusal(decodeNeighborSolicitation(bytes))).toMatch(message);
    });
  }

  test("refuses to encode wrong-sized fields", () => {
    expect(() => encodeNeighborSolicitation({ ...nsCases[0]!.ns, target: new Uint8Array(4) })).toThrow(/NS target has 4 bytes, not 16/);
    expect(() => encodeNeighborSolicitation({ ...nsCases[0]!.ns, sourceMac: new Uint8Array(8) })).toThrow(/NS source MAC has 8 bytes/);
    expect(() => encodeNeighborSolicitation({ ...nsCases[0]!.ns, hopLimit: 256 })).toThrow(/hop limit 256/);
  });
});


describe("fuzz", () => {
  const SEED = 0x5eed;
  const ROUNDS = 2000;
  const bytes = (rand: () => number, n: number) => Uint8Array.from({ length: n }, () => Math.floor(rand() * 256));
  /** A unicast address: never multicast, which both decoders refuse as a target. */
  const unicast = (rand: () => number) => {
    const a = bytes(rand, 16);
    a[0] = 0x20;
    return a;
  };

  test(`random advertisements and solicitations round-trip (seed ${SEED}, ${ROUNDS} rounds)`, () => {
    const rand = prng(SEED);
    for (let i = 0; i < ROUNDS; i++) {
      const target = unicast(rand);
      const toGroup = rand() < 0.5;
      const na: NeighborAdvertisement = {
        source: unicast(rand),
        destination: toGroup ? ALL_NODES : unicast(rand),
        hopLimit: 255,
        router: rand() < 0.5,
        solicited: !toGroup && rand() < 0.5,
        override: rand() < 0.5,
        target,
        targetMac: rand() < 0.7 ? bytes(rand, 6) : null,
      };
      expect(decodeNeighborAdvertisement(encodeNeighborAdvertisement(na))).toEqual(na);
      const ns: NeighborSolicitation = rand() < 0.5
        ? dadSolicitation(target)
        : { source: unicast(rand), destination: solicitedNodeAddress(target), hopLimit: 255, target, sourceMac: rand() < 0.7 ? bytes(rand, 6) : null };
      expect(decodeNeighborSolicitation(encodeNeighborSolicitation(ns))).toEqual(ns);
    }
  });

  test(`truncated and corrupted packets are refused with a WireError, never a throw (seed ${SEED + 1}, ${ROUNDS} rounds)`, () => {
    const rand = prng(SEED + 1);
    const decoders = [decodeNeighborAdvertisement, decodeNeighborSolicitation];
    for (let i = 0; i < ROUNDS; i++) {
      const target = unicast(rand);
      const whole = rand() < 0.5
        ? encodeNeighborAdvertisement(unsolicitedAdvertisement(bytes(rand, 6), target))
        : encodeNeighborSolicitation(dadSolicitation(target));
      const x = whole.slice(0, Math.floor(rand() * (whole.length + 9)));
      for (let flips = Math.floor(rand() * 4); flips > 0 && x.length > 0; flips--) x[Math.floor(rand() * x.length)] = Math.floor(rand() * 256);
      // Half the time the checksum is made right again, so that the checks
      // behind it (options, flags, groups) see the corruption too.
      if (rand() < 0.5 && x.length >= 44) {
        const icmp = x.slice(40, 40 + Math.min(x.length - 40, (x[4]! << 8) | x[5]!));
        icmp.set([0, 0], 2);
        const sum = icmpv6Checksum(x.slice(8, 24), x.slice(24, 40), icmp);
        x.set([sum >> 8, sum & 0xff], 42);
      }
      // A throw fails the test; a refusal is a WireError; anything else decoded.
      for (const decode of decoders) {
        const r = decode(x);
        if (r instanceof Error) expect(r).toBeInstanceOf(WireError);
      }
    }
  });
});
