// The heartbeats heard, with plain values and the local times they arrived.
// The cluster view's tests drive the same book through etcd key-values.
import { expect, test } from "bun:test";
import { MAX_HOLD_MS } from "../config/fields.ts";
import { HeartbeatBook } from "./heartbeat-book.ts";
import { silenceWindow } from "./proof.ts";

const V1 = "192.0.2.10";
const V2 = "192.0.2.11";
const a = { run: "run-a", holdMs: 1000 };
const beat = (seq: number, claims: string[], run = "run-a") => ({ run, seq, claims });

test("a claim is in force for the window of the hold time its run published when it arrived, also after the record left", () => {
  const b = new HeartbeatBook();
  b.heard("a", "10", beat(1, [V1]), a, 100);
  expect(b.claimedUntil(V1, "b", 100)).toBe(100 + silenceWindow(1000));
  expect(b.claimedUntil(V2, "b", 100)).toBeNull();
  expect(b.claimedUntil(V1, "a", 100)).toBeNull();
  // No record (or another run's): the longest hold.
  b.heard("c", "11", beat(1, [V1], "run-c"), { run: "run-old", holdMs: 1000 }, 100);
  expect(b.get("c")!.holdMs).toBe(MAX_HOLD_MS);
  expect(b.silentAfter("a", 0, MAX_HOLD_MS)).toBe(100 + silenceWindow(1000));
  // Never heard: from when it could first have been, with the hold given.
  expect(b.silentAfter("d", 500, 2000)).toBe(500 + silenceWindow(2000));
});

test("within a run a heartbeat that committed late does not speak last; a new run does", () => {
  const b = new HeartbeatBook();
  b.heard("a", "10", beat(5, [V1]), a, 100);
  b.heard("a", "11", beat(4, []), a, 200);
  expect(b.get("a")).toMatchObject({ seq: 5, receivedAt: 200, modRevision: "11" });
  expect(b.claimedUntil(V1, "b", 200)).toBe(200 + silenceWindow(1000));
  b.heard("a", "12", beat(1, [], "run-a2"), { run: "run-a2", holdMs: 1000 }, 300);
  expect(b.claimedUntil(V1, "b", 300)).toBeNull();
});

test("a value vipd did not write claims every VIP", () => {
  const b = new HeartbeatBook();
  b.heard("x", "10", null, undefined, 100);
  expect(b.claimedUntil("203.0.113.1", "b", 100)).toBe(100 + silenceWindow(MAX_HOLD_MS));
});

test("a takeover ends the claim it took; a later heartbeat claiming it counts again", () => {
  const b = new HeartbeatBook();
  b.heard("a", "10", beat(1, [V1, V2]), a, 100);
  b.tookOver(V1, "a");
  expect(b.claimedUntil(V1, "b", 100)).toBeNull();
  expect(b.claimedUntil(V2, "b", 100)).not.toBeNull();
  b.heard("a", "12", beat(2, [V1, V2]), a, 200);
  expect(b.claimedUntil(V1, "b", 200)).toBe(200 + silenceWindow(1000));
});

test("a deleted key keeps its claims until they run out, then is pruned", () => {
  const b = new HeartbeatBook();
  b.heard("a", "10", beat(1, [V1]), a, 100);
  b.deleted("a");
  expect(b.claimedUntil(V1, "b", 150)).toBe(100 + silenceWindow(1000));
  b.prune(100 + silenceWindow(1000) - 1);
  expect(b.get("a")).toBeDefined();
  b.prune(100 + silenceWindow(1000));
  expect(b.get("a")).toBeUndefined();
});

test("a re-read without a run the view knew: heard at the re-read, claiming every VIP, by the longer hold it knew", () => {
  const b = new HeartbeatBook();
  b.heard("a", "10", beat(1, [V1]), a, 100);
  // Its record was in the view with a longer hold; a node whose record is unreadable counts too.
  b.reread(new Set(), new Map([["a", { run: "run-a", holdMs: 2000 }], ["u", null]]), 5000);
  expect(b.get("a")).toMatchObject({ claims: "all", receivedAt: 5000, holdMs: 2000, modRevision: "0" });
  expect(b.get("u")).toMatchObject({ claims: "all", receivedAt: 5000, holdMs: MAX_HOLD_MS, run: null });
  // One whose heartbeat was in the read, or that could not write any more (key gone, record gone), is not.
  const c = new HeartbeatBook();
  c.heard("a", "10", beat(1, [V1]), a, 100);
  c.heard("g", "11", beat(1, [V1], "run-g"), { run: "run-g", holdMs: 1000 }, 100);
  c.deleted("g");
  c.reread(new Set(["a"]), new Map(), 5000);
  expect(c.get("a")!.receivedAt).toBe(100);
  expect(c.get("g")!.receivedAt).toBe(100);
});

test("news of claims: a heartbeat that claims what the last one did is news to no VIP, and keeps its set", () => {
  const news: (string | null)[] = [];
  const b = new HeartbeatBook((vip) => news.push(vip));
  b.heard("a", "10", beat(1, [V1, V2]), a, 100);
  expect(news).toEqual([V1, V2]);
  const claims = b.get("a")!.claims;
  news.length = 0;
  b.heard("a", "11", beat(2, [V2, V1]), a, 350);
  expect(news).toEqual([]);
  expect(b.get("a")!.claims).toBe(claims);
  expect(b.heardUntil("a")).toBe(350 + silenceWindow(1000));
  // One claim less, then one more: those VIPs only.
  b.heard("a", "12", beat(3, [V2]), a, 600);
  b.heard("a", "13", beat(4, [V2, "192.0.2.12"]), a, 850);
  expect(news).toEqual([V1, "192.0.2.12"]);
  // A late heartbeat of the run keeps the claims in force: no news.
  news.length = 0;
  b.heard("a", "14", beat(2, []), a, 900);
  expect(news).toEqual([]);
  // Judged by another hold time (a new run's record): its claims end at another moment.
  b.heard("a", "15", beat(1, [V2, "192.0.2.12"], "run-a2"), { run: "run-a2", holdMs: 2000 }, 950);
  expect(news.sort()).toEqual([V2, V2, "192.0.2.12", "192.0.2.12"].sort());
  // A value vipd did not write, a takeover, a re-read and a forgotten key: every VIP, or the one taken.
  news.length = 0;
  b.heard("x", "16", null, undefined, 1000);
  b.tookOver(V2, "a");
  b.reread(new Set(["a", "x"]), new Map([["g", null]]), 1100);
  b.deleted("g");
  b.prune(1100 + silenceWindow(MAX_HOLD_MS));
  expect(news).toEqual([null, V2, null, null]);
  expect(b.heardUntil("nobody")).toBeNull();
});
