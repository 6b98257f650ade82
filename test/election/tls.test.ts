// Mutual TLS as on a kubeadm node: etcd with kubeadm's etcd/server.crt and
// --client-cert-auth, vipd with the etcd CA and kubeadm's
// etcd/healthcheck-client certificate (lab/certs.ts).
// Whose certificate each endpoint may present: tls-identity.test.ts.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { connectEtcd, EtcdConnection } from "../../src/election/connection.ts";
import { describeEtcdError } from "../../src/election/etcd-error.ts";
import { AgentLease } from "../../src/election/lease.ts";
import { type KubeadmNodePki, type KubeadmPki, makeKubeadmPki } from "../lab/certs.ts";
import { startEtcd, type EtcdServer } from "../lab/etcd.ts";

let cluster: KubeadmPki;
let pki: KubeadmNodePki;
let etcd: EtcdServer;
/** vipd's etcd TLS on a kubeadm node. */
let client: { caFile: string; certFile: string; keyFile: string };

beforeAll(async () => {
  cluster = await makeKubeadmPki([{ name: "cp-1", ip: "192.0.2.11" }]);
  pki = cluster.node("cp-1");
  client = { caFile: pki.etcd.ca, ...pki.etcd.healthcheckClient };
  // The member listens on 127.0.0.1, which kubeadm's etcd certificate names.
  etcd = await startEtcd({ tls: pki.etcdServing });
}, 60_000);
afterAll(async () => {
  await etcd?.stop();
  cluster?.remove();
});

test("a client certificate signed by the CA is accepted", async () => {
  expect(etcd.endpoints[0]).toStartWith("https://127.0.0.1:");
  const conn = new EtcdConnection({ endpoints: etcd.endpoints, tls: client });
  try {
    const c = conn.client;
    await c.put("/tls/x").value("y");
    expect(await c.get("/tls/x").string()).toBe("y");
    const lease = new AgentLease(conn);
    await lease.grant(3);
    expect(lease.ttl).toBe(3);
    // The watch that requires a leader works over TLS too.
    const stream = await conn.watch();
    stream.cancel();
    await lease.revoke();
    expect((await c.leaseClient.leaseTimeToLive({ ID: lease.etcdId })).TTL).toBe("-1");
  } finally {
    conn.close();
  }
});

test("without a client certificate the call fails with an error", async () => {
  // Only the CA: the server asks for a client certificate and gets none.
  const c = connectEtcd({ endpoints: etcd.endpoints, tls: { caFile: client.caFile }, dialTimeoutMs: 2000 });
  try {
    const err = await c.get("/tls/x").string().then(() => null, (e: unknown) => e as Error);
    expect(err).toBeInstanceOf(Error);
    console.log(`error without a client certificate: ${err!.message}`);
    expect(err!.message).toMatch(/BAD_CERTIFICATE|certificate|handshake/i);
    expect(err!.message).not.toContain("ServerName");
  } finally {
    c.close();
  }
}, 15_000);

test("the cluster CA given for etcd's (ca.crt, not etcd/ca.crt) is refused, whatever names the certificate carries", async () => {
  const c = connectEtcd({ endpoints: etcd.endpoints, tls: { ...client, caFile: pki.ca } });
  try {
    const err = await c.get("/tls/x").string().then(() => null, (e: unknown) => e);
    expect(describeEtcdError(err, etcd.endpoints)).toContain("etcd's certificate is not signed by the CA we trust: check --etcd-ca");
  } finally {
    c.close();
  }
}, 15_000);

test("an unreadable certificate file is named in the error", () => {
  expect(() =>
    connectEtcd({ endpoints: etcd.endpoints, tls: { ...client, certFile: "/nonexistent/client.crt" } }),
  ).toThrow("reading etcd certificate file /nonexistent/client.crt: ENOENT");
});
