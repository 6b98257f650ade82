// The witness's parsers on lines captured on the lab machine (iproute2 6.1,
// nftables 1.0.6, Linux 6.18), verbatim: trailing blanks included.
import { describe, expect, test } from "bun:test";
import {
  addressesFromIpJson,
  parseIpMonitorLine,
  parseNftDuration,
  parseNftElements,
  parseNftChainListing,
  parseNftMonitorLine,
  parseNftTableListing,
} from "./monitor-text.ts";

// `ip -n NS monitor address` while the recorder's marker went on and off lo,
// then `ip addr add 192.0.2.100/32 dev eth0 valid_lft 3 preferred_lft 3` and
// `ip addr add 2001:db8::100/128 dev eth0 nodad`; later deletions and an expiry.
const IP_MONITOR = [
  "1: lo    inet 127.0.0.254/32 scope host lo",
  "       valid_lft forever preferred_lft forever",
  "Deleted 1: lo    inet 127.0.0.254/32 scope host lo",
  "       valid_lft forever preferred_lft forever",
  "3: eth0    inet 192.0.2.100/32 scope global dynamic eth0",
  "       valid_lft 3sec preferred_lft 3sec",
  "3: eth0    inet6 2001:db8::100/128 scope global nodad ",
  "       valid_lft forever preferred_lft forever",
  "Deleted 3: eth0    inet6 2001:db8::100/128 scope global nodad ",
  "       valid_lft forever preferred_lft forever",
  // The kernel removing an address whose lifetime ran out.
  "Deleted 3: eth0    inet 192.0.2.100/32 scope global dynamic eth0",
  "       valid_lft 0sec preferred_lft 0sec",
  "3: eth0    inet6 fe80::e8ff:daff:fe54:6bc9/64 scope link ",
];

// `nft monitor` while vipd-like transactions ran: the whole table in one
// (NEWTABLE, DELTABLE, NEWTABLE first, as vipd does), then an element made
// sure of, deleted and re-added with its timeout in another.
const NFT_MONITOR = [
  "add table inet vipd",
  "delete table inet vipd",
  "add table inet vipd",
  "add chain inet vipd input { type filter hook input priority raw; policy accept; }",
  "add set inet vipd vips4 { type ipv4_addr; flags constant; } ",
  "add element inet vipd vips4 { 192.0.2.100 }",
  "add set inet vipd proven4 { type ipv4_addr; flags timeout; } ",
  "add element inet vipd proven4 { 192.0.2.100 timeout 2s400ms expires 2s400ms }",
  "add rule inet vipd input ip daddr @vips4 ip daddr != @proven4 drop",
  "# new generation 2 by process 11159 (nft)",
  "add element inet vipd proven4 { 192.0.2.100 timeout 8ms expires 8ms }",
  "delete element inet vipd proven4 { 192.0.2.100 timeout 8ms expires 8ms }",
  "add element inet vipd proven4 { 2001:db8::100 timeout 1m2s448ms expires 1m2s444ms comment \"a, b\" }",
  "delete set inet vipd proven4",
  "delete table inet vipd",
  "# ERROR: We lost some netlink events!",
  "W: Received event for an unknown set.",
];

// `nft list table inet vipd`: one line per set's elements until they wrap.
const NFT_LIST = `table inet vipd {
	set vips4 {
		type ipv4_addr
		flags constant
		elements = { 192.0.2.100, 192.0.2.101 }
	}

	set vips6 {
		type ipv6_addr
		flags constant
		elements = { 2001:db8::100 }
	}

	set proven4 {
		type ipv4_addr
		flags timeout
		elements = { 192.0.2.100 timeout 2s400ms expires 2s376ms, 198.51.100.1 timeout 1m expires 59s996ms,
			     198.51.100.2 timeout 1m expires 59s996ms, 198.51.100.3 timeout 1m expires 59s996ms,
			     198.51.100.200 timeout 30s expires 29s996ms }
	}

	set proven6 {
		type ipv6_addr
		flags timeout
	}

	chain in_eth0 {
		type filter hook ingress device "eth0" priority -300; policy accept;
		ip daddr @vips4 ip daddr != @proven4 drop
	}
}
`;

// `ip -j -n NS addr show dev eth0`, the same addresses.
const IP_JSON = '[{"ifindex":3,"link":"eth1","ifname":"eth0","flags":["NO-CARRIER","BROADCAST","MULTICAST","UP","M-DOWN"],"mtu":1500,"qdisc":"noqueue","operstate":"LOWERLAYERDOWN","group":"default","txqlen":1000,"link_type":"ether","address":"96:e5:d8:a5:61:b0","broadcast":"ff:ff:ff:ff:ff:ff","addr_info":[{"family":"inet","local":"192.0.2.100","prefixlen":32,"scope":"global","dynamic":true,"label":"eth0","valid_life_time":3,"preferred_life_time":3},{"family":"inet6","local":"2001:db8::100","prefixlen":128,"scope":"global","nodad":true,"valid_life_time":4294967295,"preferred_life_time":4294967295}]}]';

