import { describe, expect, test } from "bun:test";
import { WireError } from "./ethernet.ts";
import { hex } from "./hex-fixture.ts";
import {
  ALL_NODES,
  decodeNeighborAdvertisement,
  encodeNeighborAdvertisement,
  icmpv6Checksum,
  unsolicitedAdvertisement,
  type NeighborAdvertisement,
} from "./ndp.ts";

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
    const base = cases[2]!.bytes;
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
    expect(decodeNeighborAdvertisement(x).targetMac).toEqual(hex("02 00 00 00 00 0b"));
  });

  const good = cases[1]!.bytes;
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
      expect(() => decodeNeighborAdvertisement(bytes)).toThrow(WireError);
      expect(() => decodeNeighborAdvertisement(bytes)).toThrow(message);
    });
  }

  // Checks that need a correct checksum to be reached: encode, then decode.
  const semantic: [string, NeighborAdvertisement, RegExp][] = [
    ["a multicast target", { ...cases[1]!.na, target: ALL_NODES }, /target is a multicast address/],
    ["S=1 to a multicast group", { ...cases[1]!.na, solicited: true }, /solicited flag set/],
  ];
  for (const [name, na, message] of semantic) {
    test(`rejects ${name}`, () => expect(() => decodeNeighborAdvertisement(encodeNeighborAdvertisement(na))).toThrow(message));
  }
  test("rejects a zero-length option", () => {
    const na = encodeNeighborAdvertisement(cases[1]!.na);
    na[65] = 0;
    const sum = icmpv6Checksum(na.slice(8, 24), na.slice(24, 40), (() => {
      const m = na.slice(40);
      m.set([0, 0], 2);
      return m;
    })());
    na.set([sum >> 8, sum & 0xff], 42);
    expect(() => decodeNeighborAdvertisement(na)).toThrow(/option 2 at byte 24 has length 0/);
  });

  test("refuses to encode wrong-sized fields", () => {
    expect(() => encodeNeighborAdvertisement({ ...cases[1]!.na, target: new Uint8Array(4) })).toThrow(/target has 4 bytes, not 16/);
    expect(() => encodeNeighborAdvertisement({ ...cases[1]!.na, targetMac: new Uint8Array(8) })).toThrow(/target MAC has 8 bytes/);
  });
});
