// Effective ownership from what the monitors saw: the address, vipd's fence,
// and the silent expiry of a proven element, on hand-made observations.
import { describe, expect, test } from "bun:test";
import { parseNftChainListing, parseNftMonitorLine, parseNftTableListing } from "./monitor-text.ts";
import {
  type FenceChain,
  fenceFacts,
  fenceObservations,
  HOOKED,
  NO_CHAINS,
  NO_FENCE,
  type Observation,
  type OwnershipEdge,
  OwnershipLedger,
  ownershipIntervals,
} from "./ownership.ts";

const VIP = "192.0.2.100";
const address = (present: boolean): Observation => ({ kind: "address", present });
const table = (present: boolean): Observation => ({ kind: "table", present });
const guardSet = (present: boolean): Observation => ({ kind: "set", set: "guard", present });
const guard = (present: boolean): Observation => ({ kind: "element", set: "guard", present, until: Infinity });
const provenSet = (present: boolean): Observation => ({ kind: "set", set: "proven", present });
const proven = (until: number): Observation => ({ kind: "element", set: "proven", present: true, until });
const unproven: Observation = { kind: "element", set: "proven", present: false, until: Infinity };
const chain = (name: FenceChain, present: boolean, hook: string | null = present ? name : null): Observation => ({ kind: "chain", chain: name, present, hook });
const rule = (name: FenceChain, present: boolean): Observation => ({ kind: "rule", chain: name, present });
const rules = (name: FenceChain, present: boolean, n = 3): Observation[] => Array.from({ length: n }, () => rule(name, present));
/** vipd's chains as it creates them, each with its three rules. */
const chains = [chain("input", true), ...rules("input", true), chain("output", true), ...rules("output", true)];
/** vipd's table as it creates it: guard set with the VIP, empty proven set, both chains hooked. */
const fence = [table(true), guardSet(true), guard(true), provenSet(true), ...chains];

const edges = (l: OwnershipLedger) => l.edges.map((e) => [e.node, e.t, e.held]);

describe("without vipd's table the address decides", () => {
  test("add and delete are the edges; a refresh is none", () => {
    const l = new OwnershipLedger();
    l.reset("n1", 0, NO_FENCE);
    l.observe("n1", 10, address(true));
    l.observe("n1", 20, address(true));
    l.observe("n1", 30, address(false));
    expect(edges(l)).toEqual([["n1", 10, true], ["n1", 30, false]]);
    expect(l.addressEdges.map((e) => [e.t, e.held])).toEqual([[10, true], [30, false]]);
  });
  test("a node first read holding gets an edge at the read; one not holding gets none", () => {
    const l = new OwnershipLedger();
    l.reset("n1", 5, { ...NO_FENCE, address: true });
    l.reset("n2", 5, NO_FENCE);
    expect(edges(l)).toEqual([["n1", 5, true]]);
    expect(l.holders(6)).toEqual(["n1"]);
  });
});