describe("ip monitor address", () => {
  test("event lines parse; continuation lines are not events", () => {
    expect(IP_MONITOR.map(parseIpMonitorLine)).toEqual([
      { deleted: false, ifindex: 1, link: "lo", family: "inet", address: "127.0.0.254", prefixlen: 32 },
      null,
      { deleted: true, ifindex: 1, link: "lo", family: "inet", address: "127.0.0.254", prefixlen: 32 },
      null,
      { deleted: false, ifindex: 3, link: "eth0", family: "inet", address: "192.0.2.100", prefixlen: 32 },
      null,
      { deleted: false, ifindex: 3, link: "eth0", family: "inet6", address: "2001:db8::100", prefixlen: 128 },
      null,
      { deleted: true, ifindex: 3, link: "eth0", family: "inet6", address: "2001:db8::100", prefixlen: 128 },
      null,
      { deleted: true, ifindex: 3, link: "eth0", family: "inet", address: "192.0.2.100", prefixlen: 32 },
      null,
      { deleted: false, ifindex: 3, link: "eth0", family: "inet6", address: "fe80::e8ff:daff:fe54:6bc9", prefixlen: 64 },
    ]);
  });
  test("the forms of other iproute2 versions and options parse too", () => {
    expect(parseIpMonitorLine("[ADDR]Deleted 3: eth0@if7    inet 192.0.2.100/32 scope global eth0")).toEqual(
      { deleted: true, ifindex: 3, link: "eth0", family: "inet", address: "192.0.2.100", prefixlen: 32 });
    expect(parseIpMonitorLine("4: ppp0    inet 10.0.0.1 peer 10.0.0.2/32 scope global ppp0")?.address).toBe("10.0.0.1");
  });
  test("anything else is no event", () => {
    for (const l of ["", "garbage", "3: eth0: <BROADCAST,MULTICAST,UP> mtu 1500", "Deleted", "netlink receive error No buffer space available (105)"]) {
      expect(parseIpMonitorLine(l)).toBeNull();
    }
  });
  test("ip -j addr show lists every address of the link", () => {
    expect(addressesFromIpJson(IP_JSON)).toEqual([
      { link: "eth0", family: "inet", address: "192.0.2.100", prefixlen: 32 },
      { link: "eth0", family: "inet6", address: "2001:db8::100", prefixlen: 128 },
    ]);
    expect(addressesFromIpJson("")).toEqual([]);
    expect(addressesFromIpJson("{nope")).toEqual([]);
    expect(addressesFromIpJson('[{"ifname":"eth0"}]')).toEqual([]);
  });
});

