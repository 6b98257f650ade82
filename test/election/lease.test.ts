// AgentLease against a real etcd: keepalives move the fence, a frozen etcd
// makes `expired` fire on our own clock before the server could expire the
// lease, and revoke removes the lease at the server.
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Etcd3 } from "etcd3";
import { connectEtcd } from "../../src/election/client.ts";
import { DEFAULT_MARGIN_MS } from "../../src/election/fence.ts";
import { AgentLease, type LeaseEvents } from "../../src/election/lease.ts";
import { startEtcd, type EtcdServer } from "../lab/etcd.ts";
import { waitFor } from "../lab/sh.ts";

let etcd: EtcdServer;
const clients: Etcd3[] = [];
const client = () => {
  const c = connectEtcd({ endpoints: etcd.endpoints });
  clients.push(c);
  return c;
};

beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  for (const c of clients) c.close();
  await etcd?.stop();
});

test("grant, then keepalives move the deadline forward", async () => {
  const lease = new AgentLease(client());
  const renewed: LeaseEvents["renewed"][] = [];
  lease.on("renewed", (e) => renewed.push(e));
  await lease.grant(3);
  expect(lease.id).toMatch(/^[0-9a-f]+$/);
  const first = lease.deadline!;
  expect(first - lease.clock()).toBeGreaterThan(2000);
  await waitFor("two keepalive acks", () => renewed.length >= 2, 3000);
  expect(renewed[1]!.deadline).toBeGreaterThan(first);
  expect(renewed[1]!.ttl).toBe(3);
  expect(renewed[1]!.rttMs).toBeLessThan(200);
  expect(lease.valid()).toBe(true);
  expect(lease.kernelLifetime()).toBe(1);
  await lease.revoke();
});

test("a frozen etcd: expired fires at our deadline, before the server could expire the lease", async () => {
  const lease = new AgentLease(client());
  let last: LeaseEvents["renewed"] | null = null;
  lease.on("renewed", (e) => (last = e));
  const expired = new Promise<{ at: number; e: LeaseEvents["expired"] }>((resolve) =>
    lease.on("expired", (e) => resolve({ at: lease.clock(), e })),
  );
  await lease.grant(3);
  await waitFor("an ack", () => last, 3000);
  etcd.signal("SIGSTOP");
  try {
    const { at, e } = await expired;
    expect(e.reason).toContain("deadline passed");
    expect(at).toBeGreaterThanOrEqual(e.deadline);
    // The server could expire the lease at the earliest at s + TTL = deadline + margin.
    expect(at).toBeLessThan(e.deadline + DEFAULT_MARGIN_MS);
    console.log(`expired ${(at - e.deadline).toFixed(1)} ms after the deadline (server expiry no sooner than +${DEFAULT_MARGIN_MS} ms)`);
    expect(lease.valid()).toBe(false);
    expect(lease.kernelLifetime()).toBeNull();
  } finally {
    etcd.signal("SIGCONT");
  }
  // etcd is back: the lease still exists at the server (etcd extends leases
  // across its own pauses), so the keepalive loop proves it again.
  const again = await new Promise<LeaseEvents["renewed"] | LeaseEvents["lost"]>((resolve) => {
    lease.on("renewed", resolve);
    lease.on("lost", resolve);
  });
  expect("deadline" in again || "reason" in again).toBe(true);
  lease.close();
}, 15_000);

test("revoke removes the lease and its keys at the server", async () => {
  const c = client();
  const lease = new AgentLease(c);
  await lease.grant(3);
  await c.kv.put({ key: Buffer.from("/test/revoke"), value: Buffer.from("x"), lease: lease.etcdId });
  await lease.revoke();
  expect(lease.valid()).toBe(false);
  const other = client();
  const ttl = await other.leaseClient.leaseTimeToLive({ ID: lease.etcdId });
  expect(ttl.TTL).toBe("-1");
  expect(await other.get("/test/revoke").string()).toBeNull();
});

test("a TTL too short to fence is refused", async () => {
  await expect(new AgentLease(client()).grant(2)).rejects.toThrow(/too short to fence/);
});
