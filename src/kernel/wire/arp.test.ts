import { describe, expect, test } from "bun:test";
import { decodeArp, encodeArp, gratuitousReply, gratuitousRequest, Operation, probe, type ArpPacket } from "./arp.ts";
import { WireError } from "./error.ts";
import { decoded, hex, refusal } from "./hex-fixture.ts";

const MAC = hex("02 00 00 00 00 0a");
const VIP = hex("c0 00 02 0f"); // 192.0.2.15

const cases: { name: string; packet: ArpPacket; bytes: Uint8Array }[] = [
  {
    // Captured with tcpdump -xx: Linux answering "who has 192.0.2.10 tell 192.0.2.11".
    name: "Linux kernel reply (captured)",
    packet: {
      operation: Operation.REPLY,
      senderMac: hex("e6 7f a5 fb 73 db"),
      senderIp: hex("c0 00 02 0a"),
      targetMac: hex("ca ee d1 bc b0 c9"),
      targetIp: hex("c0 00 02 0b"),
    },
    bytes: hex(`
      00 01             // hardware type: Ethernet
      08 00             // protocol type: IPv4
      06                // hardware address length
      04                // protocol address length
      00 02             // operation: reply
      e6 7f a5 fb 73 db // sender MAC
      c0 00 02 0a       // sender IP: 192.0.2.10
      ca ee d1 bc b0 c9 // target MAC
      c0 00 02 0b       // target IP: 192.0.2.11
    `),
  },
  {
    name: "gratuitous request (RFC 5227 §3 announcement)",
    packet: gratuitousRequest(MAC, VIP),
    bytes: hex(`
      00 01             // hardware type: Ethernet
      08 00             // protocol type: IPv4
      06                // hardware address length
      04                // protocol address length
      00 01             // operation: request
      02 00 00 00 00 0a // sender MAC: ours
      c0 00 02 0f       // sender IP: the VIP
      00 00 00 00 00 00 // target MAC: zero, ignored by receivers
      c0 00 02 0f       // target IP: the VIP again
    `),
  },
  {
    name: "gratuitous reply (RFC 5944 §4.6)",
    packet: gratuitousReply(MAC, VIP),
    bytes: hex(`
      00 01             // hardware type: Ethernet
      08 00             // protocol type: IPv4
      06                // hardware address length
      04                // protocol address length
      00 02             // operation: reply
      02 00 00 00 00 0a // sender MAC: ours
      c0 00 02 0f       // sender IP: the VIP
      02 00 00 00 00 0a // target MAC: ours too
      c0 00 02 0f       // target IP: the VIP
    `),
  },
  {
    name: "probe (RFC 5227 §2.1.1)",
    packet: probe(MAC, VIP),
    bytes: hex(`
      00 01             // hardware type: Ethernet
      08 00             // protocol type: IPv4
      06                // hardware address length
      04                // protocol address length
      00 01             // operation: request
      02 00 00 00 00 0a // sender MAC: ours
      00 00 00 00       // sender IP: 0.0.0.0, so nobody caches us
      00 00 00 00 00 00 // target MAC: zero
      c0 00 02 0f       // target IP: the address probed
    `),
  },
];

describe("ARP", () => {
  for (const c of cases) {
    test(`${c.name}: encodes`, () => expect(encodeArp(c.packet)).toEqual(c.bytes));
    test(`${c.name}: decodes`, () => expect(decodeArp(c.bytes)).toEqual(c.packet));
  }

  test("decodes past Ethernet padding", () => {
    const padded = new Uint8Array(46);
    padded.set(cases[1]!.bytes);
    expect(decodeArp(padded)).toEqual(cases[1]!.packet);
  });

  const good = cases[1]!.bytes;
  const with_ = (offset: number, ...b: number[]) => {
    const x = good.slice();
    x.set(b, offset);
    return x;
  };
  const malformed: [string, Uint8Array, RegExp][] = [
    ["truncated", good.slice(0, 27), /27 bytes, need 28/],
    ["empty", new Uint8Array(0), /0 bytes, need 28/],
    ["hardware type 6 (IEEE 802)", with_(0, 0x00, 0x06), /hardware type 6, not Ethernet/],
    ["protocol type IPv6", with_(2, 0x86, 0xdd), /protocol type 0x86dd, not IPv4/],
    ["address lengths 8/4", with_(4, 0x08), /address lengths 8\/4, not 6\/4/],
    ["operation 3 (RARP request)", with_(6, 0x00, 0x03), /operation 3/],
  ];
  for (const [name, bytes, message] of malformed) {
    test(`rejects ${name}`, () => {
      expect(refusal(decodeArp(bytes))).toMatch(message);
    });
  }

  test("refuses to encode wrong-sized fields", () => {
    expect(() => encodeArp({ ...gratuitousRequest(MAC, VIP), senderIp: new Uint8Array(16) })).toThrow(/sender IP has 16 bytes, not 4/);
    expect(() => encodeArp({ ...gratuitousRequest(MAC, VIP), operation: 9 })).toThrow(/operation 9/);
  });
});
