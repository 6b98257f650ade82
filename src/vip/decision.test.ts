import { describe, expect, test } from "bun:test";
import { decideCandidacy, decideHold, type ReleaseCode, type VipFacts } from "./decision.ts";

const holder: VipFacts = { leader: true, fenceLifetime: 1, link: "up", gateOpen: true, stopping: false };

describe("decideHold", () => {
  test("a proven leader on an up link with an open gate holds, for exactly the fence lifetime", () => {
    expect(decideHold(holder)).toEqual({ hold: true, lifetime: 1 });
    expect(decideHold({ ...holder, fenceLifetime: 7 })).toEqual({ hold: true, lifetime: 7 });
  });
  const cases: [string, Partial<VipFacts>, string, ReleaseCode][] = [
    ["stopping", { stopping: true }, "shutting down", "shutdown"],
    ["link gone", { link: "absent" }, "link is missing", "link-down"],
    ["link down", { link: "down" }, "link is down", "link-down"],
    ["gate closed", { gateOpen: false }, "kube-apiserver gate closed", "gate-closed"],
    ["no lease proof", { fenceLifetime: null }, "lease not proven (keepalive deadline passed)", "fence-expired"],
    ["fence shorter than a kernel second", { fenceLifetime: 0 }, "lease not proven (keepalive deadline passed)", "fence-expired"],
    ["follower", { leader: false }, "not the elected holder", "not-elected"],
    // A stale "leader" fact with an expired fence must never hold: that is the split-brain case.
    ["stale leader without proof", { leader: true, fenceLifetime: null }, "lease not proven (keepalive deadline passed)", "fence-expired"],
  ];
  for (const [name, change, reason, code] of cases) {
    test(`${name} → released: ${reason}`, () => expect(decideHold({ ...holder, ...change })).toEqual({ hold: false, reason, code }));
  }
  test("the first failing condition names the reason", () => {
    expect(decideHold({ ...holder, stopping: true, link: "down", leader: false })).toEqual({ hold: false, reason: "shutting down", code: "shutdown" });
  });
});

describe("decideCandidacy", () => {
  test("stands only when it could hold", () => {
    expect(decideCandidacy({ link: "up", gateOpen: true, stopping: false }).stand).toBe(true);
    expect(decideCandidacy({ link: "down", gateOpen: true, stopping: false })).toEqual({ stand: false, reason: "link is down" });
    expect(decideCandidacy({ link: "absent", gateOpen: true, stopping: false })).toEqual({ stand: false, reason: "link is missing" });
    expect(decideCandidacy({ link: "up", gateOpen: false, stopping: false })).toEqual({ stand: false, reason: "kube-apiserver gate closed" });
    expect(decideCandidacy({ link: "up", gateOpen: true, stopping: true })).toEqual({ stand: false, reason: "shutting down" });
  });
});
