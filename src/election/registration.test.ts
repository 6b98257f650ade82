// Registration's verdicts against a stand-in etcd (message level), with a
// clock that moves only when the registration waits: who is refused, whose
// keys are cleared at once, and whose window is waited out first
// (design.md §6, invariants I6, I7).
import { expect, test } from "bun:test";
import { StandInEtcd } from "./stand-in-etcd.ts";
import type { Logger } from "../log.ts";
import { encodeIncarnation, type Incarnation } from "./incarnation.ts";
import { agentKey, electionKey, encodeHeartbeat, heartbeatKey, macsKey } from "./keys.ts";
import { silenceWindow } from "./proof.ts";
import { Registration, SessionFatalError } from "./registration.ts";

const P = "/v/";
const V1 = "192.0.2.10";
const V2 = "192.0.2.11";
const HOLD = 1000;

const incarnation = (run: string, more: Partial<Incarnation> = {}): Incarnation => ({
  run, host: "h", machine: "m", boot: "boot-1", netns: "net-1", pidns: "pid-1", pid: 4242, start: "77", holdMs: HOLD, version: "test", startedAt: "2026-12-06T00:00:00Z", ...more,
});
const me = incarnation("run-new", { pid: 5000, start: "99" });

function setup(opts: { alive?: boolean; remove?: (claims: readonly string[]) => Promise<void>; macs?: Record<string, string> } = {}) {
  const etcd = new StandInEtcd();
  let now = 0;
  let slept = 0;
  let seq = 0;
  const lines: string[] = [];
  const at = (level: string) => (msg: string) => void lines.push(`${level} ${msg}`);
  const log: Logger = { error: at("error"), warn: at("warn"), info: at("info"), debug: () => {} };
  const removed: string[][] = [];
  let macs = opts.macs;
  /** Runs at each wait of the registration, after the clock moved: another writer acting meanwhile. */
  let duringWait: (() => void) | null = null;
  const r = new Registration({
    me: { prefix: P, node: "n1", run: me.run }, identity: me, kv: etcd, clock: () => now, log, rpcTimeoutMs: 1000, endpoints: ["http://etcd:2379"],
    serving: () => [V2], nextSeq: () => ++seq, holdOf: () => 30_000,
    processAlive: () => opts.alive ?? false,
    removeLeftovers: opts.remove ?? (async (claims) => void removed.push([...claims])),
    ...(macs ? { macs: () => macs! } : {}),
    sleep: async (ms) => {
      now += ms;
      slept += ms;
      duringWait?.();
    },
  });
  return {
    etcd, r, lines, removed,
    get slept() {
      return slept;
    },
    setMacs: (m: Record<string, string>) => void (macs = m),
    onWait: (fn: () => void) => void (duringWait = fn),
    /** A previous run of node n1 that registered, joined V1 and beat with these claims. */
    previous: (inc: Incarnation, claims: string[] | string) => {
      etcd.put(agentKey(P, "n1"), encodeIncarnation(inc), "7");
      etcd.put(electionKey(P, V1, "n1"), inc.run, "7");
      etcd.put(heartbeatKey(P, "n1"), typeof claims === "string" ? claims : encodeHeartbeat({ run: inc.run, seq: 3, claims }), "7");
    },
  };
}

const ours = (etcd: StandInEtcd) => JSON.parse(etcd.get(agentKey(P, "n1"))!.value).run;

test("a free name: record, first heartbeat (claiming what the kernel may answer for) and MACs in one revision, on our lease", async () => {
  const s = setup({ macs: { [V1]: "02:00:00:00:00:01" } });
  // An election key of ours from an earlier registration, and another node's.
  s.etcd.put(electionKey(P, V1, "n1"), "run-earlier");
  s.etcd.put(electionKey(P, V1, "n2"), "run-n2");
  const revision = await s.r.claim("99");
  expect(s.etcd.get(agentKey(P, "n1"))).toMatchObject({ createRevision: revision, lease: "99" });
  expect(s.etcd.get(heartbeatKey(P, "n1"))).toMatchObject({ value: encodeHeartbeat({ run: me.run, seq: 1, claims: [V2] }), modRevision: revision, lease: "99" });
  expect(s.etcd.get(macsKey(P, "n1"))).toMatchObject({ modRevision: revision, lease: "99" });
  // None of our old keys is guarded by this registration: they go.
  expect(s.etcd.get(electionKey(P, V1, "n1"))).toBeUndefined();
  expect(s.etcd.get(electionKey(P, V1, "n2"))).toBeDefined();
  expect(s.slept).toBe(0);
});

