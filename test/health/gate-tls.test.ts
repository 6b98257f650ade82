// The gate against a real HTTPS stand-in for kube-apiserver, with a PKI made
// by the test: the right CA opens it, a wrong CA keeps it closed and says
// why, a 500 closes it after `fall` probes, and a client certificate is sent
// when the server asks for one.
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Server } from "bun";
import { ApiServerGate, type ApiServerGateOptions, type GateChange } from "../../src/health/gate.ts";
import { makeProbe } from "../../src/health/probe.ts";
import { makeCerts, type TestCerts } from "../lab/certs.ts";
import { waitFor } from "../lab/sh.ts";

let pki: TestCerts;
let otherPki: TestCerts;
let server: Server<undefined>;
let mtlsServer: Server<undefined>;
/** What the stand-in answers on /readyz. */
let status = 200;

beforeAll(async () => {
  [pki, otherPki] = await Promise.all([makeCerts(), makeCerts()]);
  const tls = { cert: Bun.file(pki.serverCertFile), key: Bun.file(pki.serverKeyFile) };
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
  mtlsServer = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: { ...tls, ca: Bun.file(pki.caFile), requestCert: true, rejectUnauthorized: true },
    fetch: () => new Response("ok"),
  });
});
afterAll(() => {
  server?.stop(true);
  mtlsServer?.stop(true);
  pki?.remove();
  otherPki?.remove();
});

const readyz = () => `https://127.0.0.1:${server.port}/readyz`;
const opts = (o: Partial<ApiServerGateOptions> = {}): ApiServerGateOptions => ({
  url: readyz(), caFile: pki.caFile, insecureSkipVerify: false, interval: 0.05, timeout: 2, rise: 2, fall: 3, ...o,
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

test("right CA: the gate opens after rise probes", async () => {
  status = 200;
  await withGate(opts(), async (gate, changes) => {
    await waitFor("gate open", () => gate.open, 5000);
    expect(changes[0]!.probes).toBe(2);
    expect(gate.reason).toBe(`kube-apiserver ready: GET ${readyz()}: 200`);
    expect(gate.lastProbe!.latencyMs).toBeGreaterThan(0);
    expect(changes.map((c) => c.kind)).toEqual(["opened"]);
  });
});

test("wrong CA: stays closed, and the reason names the certificate problem", async () => {
  status = 200;
  await withGate(opts({ caFile: otherPki.caFile }), async (gate, changes) => {
    await waitFor("four probes", () => gate.counts.probes >= 4, 5000);
    expect(gate.open).toBe(false);
    expect(gate.reason).toStartWith(`kube-apiserver has not been ready yet: GET ${readyz()}: certificate verify failed: `);
    // The one change is the reason, so the agent can log it once.
    expect(changes).toHaveLength(1);
    expect(changes[0]!.kind).toBe("reason");
  });
});

test("insecureSkipVerify: opens without a CA", async () => {
  status = 200;
  await withGate(opts({ caFile: undefined, insecureSkipVerify: true }), async (gate) => {
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
  const base = { caFile: pki.caFile, insecureSkipVerify: false, timeout: 0.3 };
  const slow = await makeProbe({ ...base, url: `https://127.0.0.1:${server.port}/slow` })();
  expect(slow).toEqual({ ok: false, detail: `GET https://127.0.0.1:${server.port}/slow: timed out after 0.3 s` });

  const refused = await makeProbe({ ...base, url: "https://127.0.0.1:1/readyz" })();
  expect(refused).toEqual({ ok: false, detail: "GET https://127.0.0.1:1/readyz: connection refused" });

  const missing = await makeProbe({ ...base, url: readyz(), caFile: `${pki.dir}/nope.crt` })();
  expect(missing).toEqual({ ok: false, detail: `GET ${readyz()}: reading CA file ${pki.dir}/nope.crt: ENOENT` });

  const mtls = `https://127.0.0.1:${mtlsServer.port}/readyz`;
  const withCert = await makeProbe({ ...base, timeout: 2, url: mtls, certFile: pki.clientCertFile, keyFile: pki.clientKeyFile })();
  expect(withCert).toEqual({ ok: true, detail: `GET ${mtls}: 200` });
  const withoutCert = await makeProbe({ ...base, timeout: 2, url: mtls })();
  expect(withoutCert.ok).toBe(false);
});
