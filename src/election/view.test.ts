import { describe, expect, test } from "bun:test";
import { encodeIncarnation, type Incarnation } from "./incarnation.ts";
import { agentKey, electionKey, encodeHeartbeat, encodeMacs, heartbeatKey, macsKey } from "./keys.ts";
import { silenceWindow } from "./proof.ts";
import { ClusterView, type Kv } from "./view.ts";

const P = "/vipd/";
const VIP = "192.0.2.10";
let rev = 100;
const kv = (key: string, value: string, create?: number): Kv => {
  rev++;
  return { key: Buffer.from(key), value: Buffer.from(value), create_revision: String(create ?? rev), mod_revision: String(rev) };
};
const inc = (node: string, holdMs = 2500): Incarnation => ({
  run: `run-${node}`, host: node, machine: "m", boot: "b", netns: "n", pidns: "p", pid: 1, start: "1", holdMs, version: "t", startedAt: "t",
});
const beat = (node: string, seq: number, claims: string[], run = `run-${node}`) => kv(heartbeatKey(P, node), encodeHeartbeat({ run, seq, claims }));

function view() {
  const foreign: string[] = [];
  return { v: new ClusterView(P, (k, why) => foreign.push(`${k}: ${why}`)), foreign };
}

describe("queues", () => {
  test("ordered by create revision, holder first, with the run that wrote each key", () => {
    const { v } = view();
    const b = kv(electionKey(P, VIP, "b"), "run-b", 5);
    const a = kv(electionKey(P, VIP, "a"), "run-a", 3);
    const c = kv(electionKey(P, VIP, "c"), "run-c", 9);
    v.load([b, c, a], "200", 1000);
    expect(v.queue(VIP).map((x) => [x.node, x.run])).toEqual([["a", "run-a"], ["b", "run-b"], ["c", "run-c"]]);
    v.apply([{ type: "delete", kv: a }], 1100);
    expect(v.queue(VIP).map((x) => x.node)).toEqual(["b", "c"]);
    expect(v.vips()).toEqual([VIP]);
  });

  test("a re-read keeps when a key was first seen; a re-created key is new", () => {
    const { v } = view();
    const a = kv(electionKey(P, VIP, "a"), "run-a");
    v.load([a], "200", 1000);
    v.load([a], "201", 5000);
    expect(v.queue(VIP)[0]!.firstSeenAt).toBe(1000);
    const again = kv(electionKey(P, VIP, "a"), "run-a2");
    v.load([again], "300", 6000);
    expect(v.queue(VIP)[0]!.firstSeenAt).toBe(6000);
  });
});

describe("heartbeats and silence", () => {
  test("a node is silent a window after its latest heartbeat arrived here", () => {
    const { v } = view();
    v.load([kv(agentKey(P, "a"), encodeIncarnation(inc("a", 2000))), beat("a", 1, [])], "200", 1000);
    expect(v.silentAfter("a", 0)).toBe(1000 + silenceWindow(2000));
    v.apply([{ type: "put", kv: beat("a", 2, []) }], 1250);
    expect(v.silentAfter("a", 0)).toBe(1250 + silenceWindow(2000));
  });

  test("a re-read of an unchanged heartbeat is not a sign of life", () => {
    const { v } = view();
    const hb = beat("a", 1, []);
    v.load([hb], "200", 1000);
    v.load([hb], "200", 4000);
    expect(v.heartbeat("a")!.receivedAt).toBe(1000);
  });

  test("never heard of: counted from the given moment, with the longest hold", () => {
    const { v } = view();
    v.load([], "200", 1000);
    expect(v.silentAfter("ghost", 3000)).toBe(3000 + silenceWindow(30_000));
  });

  test("a deleted heartbeat compares as revision 0 and keeps its time", () => {
    const { v } = view();
    const hb = beat("a", 1, [VIP]);
    v.load([hb], "200", 1000);
    v.apply([{ type: "delete", kv: { ...hb, mod_revision: "300" } }], 1500);
    expect(v.heartbeat("a")).toMatchObject({ modRevision: "0", receivedAt: 1000 });
  });
});

