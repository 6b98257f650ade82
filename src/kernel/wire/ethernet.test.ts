import { describe, expect, test } from "bun:test";
import { WireError } from "./error.ts";
import { decodeEthernet, decodeSockaddrLl, encodeEthernet, encodeSockaddrLl, EtherType } from "./ethernet.ts";
import { decoded, hex, refusal } from "./hex-fixture.ts";


describe("Ethernet II", () => {
  const cases = [
    {
      name: "ARP broadcast, padded to 60 bytes",
      frame: {
        destination: hex("ff ff ff ff ff ff"),
        source: hex("02 00 00 00 00 0a"),
        etherType: EtherType.ARP,
        payload: hex("01 02 03 04"),
      },
      bytes: hex(`
        ff ff ff ff ff ff // destination: broadcast
        02 00 00 00 00 0a // source
        08 06             // EtherType: ARP
        01 02 03 04       // payload
        ${"00 ".repeat(42)} // padding to 60
      `),
    },
    {
      name: "IPv6 multicast, long enough to need no padding",
      frame: {
        destination: hex("33 33 00 00 00 01"),
        source: hex("02 00 00 00 00 0a"),
        etherType: EtherType.IPv6,
        payload: new Uint8Array(72).fill(0xab),
      },
      bytes: hex(`
        33 33 00 00 00 01 // destination: all-nodes multicast
        02 00 00 00 00 0a // source
        86 dd             // EtherType: IPv6
        ${"ab ".repeat(72)}
      `),
    },
  ];
  for (const c of cases) {
    test(`${c.name}: encodes`, () => expect(encodeEthernet(c.frame)).toEqual(c.bytes));
    test(`${c.name}: decodes`, () => {
      const f = decoded(decodeEthernet(c.bytes));
      expect(f.destination).toEqual(c.frame.destination);
      expect(f.source).toEqual(c.frame.source);
      expect(f.etherType).toBe(c.frame.etherType);
      // The payload keeps Ethernet padding: only the upper layer knows its length.
      expect(f.payload.subarray(0, c.frame.payload.length)).toEqual(c.frame.payload);
    });
  }

  const malformed: [string, Uint8Array, RegExp][] = [
    ["shorter than a header", hex("ff ff ff ff ff ff 02 00 00 00 00 0a 08"), /13 bytes, need at least 14/],
    ["802.3 length instead of a type", hex("ff ff ff ff ff ff 02 00 00 00 00 0a 00 2e"), /length field 0x002e/],
  ];
  for (const [name, bytes, message] of malformed) {
    test(`rejects a frame ${name}`, () => {
      expect(refusal(decodeEthernet(bytes))).toMatch(message);
    });
  }

  test("refuses to encode a MAC that is not 6 bytes", () => {
    expect(() => encodeEthernet({ destination: hex("ff ff"), source: hex("02 00 00 00 00 0a"), etherType: 0x0806, payload: new Uint8Array() })).toThrow(
      /destination MAC has 2 bytes/,
    );
  });
});

describe("sockaddr_ll", () => {
  const bound = hex(`
    11 00                   // sll_family: AF_PACKET (17), host order
    08 06                   // sll_protocol: ARP, network order
    07 00 00 00             // sll_ifindex: 7, host order
    01 00                   // sll_hatype: ARPHRD_ETHER, host order
    00                      // sll_pkttype
    00                      // sll_halen: no address when binding
    00 00 00 00 00 00 00 00 // sll_addr
  `);
  test("encodes a bind address", () => expect(encodeSockaddrLl({ protocol: EtherType.ARP, ifindex: 7 })).toEqual(bound));

  const received = hex(`
    11 00                   // sll_family
    86 dd                   // sll_protocol: IPv6
    02 00 00 00             // sll_ifindex: 2
    01 00                   // sll_hatype
    04                      // sll_pkttype: PACKET_OUTGOING
    06                      // sll_halen
    02 00 00 00 00 0a 00 00 // sll_addr
  `);
  test("decodes a received address", () => {
    expect(decodeSockaddrLl(received)).toEqual({ protocol: 0x86dd, ifindex: 2, packetType: 4, address: hex("02 00 00 00 00 0a") });
  });
  test("round-trips", () => {
    const a = decoded(decodeSockaddrLl(received));
    expect(encodeSockaddrLl(a)).toEqual(received);
  });
  test("rejects another family", () => expect(refusal(decodeSockaddrLl(new Uint8Array(20)))).toMatch(/family 0, not AF_PACKET/));
  test("rejects a short address", () => expect(refusal(decodeSockaddrLl(new Uint8Array(8)))).toMatch(/8 bytes, need 20/));
});
