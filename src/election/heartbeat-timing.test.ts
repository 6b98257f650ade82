// The heartbeat's timing claims (design.md §3), on a fake clock and fake
// timers: heartbeats do not wait for each other, each is dated by its own
// send time (deadline = s + H − m), and while they fail the next goes out
// after 100 ms instead of 250, and no sooner. A standby (busy says no) goes
// at its own interval; one that becomes a holder sends at once and at 250 ms
// from then on, and slows down again once it lets go. The stand-in connection only
// records each transaction's send time and lets the test answer, fail or
// hold it; what the transactions say is heartbeat.test.ts's business.
import { expect, test } from "bun:test";
import type { ITxnResponse } from "etcd3";
import { FakeTime } from "../fake-time.ts";
import { Heartbeat, type HeartbeatConn } from "./heartbeat.ts";
import { proofDeadline } from "./proof.ts";

const VIP = "192.0.2.10";
const KEY = { vip: VIP, createRevision: "7" };
const HOLD_MS = 2500;

/** Each transaction as sent: when, and how to answer it. */
interface Call {
  sentAt: number;
  commit: () => void;
  fail: (why: string) => void;
}

function rig(role: { busy?: () => boolean; idleIntervalMs?: number } = {}) {
  const time = new FakeTime();
  const calls: Call[] = [];
  let revision = 100;
  const txn = () =>
    new Promise<ITxnResponse>((resolve, reject) => {
      calls.push({
        sentAt: time.now,
        commit: () => resolve({ succeeded: true, header: { revision: String(++revision) }, responses: [] } as unknown as ITxnResponse),
        fail: (why) => reject(new Error(why)),
      });
    });
  const conn: HeartbeatConn = { client: { kv: { txn } }, onReset: () => () => {}, reset: () => {}, stalled: () => ({ reset: false, why: "stand-in: one endpoint, alive" }) };
  let seq = 0;
  // The design's interval: no intervalMs, so the default (250 ms) is what is tested.
  const hb = new Heartbeat({
    conn, clock: time.clock, timers: time, prefix: "/vipd/", node: "a", run: "run-a", lease: "1", agentRevision: "5",
    guard: () => [KEY], claims: () => [VIP], nextSeq: () => ++seq, timeoutMs: 2000, ...role,
  });
  const failed: number[] = [];
  hb.on("failed", () => failed.push(time.now));
  const sends = () => calls.map((c) => c.sentAt);
  return { time, calls, hb, failed, sends };
}

/**
 * Started at 0 and every heartbeat committed 5 ms after it left: the first
 * is followed after a retry (nothing had committed when it left), then one
 * each 250 ms. Returns at 855, the last at 850 committed, the next due at 1100.
 */
async function steady() {
  const r = rig();
  r.hb.start();
  for (const t of [5, 105, 355, 605, 855]) {
    await r.time.to(t);
    r.calls.at(-1)!.commit();
  }
  await r.time.to(855);
  expect(r.sends()).toEqual([0, 100, 350, 600, 850]);
  expect(r.hb.provenSince(VIP, KEY.createRevision)).toBe(850);
  return r;
}

test("heartbeats do not wait for each other: with one answer held back, the next leaves on schedule", async () => {
  const r = await steady();
  // The heartbeat of 1100 is held back (a slow round trip); the one of 1350 leaves anyway.
  await r.time.to(1349);
  expect(r.sends().slice(5)).toEqual([1100]);
  await r.time.to(1350);
  expect(r.sends().slice(5)).toEqual([1100, 1350]);
  // Both in flight; the later one lands first and proves from its own send time.
  r.calls[6]!.commit();
  await r.time.to(1360);
  expect(r.hb.provenSince(VIP, KEY.createRevision)).toBe(1350);
  // The slow one lands after it: it speaks for an older moment, and takes nothing back.
  r.calls[5]!.commit();
  await r.time.to(1370);
  expect(r.hb.provenSince(VIP, KEY.createRevision)).toBe(1350);
  await r.time.to(1600);
  expect(r.sends().slice(5)).toEqual([1100, 1350, 1600]);
  r.hb.stop();
});

test("a heartbeat's proof is dated by its send time: answered late, it proves until s + H − m, not from its answer", async () => {
  const r = await steady();
  await r.time.to(1100);
  const late = r.calls[5]!;
  expect(late.sentAt).toBe(1100);
  // Answered 1650 ms after it left (a frozen member that runs again); nothing else is answered meanwhile.
  await r.time.to(2750);
  late.commit();
  await r.time.to(2750);
  const since = r.hb.provenSince(VIP, KEY.createRevision);
  expect(since).toBe(1100);
  // design.md §3: deadline = s + H − m, with m = 50 ms: 1100 + 2500 − 50.
  expect(proofDeadline(since!, HOLD_MS)).toBe(3550);
  r.hb.stop();
});