describe("claims", () => {
  test("another node's claim holds for its silence window", () => {
    const { v } = view();
    v.load([kv(agentKey(P, "a"), encodeIncarnation(inc("a"))), beat("a", 1, [VIP])], "200", 1000);
    const end = 1000 + silenceWindow(2500);
    expect(v.claimedUntil(VIP, "me", 1000)).toBe(end);
    expect(v.claimedUntil(VIP, "me", end)).toBeNull();
    expect(v.claimedUntil("192.0.2.99", "me", 1000)).toBeNull();
    expect(v.claimedUntil(VIP, "a", 1000)).toBeNull();
  });

  test("a release (a heartbeat without the VIP) ends the claim at once", () => {
    const { v } = view();
    v.load([beat("a", 1, [VIP])], "200", 1000);
    v.apply([{ type: "put", kv: beat("a", 2, []) }], 1100);
    expect(v.claimedUntil(VIP, "me", 1100)).toBeNull();
  });

  test("a heartbeat that committed late does not override a newer one's claims", () => {
    const { v } = view();
    v.load([beat("a", 5, [VIP])], "200", 1000);
    v.apply([{ type: "put", kv: beat("a", 4, []) }], 1100);
    // Still claimed, and alive as of the late one's arrival.
    expect(v.heartbeat("a")).toMatchObject({ seq: 5, receivedAt: 1100 });
    expect(v.claimedUntil(VIP, "me", 1100)).not.toBeNull();
  });

  test("a new run of the node replaces the old run's claims", () => {
    const { v } = view();
    v.load([beat("a", 50, [VIP])], "200", 1000);
    v.apply([{ type: "put", kv: beat("a", 0, [], "run-a2") }], 1100);
    expect(v.claimedUntil(VIP, "me", 1100)).toBeNull();
  });

  test("keys deleted behind a live run's back: its last claims stay until they run out", () => {
    const { v } = view();
    const hb = beat("a", 1, [VIP]);
    v.load([hb], "200", 1000);
    v.apply([{ type: "delete", kv: hb }], 1200);
    expect(v.claimedUntil(VIP, "me", 1200)).toBe(1000 + silenceWindow(30_000));
    v.load([], "300", 2000);
    expect(v.claimedUntil(VIP, "me", 2000)).toBe(1000 + silenceWindow(30_000));
    v.prune(1000 + silenceWindow(30_000));
    expect(v.heartbeat("a")).toBeUndefined();
  });

  test("a run gone with its lease: its claims end a window after its last heartbeat, by the hold it had then, and it is forgotten", () => {
    const { v } = view();
    const a = kv(agentKey(P, "a"), encodeIncarnation(inc("a", 2500)));
    const key = kv(electionKey(P, VIP, "a"), "run-a");
    const hb = beat("a", 1, [VIP]);
    v.load([a, key, hb], "200", 1000);
    expect(v.claimedUntil(VIP, "me", 1000)).toBe(1000 + silenceWindow(2500));
    // Ten seconds later its lease expires: every key of its run goes in one revision.
    const at = String(++rev);
    v.apply([a, key, hb].map((k) => ({ type: "delete" as const, kv: { ...k, mod_revision: at } })), 11_000);
    // Not the longest hold because the record went: a's heartbeat was judged by the 2500 ms a published.
    expect(v.claimedUntil(VIP, "me", 11_000)).toBeNull();
    expect(v.heartbeat("a")).toBeUndefined();
  });

  test("a takeover ends the claims of the run it took the key from, on that VIP only", () => {
    const { v } = view();
    const other = "192.0.2.11";
    const aKey = kv(electionKey(P, VIP, "a"), "run-a");
    const cKey = kv(electionKey(P, VIP, "c"), "run-c");
    v.load([kv(agentKey(P, "a"), encodeIncarnation(inc("a"))), kv(agentKey(P, "c"), encodeIncarnation(inc("c"))), aKey, cKey, beat("a", 1, [VIP, other])], "200", 1000);
    // c heard a earlier than this view did, and took the queue over: one
    // transaction deletes a's key and puts c's heartbeat (design.md §3).
    const took = String(++rev);
    v.apply([
      { type: "delete", kv: { ...aKey, mod_revision: took } },
      { type: "put", kv: { ...beat("c", 1, [VIP]), mod_revision: took } },
    ], 2000);
    expect(v.claimedUntil(VIP, "b", 2000)).toBe(2000 + silenceWindow(2500));
    // c lets go at once (drained, say): nothing of a's keeps b from the VIP.
    const left = String(++rev);
    v.apply([
      { type: "delete", kv: { ...cKey, mod_revision: left } },
      { type: "put", kv: { ...beat("c", 2, []), mod_revision: left } },
    ], 2100);
    expect(v.claimedUntil(VIP, "b", 2100)).toBeNull();
    // a's claim on a VIP whose key nobody took stays.
    expect(v.claimedUntil(other, "b", 2100)).toBe(1000 + silenceWindow(2500));
  });

  test("a claim the taken-over run makes after the takeover counts, even in the same batch of events", () => {
    const { v } = view();
    const aKey = kv(electionKey(P, VIP, "a"), "run-a");
    v.load([kv(agentKey(P, "a"), encodeIncarnation(inc("a"))), aKey, beat("a", 1, [VIP])], "200", 1000);
    const took = String(++rev);
    v.apply([
      { type: "delete", kv: { ...aKey, mod_revision: took } },
      { type: "put", kv: { ...beat("c", 1, [VIP]), mod_revision: took } },
      // a thawed: its kernel may still answer, as far as it knows.
      { type: "put", kv: beat("a", 2, [VIP]) },
    ], 4000);
    expect(v.claimedUntil(VIP, "c", 4000)).toBe(4000 + silenceWindow(2500));
  });

  test("a key deleted by hand is no takeover: the claim stays", () => {
    const { v } = view();
    const aKey = kv(electionKey(P, VIP, "a"), "run-a");
    v.load([kv(agentKey(P, "a"), encodeIncarnation(inc("a"))), aKey, beat("a", 1, [VIP])], "200", 1000);
    v.apply([{ type: "delete", kv: { ...aKey, mod_revision: String(++rev) } }], 1500);
    // c's heartbeat in a later revision is no takeover of a's key either.
    v.apply([{ type: "put", kv: beat("c", 1, [VIP]) }], 1600);
    expect(v.heartbeat("a")!.claims).toEqual(new Set([VIP]));
  });

  test("a heartbeat that vanished while the watch was down counts as heard at the re-read, claiming every VIP", () => {
    const { v } = view();
    v.load([kv(agentKey(P, "a"), encodeIncarnation(inc("a", 2000))), beat("a", 1, [])], "200", 1000);
    // Unseen meanwhile: a headed the VIP, claimed it in heartbeats this view
    // never received, and its keys vanished (by hand, or with its lease).
    v.load([], "300", 5000);
    expect(v.claimedUntil(VIP, "me", 5000)).toBe(5000 + silenceWindow(2000));
    expect(v.claimedUntil("192.0.2.99", "me", 5000)).toBe(5000 + silenceWindow(2000));
    expect(v.silentAfter("a", 0)).toBe(5000 + silenceWindow(2000));
    expect(v.heartbeat("a")!.modRevision).toBe("0");
    // A re-read that finds it gone again is no news.
    v.load([], "301", 6000);
    expect(v.claimedUntil(VIP, "me", 6000)).toBe(5000 + silenceWindow(2000));
  });

  test("a run whose heartbeat key was deleted by hand may write it again unseen: a re-read without it counts it as heard", () => {
    const { v } = view();
    const a = kv(agentKey(P, "a"), encodeIncarnation(inc("a", 2000)));
    const hb = beat("a", 1, []);
    v.load([a, hb], "200", 1000);
    v.apply([{ type: "delete", kv: { ...hb, mod_revision: String(++rev) } }], 1100);
    // Its record stays, so its heartbeats may come back, claim, and go again while the watch is down.
    v.load([a], "300", 5000);
    expect(v.claimedUntil(VIP, "me", 5000)).toBe(5000 + silenceWindow(2000));
  });

  test("a run gone with its record before the watch went down cannot have written since: a re-read is no news", () => {
    const { v } = view();
    const a = kv(agentKey(P, "a"), encodeIncarnation(inc("a", 2000)));
    const hb = beat("a", 1, [VIP]);
    v.load([a, hb], "200", 1000);
    const at = String(++rev);
    v.apply([a, hb].map((k) => ({ type: "delete" as const, kv: { ...k, mod_revision: at } })), 1100);
    v.load([], "300", 2000);
    expect(v.claimedUntil(VIP, "me", 2000)).toBe(1000 + silenceWindow(2000));
    expect(v.claimedUntil("192.0.2.99", "me", 2000)).toBeNull();
  });

  test("an unreadable heartbeat claims every VIP and is reported once", () => {
    const { v, foreign } = view();
    v.load([kv(heartbeatKey(P, "x"), "garbage")], "200", 1000);
    v.apply([{ type: "put", kv: kv(heartbeatKey(P, "x"), "more garbage") }], 1100);
    expect(v.claimedUntil(VIP, "me", 1100)).not.toBeNull();
    expect(foreign).toEqual([`${heartbeatKey(P, "x")}: not a heartbeat vipd wrote; treating it as claiming every VIP`]);
  });
});

