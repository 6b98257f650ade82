// `vipd status` against a real etcd: queues made by real VipElection
// instances and by hand in the same layout; the holder and the waiting order
// must be etcd's FIFO order, before and after the holder leaves.
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Etcd3 } from "etcd3";
import { readStatus, renderStatusJson, renderStatusTable, type StatusReport } from "../../src/cli/status.ts";
import { connectEtcd } from "../../src/election/client.ts";
import { VipElection } from "../../src/election/election.ts";
import { AgentLease } from "../../src/election/lease.ts";
import { type EtcdServer, startEtcd } from "../lab/etcd.ts";

const PREFIX = "/vipd/vip/";
let etcd: EtcdServer;
let admin: Etcd3;
const cleanup: (() => void)[] = [];

beforeAll(async () => {
  etcd = await startEtcd();
  admin = connectEtcd({ endpoints: etcd.endpoints });
});
afterAll(async () => {
  for (const f of cleanup.reverse()) f();
  admin?.close();
  await etcd?.stop();
});

async function agent(node: string, vips: readonly string[]): Promise<{ lease: AgentLease; elections: Map<string, VipElection> }> {
  const client = connectEtcd({ endpoints: etcd.endpoints });
  const lease = new AgentLease(client);
  await lease.grant(5);
  const elections = new Map<string, VipElection>();
  for (const vip of vips) {
    const e = new VipElection(client, lease, { prefix: PREFIX, vip, node });
    await e.campaign();
    elections.set(vip, e);
  }
  cleanup.push(() => {
    for (const e of elections.values()) e.close();
    lease.close();
    client.close();
  });
  return { lease, elections };
}

const nodes = (r: StatusReport, vip: string) => {
  const row = r.vips.find((v) => v.vip === vip)!;
  return [row.holder?.node ?? null, ...row.waiting.map((w) => w.node)];
};

test("holder and queue order of every VIP, from real elections and hand-made keys", async () => {
  const a = await agent("cp-1", ["192.0.2.10", "2001:db8::10"]);
  const b = await agent("cp-2", ["2001:db8::10", "192.0.2.10"]);
  const c = await agent("cp-3", ["192.0.2.10"]);
  // Same layout by hand: the lease in the key, the node as the value, put in this order.
  const l1 = await admin.lease(30, { autoKeepAlive: false }).grant();
  const l2 = await admin.lease(30, { autoKeepAlive: false }).grant();
  await admin.put(`${PREFIX}192.0.2.9/${BigInt(l2).toString(16)}`).value("cp-b").lease(l2);
  await admin.put(`${PREFIX}192.0.2.9/${BigInt(l1).toString(16)}`).value("cp-a").lease(l1);
  // Not election keys: ignored.
  await admin.put(`${PREFIX}192.0.2.9`).value("junk");
  await admin.put(`${PREFIX}192.0.2.9/abc/def`).value("junk");
  await admin.put(`${PREFIX}status`).value("junk");

  const report = await readStatus(admin, PREFIX);
  expect(report.vips.map((v) => v.vip)).toEqual(["192.0.2.9", "192.0.2.10", "2001:db8::10"]);
  expect(nodes(report, "192.0.2.9")).toEqual(["cp-b", "cp-a"]);
  expect(nodes(report, "192.0.2.10")).toEqual(["cp-1", "cp-2", "cp-3"]);
  expect(nodes(report, "2001:db8::10")).toEqual(["cp-1", "cp-2"]);
  const row = report.vips[1]!;
  expect(row.holder!.lease).toBe(a.lease.id);
  expect(row.holder!.key).toBe(`${PREFIX}192.0.2.10/${a.lease.id}`);
  expect(row.waiting.map((w) => w.lease)).toEqual([b.lease.id, c.lease.id]);
  expect(row.holder!.createRevision).toBeLessThan(row.waiting[0]!.createRevision);
  expect(report.revision).toBeGreaterThanOrEqual(row.waiting[1]!.createRevision);

  // The same as VipElection.queue, the view the agents themselves have.
  const q = await VipElection.queue(admin, PREFIX, "192.0.2.10");
  expect(q.map((x) => x.key)).toEqual([row.holder!.key, ...row.waiting.map((w) => w.key)]);

  // The holder resigns: the next in line holds, the queue moves up.
  await a.elections.get("192.0.2.10")!.resign();
  const after = await readStatus(admin, PREFIX, ["192.0.2.10", "198.51.100.1"]);
  expect(after.vips.map((v) => v.vip)).toEqual(["192.0.2.10", "198.51.100.1"]);
  expect(nodes(after, "192.0.2.10")).toEqual(["cp-2", "cp-3"]);
  expect(after.vips[1]).toEqual({ vip: "198.51.100.1", holder: null, waiting: [] });

  const table = renderStatusTable(after);
  const lines = table.trimEnd().split("\n");
  expect(lines[0]).toMatch(/^VIP +HOLDER +LEASE +JOINED AT REV +WAITING \(IN ORDER\)$/);
  expect(lines[1]).toMatch(new RegExp(`^192\\.0\\.2\\.10 +cp-2 +${b.lease.id} +\\d+ +cp-3$`));
  expect(lines[2]).toMatch(/^198\.51\.100\.1 +\(none\) +- +- +-$/);
  expect(lines[3]).toBe(`etcd revision ${after.revision}`);
  // Columns line up: each header starts where its cells start.
  for (const h of ["HOLDER", "LEASE", "WAITING"]) {
    const col = lines[0]!.indexOf(h);
    expect(lines[1]![col - 1]).toBe(" ");
    expect(lines[1]![col]).not.toBe(" ");
  }

  const json = JSON.parse(renderStatusJson(after)) as StatusReport;
  expect(json).toEqual(after);
  expect(json.vips[0]!.holder!.node).toBe("cp-2");
});

test("no VIPs under the prefix: an empty report and a table that says so", async () => {
  const report = await readStatus(admin, "/vipd-empty/vip/");
  expect(report.vips).toEqual([]);
  expect(renderStatusTable(report)).toContain("(no VIPs in etcd)");
});
