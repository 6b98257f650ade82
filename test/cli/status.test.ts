// `vipd status` against a real etcd: queues made by real sessions and keys
// written by hand in the same layout; the first in line and the waiting
// order must be etcd's FIFO order, before and after the first one leaves,
// and "answering" must follow the heartbeats' claims.
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Etcd3 } from "etcd3";
import { readStatus, renderStatusJson, renderStatusTable, type StatusReport } from "../../src/cli/status.ts";
import { connectEtcd, EtcdConnection } from "../../src/election/connection.ts";
import { currentIncarnation, encodeIncarnation } from "../../src/election/incarnation.ts";
import { LAYOUT_TEXT } from "../../src/election/layout.ts";
import { agentKey, drainKey, electionKey, encodeDrain, encodeHandover, encodeHeartbeat, handoverKey, heartbeatKey } from "../../src/election/keys.ts";
import { monotonicClock } from "../../src/seams.ts";
import { Session } from "../../src/election/session.ts";
import { type EtcdServer, startEtcd } from "../lab/etcd.ts";
import { waitFor } from "../lab/sh.ts";

const PREFIX = "/vipd/";
let etcd: EtcdServer;
let admin: Etcd3;
const cleanup: (() => Promise<void>)[] = [];
const quiet = { error() {}, warn() {}, info() {}, debug() {} };

beforeAll(async () => {
  etcd = await startEtcd();
  admin = connectEtcd({ endpoints: etcd.endpoints });
});
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
  admin?.close();
  await etcd?.stop();
});

async function agent(node: string, vips: readonly string[]): Promise<Session> {
  const conn = new EtcdConnection({ endpoints: etcd.endpoints });
  const session = new Session({
    settings: { endpoints: etcd.endpoints, prefix: PREFIX, node, holdMs: 2500, leaseTtlS: 5 },
    conn,
    identity: currentIncarnation({ holdMs: 2500, version: "test" }),
    clock: monotonicClock,
    log: quiet,
    serving: () => [],
  });
  session.start();
  await waitFor(`${node} ready`, () => session.ready, 5000);
  for (const vip of vips) await session.join(vip);
  cleanup.push(async () => {
    await session.stop(300).catch(() => {});
    conn.close();
  });
  return session;
}

const nodes = (r: StatusReport, vip: string) => {
  const row = r.vips.find((v) => v.vip === vip)!;
  return [row.holder?.node ?? null, ...row.waiting.map((w) => w.node)];
};

