// Every transaction a run writes, as plain values: what it compares, puts,
// deletes and reads back, one line per operation.
import { expect, test } from "bun:test";
import type { ICompare, IRequestOp, ITxnRequest } from "etcd3";
import {
  clearTxn,
  deleteTxn,
  electionKeysRange,
  heartbeatPut,
  heartbeatTxn,
  joinTxn,
  legacyRange,
  macsTxn,
  ownElectionKeys,
  ownRecord,
  previousRunTxn,
  registerTxn,
  releaseTxn,
  takeoverTerms,
  takeoverTxn,
  uniqueCompares,
} from "./transactions.ts";

const me = { prefix: "/v/", node: "b", run: "run-b" };
const reg = { agentRevision: "7", lease: "99" };
const V1 = "192.0.2.10";
const V2 = "192.0.2.11";

const compare = (c: ICompare) => `${String(c.key)} ${c.target === "Create" ? "created" : "modified"} at ${c.create_revision ?? c.mod_revision}`;
const op = (o: IRequestOp) => {
  if (o.request_put) return `put ${String(o.request_put.key)} = ${String(o.request_put.value)}${o.request_put.lease ? ` (lease ${o.request_put.lease})` : ""}`;
  if (o.request_delete_range) return `delete ${String(o.request_delete_range.key)}`;
  return `read ${String(o.request_range!.key)}`;
};
const show = (t: ITxnRequest) => ({ if: (t.compare ?? []).map(compare), then: (t.success ?? []).map(op), else: (t.failure ?? []).map(op) });

const beat = (seq: number, claims: string[]) => heartbeatPut(me, reg.lease, seq, claims);

test("the one guard: our record still has the create revision this run gave it", () => {
  expect(compare(ownRecord(me, "7"))).toBe("/v/agents/b created at 7");
});

test("every write of a registered run is guarded by our record first", () => {
  const terms = takeoverTerms(me, reg.agentRevision, V1, { key: `/v/elections/${V1}/b`, createRevision: "20" }, []);
  const writes = [
    heartbeatTxn(me, reg.agentRevision, [], beat(1, [])),
    joinTxn(me, reg, V1),
    releaseTxn(me, reg, [V1], beat(1, [])),
    takeoverTxn([terms], beat(1, [V1])),
    macsTxn(me, reg, "{}"),
  ];
  for (const w of writes) expect(show(w).if[0]).toBe("/v/agents/b created at 7");
});

test("heartbeat: record and every head key unchanged, then the put; otherwise they are read back in order", () => {
  const t = heartbeatTxn(me, "7", [{ vip: V1, createRevision: "20" }, { vip: V2, createRevision: "21" }], beat(5, [V1, V2]));
  expect(show(t)).toEqual({
    if: ["/v/agents/b created at 7", `/v/elections/${V1}/b created at 20`, `/v/elections/${V2}/b created at 21`],
    then: [`put /v/heartbeats/b = {"run":"run-b","seq":5,"claims":["${V1}","${V2}"]} (lease 99)`],
    else: ["read /v/agents/b", `read /v/elections/${V1}/b`, `read /v/elections/${V2}/b`],
  });
});

test("join: our key only where none is, with our run as its value, on our lease", () => {
  expect(show(joinTxn(me, reg, V1))).toEqual({
    if: ["/v/agents/b created at 7", `/v/elections/${V1}/b created at 0`],
    then: [`put /v/elections/${V1}/b = run-b (lease 99)`],
    else: [`read /v/elections/${V1}/b`],
  });
});

test("release: our keys go, and a heartbeat that no longer claims them, in one revision", () => {
  expect(show(releaseTxn(me, reg, [V1, V2], beat(6, [])))).toEqual({
    if: ["/v/agents/b created at 7"],
    then: [`delete /v/elections/${V1}/b`, `delete /v/elections/${V2}/b`, `put /v/heartbeats/b = {"run":"run-b","seq":6,"claims":[]} (lease 99)`],
    else: [],
  });
});

