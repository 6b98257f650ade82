// Work proportional to change (design.md §8): a standby of 100 VIPs queued
// behind one live holder, with the agent's own wiring — real slots, the
// slots as a set, the election port and its news over a real cluster view,
// the silence watch — on a fake clock and fake timers. A heartbeat of the
// holder that claims what it did steps no slot and arms no timer; its
// silence wakes all 100 slots in one turn, and they take over together; the
// rank stagger still holds behind two agents. On the holder's side, a
// heartbeat of its own steps every VIP it holds (each proof moved), and one
// of a standby none.
import { beforeEach, expect, test } from "bun:test";
import type { VipSettings } from "../config/index.ts";
import { encodeIncarnation, type Incarnation } from "../election/incarnation.ts";
import { agentKey, electionKey, encodeHeartbeat, heartbeatKey } from "../election/keys.ts";
import { silenceWindow, TAKEOVER_STAGGER_MS } from "../election/proof.ts";
import { takeoverAt } from "../election/takeover.ts";
import { ClusterView, type Kv } from "../election/view.ts";
import type { Logger } from "../log.ts";
import { FakeTime, turns as settle } from "../fake-time.ts";
import { Emitter } from "../seams.ts";
import { type SessionFacts, sessionNews, sessionPort } from "./election-port.ts";
import { SilenceWatch } from "./silence-watch.ts";
import { Slot } from "./slot.ts";
import { Slots } from "./slots.ts";

const P = "/vipd/";
const HOLD = 2500;
const WINDOW = silenceWindow(HOLD);
const VIPS = Array.from({ length: 100 }, (_, i) => `192.0.2.${i + 1}`);
const log: Logger = { error: () => {}, warn: () => {}, info: () => {}, debug: () => {} };

/** The clock and every timer: the slots' and the silence watch's. */
let time: FakeTime;
let rev: number;
let reads: number;
let takeovers: string[];
let seq: number;

const kv = (key: string, value: string, create?: number): Kv => {
  rev++;
  return { key: Buffer.from(key), value: Buffer.from(value), create_revision: String(create ?? rev), mod_revision: String(rev) };
};
const inc = (node: string): Incarnation => ({
  run: `run-${node}`, host: node, machine: "m", boot: "b", netns: "n", pidns: "p", pid: 1, start: "1", holdMs: HOLD, version: "t", startedAt: "t",
});
const beat = (node: string, claims: readonly string[]) => kv(heartbeatKey(P, node), encodeHeartbeat({ run: `run-${node}`, seq: ++seq, claims: [...claims] }));

/** A session over a plain view, as the port and the news read one: registered, current, proving nothing (a standby). */
class ViewSession extends Emitter<{ changed: Record<string, never>; heartbeat: { result: "committed" | "failed" | "deposed" } }> {
  readonly view = new ClusterView(P);
  readonly me = { node: "me", run: "run-me" };
  readonly ready = true;
  readonly registered = true;
  readonly drained = null;
  mine(vip: string) {
    return this.view.queue(vip).find((c) => c.node === this.me.node && c.run === this.me.run);
  }
  isHead(vip: string) {
    return this.view.queue(vip)[0]?.node === this.me.node;
  }
  /** Until when our heartbeats prove our key; null: a standby's. */
  proven: number | null = null;
  proof(vip: string) {
    return this.isHead(vip) ? this.proven : null;
  }
  claimedElsewhereUntil(vip: string) {
    return this.view.claimedUntil(vip, this.me.node, time.now);
  }
  takeoverAt(vip: string) {
    return takeoverAt(this.view, this.me, vip, time.now);
  }
  yielding() {
    return null;
  }
  async join() {}
  async release() {}
  async takeover(vip: string) {
    takeovers.push(vip);
    return { took: true, from: ["h"] };
  }
  changed(): void {
    this.emit("changed", {});
  }
  /** A heartbeat of ours committed, as the lifecycle tells it: the proofs moved, then the view "changed". */
  committed(sentAt: number): void {
    this.proven = sentAt + HOLD - 50;
    this.emit("heartbeat", { result: "committed" });
    this.emit("changed", {});
  }
}

let session: ViewSession;
let slots: Slots;
let silence: SilenceWatch;

function wire(): void {
  session = new ViewSession();
  silence = new SilenceWatch({ clock: () => time.now, heardUntil: (n) => session.view.heardUntil(n), timers: time });
  const port = sessionPort(session as unknown as SessionFacts, () => time.now);
  const counted = { ...port, read: (vip: string) => (reads++, port.read(vip)) };
  slots = new Slots({
    log,
    news: sessionNews(session as unknown as SessionFacts),
    make: (vip) =>
      new Slot({
        vip, node: "me", election: counted, silence, timers: time, clock: () => time.now, log, endpoints: [],
        links: { state: () => "up", probe: async () => [], macs: () => new Map(), announcer: () => ({ announceOnce() {}, burst: async () => 0 }) },
        gateOpen: () => true, stopping: () => false,
        kernel: { replaceAddress: async () => {}, deleteAddress: async () => true },
        fence: { mode: "nftables", allow: async () => {}, deny: async () => {} },
        announce: { burst: 0, burstIntervalMs: 0, refreshMs: 0 }, probeIntervalMs: 0,
        metrics: { declareVip() {}, ownership() {}, failover() {}, handover() {}, announced() {}, tookOver() {}, addressConflict() {} },
        hooks: { changed() {} },
      }),
  });
  for (const ip of VIPS) slots.add({ ip, link: "eth0" } as VipSettings);
  session.on("changed", () => slots.electionChanged());
}