test("the agents' MACs are the union of what each published, and leave with their keys", () => {
  const { v, foreign } = view();
  const a = kv(macsKey(P, "a"), encodeMacs({ [VIP]: "02:00:00:00:00:0a", "2001:db8::10": "02:00:00:00:01:0a" }));
  const b = kv(macsKey(P, "b"), encodeMacs({ [VIP]: "02:00:00:00:00:0b" }));
  v.load([a, b], "200", 1000);
  expect([...v.agentMacs()].sort()).toEqual(["02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:01:0a"]);
  // b's link was re-created with another MAC.
  v.apply([{ type: "put", kv: kv(macsKey(P, "b"), encodeMacs({ [VIP]: "02:00:00:00:00:bb" })) }], 1100);
  expect(v.agentMacs().has("02:00:00:00:00:0b")).toBe(false);
  expect(v.agentMacs().has("02:00:00:00:00:bb")).toBe(true);
  v.apply([{ type: "delete", kv: a }], 1200);
  expect([...v.agentMacs()]).toEqual(["02:00:00:00:00:bb"]);
  // A value vipd did not write: reported once, and its MACs are unknown.
  v.apply([{ type: "put", kv: kv(macsKey(P, "b"), "eth0") }], 1300);
  expect(v.agentMacs().size).toBe(0);
  expect(foreign).toEqual([`${macsKey(P, "b")}: not a list of MACs vipd wrote; that agent's answers to address probes count as a stranger's`]);
  v.load([], "300", 1400);
  expect(v.agentMacs().size).toBe(0);
});

