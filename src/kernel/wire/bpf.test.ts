import { describe, expect, test } from "bun:test";
import { Bpf, encodeBpf, neighborAdvertisementFilter, notFromPortFilter } from "./bpf.ts";
import { hex } from "./hex-fixture.ts";

describe("BPF", () => {
  test("the Neighbor Advertisement filter, as `tcpdump -dd 'ip6[6] == 58 and ip6[40] == 136'` would write it without the EtherType check", () => {
    expect(encodeBpf(neighborAdvertisementFilter())).toEqual(hex(`
      30 00 00 00 14 00 00 00 // ldb [20]            IPv6 next header
      15 00 00 03 3a 00 00 00 // jeq #58, 0, 3       ICMPv6, else drop
      30 00 00 00 36 00 00 00 // ldb [54]            ICMPv6 type
      15 00 00 01 88 00 00 00 // jeq #136, 0, 1      neighbor advertisement, else drop
      06 00 00 00 00 00 04 00 // ret #262144         keep the frame
      06 00 00 00 00 00 00 00 // ret #0              drop it
    `));
  });

  test("the filter against our own port ID compares nlmsg_pid as BPF loads it, big-endian", () => {
    // Port 0x11223344 is 44 33 22 11 on the wire (host order), which ld [12] reads as 0x44332211.
    expect(encodeBpf(notFromPortFilter(0x11223344))).toEqual(hex(`
      20 00 00 00 0c 00 00 00 // ld [12]             nlmsg_pid
      15 00 01 00 11 22 33 44 // jeq #0x44332211, 1, 0   ours: drop
      06 00 00 00 ff ff ff ff // ret #-1             keep the datagram
      06 00 00 00 00 00 00 00 // ret #0              drop it
    `));
    // The top bit set (ports the kernel picks are often negative as int32).
    expect(notFromPortFilter(0xeb0e7a1e)[1]!.k).toBe(0x1e7a0eeb);
  });

  test("refuses an empty or oversized program", () => {
    expect(() => encodeBpf([])).toThrow(/1 to 4096 instructions/);
    expect(() => encodeBpf(Array(4097).fill({ code: Bpf.RETURN, jt: 0, jf: 0, k: 0 }))).toThrow(/not 4097/);
  });
});
