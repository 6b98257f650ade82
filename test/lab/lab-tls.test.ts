// The 3-node lab's etcd is kubeadm's stacked etcd, not a kinder one: every
// member serves clients and peers over TLS with its own node's certificates
// (etcd/server.crt, etcd/peer.crt from a separate etcd CA), requires client
// certificates on both, and refuses plain HTTP, a client without a
// certificate, and one signed by the cluster CA. Every vipd the lab starts
// presents its own node's etcd CA and healthcheck-client certificate and
// key, as README has it on a kubeadm node, and holds the VIP with them.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, statSync } from "node:fs";
import { Lab, type LabNode } from "./cluster.ts";
import { vipd, vipdAvailable } from "./implementations.ts";
import { sh, waitFor } from "./sh.ts";

const isRoot = process.getuid?.() === 0;
const skip = !isRoot || !vipdAvailable();
let lab: Lab;

beforeAll(async () => {
  if (!skip) lab = await Lab.start();
}, 90_000);
afterAll(async () => {
  await lab?.destroy();
});

const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);

/** SHA-256 fingerprint of a certificate file. */
const fingerprint = async (file: string) => (await sh(["openssl", "x509", "-in", file, "-noout", "-fingerprint", "-sha256"])).trim();

/**
 * The fingerprint of the certificate node's member presents on ip:port,
 * verified against the etcd CA for that IP address (the handshake fails
 * otherwise), presenting the node's client certificate.
 */
async function presented(node: LabNode, ip: string, port: number): Promise<string> {
  const c = lab.etcdClientTls(node.name);
  const script = `openssl s_client -connect ${ip}:${port} -CAfile ${c.caFile} -cert ${c.certFile} -key ${c.keyFile}` +
    ` -verify_ip ${ip} -verify_return_error </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256`;
  return (await sh(["ip", "netns", "exec", node.host.ns, "sh", "-c", script])).trim();
}

/** curl of /health on the node's loopback member: what it printed and the HTTP code ("000": no answer). */
const curlHealth = (node: LabNode, args: readonly string[]) =>
  sh(["ip", "netns", "exec", node.host.ns, "curl", "-s", "--max-time", "2", "-w", " %{http_code}", ...args], { allowFail: true });

test.skipIf(skip)("each member serves clients and peers over TLS with its own node's kubeadm certificates, client certificates required", async () => {
  expect(lab.etcdCluster.endpoints).toEqual(lab.nodes.map((n) => `https://${n.host.ip4}:2379`));
  for (const node of lab.nodes) {
    const t = lab.pki.node(node.name);
    const argv = cmdline(lab.etcdCluster.pid(node.name));
    expect(argv).toEqual(expect.arrayContaining([
      `--cert-file=${t.etcd.server.certFile}`, `--key-file=${t.etcd.server.keyFile}`, `--trusted-ca-file=${t.etcd.ca}`, "--client-cert-auth",
      `--peer-cert-file=${t.etcd.peer.certFile}`, `--peer-key-file=${t.etcd.peer.keyFile}`, `--peer-trusted-ca-file=${t.etcd.ca}`, "--peer-client-cert-auth",
    ]));
    for (const key of [t.etcd.server.keyFile, t.etcd.peer.keyFile, t.etcd.healthcheckClient.keyFile]) {
      expect([key, statSync(key).mode & 0o777, statSync(key).uid]).toEqual([key, 0o600, 0]);
    }
    // On its own address and on loopback: the server certificate; on the peer port: the peer certificate.
    const [server, peer] = await Promise.all([fingerprint(t.etcd.server.certFile), fingerprint(t.etcd.peer.certFile)]);
    expect(server).not.toBe(peer);
    expect(await presented(node, node.host.ip4, 2379)).toBe(server);
    expect(await presented(node, "127.0.0.1", 2379)).toBe(server);
    expect(await presented(node, node.host.ip4, 2380)).toBe(peer);
  }
  // Members do not share certificates.
  const servers = await Promise.all(lab.nodes.map((n) => fingerprint(lab.pki.node(n.name).etcd.server.certFile)));
  expect(new Set(servers).size).toBe(lab.nodes.length);

  const n1 = lab.nodes[0]!;
  const c = lab.etcdClientTls(n1.name);
  const url = "https://127.0.0.1:2379/health";
  expect(await curlHealth(n1, ["--cacert", c.caFile, "--cert", c.certFile, "--key", c.keyFile, url])).toBe('{"health":"true"} 200');
  // Plain HTTP: Go's TLS listener answers 400 and nothing of etcd's.
  expect(await curlHealth(n1, ["http://127.0.0.1:2379/health"])).not.toContain('"health"');
  // No client certificate: the handshake is refused.
  expect(await curlHealth(n1, ["--cacert", c.caFile, url])).toEndWith(" 000");
  // A client certificate from the cluster CA, not the etcd CA: refused too.
  const kubelet = lab.pki.node(n1.name).apiserverKubeletClient;
  expect(await curlHealth(n1, ["--cacert", c.caFile, "--cert", kubelet.certFile, "--key", kubelet.keyFile, url])).toEndWith(" 000");
}, 60_000);

test.skipIf(skip)("every vipd presents its own node's etcd CA and healthcheck-client certificate, and one holds the VIP", async () => {
  await lab.startVipEverywhere(vipd());
  for (const node of lab.nodes) {
    const t = lab.pki.node(node.name);
    const argv = cmdline(node.vip!.pid);
    const flag = (name: string) => argv[argv.indexOf(name) + 1];
    expect([flag("--etcd-endpoints"), flag("--etcd-ca"), flag("--etcd-cert"), flag("--etcd-key")])
      .toEqual(["https://127.0.0.1:2379", t.etcd.ca, t.etcd.healthcheckClient.certFile, t.etcd.healthcheckClient.keyFile]);
  }
  const holders = await waitFor("one holder of the VIP", async () => {
    const h = await lab.holders();
    return h.length === 1 ? h : null;
  }, 30_000, 100);
  expect(holders.length).toBe(1);
  for (const node of lab.nodes) expect(node.vip!.running, `vipd on ${node.name}: ${node.vip!.logTail(5)}`).toBe(true);
}, 60_000);