test("foreign keys are reported; vipd 0.1's keys are not foreign, and no queue", () => {
  const { v, foreign } = view();
  v.load([kv("/vipd/junk", "x"), kv("/vipd/vip/192.0.2.10/abc", "cp-1"), kv(agentKey(P, "a"), "{}")], "200", 1000);
  expect(v.vips()).toEqual([]);
  expect(foreign).toEqual(["/vipd/junk: not a key vipd writes", `${agentKey(P, "a")}: not an agent record vipd wrote`]);
  expect(v.holdOf("a")).toBe(30_000);
});

test("revision follows the events and advance()", () => {
  const { v } = view();
  v.load([], "1", 0);
  const e = kv(electionKey(P, VIP, "a"), "r");
  v.apply([{ type: "put", kv: e }], 1);
  expect(v.revision).toBe(e.mod_revision);
  v.advance("100000");
  expect(v.revision).toBe("100000");
  v.advance("5");
  expect(v.revision).toBe("100000");
});

describe("changes, for the slots to decide again where it matters", () => {
  test("a full read is news to all; then queues, hand-overs and claims name their VIPs; a heartbeat that claims what it did names none", () => {
    const { v } = view();
    const other = "192.0.2.11";
    v.load([kv(agentKey(P, "a"), encodeIncarnation(inc("a"))), kv(electionKey(P, VIP, "a"), "run-a"), beat("a", 1, [VIP])], "200", 1000);
    expect(v.takeChanges()).toMatchObject({ all: true });
    expect(v.takeChanges()).toMatchObject({ all: false, vips: new Set() });
    v.apply([{ type: "put", kv: beat("a", 2, [VIP]) }], 1250);
    expect(v.takeChanges()).toMatchObject({ all: false, vips: new Set() });
    v.apply([{ type: "put", kv: beat("a", 3, [other]) }], 1500);
    expect(v.takeChanges()).toMatchObject({ all: false, vips: new Set([VIP, other]) });
    v.apply([{ type: "put", kv: kv(electionKey(P, other, "b"), "run-b") }], 1600);
    expect(v.takeChanges()).toMatchObject({ all: false, vips: new Set([other]) });
    v.apply([{ type: "put", kv: kv(`${P}handovers/${VIP}`, "{}") }], 1700);
    expect(v.takeChanges().vips).toEqual(new Set([VIP]));
    // Agent records (hold times, hosts) and drains concern every VIP.
    v.apply([{ type: "put", kv: kv(agentKey(P, "b"), encodeIncarnation(inc("b"))) }], 1800);
    expect(v.takeChanges().all).toBe(true);
  });

  test("each reader takes its own changes: one that takes them steals none from another", () => {
    const { v } = view();
    const other = "192.0.2.11";
    const heads = v.follow();
    v.load([kv(agentKey(P, "a"), encodeIncarnation(inc("a"))), kv(electionKey(P, VIP, "a"), "run-a")], "200", 1000);
    expect(v.takeChanges().all).toBe(true);
    v.apply([{ type: "put", kv: kv(electionKey(P, other, "a"), "run-a") }], 1100);
    expect(v.takeChanges()).toMatchObject({ all: false, vips: new Set([other]) });
    // The slots took both batches; this reader still has everything since its start.
    expect(heads().all).toBe(true);
    v.apply([{ type: "delete", kv: kv(electionKey(P, VIP, "a"), "") }], 1200);
    expect(heads()).toMatchObject({ all: false, vips: new Set([VIP]) });
    expect(heads()).toMatchObject({ all: false, vips: new Set() });
    // And the slots still have that deletion.
    expect(v.takeChanges()).toMatchObject({ all: false, vips: new Set([VIP]) });
    // A reader that starts late knows nothing yet: everything is news to it.
    expect(v.follow()().all).toBe(true);
  });

  test("a VIP's queue in order is the same array until that queue changes", () => {
    const { v } = view();
    const a = kv(electionKey(P, VIP, "a"), "run-a");
    v.load([a, kv(electionKey(P, "192.0.2.11", "a"), "run-a")], "200", 1000);
    const q = v.queue(VIP);
    v.apply([{ type: "put", kv: beat("a", 1, [VIP]) }, { type: "put", kv: kv(electionKey(P, "192.0.2.11", "b"), "run-b") }], 1100);
    expect(v.queue(VIP)).toBe(q);
    v.apply([{ type: "put", kv: kv(electionKey(P, VIP, "b"), "run-b") }], 1200);
    expect(v.queue(VIP)).not.toBe(q);
    expect(v.queue(VIP).map((c) => c.node)).toEqual(["a", "b"]);
  });
});
