// The day-2 commands without flags, against a real etcd that requires client
// certificates (kubeadm's PKI, lab/certs.ts): on an admin machine with only
// etcdctl's ETCDCTL_* variables set, and on a node that has its own
// /etc/vipd/vipd.yaml and kubeadm's /etc/kubernetes/pki. The node's files are
// under a directory (VIPD_TEST_ROOT, src/config/node-files.ts), never the
// real /etc. A vipd agent on the node holds a VIP; each `vipd status` must
// name it as the holder, which only a client etcd accepted can read.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type KubeadmNodePki, type KubeadmPki, makeKubeadmPki } from "../lab/certs.ts";
import { type EtcdCluster, startEtcdCluster } from "../lab/etcd.ts";
import { type Host, Segment } from "../lab/netns.ts";
import { parsePrometheusText, sampleValue } from "../../src/health/prom-text.ts";
import { sh, waitFor } from "../lab/sh.ts";

const ROOT = join(import.meta.dir, "..", "..");
const VIP = "192.0.2.121";
let seg: Segment;
let n1: Host;
let admin: Host;
let cluster: KubeadmPki;
let pki: KubeadmNodePki;
let etcd: EtcdCluster;
let dir: string;
let agent: ReturnType<typeof Bun.spawn> | null = null;

/** What deploy/cloud-init.yaml writes to /etc/vipd/vipd.yaml, with this test's VIP and link. */
const nodeConfig = (endpoint: string) => `apiVersion: v1alpha1
kind: Layer2VIPConfig
name: ${VIP}
link: eth0
---
apiVersion: v1alpha1
kind: VIPAgentConfig
etcd:
  endpoints: [${endpoint}]
apiServer:
  url: https://127.0.0.1:6443/readyz
`;

beforeAll(async () => {
  seg = await Segment.create(["n1", "admin"]);
  n1 = seg.host("n1");
  admin = seg.host("admin");
  cluster = await makeKubeadmPki([{ name: "n1", ip: n1.ip4 }]);
  pki = cluster.node("n1");
  etcd = await startEtcdCluster([{ name: "n1", ns: n1.ns, ip: n1.ip4 }], { tls: pki.etcdServing });
  dir = mkdtempSync(join(tmpdir(), "vipd-day2-"));
  mkdirSync(join(pki.root, "etc", "vipd"), { recursive: true });
  writeFileSync(join(pki.root, "etc/vipd/vipd.yaml"), nodeConfig("https://127.0.0.1:2379"));
  writeFileSync(join(dir, "vip.yaml"), `apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: ${VIP}\nlink: eth0\n`);
  // The agent as the unit starts it: its TLS files given as flags.
  const a = Bun.spawn(["ip", "netns", "exec", n1.ns, process.execPath, join(ROOT, "src/main.ts"), "run", "--config", join(dir, "vip.yaml"),
    "--node-name", "n1", "--etcd-endpoints", etcd.endpoints.join(","), "--health-listen", "127.0.0.1:18101", "--log-format", "json",
    "--etcd-ca", pki.etcd.ca, "--etcd-cert", pki.etcd.healthcheckClient.certFile, "--etcd-key", pki.etcd.healthcheckClient.keyFile],
  { stdout: "ignore", stderr: "ignore", env: { PATH: process.env.PATH ?? "" } });
  agent = a;
  await waitFor("the VIP on n1", () => seg.has(n1, VIP), 20_000);
}, 90_000);

