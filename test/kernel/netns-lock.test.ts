// The per-network-namespace lock and the control channel on its socket, in
// a scratch namespace of their own: one holder per namespace, one line in
// and one line out, requests that wait for the handler, and clients that
// cannot hold a connection open or send more than a request.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { askNetnsLockHolder, claimNetnsLock, type NetnsLock } from "../../src/kernel/netns-lock.ts";
import { inNetns } from "../lab/netns.ts";
import { sh, waitFor } from "../lab/sh.ts";

const ns = `vipd-lock-${Math.random().toString(36).slice(2, 7)}`;
let lock: NetnsLock;
let asked: string[] = [];
let serve!: () => void;
const served = new Promise<void>((r) => (serve = r));

beforeAll(async () => {
  await sh(["ip", "netns", "add", ns]);
  const claim = inNetns(ns, () => claimNetnsLock());
  if (!claim.ok) throw new Error(`the scratch namespace ${ns} already has a vipd lock`);
  lock = claim.lock;
});

afterAll(async () => {
  lock?.release();
  await sh(["ip", "netns", "del", ns], { allowFail: true });
});

/** Runs fn (synchronous) with the thread in the scratch namespace: sockets made there stay there. */
const inScratch = <T>(fn: () => T): T => inNetns(ns, fn);

test("one holder per namespace: a second claim there names this process", () => {
  expect(inScratch(() => claimNetnsLock())).toEqual({ ok: false, holder: process.pid });
});

test("a request waits until the holder serves, then gets one line back", async () => {
  let answer!: Promise<string>;
  inScratch(() => {
    answer = askNetnsLockHolder("reload", 5000);
  });
  let settled = false;
  void answer.then(() => (settled = true));
  await Bun.sleep(200);
  expect(settled).toBe(false);
  lock.serve(async (request) => {
    asked.push(request);
    await served;
    return JSON.stringify({ result: "reloaded", request });
  });
  serve();
  expect(await answer).toBe('{"result":"reloaded","request":"reload"}');
  expect(asked).toEqual(["reload"]);
});

test("a request longer than a line is answered once, cut short; a client that says nothing is dropped", async () => {
  asked = [];
  let long!: Promise<string>;
  inScratch(() => {
    long = askNetnsLockHolder("x".repeat(5000), 5000);
  });
  expect(JSON.parse(await long)).toEqual({ result: "reloaded", request: "x".repeat(256) });
  expect(asked).toEqual(["x".repeat(256)]);

  let closed = false;
  inScratch(() => {
    void Bun.connect({ unix: "\0vipd", socket: { data() {}, close: () => void (closed = true) } });
  });
  await waitFor("the idle client dropped", () => closed, 15_000, 100);
  expect(asked).toEqual(["x".repeat(256)]);
}, 20_000);

test("where nothing holds the lock, a request is refused at once, and the lock is free", async () => {
  const empty = `${ns}-e`;
  await sh(["ip", "netns", "add", empty]);
  try {
    let p!: Promise<string>;
    inNetns(empty, () => {
      p = askNetnsLockHolder("reload", 5000);
    });
    await expect(p).rejects.toMatchObject({ code: "ECONNREFUSED" });
    const there = inNetns(empty, () => claimNetnsLock());
    expect(there.ok).toBe(true);
    if (there.ok) there.lock.release();
  } finally {
    await sh(["ip", "netns", "del", empty], { allowFail: true });
  }
});
