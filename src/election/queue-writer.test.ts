// The queue writes' decisions against a stand-in etcd (message level) and a
// cluster view read from it: what each write sends, when it refuses, and
// what it leaves for the heartbeat's guard, claims and proofs.
import { expect, test } from "bun:test";
import { encodeHeartbeat, agentKey, electionKey, heartbeatKey } from "./keys.ts";
import { silenceWindow } from "./proof.ts";
import { encodeIncarnation } from "./incarnation.ts";
import { HOLD, incarnation, me, P, setup, V1, V2 } from "./queue-writer-harness.ts";
import type { StandInEtcd } from "./stand-in-etcd.ts";
import { takeoverAt } from "./takeover.ts";

const claimsOf = (etcd: StandInEtcd) => JSON.parse(etcd.get(heartbeatKey(P, "b"))!.value).claims;

test("join puts our key at the back, asks for a heartbeat to guard it, and has the watch expect it", async () => {
  const s = setup();
  await s.w.join(V1);
  expect(s.etcd.get(electionKey(P, V1, "b"))).toMatchObject({ value: "run-b", lease: "99" });
  expect(s.ledger.beats).toBe(1);
  expect(s.wrote).toEqual([String(s.etcd.revision)]);
  s.sync();
  expect(s.w.isHead(V1)).toBe(true);
  expect(s.w.guard()).toEqual([{ vip: V1, createRevision: s.etcd.get(electionKey(P, V1, "b"))!.createRevision }]);
});

test("join again after a lost answer is nothing; another run's key in the way, or our record gone, is an error", async () => {
  const s = setup();
  await s.w.join(V1);
  await s.w.join(V1);
  s.etcd.put(electionKey(P, V2, "b"), "run-old");
  await expect(s.w.join(V2)).rejects.toThrow(`joining the queue for ${V2}: a key of another run of this node is in the way`);
  s.etcd.delete(agentKey(P, "b"));
  await expect(s.w.join("192.0.2.12")).rejects.toThrow("joining the queue for 192.0.2.12: our agent record is gone");
});

test("no join and no takeover before the session is established; nothing is sent", async () => {
  const s = setup();
  s.unestablish();
  await expect(s.w.join(V1)).rejects.toThrow("etcd session not established");
  await expect(s.w.takeover(V1)).rejects.toThrow("etcd session not established");
  await Bun.sleep(5);
  expect(s.etcd.txns).toHaveLength(0);
});

test("claims: every VIP we head and every VIP the kernel may still answer for", async () => {
  const s = setup();
  s.other("a", [V2]);
  await s.w.join(V1);
  await s.w.join(V2);
  s.sync();
  s.serving.add("192.0.2.99");
  expect(s.w.guard().map((g) => g.vip)).toEqual([V1]);
  expect(s.w.claims().sort()).toEqual([V1, "192.0.2.99"]);
});

test("release refuses while the kernel may answer for the VIP (I4), and sends nothing", async () => {
  const s = setup();
  await s.w.join(V1);
  s.sync();
  s.serving.add(V1);
  const sent = s.etcd.txns.length;
  await expect(s.w.release([V1])).rejects.toThrow(`releasing ${V1}: still on the link`);
  expect(s.etcd.txns).toHaveLength(sent);
  expect(s.w.letGo({ vip: V1, createRevision: s.w.mine(V1)!.createRevision })).toBe(false);
});

test("release: key and claim go in one revision; earlier proofs are void from its send, and the key is never guarded again though the view still shows it", async () => {
  const s = setup();
  await s.w.join(V1);
  s.sync();
  s.at(500);
  const key = { vip: V1, createRevision: s.w.mine(V1)!.createRevision };
  const revision = s.etcd.revision;
  await s.w.release([V1]);
  expect(s.etcd.get(electionKey(P, V1, "b"))).toBeUndefined();
  expect(claimsOf(s.etcd)).toEqual([]);
  expect(s.etcd.revision).toBe(revision + 1);
  expect(s.ledger.releasing).toEqual([[key, 500]]);
  expect(s.ledger.gone).toEqual([key]);
  // The watch has not shown the deletion yet.
  expect(s.w.isHead(V1)).toBe(true);
  expect(s.w.letGo(key)).toBe(true);
  expect(s.w.guard()).toEqual([]);
  expect(s.w.claims()).toEqual([]);
});

test("a release whose guard failed leaves the key to later heartbeats: not let go, not gone", async () => {
  const s = setup();
  await s.w.join(V1);
  s.sync();
  s.etcd.delete(agentKey(P, "b"));
  await expect(s.w.release([V1])).rejects.toThrow(`releasing ${V1}: our agent record is gone (its keys went with it)`);
  await Bun.sleep(1);
  expect(s.ledger.gone).toEqual([]);
  expect(s.w.guard().map((g) => g.vip)).toEqual([V1]);
});