/** Watch events arrive: the view takes them, the session says it changed. */
async function arrive(...kvs: Kv[]): Promise<void> {
  session.view.apply(kvs.map((k) => ({ type: "put" as const, kv: k })), time.now);
  session.changed();
  await settle();
}

/** Holder h (and any others given) first in every queue, then us; h's heartbeat claims every VIP. */
async function queuedBehind(ahead: readonly string[]): Promise<void> {
  const kvs: Kv[] = [kv(agentKey(P, "me"), encodeIncarnation(inc("me")))];
  for (const n of ahead) kvs.push(kv(agentKey(P, n), encodeIncarnation(inc(n))));
  for (const vip of VIPS) for (const n of [...ahead, "me"]) kvs.push(kv(electionKey(P, vip, n), n === "me" ? "run-me" : `run-${n}`));
  for (const n of ahead) kvs.push(beat(n, n === "h" ? VIPS : []));
  session.view.load(kvs, String(rev), time.now);
  slots.updateAll();
  await settle();
  expect(slots.all.every((s) => s.phase === "queued")).toBe(true);
}

beforeEach(() => {
  time = new FakeTime({ start: 10_000, settle });
  rev = 100;
  seq = 0;
  reads = 0;
  takeovers = [];
  wire();
});

test("a heartbeat of the holder that claims what it did steps none of 100 slots and arms no timer", async () => {
  await queuedBehind(["h"]);
  // Each slot waits on h's silence; one timer for all of them.
  expect(silence.waiting).toBe(100);
  reads = 0;
  const armed = time.armed;
  const stepped = slots.updates;
  for (let i = 0; i < 40; i++) {
    await time.advance(250);
    await arrive(beat("h", VIPS));
  }
  // Ten seconds of heartbeats: four windows, so the watch looked four times and woke nobody.
  expect(slots.updates - stepped).toBe(0);
  expect(reads).toBe(0);
  expect(silence.wakes).toBe(0);
  expect(silence.rechecks).toBe(Math.floor((40 * 250) / WINDOW));
  expect(time.armed - armed).toBe(silence.rechecks);
  expect(takeovers).toEqual([]);
});

test("a heartbeat that stops claiming one VIP steps that VIP's slot only", async () => {
  await queuedBehind(["h"]);
  const stepped = slots.updates;
  reads = 0;
  await arrive(beat("h", VIPS.slice(1)));
  expect(slots.updates - stepped).toBe(1);
  expect(reads).toBeGreaterThan(0);
});

test("the holder falls silent: its window after its last heartbeat all 100 slots take over, in one turn", async () => {
  await queuedBehind(["h"]);
  await time.advance(1000);
  await arrive(beat("h", VIPS));
  const last = time.now;
  await time.advance(WINDOW - 1);
  expect(takeovers).toEqual([]);
  await time.advance(2);
  expect(takeovers.length).toBe(100);
  expect(silence.wakes).toBe(100);
  expect(time.now - last).toBeGreaterThanOrEqual(WINDOW);
});

test("second in line behind two live agents: one stagger after the later silence, not before", async () => {
  await queuedBehind(["h", "g"]);
  await time.advance(500);
  await arrive(beat("h", VIPS));
  await time.advance(500);
  await arrive(beat("g", []));
  const gLast = time.now;
  // h fell silent first: the watch wakes the slots, which find g still speaking and wait on it.
  await time.advance(gLast + WINDOW - time.now - 1);
  expect(takeovers).toEqual([]);
  await time.advance(TAKEOVER_STAGGER_MS);
  expect(takeovers).toEqual([]);
  await time.advance(2);
  expect(takeovers.length).toBe(100);
});

test("a holder of 100 VIPs: its own heartbeat steps each held slot (its proof moved), a standby's heartbeat none", async () => {
  const kvs: Kv[] = [kv(agentKey(P, "me"), encodeIncarnation(inc("me"))), kv(agentKey(P, "s"), encodeIncarnation(inc("s")))];
  for (const vip of VIPS) kvs.push(kv(electionKey(P, vip, "me"), "run-me"), kv(electionKey(P, vip, "s"), "run-s"));
  kvs.push(beat("s", []));
  session.view.load(kvs, String(rev), time.now);
  session.committed(time.now);
  await settle();
  expect(slots.all.every((s) => s.controller.held)).toBe(true);
  let stepped = slots.updates;
  await time.advance(250);
  session.committed(time.now);
  await settle();
  expect(slots.updates - stepped).toBe(100);
  stepped = slots.updates;
  await arrive(beat("s", []));
  expect(slots.updates - stepped).toBe(0);
  expect(silence.waiting).toBe(0);
});
