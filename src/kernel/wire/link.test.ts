import { describe, expect, test } from "bun:test";
import { decodeLink, getLinkRequest, getLinksRequest, type Link } from "./link.ts";
import { WireError } from "./error.ts";
import { encodeMessage } from "./netlink.ts";
import { hex } from "./hex-fixture.ts";

// Fixtures are little-endian, the byte order of every host vipd runs on.

describe("RTM_GETLINK request", () => {
  const fixtures = [
    {
      name: "by name",
      ref: { name: "eth0" },
      bytes: hex(`
        34 00 00 00   // nlmsg_len 52
        12 00         // RTM_GETLINK
        05 00         // NLM_F_REQUEST|NLM_F_ACK
        01 00 00 00   // seq 1
        00 00 00 00   // pid 0
        00            // ifi_family AF_UNSPEC
        00            // pad
        00 00         // ifi_type
        00 00 00 00   // ifi_index 0: look up by name
        00 00 00 00   // ifi_flags
        00 00 00 00   // ifi_change
        09 00 03 00   // IFLA_IFNAME, len 9
        65 74 68 30 00  // "eth0\\0"
        00 00 00      // padding
        08 00 1d 00   // IFLA_EXT_MASK, len 8
        08 00 00 00   // RTEXT_FILTER_SKIP_STATS
      `),
    },
    {
      name: "by index",
      ref: { index: 7 },
      bytes: hex(`
        28 00 00 00   // nlmsg_len 40
        12 00         // RTM_GETLINK
        05 00         // NLM_F_REQUEST|NLM_F_ACK
        01 00 00 00   // seq 1
        00 00 00 00   // pid 0
        00 00 00 00   // ifi_family, pad, ifi_type
        07 00 00 00   // ifi_index 7
        00 00 00 00   // ifi_flags
        00 00 00 00   // ifi_change
        08 00 1d 00   // IFLA_EXT_MASK, len 8
        08 00 00 00   // RTEXT_FILTER_SKIP_STATS
      `),
    },
  ];
  for (const f of fixtures) {
    test(`encodes ${f.name}`, () => expect(encodeMessage({ ...getLinkRequest(f.ref), seq: 1, pid: 0 })).toEqual(f.bytes));
  }
  test("encodes a dump of every link", () =>
    expect(encodeMessage({ ...getLinksRequest(), seq: 1, pid: 0 })).toEqual(hex(`
      28 00 00 00   // nlmsg_len 40
      12 00         // RTM_GETLINK
      01 03         // NLM_F_REQUEST|NLM_F_DUMP (NLM_F_ROOT|NLM_F_MATCH)
      01 00 00 00   // seq 1
      00 00 00 00   // pid 0
      00 00 00 00   // ifi_family, pad, ifi_type
      00 00 00 00   // ifi_index 0: every link
      00 00 00 00   // ifi_flags
      00 00 00 00   // ifi_change
      08 00 1d 00   // IFLA_EXT_MASK, len 8
      08 00 00 00   // RTEXT_FILTER_SKIP_STATS
    `)));
});

describe("RTM_NEWLINK payload", () => {
  const header = `
    00            // ifi_family AF_UNSPEC
    00            // pad
    01 00         // ifi_type ARPHRD_ETHER
    05 00 00 00   // ifi_index 5
    43 10 01 00   // ifi_flags IFF_UP|IFF_BROADCAST|IFF_RUNNING|IFF_MULTICAST|IFF_LOWER_UP
    00 00 00 00   // ifi_change
  `;
  const macvlan = hex(`${header}
    08 00 03 00   // IFLA_IFNAME, len 8
    6d 76 30 00   // "mv0\\0"
    08 00 04 00   // IFLA_MTU
    dc 05 00 00   // 1500
    0a 00 01 00   // IFLA_ADDRESS, len 10
    02 00 5e 00 53 01  // 02:00:5e:00:53:01
    00 00         // padding
    05 00 10 00   // IFLA_OPERSTATE, len 5
    06            // IF_OPER_UP
    00 00 00      // padding
    10 00 12 80   // IFLA_LINKINFO | NLA_F_NESTED, len 16
    0c 00 01 00   //   IFLA_INFO_KIND, len 12
    6d 61 63 76 6c 61 6e 00  // "macvlan\\0"
  `);
  const want: Link = {
    index: 5,
    name: "mv0",
    mac: Uint8Array.of(0x02, 0x00, 0x5e, 0x00, 0x53, 0x01),
    mtu: 1500,
    flags: 0x11043,
    up: true,
    lowerUp: true,
    operState: "up",
    kind: "macvlan",
  };
  test("decodes a macvlan link", () => expect(decodeLink(macvlan)).toEqual(want));

  test("decodes a link without address, kind or operstate", () => {
    const bare = hex(`
      00 00 00 03   // family, pad, ifi_type ARPHRD_NONE (0x300)
      09 00 00 00   // ifi_index 9
      00 00 00 00   // ifi_flags: down
      00 00 00 00   // ifi_change
      09 00 03 00   // IFLA_IFNAME, len 9
      74 75 6e 30 00  // "tun0\\0"
      00 00 00      // padding
    `);
    expect(decodeLink(bare)).toEqual({
      index: 9, name: "tun0", mac: new Uint8Array(), mtu: 0, flags: 0, up: false, lowerUp: false, operState: "unknown",
    });
  });

  test("an unknown operstate reads as unknown", () => {
    const b = new Uint8Array(macvlan);
    b[16 + 8 + 8 + 12 + 4] = 0x2a; // the IF_OPER_* byte, after ifinfomsg and three attributes
    expect((decodeLink(b) as Link).operState).toBe("unknown");
  });

  const malformed: [string, Uint8Array][] = [
    ["truncated ifinfomsg", macvlan.subarray(0, 12)],
    ["attribute overrunning the message", macvlan.subarray(0, macvlan.byteLength - 4)],
    ["missing IFLA_IFNAME", macvlan.subarray(0, 16)],
    ["short IFLA_MTU", hex(`${header} 09 00 03 00 65 74 68 30 00 00 00 00  06 00 04 00 dc 05 00 00`)],
    ["nested IFLA_LINKINFO overrun", hex(`${header} 09 00 03 00 65 74 68 30 00 00 00 00  08 00 12 80 0c 00 01 00`)],
  ];
  for (const [name, b] of malformed) test(`rejects ${name}`, () => expect(decodeLink(b)).toBeInstanceOf(WireError));
});