test("takeover: each agent ahead heard unchanged and its key unchanged; their keys go and our heartbeat claims the VIPs", () => {
  const ahead = (node: string, vip: string, createRevision: string, heartbeatRevision: string) => ({ node, key: `/v/elections/${vip}/${node}`, createRevision, heartbeatRevision });
  const t1 = takeoverTerms(me, "7", V1, { key: `/v/elections/${V1}/b`, createRevision: "20" }, [ahead("a", V1, "10", "50")]);
  const t2 = takeoverTerms(me, "7", V2, { key: `/v/elections/${V2}/b`, createRevision: "21" }, [ahead("a", V2, "11", "50"), ahead("c", V2, "12", "0")]);
  expect(t1.from).toEqual(["a"]);
  expect(t2.from).toEqual(["a", "c"]);
  expect(t2.createRevision).toBe("21");
  // The record and a's heartbeat are compared once for both.
  expect(show(takeoverTxn([t1, t2], beat(8, [V1, V2])))).toEqual({
    if: [
      "/v/agents/b created at 7",
      `/v/elections/${V1}/b created at 20`,
      "/v/heartbeats/a modified at 50",
      `/v/elections/${V1}/a created at 10`,
      `/v/elections/${V2}/b created at 21`,
      `/v/elections/${V2}/a created at 11`,
      // Never heard: its heartbeat key must still not exist.
      "/v/heartbeats/c modified at 0",
      `/v/elections/${V2}/c created at 12`,
    ],
    then: [`delete /v/elections/${V1}/a`, `delete /v/elections/${V2}/a`, `delete /v/elections/${V2}/c`, `put /v/heartbeats/b = {"run":"run-b","seq":8,"claims":["${V1}","${V2}"]} (lease 99)`],
    else: [],
  });
});

test("comparisons are the same only with the same key, target and revision", () => {
  const create = (key: string, rev: string): ICompare => ({ key: Buffer.from(key), target: "Create", result: "Equal", create_revision: rev });
  const mod = (key: string, rev: string): ICompare => ({ key: Buffer.from(key), target: "Mod", result: "Equal", mod_revision: rev });
  expect(uniqueCompares([create("/a", "1"), create("/a", "1"), create("/a", "2"), mod("/a", "1")]).length).toBe(3);
});

test("MACs: put on our lease, guarded by our record", () => {
  expect(show(macsTxn(me, reg, '{"link/eth0":"02:00:00:00:00:0b"}'))).toEqual({
    if: ["/v/agents/b created at 7"],
    then: ['put /v/macs/b = {"link/eth0":"02:00:00:00:00:0b"} (lease 99)'],
    else: [],
  });
});

test("registration: reads the name's record and heartbeat together; writes record, first heartbeat and MACs only where no record is", () => {
  expect(show(previousRunTxn(me))).toEqual({ if: [], then: ["read /v/agents/b", "read /v/heartbeats/b"], else: [] });
  expect(show(registerTxn(me, "99", '{"run":"run-b"}', beat(1, [V1]), '{"x":"y"}'))).toEqual({
    if: ["/v/agents/b created at 0"],
    then: ['put /v/agents/b = {"run":"run-b"} (lease 99)', `put /v/heartbeats/b = {"run":"run-b","seq":1,"claims":["${V1}"]} (lease 99)`, 'put /v/macs/b = {"x":"y"} (lease 99)'],
    else: [],
  });
  expect(show(registerTxn(me, "99", "{}", beat(1, []), null)).then).toHaveLength(2);
});

test("clearing a previous run: only if neither its record nor its heartbeat moved since it was judged", () => {
  expect(show(clearTxn(me, "30", "31", [Buffer.from(`/v/elections/${V1}/b`)]))).toEqual({
    if: ["/v/agents/b modified at 30", "/v/heartbeats/b modified at 31"],
    then: ["delete /v/agents/b", "delete /v/heartbeats/b", `delete /v/elections/${V1}/b`],
    else: [],
  });
  // Its heartbeat already gone: it must still be gone.
  expect(show(clearTxn(me, "30", "0", [])).if[1]).toBe("/v/heartbeats/b modified at 0");
  expect(show(deleteTxn([Buffer.from("/v/x")]))).toEqual({ if: [], then: ["delete /v/x"], else: [] });
});

test("ranges: vipd 0.1's keys counted, election keys by name only, ours picked by node", () => {
  const legacy = legacyRange("/v/");
  expect([String(legacy.key), String(legacy.range_end), legacy.count_only]).toEqual(["/v/vip/", "/v/vip0", true]);
  const el = electionKeysRange("/v/");
  expect([String(el.key), String(el.range_end), el.keys_only]).toEqual(["/v/elections/", "/v/elections0", true]);
  const kvs = [`/v/elections/${V1}/b`, `/v/elections/${V1}/ab`, `/v/elections/${V2}/b`, `/v/elections/${V2}/b.c`].map((k) => ({ key: Buffer.from(k) }));
  expect(ownElectionKeys({ kvs } as never, "b").map(String)).toEqual([`/v/elections/${V1}/b`, `/v/elections/${V2}/b`]);
});
