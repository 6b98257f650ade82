// vipd on a node set up with kubeadm's PKI (lab/certs.ts): etcd requires
// client certificates, as kubeadm's and Talos's does, and a stand-in
// kube-apiserver on 127.0.0.1:6443 serves kubeadm's apiserver.crt, which does
// not name 127.0.0.1. With the etcd CA and kubeadm's etcd/healthcheck-client
// certificate and key the VIP is held; with the cluster CA the API server
// gate opens too. Without a client certificate etcd refuses the session, and
// with a server name the API server's certificate lacks the gate stays
// closed: no VIP appears, and /healthz says why and what to change.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type KubeadmNodePki, type KubeadmPki, makeKubeadmPki } from "../lab/certs.ts";
import { type EtcdCluster, startEtcdCluster } from "../lab/etcd.ts";
import { onExit } from "../lab/exit.ts";
import { type Host, Segment } from "../lab/netns.ts";
import { sh, sleep, waitFor } from "../lab/sh.ts";

const ROOT = join(import.meta.dir, "..", "..");
const VIP = "192.0.2.120";
let seg: Segment;
let n1: Host;
let cluster: KubeadmPki;
let pki: KubeadmNodePki;
let etcd: EtcdCluster;
let dir: string;
let apiserver: ReturnType<typeof Bun.spawn> | null = null;

beforeAll(async () => {
  seg = await Segment.create(["n1"]);
  n1 = seg.host("n1");
  cluster = await makeKubeadmPki([{ name: "n1", ip: n1.ip4 }]);
  pki = cluster.node("n1");
  etcd = await startEtcdCluster([{ name: "n1", ns: n1.ns, ip: n1.ip4 }], { tls: pki.etcdServing });
  dir = mkdtempSync(join(tmpdir(), "vipd-tls-"));
  writeFileSync(join(dir, "vip.yaml"), `apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: ${VIP}\nlink: eth0\n`);
  const a = Bun.spawn(["ip", "netns", "exec", n1.ns, process.execPath, join(ROOT, "test/lab/stand-in-apiserver.ts"), "n1", "6443",
    pki.apiserver.certFile, pki.apiserver.keyFile], { stdout: "ignore", stderr: "inherit" });
  apiserver = a;
  onExit(() => a.kill("SIGKILL"));
  await waitFor("the stand-in API server", () => sh(["ip", "netns", "exec", n1.ns, "curl", "-sk", "-m", "1", "https://127.0.0.1:6443/readyz"], { allowFail: true }).then((o) => o === "ok"), 10_000);
}, 60_000);

afterAll(async () => {
  apiserver?.kill("SIGTERM");
  await apiserver?.exited;
  await etcd?.stopAll();
  cluster?.remove();
  await seg?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function vipd(extra: string[]) {
  const argv = [process.execPath, join(ROOT, "src/main.ts"), "run", "--config", join(dir, "vip.yaml"), "--node-name", "n1",
    "--etcd-endpoints", etcd.endpoints.join(","), "--health-listen", "127.0.0.1:18100", "--log-format", "json", ...extra];
  return Bun.spawn(["ip", "netns", "exec", n1.ns, ...argv], { stdout: "ignore", stderr: "pipe", env: { PATH: process.env.PATH ?? "" } });
}

const healthz = () => sh(["ip", "netns", "exec", n1.ns, "curl", "-s", "-m", "2", "-w", " %{http_code}", "http://127.0.0.1:18100/healthz"], { allowFail: true });

test("with the CA and a client certificate, vipd holds the VIP", async () => {
  expect(etcd.endpoints[0]).toStartWith("https://");
  const p = vipd(["--etcd-ca", pki.etcd.ca, "--etcd-cert", pki.etcd.healthcheckClient.certFile, "--etcd-key", pki.etcd.healthcheckClient.keyFile]);
  try {
    await waitFor("the VIP on n1", () => seg.has(n1, VIP), 15_000);
    expect(await healthz()).toBe("ok\n 200");
  } finally {
    p.kill("SIGTERM");
    expect(await p.exited).toBe(0);
  }
  expect(await seg.has(n1, VIP)).toBe(false);
}, 30_000);

test("without a client certificate etcd refuses: no VIP, and /healthz says why", async () => {
  const p = vipd(["--etcd-ca", pki.etcd.ca]);
  try {
    const body = await waitFor("an unhealthy /healthz", async () => {
      const h = await healthz();
      return h.endsWith(" 503") && !h.includes(": connecting") ? h : null;
    }, 15_000);
    expect(body).toContain("etcd session not established");
    expect(body).toContain("etcd rejected our client certificate (or we sent none)");
    // Give it several retry rounds: it must never hold the VIP meanwhile.
    await sleep(2000);
    expect(await seg.has(n1, VIP)).toBe(false);
  } finally {
    p.kill("SIGTERM");
    expect(await p.exited).toBe(0);
  }
  const log = await new Response(p.stderr).text();
  expect(log).toContain("etcd not ready; retrying");
}, 30_000);

const GATE_URL = ["--apiserver-url", "https://127.0.0.1:6443/readyz"];
const etcdFlags = () => ["--etcd-ca", pki.etcd.ca, "--etcd-cert", pki.etcd.healthcheckClient.certFile, "--etcd-key", pki.etcd.healthcheckClient.keyFile];

test("the API server gate with kubeadm's cluster CA opens against kubeadm's certificate at 127.0.0.1", async () => {
  // What the shipped unit and cloud-init's file give: the gate's URL (the file), the cluster CA
  // (--apiserver-ca), every other apiServer setting its default.
  const p = vipd([...etcdFlags(), ...GATE_URL, "--apiserver-ca", pki.ca]);
  try {
    await waitFor("the VIP on n1", () => seg.has(n1, VIP), 15_000);
    expect(await healthz()).toBe("ok\n 200");
  } finally {
    p.kill("SIGTERM");
    expect(await p.exited).toBe(0);
  }
  const log = await new Response(p.stderr).text();
  expect(log).toContain('"msg":"kube-apiserver gate opened"');
  expect(await seg.has(n1, VIP)).toBe(false);
}, 30_000);

test("a server name kubeadm's certificate lacks: no VIP, and /healthz names the certificate's names and the fix", async () => {
  const p = vipd([...etcdFlags(), ...GATE_URL, "--apiserver-ca", pki.ca, "--apiserver-server-name", "kube-api.example.internal"]);
  try {
    const body = await waitFor("an unhealthy /healthz about the gate", async () => {
      const h = await healthz();
      return h.endsWith(" 503") && h.includes("gate") ? h : null;
    }, 15_000);
    expect(body).toBe(
      "kube-apiserver gate closed: kube-apiserver has not been ready yet: GET https://127.0.0.1:6443/readyz: certificate verify failed: " +
        // kubeadm sorts the DNS names: the node's name n1 comes after kubernetes.*.
        "server certificate is for kubernetes, kubernetes.default, kubernetes.default.svc, kubernetes.default.svc.cluster.local, n1, " +
        `10.96.0.1, ${n1.ip4}, not kube-api.example.internal: set apiServer.serverName (--apiserver-server-name) to a name it carries ` +
        "(ERR_TLS_CERT_ALTNAME_INVALID)\n 503",
    );
    // Several probes later it still holds nothing.
    await sleep(2000);
    expect(await seg.has(n1, VIP)).toBe(false);
  } finally {
    p.kill("SIGTERM");
    expect(await p.exited).toBe(0);
  }
}, 30_000);