test("a failed heartbeat is followed after 100 ms, not at the next interval and not sooner", async () => {
  const r = await steady();
  // etcd is electing a leader: the heartbeat of 1100 is refused at 1105.
  await r.time.to(1105);
  r.calls[5]!.fail("etcdserver: no leader");
  await r.time.to(1199);
  expect(r.failed).toEqual([1105]);
  expect(r.sends().slice(5)).toEqual([1100]);
  await r.time.to(1200);
  expect(r.sends().slice(5)).toEqual([1100, 1200]);
  // Every retry is refused 5 ms after it left, for a second: one each 100 ms, no more.
  for (let t = 1205; t < 2205; t += 100) {
    await r.time.to(t);
    r.calls.at(-1)!.fail("etcdserver: no leader");
    await r.time.to(t + 94);
  }
  await r.time.to(2200);
  expect(r.sends().slice(5)).toEqual([1100, 1200, 1300, 1400, 1500, 1600, 1700, 1800, 1900, 2000, 2100, 2200]);
  expect(r.failed).toEqual([1105, 1205, 1305, 1405, 1505, 1605, 1705, 1805, 1905, 2005, 2105]);
  // etcd is back: the heartbeat of 2200 commits, and so does every later one.
  await r.time.to(2205);
  r.calls.at(-1)!.commit();
  await r.time.to(2205);
  expect(r.hb.provenSince(VIP, KEY.createRevision)).toBe(2200);
  for (const t of [2305, 2555, 2805]) {
    await r.time.to(t);
    r.calls.at(-1)!.commit();
  }
  await r.time.to(3050);
  // The one armed while failing leaves a retry after 2200; from then on, one per interval again.
  expect(r.sends().filter((s) => s > 2200)).toEqual([2300, 2550, 2800, 3050]);
  r.hb.stop();
});

// ---- by role ------------------------------------------------------------------

/** The default hold's standby interval (proof.ts standbyInterval(2500)). */
const IDLE_MS = 1250;

/**
 * A rig whose role the test sets, where every heartbeat is answered 5 ms
 * after it leaves: refused while etcd is `down`, committed otherwise.
 */
function roleRig(busy: boolean) {
  const role = { busy };
  const etcd = { down: false };
  const r = rig({ busy: () => role.busy, idleIntervalMs: IDLE_MS });
  const answered = new Set<Call>();
  /** Moves to `t` a millisecond at a time, answering each heartbeat 5 ms after it left. */
  const run = async (t: number) => {
    while (r.time.now < t) {
      await r.time.to(r.time.now + 1);
      for (const c of r.calls) {
        if (answered.has(c) || c.sentAt + 5 > r.time.now) continue;
        answered.add(c);
        if (etcd.down) c.fail("etcdserver: no leader");
        else c.commit();
      }
    }
    await r.time.to(t);
  };
  return { ...r, role, etcd, run };
}

test("a standby heartbeats at its own interval; the first after start is followed a retry later, as a holder's is", async () => {
  const r = roleRig(false);
  r.hb.start();
  await r.run(5000);
  expect(r.sends()).toEqual([0, 100, 1350, 2600, 3850]);
  r.hb.stop();
});

test("a standby that becomes head sends at once, then every 250 ms; back to its interval after it lets go", async () => {
  const r = roleRig(false);
  r.hb.start();
  await r.run(2000);
  expect(r.sends()).toEqual([0, 100, 1350]);
  expect(r.hb.paceMs).toBe(IDLE_MS);
  // The holder released: the view makes us head, and asks for a heartbeat now (lifecycle.ts).
  r.role.busy = true;
  r.hb.beat();
  await r.run(2000);
  expect(r.sends()).toEqual([0, 100, 1350, 2000]);
  // Our last commit may be a standby's interval old until the first at the holder's pace is scheduled.
  expect(r.hb.paceMs).toBe(IDLE_MS);
  await r.run(2760);
  expect(r.sends().slice(3)).toEqual([2000, 2250, 2500, 2750]);
  expect(r.hb.paceMs).toBe(250);
  // Released at 2760: the heartbeat armed at the holder's pace still leaves; the one after it a standby's interval later.
  r.role.busy = false;
  await r.run(5000);
  expect(r.sends().slice(3)).toEqual([2000, 2250, 2500, 2750, 3000, 4250]);
  expect(r.hb.paceMs).toBe(IDLE_MS);
  r.hb.stop();
});

test("a takeover's own put starts the holder's pace: the next heartbeat leaves 250 ms after it, not a standby's interval after the last", async () => {
  const r = roleRig(false);
  r.hb.start();
  await r.run(2000);
  expect(r.sends()).toEqual([0, 100, 1350]);
  // A takeover asked at 2000 (busy from the ask), sent at 2001, committed at 2006.
  r.role.busy = true;
  await r.run(2006);
  r.hb.putAlongside(2001);
  await r.run(2800);
  expect(r.sends().slice(3)).toEqual([2251, 2501, 2751]);
  r.hb.stop();
});

test("a failing standby heartbeat is retried after 100 ms, as a holder's is; committed again, it keeps its interval", async () => {
  const r = roleRig(false);
  r.hb.start();
  await r.run(1300);
  expect(r.sends()).toEqual([0, 100]);
  // etcd refuses every write from 1300 to 1600 (electing a leader).
  r.etcd.down = true;
  await r.run(1600);
  expect(r.failed).toEqual([1355, 1455, 1555]);
  expect(r.sends()).toEqual([0, 100, 1350, 1450, 1550]);
  r.etcd.down = false;
  await r.run(4100);
  // As for a holder: the one armed while failing leaves a retry after the last (1650), and so does
  // the next, armed before any had committed (1750); then a standby's interval again.
  expect(r.sends()).toEqual([0, 100, 1350, 1450, 1550, 1650, 1750, 3000]);
  r.hb.stop();
});