describe("with vipd's table the VIP must be proven", () => {
  test("the address alone is fenced; a proven element opens it; deleting it closes it", () => {
    const l = new OwnershipLedger();
    l.reset("n1", 0, NO_FENCE);
    l.observe("n1", 1, fence);
    l.observe("n1", 10, address(true));
    expect(l.isHeld("n1", 11)).toBe(false);
    expect(l.addressHolders()).toEqual(["n1"]);
    l.observe("n1", 20, proven(2420));
    l.observe("n1", 500, unproven);
    expect(edges(l)).toEqual([["n1", 20, true], ["n1", 500, false]]);
  });
  test("an element that times out releases at its expiry, however late anyone asks", () => {
    const l = new OwnershipLedger();
    l.reset("n1", 0, { address: true, table: true, guard: "in", provenUntil: null, chains: HOOKED });
    l.observe("n1", 100, proven(2500));
    expect(l.nextExpiry()).toBe(2500);
    expect(l.holders(2499)).toEqual(["n1"]);
    expect(l.holders(9000)).toEqual([]);
    expect(edges(l)).toEqual([["n1", 100, true], ["n1", 2500, false]]);
    expect(l.nextExpiry()).toBeNull();
  });
  test("refreshes before the expiry keep the hold; an event after a missed expiry comes after the release", () => {
    const l = new OwnershipLedger();
    l.reset("n1", 0, { address: true, table: true, guard: "in", provenUntil: 2400, chains: HOOKED });
    l.observe("n1", 250, proven(2650));
    l.observe("n1", 500, proven(2900));
    // Nothing for 3 s, then a refresh: the kernel dropped traffic from 2900 until then.
    l.observe("n1", 3100, proven(5500));
    expect(edges(l)).toEqual([["n1", 0, true], ["n1", 2900, false], ["n1", 3100, true]]);
  });
  test("expiries on several nodes are recorded in order of their time", () => {
    const seen: OwnershipEdge[] = [];
    const l = new OwnershipLedger({ onEdge: (e) => seen.push(e) });
    l.reset("n1", 0, { address: true, table: true, guard: "in", provenUntil: 300, chains: HOOKED });
    l.reset("n2", 0, { address: true, table: true, guard: "in", provenUntil: 200, chains: HOOKED });
    l.observe("n3", 400, address(true));
    expect(seen.map((e) => [e.node, e.t, e.held])).toEqual([["n1", 0, true], ["n2", 0, true], ["n2", 200, false], ["n1", 300, false], ["n3", 400, true]]);
  });
  test("one transaction is applied whole: ensure, delete and re-add leave no gap", () => {
    const l = new OwnershipLedger();
    l.reset("n1", 0, { address: true, table: true, guard: "in", provenUntil: 2400, chains: HOOKED });
    l.observe("n1", 300, [proven(308), unproven, proven(2700)]);
    expect(edges(l)).toEqual([["n1", 0, true]]);
    expect(l.factsOf("n1").provenUntil).toBe(2700);
  });
  test("the table rebuilt in one transaction (new, delete, new, sets, elements) keeps a proven VIP held", () => {
    const l = new OwnershipLedger();
    l.reset("n1", 0, { address: true, table: true, guard: "in", provenUntil: 2400, chains: HOOKED });
    l.observe("n1", 100, [table(true), table(false), table(true), guardSet(true), guard(true), provenSet(true), proven(2500), ...chains]);
    expect(edges(l)).toEqual([["n1", 0, true]]);
  });
  test("a table without the VIP in its guard set does not fence it; one without a guard set does", () => {
    const l = new OwnershipLedger();
    l.reset("n1", 0, { address: true, table: true, guard: "out", provenUntil: null, chains: HOOKED });
    l.reset("n2", 0, { address: true, table: true, guard: "absent", provenUntil: null, chains: HOOKED });
    expect(l.holders(1)).toEqual(["n1"]);
  });
  test("sets fence nothing without their chains: a deleted or flushed chain lifts the fence, a rebuilt one restores it", () => {
    const l = new OwnershipLedger();
    l.reset("n1", 0, { address: true, table: true, guard: "in", provenUntil: null, chains: HOOKED });
    expect(l.isHeld("n1", 1)).toBe(false);
    // `nft delete chain inet vipd output` prints its rules' deletions, then the chain's.
    l.observe("n1", 10, [...rules("output", false), chain("output", false)]);
    l.observe("n1", 20, [chain("output", true), ...rules("output", true)]);
    // `nft flush chain inet vipd input`: the chain stays, hooked, with no rule in it.
    l.observe("n1", 30, rules("input", false));
    l.observe("n1", 40, rules("input", true));
    // One rule short is not vipd's fence either.
    l.observe("n1", 50, rule("input", false));
    expect(edges(l)).toEqual([["n1", 10, true], ["n1", 20, false], ["n1", 30, true], ["n1", 40, false], ["n1", 50, true]]);
  });
  test("a chain that hooks nothing, or the wrong hook, fences nothing", () => {
    const l = new OwnershipLedger();
    const regular = { ...HOOKED, input: { hook: null, rules: 3 } };
    const swapped = { input: { hook: "output", rules: 3 }, output: { hook: "input", rules: 3 } };
    l.reset("n1", 0, { address: true, table: true, guard: "in", provenUntil: null, chains: regular });
    l.reset("n2", 0, { address: true, table: true, guard: "in", provenUntil: null, chains: swapped });
    l.reset("n3", 0, { address: true, table: true, guard: "in", provenUntil: null, chains: HOOKED });
    expect(l.holders(1).sort()).toEqual(["n1", "n2"]);
  });
  test("a table being built is no fence until its chains come: the transaction is applied whole", () => {
    const l = new OwnershipLedger();
    l.reset("n1", 0, { ...NO_FENCE, address: true });
    l.observe("n1", 10, fence);
    l.observe("n2", 10, [table(true), guardSet(true), guard(true), provenSet(true)]);
    l.observe("n2", 20, address(true));
    expect(edges(l)).toEqual([["n1", 0, true], ["n1", 10, false], ["n2", 20, true]]);
  });
  test("deleting the table lifts the fence: the address decides again", () => {
    const l = new OwnershipLedger();
    l.reset("n1", 0, { address: true, table: true, guard: "in", provenUntil: null, chains: HOOKED });
    l.observe("n1", 50, [provenSet(false), guardSet(false), table(false)]);
    expect(edges(l)).toEqual([["n1", 50, true]]);
    expect(l.factsOf("n1")).toEqual({ address: true, table: false, guard: "absent", provenUntil: null, chains: NO_CHAINS });
  });
  test("time never runs backwards: a late observation is taken at the latest time seen", () => {
    const l = new OwnershipLedger();
    l.reset("n1", 100, NO_FENCE);
    l.observe("n1", 50, address(true));
    expect(edges(l)).toEqual([["n1", 100, true]]);
  });
});

