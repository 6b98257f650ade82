// VipElection with three agents (three clients, three leases) on one real etcd.
import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import type { Etcd3 } from "etcd3";
import { connectEtcd } from "../../src/election/client.ts";
import { type ElectionState, VipElection } from "../../src/election/election.ts";
import { AgentLease } from "../../src/election/lease.ts";
import { startEtcd, type EtcdServer } from "../lab/etcd.ts";
import { waitFor } from "../lab/sh.ts";

const PREFIX = "/vipd/test/";
let etcd: EtcdServer;
let admin: Etcd3;

interface Agent {
  node: string;
  client: Etcd3;
  lease: AgentLease;
  elections: Map<string, VipElection>;
  /** Every state change with its monotonic time. */
  log: { vip: string; at: number; s: ElectionState }[];
  stop(): void;
}
let agents: Agent[] = [];

async function agent(node: string, vips: readonly string[] = ["192.0.2.100"]): Promise<Agent> {
  const client = connectEtcd({ endpoints: etcd.endpoints });
  const lease = new AgentLease(client);
  await lease.grant(3);
  const a: Agent = {
    node, client, lease, elections: new Map(), log: [],
    stop: () => {
      for (const e of a.elections.values()) e.close();
      lease.close();
      client.close();
    },
  };
  for (const vip of vips) {
    const e = new VipElection(client, lease, { prefix: PREFIX, vip, node });
    e.on("state", (s) => a.log.push({ vip, at: performance.now(), s }));
    a.elections.set(vip, e);
    await e.campaign();
  }
  agents.push(a);
  return a;
}

const role = (a: Agent, vip = "192.0.2.100") => a.elections.get(vip)!.state.role;
const leaders = (vip = "192.0.2.100") => agents.filter((a) => a.elections.get(vip)?.state.role === "leader");

beforeAll(async () => {
  etcd = await startEtcd();
  admin = connectEtcd({ endpoints: etcd.endpoints });
});
afterEach(async () => {
  for (const a of agents) a.stop();
  agents = [];
  await admin.delete().prefix(PREFIX);
});
afterAll(async () => {
  admin?.close();
  await etcd?.stop();
});

test("three agents: exactly one leader, the first to campaign; queue() is FIFO", async () => {
  const [a, b, c] = [await agent("cp-1"), await agent("cp-2"), await agent("cp-3")];
  expect(role(a!)).toBe("leader");
  expect(role(b!)).toBe("follower");
  expect(role(c!)).toBe("follower");
  expect(leaders()).toHaveLength(1);
  const s = b!.elections.get("192.0.2.100")!.state;
  expect(s.role === "follower" && s.leader?.node).toBe("cp-1");
  const q = await VipElection.queue(admin, PREFIX, "192.0.2.100");
  expect(q.map((x) => x.node)).toEqual(["cp-1", "cp-2", "cp-3"]);
  expect(q[0]!.leaseId).toBe(a!.lease.id);
  expect(q[0]!.key).toBe(`${PREFIX}192.0.2.100/${a!.lease.id}`);
  expect(q[0]!.createRevision).toBeLessThan(q[1]!.createRevision);
});

test("leader resigns: the next in FIFO order leads, and we measure the hand-over", async () => {
  const [a, b, c] = [await agent("cp-1"), await agent("cp-2"), await agent("cp-3")];
  const t0 = performance.now();
  await a!.elections.get("192.0.2.100")!.resign("shutting down");
  await waitFor("cp-2 to lead", () => role(b!) === "leader", 2000, 1);
  const took = b!.log.at(-1)!.at - t0;
  console.log(`hand-over after resign: ${took.toFixed(1)} ms`);
  expect(took).toBeLessThan(200);
  const s = b!.log.at(-1)!.s;
  expect(s.role === "leader" && s.reason).toBe("predecessor cp-1 left");
  expect(role(a!)).toBe("out");
  expect(role(c!)).toBe("follower");
  await waitFor("cp-3 to see cp-2 lead", () => {
    const cs = c!.elections.get("192.0.2.100")!.state;
    return cs.role === "follower" && cs.leader?.node === "cp-2";
  }, 1000);
  expect(leaders()).toHaveLength(1);
});

test("leader's lease revoked: its key goes, it is told, the next wins", async () => {
  const [a, b] = [await agent("cp-1"), await agent("cp-2")];
  const lost: string[] = [];
  a!.elections.get("192.0.2.100")!.on("lost-key", (e) => lost.push(e.reason));
  const t0 = performance.now();
  await a!.lease.revoke();
  await waitFor("cp-2 to lead", () => role(b!) === "leader", 2000, 1);
  console.log(`hand-over after revoke: ${(b!.log.at(-1)!.at - t0).toFixed(1)} ms`);
  await waitFor("cp-1 to learn its key is gone", () => lost.length === 1, 1000);
  expect(lost[0]).toContain("key deleted");
  expect(role(a!)).toBe("out");
});

test("leader stops keepalives without revoking (crash): the next wins after about a TTL", async () => {
  const [a, b] = [await agent("cp-1"), await agent("cp-2")];
  const t0 = performance.now();
  a!.stop();
  await waitFor("cp-2 to lead", () => role(b!) === "leader", 6000, 5);
  const took = b!.log.at(-1)!.at - t0;
  console.log(`hand-over after a silent crash: ${took.toFixed(0)} ms (TTL 3000 ms)`);
  // Never before the lease could expire; etcd checks expiry every 500 ms.
  expect(took).toBeGreaterThan(2500);
  expect(took).toBeLessThan(4500);
}, 10_000);

test("a stale key of the same node under an older lease is removed at campaign", async () => {
  const other = await agent("cp-2");
  // Left behind by an earlier run of cp-1: a key on a lease that lives on for a while.
  const old = await admin.lease(30, { autoKeepAlive: false }).grant();
  const staleKey = `${PREFIX}192.0.2.100/${BigInt(old).toString(16)}`;
  await admin.kv.put({ key: Buffer.from(staleKey), value: Buffer.from("cp-1"), lease: old });
  const a = await agent("cp-1");
  const q = await VipElection.queue(admin, PREFIX, "192.0.2.100");
  expect(q.map((x) => x.key)).not.toContain(staleKey);
  expect(q.map((x) => x.node)).toEqual(["cp-2", "cp-1"]);
  expect(role(other)).toBe("leader");
  expect(role(a)).toBe("follower");
  await admin.leaseClient.leaseRevoke({ ID: old });
});

test("two VIPs elect independently", async () => {
  const v1 = "192.0.2.100";
  const v2 = "2001:db8::100";
  const a = await agent("cp-1", [v1]);
  const b = await agent("cp-2", [v2, v1]);
  expect(role(a, v1)).toBe("leader");
  expect(role(b, v1)).toBe("follower");
  expect(role(b, v2)).toBe("leader");
  await b.elections.get(v2)!.resign();
  expect(role(a, v1)).toBe("leader");
  expect((await VipElection.queue(admin, PREFIX, v2))).toEqual([]);
  expect((await VipElection.queue(admin, PREFIX, v1)).map((x) => x.node)).toEqual(["cp-1", "cp-2"]);
});