test("first in line, waiting order and who answers, for every VIP", async () => {
  const a = await agent("cp-1", ["192.0.2.10", "2001:db8::10"]);
  await agent("cp-2", ["2001:db8::10", "192.0.2.10"]);
  await agent("cp-3", ["192.0.2.10"]);
  // The same layout by hand: cp-b joined before cp-a, and cp-b's heartbeat claims the VIP.
  const lease = await admin.lease(30, { autoKeepAlive: false }).grant();
  cleanup.push(async () => void (await admin.leaseClient.leaseRevoke({ ID: lease }).catch(() => {})));
  const inc = currentIncarnation({ holdMs: 3000, version: "hand" });
  await admin.put(agentKey(PREFIX, "cp-b")).value(encodeIncarnation(inc)).lease(lease);
  await admin.put(electionKey(PREFIX, "192.0.2.9", "cp-b")).value(inc.run).lease(lease);
  await admin.put(electionKey(PREFIX, "192.0.2.9", "cp-a")).value("r").lease(lease);
  await admin.put(heartbeatKey(PREFIX, "cp-b")).value(encodeHeartbeat({ run: inc.run, seq: 1, claims: ["192.0.2.9"] })).lease(lease);
  // Not vipd's keys: ignored.
  await admin.put(`${PREFIX}elections/192.0.2.9`).value("junk");
  await admin.put(`${PREFIX}status`).value("junk");
  // The heartbeats of the real sessions claim what they head.
  await waitFor("cp-1 claims its VIPs", async () => (await readStatus(admin, PREFIX)).vips.find((v) => v.vip === "192.0.2.10")?.claimedBy.includes("cp-1"), 3000);

  const report = await readStatus(admin, PREFIX);
  expect(report.vips.map((v) => v.vip)).toEqual(["192.0.2.9", "192.0.2.10", "2001:db8::10"]);
  expect(nodes(report, "192.0.2.9")).toEqual(["cp-b", "cp-a"]);
  expect(nodes(report, "192.0.2.10")).toEqual(["cp-1", "cp-2", "cp-3"]);
  expect(nodes(report, "2001:db8::10")).toEqual(["cp-1", "cp-2"]);
  expect(report.vips[0]!.claimedBy).toEqual(["cp-b"]);
  expect(report.vips[1]!.claimedBy).toEqual(["cp-1"]);
  const row = report.vips[1]!;
  expect(row.holder!.key).toBe(electionKey(PREFIX, "192.0.2.10", "cp-1"));
  expect(row.holder!.createRevision).toBeLessThan(row.waiting[0]!.createRevision);
  expect(report.revision).toBeGreaterThanOrEqual(row.waiting[1]!.createRevision);
  expect(report.agents.map((x) => [x.node, x.holdMs])).toEqual([["cp-1", 2500], ["cp-2", 2500], ["cp-3", 2500], ["cp-b", 3000]]);
  // Every record says which vipd wrote it, and in which layout.
  expect(report.agents.map((x) => [x.node, x.version, x.layout])).toEqual([["cp-1", "test", LAYOUT_TEXT], ["cp-2", "test", LAYOUT_TEXT], ["cp-3", "test", LAYOUT_TEXT], ["cp-b", "hand", LAYOUT_TEXT]]);
  expect(report.agents[0]!.pid).toBe(process.pid);

  // The same order as the agents' own view.
  expect(a.view.queue("192.0.2.10").map((c) => c.key)).toEqual([row.holder!.key, ...row.waiting.map((w) => w.key)]);

  // The first one leaves: the next in line is first, the queue moves up.
  await a.release(["192.0.2.10"]);
  const after = await readStatus(admin, PREFIX, ["192.0.2.10", "198.51.100.1"]);
  expect(after.vips.map((v) => v.vip)).toEqual(["192.0.2.10", "198.51.100.1"]);
  expect(nodes(after, "192.0.2.10")).toEqual(["cp-2", "cp-3"]);
  expect(after.vips[1]).toEqual({ vip: "198.51.100.1", holder: null, claimedBy: [], waiting: [], handover: null });

  const table = renderStatusTable(after);
  const lines = table.trimEnd().split("\n");
  expect(lines[0]).toMatch(/^VIP +FIRST +ANSWERING +JOINED AT REV +WAITING \(IN ORDER\)$/);
  expect(lines[1]).toMatch(/^192\.0\.2\.10 +cp-2 +\S+ +\d+ +cp-3$/);
  expect(lines[2]).toMatch(/^198\.51\.100\.1 +\(none\) +- +- +-$/);
  expect(lines[4]).toMatch(/^AGENT +HOST +PID +HOLD +VERSION +LAYOUT +STARTED$/);
  expect(lines.at(-1)).toBe(`etcd revision ${after.revision}`);
  // Columns line up: each header starts where its cells start.
  for (const h of ["FIRST", "ANSWERING", "WAITING"]) {
    const col = lines[0]!.indexOf(h);
    expect(lines[1]![col - 1]).toBe(" ");
    expect(lines[1]![col]).not.toBe(" ");
  }

  const json = JSON.parse(renderStatusJson(after)) as StatusReport;
  expect(json).toEqual(after);
  expect(json.vips[0]!.holder!.node).toBe("cp-2");
});

