import { describe, expect, test } from "bun:test";
import { parseIp } from "../ip.ts";
import { type Address, decodeAddress, deleteAddressRequest, getAddressesRequest, newAddressRequest } from "./address.ts";
import { WireError } from "./error.ts";
import { encodeMessage } from "./netlink.ts";
import { hex } from "./hex-fixture.ts";

// Fixtures are little-endian, the byte order of every host vipd runs on.

const at = (ip: string, index: number) => ({ ip: parseIp(ip)!, index });
const frame = (r: { type: number; flags: number; payload: Uint8Array }) => encodeMessage({ ...r, seq: 1, pid: 0 });

describe("requests", () => {
  const fixtures = [
    {
      name: "RTM_NEWADDR IPv4 /32, 30 s, exclusive",
      req: newAddressRequest(at("192.0.2.15", 2), 30, false),
      bytes: hex(`
        44 00 00 00   // nlmsg_len 68
        14 00         // RTM_NEWADDR
        05 06         // NLM_F_REQUEST|NLM_F_ACK | NLM_F_EXCL|NLM_F_CREATE
        01 00 00 00   // seq 1
        00 00 00 00   // pid 0
        02            // ifa_family AF_INET
        20            // ifa_prefixlen 32
        00            // ifa_flags
        00            // ifa_scope RT_SCOPE_UNIVERSE
        02 00 00 00   // ifa_index 2
        08 00 02 00   // IFA_LOCAL
        c0 00 02 0f   // 192.0.2.15
        08 00 01 00   // IFA_ADDRESS
        c0 00 02 0f   // 192.0.2.15
        14 00 06 00   // IFA_CACHEINFO, len 20
        1e 00 00 00   // ifa_prefered 30
        1e 00 00 00   // ifa_valid 30
        00 00 00 00   // cstamp
        00 00 00 00   // tstamp
        08 00 08 00   // IFA_FLAGS
        00 00 00 00   // none
      `),
    },
    {
      name: "RTM_NEWADDR IPv6 /128, 5 s, replace, NODAD, deprecated",
      req: newAddressRequest(at("2001:db8::15", 3), 5, true),
      bytes: hex(`
        5c 00 00 00   // nlmsg_len 92
        14 00         // RTM_NEWADDR
        05 05         // NLM_F_REQUEST|NLM_F_ACK | NLM_F_REPLACE|NLM_F_CREATE
        01 00 00 00   // seq 1
        00 00 00 00   // pid 0
        0a            // ifa_family AF_INET6
        80            // ifa_prefixlen 128
        02            // ifa_flags IFA_F_NODAD
        00            // ifa_scope RT_SCOPE_UNIVERSE
        03 00 00 00   // ifa_index 3
        14 00 02 00   // IFA_LOCAL, len 20
        20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 15  // 2001:db8::15
        14 00 01 00   // IFA_ADDRESS, len 20
        20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 15  // 2001:db8::15
        14 00 06 00   // IFA_CACHEINFO
        00 00 00 00   // ifa_prefered 0: deprecated, never chosen as a source address
        05 00 00 00   // ifa_valid 5
        00 00 00 00   // cstamp
        00 00 00 00   // tstamp
        08 00 08 00   // IFA_FLAGS
        02 00 00 00   // IFA_F_NODAD
      `),
    },
    {
      name: "RTM_DELADDR IPv4",
      req: deleteAddressRequest(at("192.0.2.15", 2)),
      bytes: hex(`
        28 00 00 00   // nlmsg_len 40
        15 00         // RTM_DELADDR
        05 00         // NLM_F_REQUEST|NLM_F_ACK
        01 00 00 00   // seq 1
        00 00 00 00   // pid 0
        02 20 00 00   // AF_INET, /32, no flags, universe
        02 00 00 00   // ifa_index 2
        08 00 02 00   // IFA_LOCAL
        c0 00 02 0f   // 192.0.2.15
        08 00 01 00   // IFA_ADDRESS
        c0 00 02 0f   // 192.0.2.15
      `),
    },
    {
      name: "RTM_GETADDR dump of link 4",
      req: getAddressesRequest(4),
      bytes: hex(`
        18 00 00 00   // nlmsg_len 24
        16 00         // RTM_GETADDR
        01 03         // NLM_F_REQUEST | NLM_F_DUMP
        01 00 00 00   // seq 1
        00 00 00 00   // pid 0
        00 00 00 00   // AF_UNSPEC: both families
        04 00 00 00   // ifa_index 4
      `),
    },
  ];
  for (const f of fixtures) test(`encodes ${f.name}`, () => expect(frame(f.req)).toEqual(f.bytes));
});

