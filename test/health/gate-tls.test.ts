// The gate against a real HTTPS stand-in for kube-apiserver on 127.0.0.1,
// serving the API server certificate kubeadm makes (lab/certs.ts): it names
// the node, kubernetes..., the service IP and the advertise address, never
// 127.0.0.1. With the cluster CA the gate opens by checking the name
// "kubernetes"; a wrong server name, or a certificate from another cluster's
// CA, keeps it closed and says why; a 500 closes it after `fall` probes, and
// a client certificate is sent when the server asks for one.
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Server } from "bun";
import { ApiServerGate, type ApiServerGateOptions, type GateChange } from "../../src/health/gate.ts";
import { makeProbe } from "../../src/health/probe.ts";
import { type KubeadmNodePki, type KubeadmPki, makeKubeadmPki } from "../lab/certs.ts";
import { waitFor } from "../lab/sh.ts";

const NODE = { name: "cp-1", ip: "192.0.2.11" };
let cluster: KubeadmPki;
let otherCluster: KubeadmPki;
let pki: KubeadmNodePki;
let server: Server<undefined>;
let mtlsServer: Server<undefined>;
/** Serves kubeadm's etcd/server.crt: a certificate that names 127.0.0.1 but not kubernetes. */
let etcdCertServer: Server<undefined>;
/** What the stand-in answers on /readyz. */
let status = 200;

beforeAll(async () => {
  [cluster, otherCluster] = await Promise.all([makeKubeadmPki([NODE]), makeKubeadmPki([NODE])]);
  pki = cluster.node(NODE.name);
  const tls = { cert: Bun.file(pki.apiserver.certFile), key: Bun.file(pki.apiserver.keyFile) };
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls,
    fetch: async (req) => {
      const { pathname } = new URL(req.url);
      if (pathname === "/slow") await Bun.sleep(3000);
      return new Response(status === 200 ? "ok" : "[-]etcd failed", { status });
    },
  });
  // kube-apiserver asks every client for a certificate signed by the cluster CA (--client-ca-file).
  mtlsServer = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: { ...tls, ca: Bun.file(pki.ca), requestCert: true, rejectUnauthorized: true },
    fetch: () => new Response("ok"),
  });
  etcdCertServer = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: Bun.file(pki.etcd.server.certFile), key: Bun.file(pki.etcd.server.keyFile) },
    fetch: () => new Response("ok"),
  });
}, 60_000);
afterAll(() => {
  server?.stop(true);
  mtlsServer?.stop(true);
  etcdCertServer?.stop(true);
  cluster?.remove();
  otherCluster?.remove();
});

/** kubeadm's apiserver.crt for cp-1, as the refusal lists it. */
const CERT_NAMES = "cp-1, kubernetes, kubernetes.default, kubernetes.default.svc, kubernetes.default.svc.cluster.local, 10.96.0.1, 192.0.2.11";
const readyz = (host = "127.0.0.1") => `https://${host}:${server.port}/readyz`;
const opts = (o: Partial<ApiServerGateOptions> = {}): ApiServerGateOptions => ({
  url: readyz(), caFile: pki.ca, insecureSkipVerify: false, interval: 0.05, timeout: 2, rise: 2, fall: 3, ...o,
});

async function withGate<T>(o: ApiServerGateOptions, fn: (g: ApiServerGate, changes: (GateChange & { probes: number; failures: number })[]) => Promise<T>): Promise<T> {
  const gate = new ApiServerGate(o);
  const changes: (GateChange & { probes: number; failures: number })[] = [];
  gate.onChange((c) => changes.push({ ...c, probes: gate.counts.probes, failures: gate.counts.failures }));
  gate.start();
  try {
    return await fn(gate, changes);
  } finally {
    gate.stop();
  }
}

test("the stand-in serves kubeadm's certificate: no 127.0.0.1 in it", async () => {
  const text = await Bun.$`openssl x509 -in ${pki.apiserver.certFile} -noout -ext subjectAltName`.text();
  expect(text).toContain("DNS:kubernetes,");
  expect(text).not.toContain("127.0.0.1");
});

test("kubeadm's certificate at https://127.0.0.1: the gate opens after rise probes, checking the name kubernetes", async () => {
  status = 200;
  await withGate(opts(), async (gate, changes) => {
    await waitFor("gate open", () => gate.open, 5000);
    expect(changes[0]!.probes).toBe(2);
    expect(gate.reason).toBe(`kube-apiserver ready: GET ${readyz()}: 200`);
    expect(gate.lastProbe!.latencyMs).toBeGreaterThan(0);
    expect(changes.map((c) => c.kind)).toEqual(["opened"]);
  });
});

test("the name is checked: the node's name passes, a name the certificate lacks is refused with the fix", async () => {
  status = 200;
  expect(await makeProbe({ ...opts(), serverName: "cp-1" })()).toEqual({ ok: true, detail: `GET ${readyz()}: 200` });
  await withGate(opts({ serverName: "cp-2" }), async (gate) => {
    await waitFor("three probes", () => gate.counts.probes >= 3, 5000);
    expect(gate.open).toBe(false);
    expect(gate.reason).toBe(
      `kube-apiserver has not been ready yet: GET ${readyz()}: certificate verify failed: server certificate is for ${CERT_NAMES}, not cp-2: ` +
        "set apiServer.serverName (--apiserver-server-name) to a name it carries (ERR_TLS_CERT_ALTNAME_INVALID)",
    );
  });
});

