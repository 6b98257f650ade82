// The heartbeat against a stand-in etcd at the message level: a function
// from each transaction request to its response, evaluated when the request
// arrives (its commit) and answered a moment later, as over a network. It
// speaks just enough of etcd for the heartbeat: compares on create revision,
// a put on success, ranges on failure.
import { expect, test } from "bun:test";
import type { ITxnRequest, ITxnResponse } from "etcd3";
import { type Guarded, Heartbeat, type HeartbeatConn } from "./heartbeat.ts";
import { agentKey, electionKey } from "./keys.ts";

const P = "/vipd/";
const V1 = "192.0.2.10";
const V2 = "192.0.2.11";
const clock = () => performance.now();

function standIn() {
  let revision = 40;
  const kvs = new Map<string, { create: string; mod: string; value: Buffer }>();
  const requests: ITxnRequest[] = [];
  /** Set by holdNext(): the next request commits at once, and its answer waits for this. */
  let held: Promise<void> | null = null;
  const put = (key: string, value: Buffer | string = "") => {
    revision++;
    kvs.set(key, { create: kvs.get(key)?.create ?? String(revision), mod: String(revision), value: Buffer.from(value) });
    return String(revision);
  };
  const del = (key: string) => {
    revision++;
    kvs.delete(key);
    return String(revision);
  };
  const txn = async (req: ITxnRequest): Promise<ITxnResponse> => {
    requests.push(req);
    const succeeded = (req.compare ?? []).every((c) => c.target === "Create" && (kvs.get(String(c.key))?.create ?? "0") === c.create_revision);
    const responses = succeeded
      ? (req.success ?? []).map((op) => {
        put(String(op.request_put!.key), op.request_put!.value as Buffer);
        return { response_put: {} };
      })
      : (req.failure ?? []).map((op) => {
        const kv = kvs.get(String(op.request_range!.key));
        return { response_range: { kvs: kv ? [{ key: op.request_range!.key, value: kv.value, create_revision: kv.create, mod_revision: kv.mod }] : [] } };
      });
    const header = { revision: String(revision) };
    const wait = held;
    held = null;
    await (wait ?? Bun.sleep(1));
    return { succeeded, header, responses } as unknown as ITxnResponse;
  };
  const conn: HeartbeatConn = { client: { kv: { txn } }, onReset: () => () => {}, reset: () => {}, stalled: () => ({ reset: false, why: "stand-in: one endpoint, alive" }) };
  const holdNext = () => {
    let open!: () => void;
    held = new Promise((r) => (open = r));
    return open;
  };
  return { conn, put, del, requests, holdNext };
}

function heartbeat(s: ReturnType<typeof standIn>, guard: () => readonly Guarded[]) {
  let seq = 0;
  const hb = new Heartbeat({
    conn: s.conn, clock, prefix: P, node: "a", run: "run-a", lease: "1",
    agentRevision: s.put(agentKey(P, "a"), "record"),
    guard, claims: () => guard().map((g) => g.vip), nextSeq: () => ++seq, timeoutMs: 2000, intervalMs: 50,
  });
  const deposed: { keys: readonly Guarded[]; revision: string }[] = [];
  hb.on("deposed", (e) => deposed.push(e));
  return { hb, deposed };
}

const until = async (what: string, ok: () => boolean) => {
  for (let i = 0; i < 400; i++) {
    if (ok()) return;
    await Bun.sleep(5);
  }
  throw new Error(`${what}: not within two seconds`);
};

const guarded = (req: ITxnRequest) => (req.compare ?? []).map((c) => String(c.key));

test("a key deleted behind our back leaves later guards: the other VIPs stay proven, and nothing spins", async () => {
  const s = standIn();
  const k1 = { vip: V1, createRevision: s.put(electionKey(P, V1, "a"), "run-a") };
  const k2 = { vip: V2, createRevision: s.put(electionKey(P, V2, "a"), "run-a") };
  // The view never shows the deletion: a watch that stalled without an error.
  const { hb, deposed } = heartbeat(s, () => [k1, k2]);
  hb.start();
  await until("both proven", () => hb.provenSince(V1, k1.createRevision) !== null && hb.provenSince(V2, k2.createRevision) !== null);
  const deletedAt = s.del(electionKey(P, V1, "a"));
  const t = clock();
  const before = s.requests.length;
  await Bun.sleep(500);
  hb.stop();
  // One heartbeat per 50 ms, and one sent at once after the guard failed: not one per round trip.
  expect(s.requests.length - before).toBeLessThan(20);
  expect(deposed.length).toBeGreaterThanOrEqual(1);
  for (const d of deposed) expect(d.keys).toEqual([k1]);
  // The failed heartbeat's revision, for the watch to be probed with: it must show the deletion by then.
  expect(Number(deposed[0]!.revision)).toBeGreaterThanOrEqual(Number(deletedAt));
  expect(hb.provenSince(V1, k1.createRevision)).toBeNull();
  expect(hb.provenSince(V2, k2.createRevision)!).toBeGreaterThan(t);
  expect(guarded(s.requests.at(-1)!)).toEqual([agentKey(P, "a"), electionKey(P, V2, "a")]);
});

test("a late answer does not prove a key again once a guard found it gone", async () => {
  const s = standIn();
  const k1 = { vip: V1, createRevision: s.put(electionKey(P, V1, "a"), "run-a") };
  const { hb } = heartbeat(s, () => [k1]);
  hb.start();
  await until("proven", () => hb.provenSince(V1, k1.createRevision) !== null);
  // One heartbeat commits, and its answer is slow; a later one finds the key gone.
  const open = s.holdNext();
  const n = s.requests.length;
  await until("one more sent", () => s.requests.length > n);
  s.del(electionKey(P, V1, "a"));
  await until("the guard failed", () => hb.provenSince(V1, k1.createRevision) === null);
  open();
  await Bun.sleep(20);
  hb.stop();
  expect(hb.provenSince(V1, k1.createRevision)).toBeNull();
});

test("a release voids the proofs of heartbeats sent before it, even when they are answered after it", async () => {
  const s = standIn();
  const k1 = { vip: V1, createRevision: s.put(electionKey(P, V1, "a"), "run-a") };
  let heads = [k1];
  const { hb } = heartbeat(s, () => heads);
  hb.start();
  await until("proven", () => hb.provenSince(V1, k1.createRevision) !== null);
  // A heartbeat that guards the key commits; its answer is held back.
  const open = s.holdNext();
  const n = s.requests.length;
  await until("one more sent", () => s.requests.length > n);
  // The release leaves now (the session stops guarding the key meanwhile).
  heads = [];
  const releasedAt = clock();
  hb.releasing(k1, releasedAt);
  expect(hb.provenSince(V1, k1.createRevision)).toBeNull();
  open();
  await Bun.sleep(20);
  expect(hb.provenSince(V1, k1.createRevision)).toBeNull();
  // The release failed and the key is still there: heartbeats sent after it prove it again.
  heads = [k1];
  await until("proven again", () => (hb.provenSince(V1, k1.createRevision) ?? -Infinity) > releasedAt);
  // This time it committed: the key is gone, never guarded or proven again.
  hb.gone(k1);
  const m = s.requests.length;
  await Bun.sleep(150);
  hb.stop();
  expect(hb.provenSince(V1, k1.createRevision)).toBeNull();
  expect(s.requests.length).toBeGreaterThan(m);
  for (const req of s.requests.slice(m)) expect(guarded(req)).toEqual([agentKey(P, "a")]);
});
