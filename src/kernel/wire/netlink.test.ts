import { describe, expect, test } from "bun:test";
import {
  decodeError,
  decodeSockaddrNl,
  encodeAttrs,
  encodeMessage,
  encodeSockaddrNl,
  NLM_F_ACK,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  parseAttrs,
  parseMessages,
} from "./netlink.ts";
import { WireError } from "./error.ts";
import { hex } from "./hex-fixture.ts";

// Fixtures are little-endian, the byte order of every host vipd runs on.

describe("nlmsghdr", () => {
  const fixtures = [
    {
      name: "request with a 5-byte payload, padded to 4",
      msg: { type: 0x12, flags: NLM_F_REQUEST | NLM_F_ACK, seq: 0x01020304, pid: 0, payload: hex("aa bb cc dd ee") },
      bytes: hex(`
        15 00 00 00   // nlmsg_len 21 (16 + 5, padding not counted)
        12 00         // nlmsg_type RTM_GETLINK
        05 00         // nlmsg_flags NLM_F_REQUEST|NLM_F_ACK
        04 03 02 01   // nlmsg_seq
        00 00 00 00   // nlmsg_pid 0 (kernel)
        aa bb cc dd ee
        00 00 00      // NLMSG_ALIGN padding
      `),
    },
    {
      name: "NLMSG_DONE with an empty payload",
      msg: { type: NLMSG_DONE, flags: 2, seq: 7, pid: 1234, payload: new Uint8Array() },
      bytes: hex(`
        10 00 00 00   // nlmsg_len 16
        03 00         // NLMSG_DONE
        02 00         // NLM_F_MULTI
        07 00 00 00   // seq 7
        d2 04 00 00   // pid 1234
      `),
    },
  ];
  for (const f of fixtures) {
    test(`encodes ${f.name}`, () => expect(encodeMessage(f.msg)).toEqual(f.bytes));
    test(`decodes ${f.name}`, () => expect(parseMessages(f.bytes)).toEqual([f.msg]));
  }

  test("splits a datagram holding several messages", () => {
    const both = new Uint8Array([...fixtures[0]!.bytes, ...fixtures[1]!.bytes]);
    const got = parseMessages(both);
    expect(got).toEqual([fixtures[0]!.msg, fixtures[1]!.msg]);
  });

  test("accepts a last message without its trailing padding", () => {
    expect(parseMessages(fixtures[0]!.bytes.subarray(0, 21))).toEqual([fixtures[0]!.msg]);
  });

  const malformed: [string, Uint8Array][] = [
    ["truncated header", hex("10 00 00 00  03 00  02 00  07 00 00")],
    ["length below the header size", hex("0c 00 00 00  03 00  02 00  07 00 00 00  00 00 00 00")],
    ["length past the buffer", hex("20 00 00 00  03 00  02 00  07 00 00 00  00 00 00 00")],
    ["second message truncated", new Uint8Array([...fixtures[1]!.bytes, 0x10, 0x00])],
  ];
  for (const [name, bytes] of malformed) {
    test(`rejects ${name}`, () => expect(parseMessages(bytes)).toBeInstanceOf(WireError));
  }
});

describe("rtattr", () => {
  const attrs = [
    { type: 3, data: hex("65 74 68 30 00") }, // "eth0\0"
    { type: 4, data: hex("dc 05 00 00") }, // 1500
  ];
  const bytes = hex(`
    09 00         // rta_len 9
    03 00         // rta_type IFLA_IFNAME
    65 74 68 30 00  // "eth0\\0"
    00 00 00      // RTA_ALIGN padding
    08 00         // rta_len 8
    04 00         // rta_type IFLA_MTU
    dc 05 00 00   // 1500
  `);
  test("encodes", () => expect(encodeAttrs(attrs)).toEqual(bytes));
  test("decodes", () => expect(parseAttrs(bytes)).toEqual(attrs));
  test("strips NLA_F_NESTED from the type", () => {
    expect(parseAttrs(hex("04 00  12 80"))).toEqual([{ type: 0x12, data: new Uint8Array() }]);
  });
  const malformed: [string, Uint8Array][] = [
    ["truncated attribute header", hex("08 00 04")],
    ["length below the header size", hex("02 00 04 00")],
    ["length overrunning the buffer", hex("0c 00  04 00  dc 05 00 00")],
  ];
  for (const [name, b] of malformed) test(`rejects ${name}`, () => expect(parseAttrs(b)).toBeInstanceOf(WireError));
});

describe("nlmsgerr", () => {
  const request = hex(`
    14 00 00 00  14 00  05 06  01 00 00 00  00 00 00 00   // echoed nlmsghdr, len 20
    02 20 00 00                                           // 4 bytes of echoed payload
  `);
  const err = (flags: number, tail: string, error = "ef ff ff ff") => ({
    type: NLMSG_ERROR,
    flags,
    seq: 1,
    pid: 0,
    payload: new Uint8Array([...hex(error), ...(flags & NLM_F_CAPPED ? request.subarray(0, 16) : request), ...hex(tail)]),
  });
  const extAck = `
    0d 00         // nla_len 13
    01 00         // NLMSGERR_ATTR_MSG
    62 61 64 20 61 64 64 72 00  // "bad addr\\0"
    00 00 00      // padding
  `;
  test("plain ACK is errno 0", () => expect(decodeError(err(0, "", "00 00 00 00"))).toEqual({ errno: 0 }));
  test("error without TLVs", () => expect(decodeError(err(0, ""))).toEqual({ errno: 17 }));
  test("extended ACK text after the full echoed request", () => {
    expect(decodeError(err(NLM_F_ACK_TLVS, extAck))).toEqual({ errno: 17, message: "bad addr" });
  });
  test("extended ACK text after a capped echo", () => {
    expect(decodeError(err(NLM_F_ACK_TLVS | NLM_F_CAPPED, extAck))).toEqual({ errno: 17, message: "bad addr" });
  });
  test("rejects a truncated nlmsgerr", () => {
    expect(decodeError({ type: NLMSG_ERROR, flags: 0, seq: 1, pid: 0, payload: hex("ef ff ff ff 14 00") })).toBeInstanceOf(WireError);
  });
  test("rejects an echoed length that overruns", () => {
    const m = err(NLM_F_ACK_TLVS, "");
    m.payload[4] = 0xff;
    expect(decodeError(m)).toBeInstanceOf(WireError);
  });
  test("rejects a TLV overrunning the message", () => {
    expect(decodeError(err(NLM_F_ACK_TLVS, "20 00 01 00 62 61"))).toBeInstanceOf(WireError);
  });
});

describe("sockaddr_nl", () => {
  const bytes = hex(`
    10 00         // nl_family AF_NETLINK
    00 00         // nl_pad
    00 00 00 00   // nl_pid 0
    11 01 00 00   // nl_groups RTMGRP_LINK|RTMGRP_IPV4_IFADDR|RTMGRP_IPV6_IFADDR
  `);
  test("encodes", () => expect(encodeSockaddrNl(0, 0x111)).toEqual(bytes));
  test("decodes", () => expect(decodeSockaddrNl(bytes)).toEqual({ pid: 0, groups: 0x111 }));
  test("rejects a short one", () => expect(decodeSockaddrNl(bytes.subarray(0, 8))).toBeInstanceOf(WireError));
});
