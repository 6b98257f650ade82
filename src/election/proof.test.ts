import { describe, expect, test } from "bun:test";
import { MAX_HOLD_MS, MIN_HOLD_MS } from "../config/fields.ts";
import { addressLifetime, DRIFT, HEARTBEAT_INTERVAL_MS, MARGIN_MS, minimumHold, proofDeadline, silenceWindow, standbyInterval } from "./proof.ts";

describe("holder and candidate never overlap", () => {
  // The worst case for safety: the candidate received the holder's heartbeat
  // the instant it was sent (zero delay), the holder's clock runs slow by
  // DRIFT (its deadline lands late in real time) and the candidate's runs
  // fast by DRIFT (its window ends early in real time).
  for (const hold of [1000, 2500, 3000, 30_000]) {
    test(`hold ${hold} ms`, () => {
      const sent = 0;
      const holderStopsReal = (proofDeadline(sent, hold) - sent) * (1 + DRIFT);
      const candidateStartsReal = silenceWindow(hold) / (1 + DRIFT);
      expect(candidateStartsReal - holderStopsReal).toBeGreaterThan(MARGIN_MS);
    });
  }
});

test("proofDeadline and silenceWindow", () => {
  expect(proofDeadline(1000, 2500)).toBe(3450);
  expect(silenceWindow(2500)).toBeCloseTo(2552.5, 6);
});

describe("addressLifetime", () => {
  test("nftables: a coarse backstop that outlives the deadline by one to two seconds", () => {
    expect(addressLifetime("nftables", 2450, 0)).toBe(4);
    expect(addressLifetime("nftables", 10, 0)).toBe(2);
    expect(addressLifetime("nftables", 2000, 0)).toBe(3);
  });
  test("lifetime: the fence itself, ending a slack second before the deadline", () => {
    expect(addressLifetime("lifetime", 2450, 0)).toBe(1);
    expect(addressLifetime("lifetime", 1999, 0)).toBeNull();
    expect(addressLifetime("lifetime", 5000, 0)).toBe(4);
  });
  test("no proof, or one in the past: nothing may be added", () => {
    expect(addressLifetime("nftables", null, 0)).toBeNull();
    expect(addressLifetime("nftables", 100, 100)).toBeNull();
    expect(addressLifetime("lifetime", 100, 200)).toBeNull();
  });
});

test("without nftables a hold needs 3 s", () => {
  expect(minimumHold("lifetime")).toBe(3000);
  expect(minimumHold("nftables")).toBe(1000);
  // At the minimum, a heartbeat that just landed leaves a whole second of lifetime.
  expect(addressLifetime("lifetime", proofDeadline(0, minimumHold("lifetime")) - 5, 0)).toBe(1);
});

describe("a standby's heartbeat interval (design.md §3)", () => {
  test("half the hold, never faster than a holder's, never slower than at the default hold", () => {
    expect(standbyInterval(2500)).toBe(1250);
    expect(standbyInterval(MIN_HOLD_MS)).toBe(500);
    expect(standbyInterval(1700)).toBe(850);
    expect(standbyInterval(30_000)).toBe(1250);
    expect(standbyInterval(400)).toBe(HEARTBEAT_INTERVAL_MS);
  });
  test("at every hold the configuration admits, etcd may hold a standby's heartbeat back for half a hold before anyone behind it judges it silent", () => {
    for (let hold = MIN_HOLD_MS; hold <= MAX_HOLD_MS; hold += 100) {
      const slack = silenceWindow(hold) - standbyInterval(hold);
      expect(slack).toBeGreaterThanOrEqual(hold / 2 + MARGIN_MS);
      expect(standbyInterval(hold)).toBeLessThanOrEqual(silenceWindow(hold) / 2);
    }
  });
});
