// Mutual TLS: etcd with --client-cert-auth and a throwaway CA from certs.ts.
// Whose certificate each endpoint may present: tls-identity.test.ts.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { connectEtcd, EtcdConnection } from "../../src/election/connection.ts";
import { describeEtcdError } from "../../src/election/etcd-error.ts";
import { AgentLease } from "../../src/election/lease.ts";
import { makeCerts, type TestCerts } from "../lab/certs.ts";
import { startEtcd, type EtcdServer } from "../lab/etcd.ts";

let certs: TestCerts;
let etcd: EtcdServer;

beforeAll(async () => {
  certs = await makeCerts();
  etcd = await startEtcd({
    tls: {
      caFile: certs.caFile, certFile: certs.serverCertFile, keyFile: certs.serverKeyFile,
      clientCertAuth: true, probe: { certFile: certs.clientCertFile, keyFile: certs.clientKeyFile },
    },
  });
});
afterAll(async () => {
  await etcd?.stop();
  certs?.remove();
});

test("a client certificate signed by the CA is accepted", async () => {
  expect(etcd.endpoints[0]).toStartWith("https://127.0.0.1:");
  const conn = new EtcdConnection({
    endpoints: etcd.endpoints,
    tls: { caFile: certs.caFile, certFile: certs.clientCertFile, keyFile: certs.clientKeyFile },
  });
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
  const c = connectEtcd({ endpoints: etcd.endpoints, tls: { caFile: certs.caFile }, dialTimeoutMs: 2000 });
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

test("a server certificate from another CA is refused, whatever names it carries", async () => {
  const other = await makeCerts();
  const c = connectEtcd({ endpoints: etcd.endpoints, tls: { caFile: other.caFile, certFile: certs.clientCertFile, keyFile: certs.clientKeyFile } });
  try {
    const err = await c.get("/tls/x").string().then(() => null, (e: unknown) => e);
    expect(describeEtcdError(err, etcd.endpoints)).toContain("etcd's certificate is not signed by the CA we trust: check --etcd-ca");
  } finally {
    c.close();
    other.remove();
  }
}, 15_000);

test("an unreadable certificate file is named in the error", () => {
  expect(() =>
    connectEtcd({ endpoints: etcd.endpoints, tls: { caFile: certs.caFile, certFile: "/nonexistent/client.crt", keyFile: certs.clientKeyFile } }),
  ).toThrow("reading etcd certificate file /nonexistent/client.crt: ENOENT");
});