test("a URL by host name is checked against that host, not kubernetes", async () => {
  const p = await makeProbe({ ...opts(), url: readyz("localhost") })();
  expect(p).toEqual({
    ok: false,
    detail: `GET ${readyz("localhost")}: certificate verify failed: server certificate is for ${CERT_NAMES}, not localhost: ` +
      "set apiServer.serverName (--apiserver-server-name) to a name it carries (ERR_TLS_CERT_ALTNAME_INVALID)",
  });
});

test("a certificate without kubernetes at an IP URL: refused, saying the name was the default; its IP can be given instead", async () => {
  const url = `https://127.0.0.1:${etcdCertServer.port}/readyz`;
  const base = { ...opts(), url, caFile: pki.etcd.ca };
  expect(await makeProbe(base)()).toEqual({
    ok: false,
    detail: `GET ${url}: certificate verify failed: server certificate is for cp-1, localhost, 192.0.2.11, 127.0.0.1, ::1, not kubernetes ` +
      "(the name checked when apiServer.url's host is an IP address): set apiServer.serverName (--apiserver-server-name) to a name it carries " +
      "(ERR_TLS_CERT_ALTNAME_INVALID)",
  });
  expect(await makeProbe({ ...base, serverName: "127.0.0.1" })()).toEqual({ ok: true, detail: `GET ${url}: 200` });
  expect((await makeProbe({ ...base, serverName: "192.0.2.12" })()).detail).toContain("not 192.0.2.12: set apiServer.serverName");
});

test("another cluster's CA: stays closed, and the reason names the certificate problem", async () => {
  status = 200;
  await withGate(opts({ caFile: otherCluster.node(NODE.name).ca }), async (gate, changes) => {
    await waitFor("four probes", () => gate.counts.probes >= 4, 5000);
    expect(gate.open).toBe(false);
    expect(gate.reason).toStartWith(`kube-apiserver has not been ready yet: GET ${readyz()}: certificate verify failed: `);
    expect(gate.reason).not.toContain("serverName");
    // The one change is the reason, so the agent can log it once.
    expect(changes).toHaveLength(1);
    expect(changes[0]!.kind).toBe("reason");
  });
});

test("the etcd CA is not the cluster CA: it does not verify the API server", async () => {
  const p = await makeProbe({ ...opts(), caFile: pki.etcd.ca })();
  expect(p.ok).toBe(false);
  expect(p.detail).toStartWith(`GET ${readyz()}: certificate verify failed: `);
});

test("insecureSkipVerify: opens without a CA, whatever the name", async () => {
  status = 200;
  await withGate(opts({ caFile: undefined, insecureSkipVerify: true, serverName: "cp-2" }), async (gate) => {
    await waitFor("gate open", () => gate.open, 5000);
  });
});

test("500: an open gate closes after exactly fall failed probes", async () => {
  status = 200;
  await withGate(opts(), async (gate, changes) => {
    await waitFor("gate open", () => gate.open, 5000);
    status = 500;
    await waitFor("gate closed", () => !gate.open, 5000);
    expect(gate.counts.consecutiveFailures).toBeGreaterThanOrEqual(3);
    expect(changes[1]!.failures).toBe(3); // no failure before the 500s, then exactly fall of them
    expect(gate.reason).toBe(`kube-apiserver not ready: GET ${readyz()}: 500 (3 failed probes in a row)`);
    expect(changes.map((c) => c.kind)).toEqual(["opened", "closed"]);
  });
  status = 200;
});

test("probe details: timeout, refused connection, missing CA file, client certificate", async () => {
  const base = { caFile: pki.ca, insecureSkipVerify: false, timeout: 0.3 };
  const slow = await makeProbe({ ...base, url: `https://127.0.0.1:${server.port}/slow` })();
  expect(slow).toEqual({ ok: false, detail: `GET https://127.0.0.1:${server.port}/slow: timed out after 0.3 s` });

  const refused = await makeProbe({ ...base, url: "https://127.0.0.1:1/readyz" })();
  expect(refused).toEqual({ ok: false, detail: "GET https://127.0.0.1:1/readyz: connection refused" });

  const missing = await makeProbe({ ...base, url: readyz(), caFile: `${pki.dir}/nope.crt` })();
  expect(missing).toEqual({ ok: false, detail: `GET ${readyz()}: reading CA file ${pki.dir}/nope.crt: ENOENT` });

  const mtls = `https://127.0.0.1:${mtlsServer.port}/readyz`;
  const { certFile, keyFile } = pki.apiserverKubeletClient;
  const withCert = await makeProbe({ ...base, timeout: 2, url: mtls, certFile, keyFile })();
  expect(withCert).toEqual({ ok: true, detail: `GET ${mtls}: 200` });
  const withoutCert = await makeProbe({ ...base, timeout: 2, url: mtls })();
  expect(withoutCert.ok).toBe(false);
});