describe("RTM_NEWADDR payload", () => {
  const fixtures: { name: string; bytes: Uint8Array; want: Address | null }[] = [
    {
      name: "IPv4 with a finite lifetime",
      bytes: hex(`
        02 20 00 00   // AF_INET, /32, ifa_flags, universe
        02 00 00 00   // ifa_index 2
        08 00 01 00   // IFA_ADDRESS
        c0 00 02 0f   // 192.0.2.15
        08 00 02 00   // IFA_LOCAL
        c0 00 02 0f   // 192.0.2.15
        09 00 03 00   // IFA_LABEL
        65 74 68 30 00 00 00 00  // "eth0\\0" + padding
        08 00 08 00   // IFA_FLAGS
        00 00 00 00   // none
        14 00 06 00   // IFA_CACHEINFO
        1c 00 00 00   // ifa_prefered 28
        1d 00 00 00   // ifa_valid 29
        10 27 00 00   // cstamp
        10 27 00 00   // tstamp
      `),
      want: { family: 4, address: "192.0.2.15", prefixLength: 32, linkIndex: 2, flags: 0, validLifetime: 29, preferredLifetime: 28 },
    },
    {
      name: "IPv6 forever, flags beyond 8 bits from IFA_FLAGS",
      bytes: hex(`
        0a 40 80 00   // AF_INET6, /64, ifa_flags IFA_F_PERMANENT, universe
        03 00 00 00   // ifa_index 3
        14 00 01 00   // IFA_ADDRESS
        20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 0a  // 2001:db8::a
        14 00 06 00   // IFA_CACHEINFO
        ff ff ff ff   // ifa_prefered forever
        ff ff ff ff   // ifa_valid forever
        00 00 00 00   // cstamp
        00 00 00 00   // tstamp
        08 00 08 00   // IFA_FLAGS
        82 02 00 00   // IFA_F_PERMANENT|IFA_F_NODAD|IFA_F_NOPREFIXROUTE
      `),
      want: { family: 6, address: "2001:db8::a", prefixLength: 64, linkIndex: 3, flags: 0x282, validLifetime: Infinity, preferredLifetime: Infinity },
    },
    {
      name: "another family (AF_PACKET) is skipped",
      bytes: hex("11 00 00 00  03 00 00 00"),
      want: null,
    },
  ];
  for (const f of fixtures) test(`decodes ${f.name}`, () => expect(decodeAddress(f.bytes)).toEqual(f.want));

  const v4 = fixtures[0]!.bytes;
  const malformed: [string, Uint8Array][] = [
    ["truncated ifaddrmsg", v4.subarray(0, 6)],
    ["attribute overrunning the message", v4.subarray(0, v4.byteLength - 3)],
    ["no address attribute", v4.subarray(0, 8)],
    ["IPv4 address of the wrong size", hex("02 20 00 00  02 00 00 00  06 00 02 00 c0 00 00 00")],
    ["short IFA_CACHEINFO", hex("02 20 00 00  02 00 00 00  08 00 02 00 c0 00 02 0f  08 00 06 00 1c 00 00 00")],
    ["short IFA_FLAGS", hex("02 20 00 00  02 00 00 00  08 00 02 00 c0 00 02 0f  06 00 08 00 00 00 00 00")],
  ];
  for (const [name, b] of malformed) test(`rejects ${name}`, () => expect(decodeAddress(b)).toBeInstanceOf(WireError));
});
