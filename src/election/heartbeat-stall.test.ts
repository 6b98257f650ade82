// The heartbeat's stall path against a stand-in connection whose
// transactions answer when the test says (an etcd member that is frozen,
// then runs again). What matters: silence on a connection the connection
// keeps does not drop the heartbeats in flight, which prove from their own
// send time when they land; the silence is reported once; the loop does not
// spin while the most heartbeats are out.
import { expect, test } from "bun:test";
import type { ITxnResponse } from "etcd3";
import type { EtcdConnection } from "./connection.ts";
import { Heartbeat } from "./heartbeat.ts";

function frozenEtcd(decision: { reset: boolean }) {
  const pending: { resolve: (r: ITxnResponse) => void }[] = [];
  let asked = 0;
  let resetFns: (() => void)[] = [];
  const conn = {
    client: { kv: { txn: () => new Promise<ITxnResponse>((resolve) => pending.push({ resolve })) } },
    onReset: (fn: () => void) => {
      resetFns.push(fn);
      return () => (resetFns = resetFns.filter((f) => f !== fn));
    },
    stalled: () => {
      asked++;
      if (decision.reset) for (const fn of resetFns) fn();
      return { reset: decision.reset, why: decision.reset ? "stand-in: reconnected" : "stand-in: one endpoint, alive" };
    },
  } as unknown as EtcdConnection;
  let revision = 100;
  const thaw = () => {
    for (const p of pending.splice(0)) p.resolve({ succeeded: true, header: { revision: String(++revision) }, responses: [] } as unknown as ITxnResponse);
  };
  return { conn, thaw, pending: () => pending.length, asked: () => asked };
}

function heartbeat(conn: EtcdConnection) {
  const hb = new Heartbeat({
    conn, clock: () => performance.now(), prefix: "/vipd/", node: "n1", run: "r1", lease: "1", agentRevision: "5",
    guard: () => [{ vip: "192.0.2.10", createRevision: "7" }], claims: () => ["192.0.2.10"], nextSeq: (() => {
      let s = 0;
      return () => ++s;
    })(),
    timeoutMs: 10_000, intervalMs: 20, stallMs: 60,
  });
  const committed: number[] = [];
  const stalls: { reconnected: boolean; why: string }[] = [];
  hb.on("committed", ({ sentAt }) => committed.push(sentAt));
  hb.on("stalled", ({ reconnected, why }) => stalls.push({ reconnected, why }));
  return { hb, committed, stalls };
}

test("a silent member on a kept connection: heartbeats in flight land and prove from their send time", async () => {
  const e = frozenEtcd({ reset: false });
  const { hb, committed, stalls } = heartbeat(e.conn);
  const t0 = performance.now();
  hb.start();
  await Bun.sleep(600);
  // Asked at every retry (100 ms) once silent, told once.
  expect(stalls).toEqual([{ reconnected: false, why: "stand-in: one endpoint, alive" }]);
  expect(e.asked()).toBeGreaterThanOrEqual(3);
  expect(e.asked()).toBeLessThanOrEqual(8);
  const inFlight = e.pending();
  expect(inFlight).toBeGreaterThanOrEqual(5);
  e.thaw();
  await Bun.sleep(5);
  expect(committed.length).toBe(inFlight);
  // The first one was sent at start: the proof reaches back to it.
  expect(Math.min(...committed) - t0).toBeLessThan(20);
  expect(hb.provenSince("192.0.2.10", "7")).toBe(Math.max(...committed));
  hb.stop();
});

test("with the most heartbeats out, the loop waits a retry instead of spinning", async () => {
  const e = frozenEtcd({ reset: false });
  const { hb } = heartbeat(e.conn);
  hb.start();
  await Bun.sleep(2200);
  // 16 in flight at most; the connection asked about once per 100 ms retry, not at every turn of the event loop.
  expect(e.pending()).toBe(16);
  expect(e.asked()).toBeLessThanOrEqual(25);
  hb.stop();
});

test("a connection that replaces itself gets the next heartbeat at once, and a new silence is told again", async () => {
  const e = frozenEtcd({ reset: true });
  const { hb, stalls } = heartbeat(e.conn);
  hb.start();
  await Bun.sleep(250);
  expect(stalls.length).toBeGreaterThanOrEqual(2);
  expect(stalls.every((s) => s.reconnected)).toBe(true);
  hb.stop();
});
