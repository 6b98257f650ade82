// What the fence's element batches tell the netlink socket about their size:
// the slow-send allowance (netlink.ts) counts what the kernel carries out.
import { describe, expect, test } from "bun:test";
import { parseIp } from "./ip.ts";
import { elementMessages } from "./nft-ruleset.ts";

const vips = Array.from({ length: 100 }, (_, i) => parseIp(i % 2 === 0 ? `192.0.2.${128 + i / 2}` : `2001:db8::1:${((i + 1) / 2).toString(16)}`)!);

describe("elementMessages", () => {
  test("each message counts its set elements as items: a batch allowing 100 VIPs is 150 elements, not 3 messages", () => {
    const allow = elementMessages(vips.map((ip) => ({ ip, timeoutMs: 2400 })), true);
    // IPv4 in the inet and the arp table's proven4, IPv6 in the inet table's proven6.
    expect(allow.map((m) => m.items)).toEqual([50, 50, 50]);
  });

  test("where the kernel keeps old timeouts, the delete and re-add count too", () => {
    const allow = elementMessages(vips.slice(0, 2).map((ip) => ({ ip, timeoutMs: 2400 })), false);
    expect(allow.map((m) => m.items)).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 1]);
    const mixed = elementMessages([{ ip: vips[0]!, timeoutMs: 2400 }, { ip: vips[2]!, timeoutMs: null }], true);
    // Both ensured, the denied one deleted, in each of the two tables of IPv4.
    expect(mixed.map((m) => m.items)).toEqual([2, 1, 2, 1]);
  });
});