describe("nft monitor", () => {
  test("tables, chains, rules, sets, elements, transaction ends and lost events parse", () => {
    expect(NFT_MONITOR.map(parseNftMonitorLine)).toEqual([
      { op: "add", kind: "table", family: "inet", table: "vipd" },
      { op: "delete", kind: "table", family: "inet", table: "vipd" },
      { op: "add", kind: "table", family: "inet", table: "vipd" },
      { op: "add", kind: "chain", family: "inet", table: "vipd", chain: "input", hook: "input" },
      { op: "add", kind: "set", family: "inet", table: "vipd", set: "vips4" },
      { op: "add", kind: "element", family: "inet", table: "vipd", set: "vips4", elements: [{ value: "192.0.2.100", timeoutMs: null, expiresMs: null }] },
      { op: "add", kind: "set", family: "inet", table: "vipd", set: "proven4" },
      { op: "add", kind: "element", family: "inet", table: "vipd", set: "proven4", elements: [{ value: "192.0.2.100", timeoutMs: 2400, expiresMs: 2400 }] },
      { op: "add", kind: "rule", family: "inet", table: "vipd", chain: "input" },
      { kind: "generation" },
      { op: "add", kind: "element", family: "inet", table: "vipd", set: "proven4", elements: [{ value: "192.0.2.100", timeoutMs: 8, expiresMs: 8 }] },
      { op: "delete", kind: "element", family: "inet", table: "vipd", set: "proven4", elements: [{ value: "192.0.2.100", timeoutMs: 8, expiresMs: 8 }] },
      { op: "add", kind: "element", family: "inet", table: "vipd", set: "proven4", elements: [{ value: "2001:db8::100", timeoutMs: 62448, expiresMs: 62444 }] },
      { op: "delete", kind: "set", family: "inet", table: "vipd", set: "proven4" },
      { op: "delete", kind: "table", family: "inet", table: "vipd" },
      { kind: "lost", text: "# ERROR: We lost some netlink events!" },
      { kind: "lost", text: "W: Received event for an unknown set." },
    ]);
  });
  test("chains and rules as vipd's table and an operator's nft print them", () => {
    // Captured while vipd built its tables and `nft delete chain inet vipd output` ran.
    expect([
      "add chain arp vipd output { type filter hook output priority -300; policy accept; }",
      "add rule inet vipd output handle 10 ip6 saddr @vips6 ip6 saddr != @proven6 drop",
      "delete rule inet vipd output handle 12",
      "delete chain inet vipd output",
      "add chain inet vipd regular",
      "add rule inet vipd input meta nfproto ipv4 drop",
    ].map(parseNftMonitorLine)).toEqual([
      { op: "add", kind: "chain", family: "arp", table: "vipd", chain: "output", hook: "output" },
      { op: "add", kind: "rule", family: "inet", table: "vipd", chain: "output" },
      { op: "delete", kind: "rule", family: "inet", table: "vipd", chain: "output" },
      { op: "delete", kind: "chain", family: "inet", table: "vipd", chain: "output", hook: null },
      { op: "add", kind: "chain", family: "inet", table: "vipd", chain: "regular", hook: null },
      { op: "add", kind: "rule", family: "inet", table: "vipd", chain: "input" },
    ]);
  });
  test("durations in every unit nft prints", () => {
    expect(["2s448ms", "996ms", "3s", "1m", "1m2s448ms", "1d2h", "1h0m5s"].map(parseNftDuration)).toEqual([2448, 996, 3000, 60_000, 62_448, 93_600_000, 3_605_000]);
    for (const bad of ["", "2", "s", "2x", "1ms2s"]) expect(parseNftDuration(bad)).toBeNull();
  });
  test("several elements in one brace, commas inside a comment", () => {
    expect(parseNftElements(' 192.0.2.1 timeout 1s expires 500ms comment "x, y", 192.0.2.2 ')).toEqual([
      { value: "192.0.2.1", timeoutMs: 1000, expiresMs: 500 },
      { value: "192.0.2.2", timeoutMs: null, expiresMs: null },
    ]);
    expect(parseNftElements("")).toEqual([]);
  });
});

describe("nft list table", () => {
  test("every set with its elements, wrapped lines included", () => {
    expect(parseNftTableListing(NFT_LIST)).toEqual([
      { name: "vips4", elements: [{ value: "192.0.2.100", timeoutMs: null, expiresMs: null }, { value: "192.0.2.101", timeoutMs: null, expiresMs: null }] },
      { name: "vips6", elements: [{ value: "2001:db8::100", timeoutMs: null, expiresMs: null }] },
      { name: "proven4", elements: [
        { value: "192.0.2.100", timeoutMs: 2400, expiresMs: 2376 },
        { value: "198.51.100.1", timeoutMs: 60_000, expiresMs: 59_996 },
        { value: "198.51.100.2", timeoutMs: 60_000, expiresMs: 59_996 },
        { value: "198.51.100.3", timeoutMs: 60_000, expiresMs: 59_996 },
        { value: "198.51.100.200", timeoutMs: 30_000, expiresMs: 29_996 },
      ] },
      { name: "proven6", elements: [] },
    ]);
  });
  test("chains with what they hook and their rules, one per line", () => {
    expect(parseNftChainListing(NFT_LIST)).toEqual([{ name: "in_eth0", hook: "ingress", rules: ["ip daddr @vips4 ip daddr != @proven4 drop"] }]);
    expect(parseNftChainListing("table inet vipd {\n\tchain input {\n\t\ttype filter hook input priority raw; policy accept;\n\t\tip daddr @vips4 ip daddr != @proven4 drop\n" +
      "\t}\n\n\tchain regular {\n\t\tcounter packets 0 bytes 0\n\t}\n}\n")).toEqual([
      { name: "input", hook: "input", rules: ["ip daddr @vips4 ip daddr != @proven4 drop"] },
      { name: "regular", hook: null, rules: ["counter packets 0 bytes 0"] },
    ]);
  });
  test("an empty table has no sets; nothing readable, nothing found", () => {
    expect(parseNftTableListing("table inet vipd {\n}\n")).toEqual([]);
    expect(parseNftTableListing("")).toEqual([]);
    expect(parseNftChainListing("table inet vipd {\n}\n")).toEqual([]);
  });
});