test("takeover waits for the window of the agent ahead, then deletes its key and proves ours from the send", async () => {
  const s = setup();
  s.other("a", [V1]);
  await s.w.join(V1);
  s.sync();
  const window = silenceWindow(HOLD);
  expect(takeoverAt(s.view, me, V1, 0)).toBe(window);
  s.at(window - 1);
  const sent = s.etcd.txns.length;
  expect(await s.w.takeover(V1)).toEqual({ took: false, from: [] });
  expect(s.etcd.txns).toHaveLength(sent);
  s.at(window);
  expect(await s.w.takeover(V1)).toEqual({ took: true, from: ["a"] });
  expect(s.etcd.get(electionKey(P, V1, "a"))).toBeUndefined();
  expect(claimsOf(s.etcd)).toEqual([V1]);
  expect(s.ledger.proved).toEqual([[{ vip: V1, createRevision: s.w.mine(V1)!.createRevision }, window]]);
  expect(s.took).toBe(1);
  // First already: nothing to take.
  s.sync();
  expect(await s.w.takeover(V1)).toEqual({ took: true, from: [] });
});

test("busy (the holder's heartbeat pace, design.md §3): heading a queue, serving a VIP, or taking one over; a takeover's put sets the pace from its send", async () => {
  const s = setup();
  s.other("a", [V1]);
  await s.w.join(V1);
  s.sync();
  // Second in line, serving nothing: a standby.
  expect(s.w.busy()).toBe(false);
  // The kernel still answering for a VIP (say one just deposed): its claims must go out at the holder's pace.
  s.serving.add(V2);
  expect(s.w.busy()).toBe(true);
  s.serving.delete(V2);
  // A takeover under way: busy from the ask until it is answered.
  s.at(silenceWindow(HOLD));
  const taking = s.w.takeover(V1);
  expect(s.w.busy()).toBe(true);
  expect(await taking).toEqual({ took: true, from: ["a"] });
  expect(s.ledger.alongside).toEqual([silenceWindow(HOLD)]);
  // The view has not shown it yet: no longer taking over, not head in the view.
  expect(s.w.busy()).toBe(false);
  s.sync();
  expect(s.w.busy()).toBe(true);
  // Released: a standby again (in no queue at all).
  await s.w.release([V1]);
  s.sync();
  expect(s.w.busy()).toBe(false);
});

test("a heartbeat of the agent ahead landing first makes the takeover fail without deleting anything", async () => {
  const s = setup();
  s.other("a", [V1]);
  await s.w.join(V1);
  s.sync();
  s.at(silenceWindow(HOLD));
  s.etcd.beforeTxn = () => void s.etcd.put(heartbeatKey(P, "a"), encodeHeartbeat({ run: "run-a", seq: 2, claims: [V1] }));
  expect(await s.w.takeover(V1)).toEqual({ took: false, from: [] });
  expect(s.etcd.get(electionKey(P, V1, "a"))).toBeDefined();
  expect(s.ledger.proved).toEqual([]);
});

test("takeovers asked in one turn share a transaction; when it fails, each is tried alone", async () => {
  const s = setup();
  s.other("a", [V1]);
  s.other("c", [V2]);
  await s.w.join(V1);
  await s.w.join(V2);
  s.sync();
  s.at(silenceWindow(HOLD));
  const sent = s.etcd.txns.length;
  const both = await Promise.all([s.w.takeover(V1), s.w.takeover(V2)]);
  expect(both).toEqual([{ took: true, from: ["a"] }, { took: true, from: ["c"] }]);
  expect(s.etcd.txns.length - sent).toBe(1);
  expect(claimsOf(s.etcd).sort()).toEqual([V1, V2]);

  // Again, and c speaks as the shared transaction arrives: V1 is still taken, alone.
  const t = setup();
  t.other("a", [V1]);
  t.other("c", [V2]);
  await t.w.join(V1);
  await t.w.join(V2);
  t.sync();
  t.at(silenceWindow(HOLD));
  let first = true;
  t.etcd.beforeTxn = () => {
    if (first) t.etcd.put(heartbeatKey(P, "c"), encodeHeartbeat({ run: "run-c", seq: 2, claims: [V2] }));
    first = false;
  };
  const sentT = t.etcd.txns.length;
  expect(await Promise.all([t.w.takeover(V1), t.w.takeover(V2)])).toEqual([{ took: true, from: ["a"] }, { took: false, from: [] }]);
  expect(t.etcd.txns.length - sentT).toBe(3);
  expect(t.etcd.get(electionKey(P, V2, "c"))).toBeDefined();
});

test("ranks after the first wait a stagger more; an agent never heard counts from its key's first sighting", () => {
  const s = setup();
  s.other("a", [V1]);
  s.etcd.put(agentKey(P, "c"), encodeIncarnation(incarnation("run-c")));
  s.etcd.put(electionKey(P, V1, "c"), "run-c");
  s.etcd.put(electionKey(P, V1, "b"), "run-b");
  s.at(100);
  s.sync();
  // a heard at 100; c never heard, its key first seen at 100; we are third.
  expect(takeoverAt(s.view, me, V1, 100)).toBe(100 + silenceWindow(HOLD) + 250);
  expect(takeoverAt(s.view, { node: "a", run: "run-a" }, V1, 100)).toBeNull();
  expect(takeoverAt(s.view, { node: "x", run: "run-x" }, V1, 100)).toBeNull();
});