describe("from monitor lines to observations", () => {
  const parse = (line: string) => {
    const e = parseNftMonitorLine(line);
    if (!e) throw new Error(`no event in ${line}`);
    return e;
  };
  test("only vipd's table and the VIP's family's sets matter; an expiry is dated from the line's arrival", () => {
    expect(fenceObservations(parse("add element inet vipd proven4 { 192.0.2.100 timeout 2s448ms expires 2s400ms }"), VIP, 1000))
      .toEqual([{ kind: "element", set: "proven", present: true, until: 3400 }]);
    expect(fenceObservations(parse("add element inet vipd vips4 { 192.0.2.100 }"), VIP, 0)).toEqual([{ kind: "element", set: "guard", present: true, until: Infinity }]);
    expect(fenceObservations(parse("delete set inet vipd proven4"), VIP, 0)).toEqual([{ kind: "set", set: "proven", present: false }]);
    expect(fenceObservations(parse("add table inet vipd"), VIP, 0)).toEqual([{ kind: "table", present: true }]);
    for (const other of [
      "add element inet vipd proven4 { 192.0.2.7 timeout 2s expires 2s }",
      "add element inet vipd proven6 { 2001:db8::100 timeout 2s expires 2s }",
      "add table netdev vipd_lab_partition",
      "add table netdev vipd",
      "add table inet vipd_probe",
      "add element arp vipd proven4 { 192.0.2.100 timeout 2s expires 2s }",
      "add table arp vipd",
    ]) expect(fenceObservations(parse(other), VIP, 0)).toEqual([]);
    expect(fenceObservations(parse("add element inet vipd proven6 { 2001:db8::100 timeout 2s expires 2s }"), "2001:DB8::100", 10))
      .toEqual([{ kind: "element", set: "proven", present: true, until: 2010 }]);
  });
  test("chain and rule lines of vipd's inet chains are observations; other chains and tables are not", () => {
    expect(fenceObservations(parse("add chain inet vipd input { type filter hook input priority raw; policy accept; }"), VIP, 0))
      .toEqual([{ kind: "chain", chain: "input", present: true, hook: "input" }]);
    expect(fenceObservations(parse("delete chain inet vipd output"), VIP, 0)).toEqual([{ kind: "chain", chain: "output", present: false, hook: null }]);
    expect(fenceObservations(parse("add rule inet vipd input handle 6 ip6 daddr @vips6 ip6 daddr != @proven6 drop"), VIP, 0))
      .toEqual([{ kind: "rule", chain: "input", present: true }]);
    expect(fenceObservations(parse("delete rule inet vipd output handle 10"), VIP, 0)).toEqual([{ kind: "rule", chain: "output", present: false }]);
    for (const other of [
      "add chain arp vipd input { type filter hook input priority -300; policy accept; }",
      "add rule arp vipd output arp htype 1 arp ptype ip arp hlen 6 arp plen 4 arp saddr ip @vips4 arp saddr ip != @proven4 drop",
      "add chain inet vipd regular",
      "add chain netdev vipd_lab_partition in { type filter hook ingress device \"eth0\" priority -500; policy drop; }",
    ]) expect(fenceObservations(parse(other), VIP, 0)).toEqual([]);
  });
  const LISTING = "table inet vipd {\n\tset vips4 {\n\t\ttype ipv4_addr\n\t\telements = { 192.0.2.100 }\n\t}\n" +
    "\tset proven4 {\n\t\ttype ipv4_addr\n\t\tflags timeout\n\t\telements = { 192.0.2.100 timeout 2s400ms expires 1s200ms }\n\t}\n" +
    "\tchain input {\n\t\ttype filter hook input priority raw; policy accept;\n\t\tip daddr @vips4 ip daddr != @proven4 drop\n" +
    "\t\tip6 daddr @vips6 ip6 daddr != @proven6 drop\n\t\ticmpv6 type nd-neighbor-solicit @th,64,128 @vips6 @th,64,128 != @proven6 drop\n\t}\n" +
    "\tchain output {\n\t\ttype filter hook output priority raw; policy accept;\n\t\tip saddr @vips4 ip saddr != @proven4 drop\n" +
    "\t\tip6 saddr @vips6 ip6 saddr != @proven6 drop\n\t\ticmpv6 type nd-neighbor-advert @th,64,128 @vips6 @th,64,128 != @proven6 drop\n\t}\n}\n";
  const listing = (text: string) => ({ sets: parseNftTableListing(text), chains: parseNftChainListing(text) });
  test("a listing read at t gives the facts; no table, no fence", () => {
    expect(fenceFacts(listing(LISTING), VIP, 500)).toEqual({ table: true, guard: "in", provenUntil: 1700, chains: HOOKED });
    expect(fenceFacts(listing(LISTING), "192.0.2.101", 500)).toEqual({ table: true, guard: "out", provenUntil: null, chains: HOOKED });
    expect(fenceFacts({ sets: [], chains: [] }, VIP, 500)).toEqual({ table: true, guard: "absent", provenUntil: null, chains: NO_CHAINS });
    expect(fenceFacts(null, VIP, 500)).toEqual({ table: false, guard: "absent", provenUntil: null, chains: NO_CHAINS });
  });
  test("a listed chain without the rule for the VIP's family fences nothing", () => {
    const flushed = LISTING.replace("\t\tip saddr @vips4 ip saddr != @proven4 drop\n", "\t\tip saddr @vips4 accept\n");
    const facts = fenceFacts(listing(flushed), VIP, 500);
    expect(facts.chains).toEqual({ input: HOOKED.input, output: { hook: "output", rules: 0 } });
    // The IPv6 rule is still there: an IPv6 VIP stays fenced.
    expect(fenceFacts(listing(flushed), "2001:db8::100", 500).chains).toEqual(HOOKED);
  });
});

test("effective intervals are the address intervals minus the fenced stretches", () => {
  const l = new OwnershipLedger();
  l.reset("n1", 0, { address: false, table: true, guard: "in", provenUntil: null, chains: HOOKED });
  l.observe("n1", 10, proven(1000));
  l.observe("n1", 20, address(true));
  l.observe("n1", 3000, address(false));
  expect(ownershipIntervals(l.edges, ["n1"], 0, 4000).get("n1")).toEqual([{ start: 20, end: 1000 }]);
  expect(ownershipIntervals(l.addressEdges, ["n1"], 0, 4000).get("n1")).toEqual([{ start: 20, end: 3000 }]);
});
