// Whose certificate an etcd endpoint may present. Two nodes, each with an etcd
// member of its own (mutual TLS, one etcd CA, lab/certs.ts): n1's certificate
// is the one kubeadm makes (DNS: localhost, n1; IP: its address, 127.0.0.1,
// ::1), n2's, from the same CA but not by kubeadm, names its address and
// nothing else. A client on a third node, c, checks every
// endpoint's certificate against that endpoint's IP, or against the server
// name it is given; never against "localhost" for every member, which let any
// kubeadm member pass for any other. The client runs in the namespaces
// (fixtures/etcd-status.ts); nothing is added to the root namespace.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { type KubeadmPki, makeKubeadmPki } from "../lab/certs.ts";
import { type EtcdCluster, type EtcdTls, startEtcdCluster } from "../lab/etcd.ts";
import { type Host, Segment } from "../lab/netns.ts";
import { sh } from "../lab/sh.ts";

let seg: Segment;
let n1: Host;
let n2: Host;
let c: Host;
let cluster: KubeadmPki;
/** vipd's etcd TLS on a kubeadm node: the etcd CA and etcd/healthcheck-client. */
let client: { caFile: string; certFile: string; keyFile: string };
const members: EtcdCluster[] = [];

beforeAll(async () => {
  seg = await Segment.create(["n1", "n2", "c"]);
  [n1, n2, c] = [seg.host("n1"), seg.host("n2"), seg.host("c")];
  cluster = await makeKubeadmPki([{ name: n1.name, ip: n1.ip4 }]);
  const pki = cluster.node(n1.name);
  client = { caFile: pki.etcd.ca, ...pki.etcd.healthcheckClient };
  const n2Tls: EtcdTls = { caFile: pki.etcd.ca, ...(await cluster.etcdServer(n2.name, { ips: [n2.ip4] })), clientCertAuth: true, probe: pki.etcd.healthcheckClient };
  // Two one-member clusters, so that each member has a certificate of its own.
  for (const [node, tls] of [[n1, pki.etcdServing], [n2, n2Tls]] as const) {
    members.push(await startEtcdCluster([{ name: node.name, ns: node.ns, ip: node.ip4 }], { tls }));
  }
}, 60_000);

afterAll(async () => {
  for (const m of members) await m.stopAll();
  cluster?.remove();
  await seg?.destroy();
});

type Result = { member?: string; error?: string; raw?: string };
const answered = [{ member: expect.stringMatching(/^\d+$/) }];

/** Runs the fixture on `from` with the test CA and client certificate; one result per call. */
async function status(from: Host, endpoints: string[], opts: { tlsServerName?: string | undefined; calls?: number } = {}): Promise<Result[]> {
  const args = {
    endpoints,
    tls: client,
    ...(opts.tlsServerName ? { tlsServerName: opts.tlsServerName } : {}),
    calls: opts.calls ?? 1,
  };
  const out = await sh(["ip", "netns", "exec", from.ns, process.execPath, join(import.meta.dir, "fixtures", "etcd-status.ts"), JSON.stringify(args)]);
  return out.trim().split("\n").map((l) => JSON.parse(l) as Result);
}

/** While fn runs, c's connections to `to`:2379 go to `instead`:2379: another member answers at that address. */
async function misrouted<T>(to: Host, instead: Host, fn: () => Promise<T>): Promise<T> {
  const nft = (script: string) => sh(["ip", "netns", "exec", c.ns, "nft", script]);
  await nft("add table ip vipd_misroute");
  try {
    await nft("add chain ip vipd_misroute out { type nat hook output priority -100 ; }");
    await nft(`add rule ip vipd_misroute out ip daddr ${to.ip4} tcp dport 2379 dnat to ${instead.ip4}:2379`);
    return await fn();
  } finally {
    await nft("delete table ip vipd_misroute");
  }
}

test("a certificate with only IP SANs is accepted at its IP", async () => {
  expect(await status(c, [`https://${n2.ip4}:2379`])).toEqual(answered);
});

test("a kubeadm certificate is accepted at the node's IP and at 127.0.0.1", async () => {
  expect(await status(c, [`https://${n1.ip4}:2379`])).toEqual(answered);
  expect(await status(n1, ["https://127.0.0.1:2379"])).toEqual(answered);
});

test("a certificate without the endpoint's IP is refused, naming both", async () => {
  const [r] = await status(n2, ["https://127.0.0.1:2379"]);
  expect(r?.error).toBe(
    `etcd at https://127.0.0.1:2379: its certificate is for ${n2.ip4}, not 127.0.0.1: another member answered there, ` +
      "or its certificate was issued without this address: give the endpoints by the addresses or names their certificates carry",
  );
});

test("another member's kubeadm certificate (it carries localhost too) is refused at this member's IP", async () => {
  const [r] = await misrouted(n2, n1, () => status(c, [`https://${n2.ip4}:2379`]));
  expect(r?.error).toStartWith(
    `etcd at https://${n2.ip4}:2379: its certificate is for localhost, n1, ${n1.ip4}, 127.0.0.1, ::1, not ${n2.ip4}: another member answered there`,
  );
});

test("with several endpoints each is checked against its own IP", async () => {
  const both = [`https://${n1.ip4}:2379`, `https://${n2.ip4}:2379`];
  // etcd3 sends each call to one endpoint picked at random: 24 calls reach both
  // unless a 1 in 8 million chance says otherwise.
  const ok = await status(c, both, { calls: 24 });
  expect(ok.filter((r) => r.error)).toEqual([]);
  expect(new Set(ok.map((r) => r.member)).size).toBe(2);
  // Now n1's member also answers at n2's address: only the calls to n2's address fail.
  const [n1Member] = await status(n1, ["https://127.0.0.1:2379"]);
  const mixed = await misrouted(n2, n1, () => status(c, both, { calls: 24 }));
  const failed = mixed.filter((r) => r.error);
  expect(failed.length).toBeGreaterThan(0);
  for (const r of failed) expect(r.error).toStartWith(`etcd at https://${n2.ip4}:2379: its certificate is for localhost, n1, `);
  expect(new Set(mixed.filter((r) => !r.error).map((r) => r.member))).toEqual(new Set([n1Member!.member]));
});

test("an explicit server name is checked against the certificate's DNS names", async () => {
  const at = `https://${n1.ip4}:2379`;
  expect(await status(c, [at], { tlsServerName: "n1" })).toEqual(answered);
  expect((await status(c, [at], { tlsServerName: "n2" }))[0]?.error).toBe(
    `etcd at ${at}: its certificate is for localhost, n1, ${n1.ip4}, 127.0.0.1, ::1, not n2: ` +
      "give --etcd-server-name a DNS name that every member's certificate carries",
  );
  // n2's certificate has no DNS names at all.
  expect((await status(c, [`https://${n2.ip4}:2379`], { tlsServerName: "n2" }))[0]?.error).toStartWith(
    `etcd at https://${n2.ip4}:2379: its certificate is for ${n2.ip4}, not n2: `,
  );
});
