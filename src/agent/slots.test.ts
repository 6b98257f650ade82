// The slots as a set, with plain fakes for the slots: a burst of facts is one
// decision per slot, and a kernel event reaches only the slot it concerns.
import { expect, test } from "bun:test";
import type { VipSettings } from "../config/index.ts";
import type { Address } from "../kernel/rtnl.ts";
import type { Logger } from "../log.ts";
import type { Slot } from "./slot.ts";
import { Slots } from "./slots.ts";

function fakeSlot(vip: VipSettings, calls: string[], held = false) {
  return {
    vip,
    controller: { held, serving: held, kernelChanged: async () => void calls.push(`kernel ${vip.ip}`) },
    update: () => void calls.push(`update ${vip.ip}`),
    standDown: (reason: string) => void calls.push(`standDown ${vip.ip} ${reason}`),
    deposed: () => void calls.push(`deposed ${vip.ip}`),
    stop: async () => void calls.push(`stop ${vip.ip}`),
  } as unknown as Slot;
}

const A = { ip: "10.0.0.1", link: "eth0" } as VipSettings;
const B = { ip: "10.0.0.2", link: "eth1" } as VipSettings;
const log: Logger = { error: () => {}, warn: () => {}, info: () => {}, debug: () => {} };

function setup(heldA = false) {
  const calls: string[] = [];
  const slots = new Slots({ make: (vip) => fakeSlot(vip, calls, vip === A && heldA), log, beforeUpdate: () => void calls.push("before") });
  slots.add(A);
  slots.add(B);
  return { slots, calls };
}

test("many updateAll calls in one tick decide once per slot, after beforeUpdate", async () => {
  const { slots, calls } = setup();
  slots.updateAll();
  slots.updateAll();
  slots.updateAll();
  expect(calls).toEqual([]);
  await Promise.resolve();
  expect(calls).toEqual(["before", "update 10.0.0.1", "update 10.0.0.2"]);
  slots.updateAll();
  await Promise.resolve();
  expect(calls.length).toBe(6);
});

test("a link event updates the slots on that link only", () => {
  const { slots, calls } = setup();
  slots.linkEvents.link("eth1", "up");
  expect(calls).toEqual(["update 10.0.0.2"]);
});

test("an address event is news only when it contradicts what the slot holds", () => {
  const { slots, calls } = setup(true);
  const addr = (ip: string) => ({ address: ip }) as Address;
  // A lifetime refresh of a held VIP (RTM_NEWADDR) and a deletion of one not held: no news.
  slots.linkEvents.address("eth0", addr(A.ip), false);
  slots.linkEvents.address("eth1", addr(B.ip), true);
  // Another link's address of the same number: not ours.
  slots.linkEvents.address("eth1", addr(A.ip), true);
  expect(calls).toEqual([]);
  slots.linkEvents.address("eth0", addr(A.ip), true);
  slots.linkEvents.address("eth1", addr(B.ip), false);
  expect(calls).toEqual(["kernel 10.0.0.1", "kernel 10.0.0.2"]);
});

test("serving, drop, deposed and standDown act on the slots they name", async () => {
  const { slots, calls } = setup(true);
  expect(slots.serving()).toEqual([A.ip]);
  slots.deposed([B.ip]);
  slots.standDown("fence", 3000);
  expect(calls).toEqual(["deposed 10.0.0.2", "standDown 10.0.0.1 fence", "standDown 10.0.0.2 fence"]);
  slots.drop(slots.all[0]!);
  expect(slots.all.map((s) => s.vip.ip)).toEqual([B.ip]);
  await slots.stop();
  expect(calls.at(-1)).toBe("stop 10.0.0.2");
});

test("with the election's news, a batch steps the slots it names, those that follow proofs on a heartbeat of ours, and all when it says so", async () => {
  const calls: string[] = [];
  let news = { all: false, vips: new Set<string>(), proofs: false };
  const follows = new Set([A.ip]);
  const slots = new Slots({
    make: (vip) => Object.assign(fakeSlot(vip, calls), { followsProofs: follows.has(vip.ip) }),
    log,
    news: () => news,
  });
  slots.add(A);
  slots.add(B);
  // A heartbeat of another agent that claims what it did: nothing.
  slots.electionChanged();
  await Promise.resolve();
  expect(calls).toEqual([]);
  news = { all: false, vips: new Set([B.ip]), proofs: false };
  slots.electionChanged();
  await Promise.resolve();
  expect(calls).toEqual(["update 10.0.0.2"]);
  news = { all: false, vips: new Set(), proofs: true };
  slots.electionChanged();
  await Promise.resolve();
  expect(calls).toEqual(["update 10.0.0.2", "update 10.0.0.1"]);
  news = { all: true, vips: new Set(), proofs: false };
  slots.electionChanged();
  await Promise.resolve();
  expect(calls.length).toBe(4);
  // updateAll (the gate, the start) steps every slot whatever the news.
  news = { all: false, vips: new Set(), proofs: false };
  slots.updateAll();
  slots.electionChanged();
  await Promise.resolve();
  expect(calls.length).toBe(6);
  expect(slots.updates).toBe(6);
});