test("vipd 0.1's keys make the session refuse to start", async () => {
  const s = setup();
  await s.r.refuseLegacy();
  s.etcd.put(`${P}vip/${V1}/694d1a2b`, "cp-1");
  const err = await s.r.refuseLegacy().catch((e: unknown) => e);
  expect(err).toBeInstanceOf(SessionFatalError);
  expect(String(err)).toContain(`etcd holds vipd 0.1 election keys under ${P}vip/`);
});

test("a record of a higher layout major makes the session refuse to start; a higher minor does not", async () => {
  const s = setup();
  s.etcd.put(agentKey(P, "n2"), JSON.stringify({ ...incarnation("run-n2"), layout: "1.9" }));
  await s.r.refuseNewerLayout();
  s.etcd.put(agentKey(P, "n3"), JSON.stringify({ ...incarnation("run-n3", { version: "9.0.0" }), layout: "9.0" }));
  const err = await s.r.refuseNewerLayout().catch((e: unknown) => e);
  expect(err).toBeInstanceOf(SessionFatalError);
  expect(String(err)).toContain('etcd holds the record of node "n3", written by vipd 9.0.0 in layout 9.0; vipd test speaks layout 1.x');
});

test("another live run on this machine: refused, nothing written", async () => {
  const s = setup({ alive: true });
  s.previous(incarnation("run-old"), [V1]);
  const writes = s.etcd.revision;
  const err = await s.r.claim("99").catch((e: unknown) => e);
  expect(err).toBeInstanceOf(SessionFatalError);
  expect(String(err)).toContain('another vipd already runs as node "n1" on this machine (pid 4242 on h');
  expect(s.etcd.revision).toBe(writes);
});

test("a dead run here: what it claimed is removed from the links first, then its keys are cleared at once (I6)", async () => {
  const s = setup();
  s.previous(incarnation("run-old"), [V1, V2]);
  await s.r.claim("99");
  expect(s.removed).toEqual([[V1, V2]]);
  expect(s.slept).toBe(0);
  expect(ours(s.etcd)).toBe(me.run);
  expect(s.etcd.get(electionKey(P, V1, "n1"))).toBeUndefined();
  expect(s.lines).toContain("info cleared the keys of this node's previous run");
});

test("a dead run here whose heartbeat moves while its claims are removed: read again, removed again, then cleared", async () => {
  // A run judged dead by its PID can only beat if that judgement was wrong; the clear is guarded by
  // the heartbeat's revision, so it fails, and the next pass removes what the newer heartbeat claims.
  let beats = 0;
  const removed: string[][] = [];
  const s = setup({
    remove: async (claims) => {
      removed.push([...claims]);
      if (beats++ === 0) s.etcd.put(heartbeatKey(P, "n1"), encodeHeartbeat({ run: "run-old", seq: 4, claims: [V2] }));
    },
  });
  s.previous(incarnation("run-old"), [V1]);
  await s.r.claim("99");
  expect(removed).toEqual([[V1], [V2]]);
  expect(s.slept).toBe(0);
  expect(ours(s.etcd)).toBe(me.run);
  expect(s.etcd.get(electionKey(P, V1, "n1"))).toBeUndefined();
});

