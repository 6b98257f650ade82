import { describe, expect, test } from "bun:test";
import { decideCandidacy, decideHold, type ReleaseCode, type VipFacts } from "./decision.ts";

const NOW = 10_000;
const holder: VipFacts = { now: NOW, head: true, proof: NOW + 2000, claimedUntil: null, held: false, link: "up", gateOpen: true, withdrawn: null, stopping: false, removed: false, drained: null, conflict: null, yielding: null };

describe("decideHold", () => {
  test("a proven head on an up link with an open gate holds, until its proof runs out", () => {
    expect(decideHold(holder)).toEqual({ hold: true, deadline: NOW + 2000 });
    expect(decideHold({ ...holder, proof: NOW + 1 })).toEqual({ hold: true, deadline: NOW + 1 });
  });
  const unproven = "no committed heartbeat proves our key (etcd unreachable or slow)";
  const cases: [string, Partial<VipFacts>, string, ReleaseCode][] = [
    ["stopping", { stopping: true }, "shutting down", "shutdown"],
    ["link gone", { link: "absent" }, "link is missing", "link-down"],
    ["link down", { link: "down" }, "link is down", "link-down"],
    ["gate closed", { gateOpen: false }, "kube-apiserver gate closed", "gate-closed"],
    ["removed by a reload", { removed: true }, "removed from the configuration", "removed"],
    ["drained", { drained: "drained by ops@admin at 2026-11-26T10:00:00Z" }, "drained by ops@admin at 2026-11-26T10:00:00Z", "drained"],
    ["a stranger answers for it", { conflict: "address conflict: 02:00:00:00:00:99 answers" }, "address conflict: 02:00:00:00:00:99 answers", "conflict"],
    ["withdrawn by the slot", { withdrawn: "the kernel refuses the address" }, "the kernel refuses the address", "withdrawn"],
    ["handing over", { yielding: "handing over to n2" }, "handing over to n2", "handover"],
    ["not first in the queue", { head: false }, "not first in the queue", "not-elected"],
    ["never proven", { proof: null }, unproven, "fence-expired"],
    // etcd still says we are first, but our clock says the proof has run out:
    // another node may take over now. This is the case the fence exists for.
    ["a stale head whose proof ran out", { proof: NOW - 1 }, unproven, "fence-expired"],
    ["a proof that ends this very instant", { proof: NOW }, unproven, "fence-expired"],
    ["another node's claim still runs", { claimedUntil: NOW + 300 }, "another node may still answer for it for 300 ms (its claim runs out)", "claimed"],
  ];
  for (const [name, change, reason, code] of cases) {
    test(`${name} → not held: ${reason}`, () => expect(decideHold({ ...holder, ...change })).toEqual({ hold: false, reason, code }));
  }
  test("a claim that has run out does not block", () => {
    expect(decideHold({ ...holder, claimedUntil: NOW })).toEqual({ hold: true, deadline: NOW + 2000 });
  });
  test("another node's claim does not take a VIP from its holder", () => {
    expect(decideHold({ ...holder, held: true, claimedUntil: NOW + 300 })).toEqual({ hold: true, deadline: NOW + 2000 });
  });
  test("the first failing condition names the reason", () => {
    expect(decideHold({ ...holder, stopping: true, link: "down", head: false })).toEqual({ hold: false, reason: "shutting down", code: "shutdown" });
  });
});

describe("decideCandidacy", () => {
  const ready = { link: "up", gateOpen: true, stopping: false, withdrawn: null, removed: false, drained: null, conflict: null, yielding: null } as const;
  test("stands only when it could hold", () => {
    expect(decideCandidacy(ready)).toEqual({ stand: true, reason: "ready" });
    expect(decideCandidacy({ ...ready, link: "down" })).toEqual({ stand: false, reason: "link is down", code: "link-down" });
    expect(decideCandidacy({ ...ready, link: "absent" })).toEqual({ stand: false, reason: "link is missing", code: "link-down" });
    expect(decideCandidacy({ ...ready, gateOpen: false })).toEqual({ stand: false, reason: "kube-apiserver gate closed", code: "gate-closed" });
    expect(decideCandidacy({ ...ready, stopping: true })).toEqual({ stand: false, reason: "shutting down", code: "shutdown" });
    expect(decideCandidacy({ ...ready, withdrawn: "EACCES" })).toEqual({ stand: false, reason: "EACCES", code: "withdrawn" });
    expect(decideCandidacy({ ...ready, removed: true })).toEqual({ stand: false, reason: "removed from the configuration", code: "removed" });
    expect(decideCandidacy({ ...ready, drained: "drained by ops" })).toEqual({ stand: false, reason: "drained by ops", code: "drained" });
    expect(decideCandidacy({ ...ready, conflict: "address conflict" })).toEqual({ stand: false, reason: "address conflict", code: "conflict" });
    expect(decideCandidacy({ ...ready, yielding: "handing over to n2" })).toEqual({ stand: false, reason: "handing over to n2", code: "handover" });
  });
});
