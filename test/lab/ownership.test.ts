// Effective ownership from what the monitors saw: the address, vipd's fence,
// and the silent expiry of a proven element, on hand-made observations.
import { describe, expect, test } from "bun:test";
import { parseNftMonitorLine, parseNftTableListing } from "./monitor-text.ts";
import {
  fenceFacts,
  fenceObservations,
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
/** vipd's table as it creates it: guard set with the VIP, empty proven set. */
const fence = [table(true), guardSet(true), guard(true), provenSet(true)];

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
    l.reset("n1", 0, { address: true, table: true, guard: "in", provenUntil: null });
    l.observe("n1", 100, proven(2500));
    expect(l.nextExpiry()).toBe(2500);
    expect(l.holders(2499)).toEqual(["n1"]);
    expect(l.holders(9000)).toEqual([]);
    expect(edges(l)).toEqual([["n1", 100, true], ["n1", 2500, false]]);
    expect(l.nextExpiry()).toBeNull();
  });
  test("refreshes before the expiry keep the hold; an event after a missed expiry comes after the release", () => {
    const l = new OwnershipLedger();
    l.reset("n1", 0, { address: true, table: true, guard: "in", provenUntil: 2400 });
    l.observe("n1", 250, proven(2650));
    l.observe("n1", 500, proven(2900));
    // Nothing for 3 s, then a refresh: the kernel dropped traffic from 2900 until then.
    l.observe("n1", 3100, proven(5500));
    expect(edges(l)).toEqual([["n1", 0, true], ["n1", 2900, false], ["n1", 3100, true]]);
  });
  test("expiries on several nodes are recorded in order of their time", () => {
    const seen: OwnershipEdge[] = [];
    const l = new OwnershipLedger({ onEdge: (e) => seen.push(e) });
    l.reset("n1", 0, { address: true, table: true, guard: "in", provenUntil: 300 });
    l.reset("n2", 0, { address: true, table: true, guard: "in", provenUntil: 200 });
    l.observe("n3", 400, address(true));
    expect(seen.map((e) => [e.node, e.t, e.held])).toEqual([["n1", 0, true], ["n2", 0, true], ["n2", 200, false], ["n1", 300, false], ["n3", 400, true]]);
  });
  test("one transaction is applied whole: ensure, delete and re-add leave no gap", () => {
    const l = new OwnershipLedger();
    l.reset("n1", 0, { address: true, table: true, guard: "in", provenUntil: 2400 });
    l.observe("n1", 300, [proven(308), unproven, proven(2700)]);
    expect(edges(l)).toEqual([["n1", 0, true]]);
    expect(l.factsOf("n1").provenUntil).toBe(2700);
  });
  test("the table rebuilt in one transaction (new, delete, new, sets, elements) keeps a proven VIP held", () => {
    const l = new OwnershipLedger();
    l.reset("n1", 0, { address: true, table: true, guard: "in", provenUntil: 2400 });
    l.observe("n1", 100, [table(true), table(false), table(true), guardSet(true), guard(true), provenSet(true), proven(2500)]);
    expect(edges(l)).toEqual([["n1", 0, true]]);
  });
  test("a table without the VIP in its guard set does not fence it; one without a guard set does", () => {
    const l = new OwnershipLedger();
    l.reset("n1", 0, { address: true, table: true, guard: "out", provenUntil: null });
    l.reset("n2", 0, { address: true, table: true, guard: "absent", provenUntil: null });
    expect(l.holders(1)).toEqual(["n1"]);
  });
  test("deleting the table lifts the fence: the address decides again", () => {
    const l = new OwnershipLedger();
    l.reset("n1", 0, { address: true, table: true, guard: "in", provenUntil: null });
    l.observe("n1", 50, [provenSet(false), guardSet(false), table(false)]);
    expect(edges(l)).toEqual([["n1", 50, true]]);
    expect(l.factsOf("n1")).toEqual({ address: true, table: false, guard: "absent", provenUntil: null });
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
  test("a listing read at t gives the facts; no table, no fence", () => {
    const sets = parseNftTableListing("table inet vipd {\n\tset vips4 {\n\t\ttype ipv4_addr\n\t\telements = { 192.0.2.100 }\n\t}\n" +
      "\tset proven4 {\n\t\ttype ipv4_addr\n\t\tflags timeout\n\t\telements = { 192.0.2.100 timeout 2s400ms expires 1s200ms }\n\t}\n}\n");
    expect(fenceFacts(sets, VIP, 500)).toEqual({ table: true, guard: "in", provenUntil: 1700 });
    expect(fenceFacts(sets, "192.0.2.101", 500)).toEqual({ table: true, guard: "out", provenUntil: null });
    expect(fenceFacts([], VIP, 500)).toEqual({ table: true, guard: "absent", provenUntil: null });
    expect(fenceFacts(null, VIP, 500)).toEqual({ table: false, guard: "absent", provenUntil: null });
  });
});

test("effective intervals are the address intervals minus the fenced stretches", () => {
  const l = new OwnershipLedger();
  l.reset("n1", 0, { address: false, table: true, guard: "in", provenUntil: null });
  l.observe("n1", 10, proven(1000));
  l.observe("n1", 20, address(true));
  l.observe("n1", 3000, address(false));
  expect(ownershipIntervals(l.edges, ["n1"], 0, 4000).get("n1")).toEqual([{ start: 20, end: 1000 }]);
  expect(ownershipIntervals(l.addressEdges, ["n1"], 0, 4000).get("n1")).toEqual([{ start: 20, end: 3000 }]);
});