afterAll(async () => {
  agent?.kill("SIGTERM");
  if (agent) expect(await agent.exited).toBe(0);
  await etcd?.stopAll();
  cluster?.remove();
  await seg?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** `vipd ARGS` in a host's namespace with exactly `env` (and PATH): nothing of this shell leaks in. */
async function vipd(host: Host, args: string[], env: Record<string, string>) {
  const p = Bun.spawn(["ip", "netns", "exec", host.ns, process.execPath, join(ROOT, "src/main.ts"), ...args],
    { stdout: "pipe", stderr: "pipe", env: { PATH: process.env.PATH ?? "", ...env } });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { out, err, code };
}

function holderOf(out: string): string | null {
  const report = JSON.parse(out) as { vips: { vip: string; holder: { node: string } | null }[] };
  return report.vips.find((v) => v.vip === VIP)?.holder?.node ?? null;
}

test("an admin machine with nothing but ETCDCTL_* set: vipd status reads the holder", async () => {
  const etcdctl = {
    // As etcdctl takes it: no scheme, TLS because a CA and a certificate are given.
    ETCDCTL_ENDPOINTS: `${n1.ip4}:2379`,
    ETCDCTL_CACERT: pki.etcd.ca,
    ETCDCTL_CERT: pki.etcd.healthcheckClient.certFile,
    ETCDCTL_KEY: pki.etcd.healthcheckClient.keyFile,
    ETCDCTL_API: "3",
  };
  const r = await vipd(admin, ["status", "--json"], etcdctl);
  expect(r.err).toBe("");
  expect(r.code).toBe(0);
  expect(holderOf(r.out)).toBe("n1");

  // Without the client certificate etcd refuses, and without the variables
  // the admin machine has no etcd at all: the variables are what was used.
  const noCert = await vipd(admin, ["status", "--json"], { ETCDCTL_ENDPOINTS: etcdctl.ETCDCTL_ENDPOINTS, ETCDCTL_CACERT: etcdctl.ETCDCTL_CACERT });
  expect(noCert.code).toBe(1);
  expect(noCert.err).toContain("etcd rejected our client certificate (or we sent none)");
  const none = await vipd(admin, ["status", "--json"], {});
  expect(none.code).toBe(1);
  expect(none.err).toContain("https://127.0.0.1:2379");
}, 60_000);

test("on the node, no flags: the node's own config and kubeadm's etcd client files", async () => {
  const r = await vipd(n1, ["status", "--json"], { VIPD_TEST_ROOT: pki.root });
  expect(r.err).toBe("");
  expect(r.code).toBe(0);
  expect(holderOf(r.out)).toBe("n1");

  // The node's file is what names the endpoint: another address there, and status goes there.
  writeFileSync(join(pki.root, "etc/vipd/vipd.yaml"), nodeConfig("https://192.0.2.99:2379"));
  try {
    const elsewhere = await vipd(n1, ["status", "--json"], { VIPD_TEST_ROOT: pki.root });
    expect(elsewhere.code).toBe(1);
    expect(elsewhere.err).toContain("https://192.0.2.99:2379");
  } finally {
    writeFileSync(join(pki.root, "etc/vipd/vipd.yaml"), nodeConfig("https://127.0.0.1:2379"));
  }

  // A root without kubeadm's files: no client certificate, and etcd refuses.
  const bare = mkdtempSync(join(tmpdir(), "vipd-day2-bare-"));
  try {
    const r2 = await vipd(n1, ["status", "--json"], { VIPD_TEST_ROOT: bare });
    expect(r2.code).toBe(1);
    expect(r2.out).toBe("");
  } finally {
    rmSync(bare, { recursive: true, force: true });
  }

  // drain and undrain go the same way: drained shows in etcd as status reads it.
  const drained = await vipd(n1, ["drain", "n1", "--force", "--reason", "day-2 test"], { VIPD_TEST_ROOT: pki.root });
  expect(drained.code).toBe(0);
  await waitFor("the VIP to leave n1", async () => !(await seg.has(n1, VIP)), 15_000);
  const undrained = await vipd(n1, ["undrain", "n1"], { VIPD_TEST_ROOT: pki.root });
  expect(undrained.code).toBe(0);
  await waitFor("the VIP back on n1", () => seg.has(n1, VIP), 15_000);
}, 90_000);

test("the node's agent, which has no API server gate: /metrics has no vipd_gate_ series, and build and process series", async () => {
  const text = await sh(["ip", "netns", "exec", n1.ns, "curl", "-sf", "-m", "2", "http://127.0.0.1:18101/metrics"]);
  const m = parsePrometheusText(text);
  expect([...m.keys()].filter((name) => name.startsWith("vipd_gate_"))).toEqual([]);
  expect(m.get("vipd_build_info")?.samples).toHaveLength(1);
  expect(sampleValue(m, "vipd_vip_held", { vip: VIP, link: "eth0" })).toBe(1);
  // The agent's own process, not this test's: it started after this test's.
  expect(sampleValue(m, "process_start_time_seconds")!).toBeGreaterThan(Date.now() / 1000 - process.uptime());
  expect(sampleValue(m, "process_open_fds")!).toBeGreaterThan(3);
  expect(sampleValue(m, "process_resident_memory_bytes")!).toBeGreaterThan(10 * 2 ** 20);
});