test("a dead run here whose claims could not be removed, or cannot be read: its window is waited out first", async () => {
  for (const [why, claims, remove] of [
    ["removal failed", [V1], async () => Promise.reject(new Error("EPERM"))],
    ["heartbeat not vipd's", "garbage", undefined],
    ["heartbeat of another run", encodeHeartbeat({ run: "run-other", seq: 1, claims: [] }), undefined],
  ] as const) {
    const s = setup(remove ? { remove } : {});
    s.previous(incarnation("run-old"), claims as string[] | string);
    await s.r.claim("99");
    expect({ why, waited: s.slept >= silenceWindow(HOLD) }).toEqual({ why, waited: true });
    expect(ours(s.etcd)).toBe(me.run);
  }
});

test("a dead run in another network namespace: its fence is out of reach, so its window passes first (I7)", async () => {
  const s = setup();
  s.previous(incarnation("run-old", { netns: "net-2" }), [V1]);
  await s.r.claim("99");
  expect(s.removed).toEqual([]);
  expect(s.slept).toBeGreaterThanOrEqual(silenceWindow(HOLD));
  expect(ours(s.etcd)).toBe(me.run);
});

test("a run elsewhere whose heartbeat moves within its window: refused as a live node of the same name", async () => {
  const s = setup();
  s.previous(incarnation("run-clone", { boot: "boot-2" }), [V1]);
  s.onWait(() => void s.etcd.put(heartbeatKey(P, "n1"), encodeHeartbeat({ run: "run-clone", seq: 4, claims: [V1] })));
  const err = await s.r.claim("99").catch((e: unknown) => e);
  expect(err).toBeInstanceOf(SessionFatalError);
  expect(String(err)).toContain('node name "n1" is in use by a live vipd elsewhere');
  expect(JSON.parse(s.etcd.get(agentKey(P, "n1"))!.value).run).toBe("run-clone");
});

test("a record vipd cannot read is waited out with the longest hold the view knows", async () => {
  const s = setup();
  s.etcd.put(agentKey(P, "n1"), "not json");
  await s.r.claim("99");
  expect(s.slept).toBeGreaterThanOrEqual(silenceWindow(30_000));
  expect(ours(s.etcd)).toBe(me.run);
});

test("our own record from a lost session is cleared and written again, without waiting", async () => {
  const s = setup();
  s.previous(me, [V1]);
  const before = s.etcd.get(agentKey(P, "n1"))!.createRevision;
  const revision = await s.r.claim("99");
  expect(revision).not.toBe(before);
  expect(s.slept).toBe(0);
  expect(s.removed).toEqual([]);
});

test("MACs are written again only when they changed, or under a new registration, and only while our record stands", async () => {
  const s = setup({ macs: { [V1]: "02:00:00:00:00:01" } });
  const agentRevision = await s.r.claim("99");
  const reg = { agentRevision, lease: "99" };
  const sent = s.etcd.txns.length;
  await s.r.publishMacs(reg);
  expect(s.etcd.txns.length).toBe(sent);
  s.setMacs({ [V1]: "02:00:00:00:00:02" });
  await s.r.publishMacs(reg);
  expect(JSON.parse(s.etcd.get(macsKey(P, "n1"))!.value)).toEqual({ [V1]: "02:00:00:00:00:02" });
  await s.r.publishMacs(reg);
  expect(s.etcd.txns.length).toBe(sent + 1);
  // Our record gone: the write fails and is tried again next time.
  s.etcd.delete(agentKey(P, "n1"));
  s.setMacs({ [V1]: "02:00:00:00:00:03" });
  await s.r.publishMacs(reg);
  await s.r.publishMacs(reg);
  expect(s.etcd.txns.length).toBe(sent + 3);
  expect(JSON.parse(s.etcd.get(macsKey(P, "n1"))!.value)).toEqual({ [V1]: "02:00:00:00:00:02" });
  // A registration writes them with its record; under any other, they are written again even when unchanged.
  const again = await s.r.claim("100");
  const n = s.etcd.txns.length;
  await s.r.publishMacs({ agentRevision: again, lease: "100" });
  expect(s.etcd.txns.length).toBe(n);
  await s.r.publishMacs({ agentRevision: "12345", lease: "100" });
  expect(s.etcd.txns.length).toBe(n + 1);
});
