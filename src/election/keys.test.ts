import { describe, expect, test } from "bun:test";
import {
  agentKey, compareRevisions, decodeDrain, decodeHandover, decodeHeartbeat, decodeMacs, drainKey, electionKey, encodeDrain, encodeHandover, encodeHeartbeat, encodeMacs, handoverKey,
  heartbeatKey, macsKey, parseKey, prefixEnd,
} from "./keys.ts";

const P = "/vipd/";

describe("parseKey", () => {
  const cases: [string, ReturnType<typeof parseKey>][] = [
    [agentKey(P, "cp-1"), { kind: "agent", node: "cp-1" }],
    [heartbeatKey(P, "cp-1"), { kind: "heartbeat", node: "cp-1" }],
    [electionKey(P, "192.0.2.10", "cp-2"), { kind: "election", vip: "192.0.2.10", node: "cp-2" }],
    [electionKey(P, "2001:db8::10", "n.3"), { kind: "election", vip: "2001:db8::10", node: "n.3" }],
    [drainKey(P, "cp-1"), { kind: "drain", node: "cp-1" }],
    [handoverKey(P, "192.0.2.10"), { kind: "handover", vip: "192.0.2.10" }],
    [handoverKey(P, "2001:db8::10"), { kind: "handover", vip: "2001:db8::10" }],
    ["/vipd/drains/-bad", { kind: "unknown" }],
    [macsKey(P, "cp-1"), { kind: "macs", node: "cp-1" }],
    ["/vipd/macs/cp-1/eth0", { kind: "unknown" }],
    ["/vipd/handovers/", { kind: "unknown" }],
    ["/vipd/handovers/192.0.2.10/x", { kind: "unknown" }],
    ["/vipd/vip/192.0.2.10/694d8f2b1c3e9a01", { kind: "legacy", vip: "192.0.2.10" }],
    ["/vipd/agents/", { kind: "unknown" }],
    ["/vipd/agents/-bad", { kind: "unknown" }],
    ["/vipd/elections/192.0.2.10", { kind: "unknown" }],
    ["/vipd/elections/a/b/cp-1", { kind: "unknown" }],
    ["/vipd/something", { kind: "unknown" }],
    ["/other/agents/cp-1", null],
  ];
  for (const [key, want] of cases) test(key, () => expect(parseKey(P, key)).toEqual(want));
});

test("prefixEnd increments the last byte that can be", () => {
  expect(prefixEnd("/vipd/").toString()).toBe("/vipd0");
  expect([...prefixEnd(Buffer.from([0x61, 0xff]))]).toEqual([0x62]);
  expect([...prefixEnd(Buffer.from([0xff, 0xff]))]).toEqual([0]);
});

describe("heartbeat values", () => {
  test("round trip", () => {
    const h = { run: "ab12", seq: 7, claims: ["192.0.2.10", "2001:db8::1"] };
    expect(decodeHeartbeat(encodeHeartbeat(h))).toEqual(h);
  });
  for (const bad of ["", "null", "[]", '{"run":"","seq":1,"claims":[]}', '{"run":"a","seq":-1,"claims":[]}', '{"run":"a","seq":1.5,"claims":[]}', '{"run":"a","seq":1,"claims":[1]}', '{"run":"a","seq":1}']) {
    test(`rejects ${JSON.stringify(bad)}`, () => expect(decodeHeartbeat(bad)).toBeNull());
  }
});

describe("drain values", () => {
  test("round trip", () => {
    const d = { by: "ops@admin-1", at: "2026-11-26T10:00:00.000Z", reason: "kernel upgrade" };
    expect(decodeDrain(encodeDrain(d))).toEqual(d);
  });
  for (const bad of ["", "yes", "[]", '{"by":"a","at":"b"}', '{"by":1,"at":"b","reason":""}']) {
    test(`rejects ${JSON.stringify(bad)}`, () => expect(decodeDrain(bad)).toBeNull());
  }
});

describe("hand-over values", () => {
  test("round trip", () => {
    const h = { to: "cp-2", toRevision: "1234", by: "ops@admin-1", at: "2026-11-26T10:00:00.000Z" };
    expect(decodeHandover(encodeHandover(h))).toEqual(h);
  });
  const ok = { to: "cp-2", toRevision: "1234", by: "a", at: "b" };
  for (const bad of ["", "{}", JSON.stringify({ ...ok, to: "-x" }), JSON.stringify({ ...ok, toRevision: "0" }), JSON.stringify({ ...ok, toRevision: 1234 }), JSON.stringify({ ...ok, by: null })]) {
    test(`rejects ${bad || '""'}`, () => expect(decodeHandover(bad)).toBeNull());
  }
});

describe("MAC values", () => {
  test("round trip, VIPs in a stable order", () => {
    const m = { "2001:db8::10": "02:00:00:00:00:0b", "192.0.2.10": "02:00:00:00:00:0a" };
    expect(encodeMacs(m)).toBe('{"192.0.2.10":"02:00:00:00:00:0a","2001:db8::10":"02:00:00:00:00:0b"}');
    expect(decodeMacs(encodeMacs(m))).toEqual(m);
    expect(decodeMacs("{}")).toEqual({});
  });
  for (const bad of ["", "[]", '"02:00:00:00:00:0a"', '{"192.0.2.10":1}', '{"192.0.2.10":"02:00:00:00:00"}', '{"192.0.2.10":"02:00:00:00:00:0A"}', '{"192.0.2.10":"02-00-00-00-00-0a"}']) {
    test(`rejects ${bad || '""'}`, () => expect(decodeMacs(bad)).toBeNull());
  }
});

test("revisions compare as 64-bit integers, not text", () => {
  expect(compareRevisions("9", "10")).toBe(-1);
  expect(compareRevisions("9223372036854775807", "9223372036854775806")).toBe(1);
  expect(compareRevisions(5, "5")).toBe(0);
});