test("drained nodes and hand-overs in progress are listed with who asked and when", async () => {
  const P = "/vipd-ops/";
  const at = "2026-11-26T10:00:00.000Z";
  await admin.put(electionKey(P, "192.0.2.20", "cp-1")).value("r1");
  await admin.put(electionKey(P, "192.0.2.20", "cp-2")).value("r2");
  const rev = (await admin.get(electionKey(P, "192.0.2.20", "cp-2")).exec()).kvs[0]!.create_revision;
  await admin.put(handoverKey(P, "192.0.2.20")).value(encodeHandover({ to: "cp-2", toRevision: rev, by: "ops@admin", at }));
  await admin.put(drainKey(P, "cp-3")).value(encodeDrain({ by: "ops@admin", at, reason: "kernel upgrade" }));
  await admin.put(drainKey(P, "cp-4")).value("not json");
  const report = await readStatus(admin, P);
  expect(report.vips[0]!.handover).toEqual({ to: "cp-2", by: "ops@admin", at });
  expect(report.drains).toEqual([
    { node: "cp-3", by: "ops@admin", at, reason: "kernel upgrade" },
    { node: "cp-4", by: null, at: null, reason: null },
  ]);
  const lines = renderStatusTable(report).trimEnd().split("\n");
  expect(lines).toContain(`hand-over of 192.0.2.20 to cp-2 in progress (asked by ops@admin at ${at})`);
  const header = lines.findIndex((l) => /^DRAINED +BY +AT +REASON$/.test(l));
  expect(header).toBeGreaterThan(0);
  expect(lines[header + 1]).toMatch(new RegExp(`^cp-3 +ops@admin +${at.replaceAll(".", "\\.")} +kernel upgrade$`));
  expect(lines[header + 2]).toMatch(/^cp-4 +\? +\? +-$/);
  await admin.delete().prefix(P);
});

test("during a rolling upgrade: a 0.2.0 agent (its record has no layout) beside this version, both listed with their versions", async () => {
  const P = "/vipd-mixed/";
  const lease = await admin.lease(30, { autoKeepAlive: false }).grant();
  cleanup.push(async () => void (await admin.leaseClient.leaseRevoke({ ID: lease }).catch(() => {})));
  const now = currentIncarnation({ holdMs: 2500, version: "0.3.0" });
  // As vipd 0.2.0 writes its record: the same fields, no layout.
  const { layout: _, ...old } = { ...currentIncarnation({ holdMs: 2500, version: "0.2.0" }), pid: 4242 };
  await admin.put(agentKey(P, "cp-1")).value(encodeIncarnation(now)).lease(lease);
  await admin.put(agentKey(P, "cp-2")).value(JSON.stringify(old)).lease(lease);
  await admin.put(agentKey(P, "cp-3")).value("not a record").lease(lease);
  const report = await readStatus(admin, P);
  expect(report.agents.map((x) => [x.node, x.version, x.layout])).toEqual([["cp-1", "0.3.0", LAYOUT_TEXT], ["cp-2", "0.2.0", "1.0"], ["cp-3", null, null]]);
  const lines = renderStatusTable(report).trimEnd().split("\n");
  expect(lines.find((l) => l.startsWith("cp-2 "))).toMatch(/^cp-2 +\S+ +4242 +2500 ms +0\.2\.0 +1\.0 +\S+$/);
  expect(lines).toContain("agents run 2 versions (0.2.0, 0.3.0): an upgrade is under way, or was left half done");
  expect((JSON.parse(renderStatusJson(report)) as StatusReport).agents[1]).toMatchObject({ node: "cp-2", version: "0.2.0", layout: "1.0" });
  await admin.delete().prefix(P);
});

test("no VIPs under the prefix: an empty report and a table that says so", async () => {
  const report = await readStatus(admin, "/vipd-empty/");
  expect(report.vips).toEqual([]);
  expect(report.agents).toEqual([]);
  expect(report.drains).toEqual([]);
  expect(renderStatusTable(report)).toContain("(no VIPs in etcd)");
});
