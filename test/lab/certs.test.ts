// The lab's PKI is kubeadm's: the same files under etc/kubernetes/pki, the
// same modes, key format, usages and names, and the same three CAs, as
// kubeadm's certs phase writes them on `kubeadm init` and on a
// `kubeadm join --control-plane` that was handed the CAs.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { type KubeadmPki, makeKubeadmPki } from "./certs.ts";
import { sh } from "./sh.ts";

const CP1 = { name: "cp-1", ip: "192.0.2.11" };
const CP2 = { name: "cp-2", ip: "192.0.2.12" };
const VIP = "192.0.2.15";
let cluster: KubeadmPki;

beforeAll(async () => {
  cluster = await makeKubeadmPki([CP1, CP2], { controlPlaneEndpoint: VIP, certSANs: ["api.example.internal", "198.51.100.7"] });
}, 60_000);
afterAll(() => cluster?.remove());

/** Every file and directory under dir: "etcd/ca.key 600". */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = statSync(p);
      out.push(`${relative(dir, p)} ${(st.mode & 0o777).toString(8)} ${st.uid}`);
      if (st.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out.sort();
}

const x509 = (file: string, ...args: string[]) => sh(["openssl", "x509", "-in", file, "-noout", ...args]);
const sans = async (file: string) => (await x509(file, "-ext", "subjectAltName")).split("\n")[1]!.trim();
const verifies = (ca: string, file: string) => sh(["openssl", "verify", "-CAfile", ca, file], { allowFail: true }).then((o) => o.trim() === `${file}: OK`);

test("each node has kubeadm's files, keys root-only 0600 (sa.pub too), certificates 0644", () => {
  const files = ["apiserver", "apiserver-etcd-client", "apiserver-kubelet-client", "ca", "etcd/ca", "etcd/healthcheck-client", "etcd/peer", "etcd/server", "front-proxy-ca", "front-proxy-client"]
    .flatMap((b) => [`${b}.crt 644 0`, `${b}.key 600 0`]);
  const want = [...files, "etcd 755 0", "sa.key 600 0", "sa.pub 600 0"].sort();
  for (const n of [CP1, CP2]) expect(tree(cluster.node(n.name).dir)).toEqual(want);
  expect(readFileSync(cluster.node("cp-1").apiserver.keyFile, "utf8")).toStartWith("-----BEGIN RSA PRIVATE KEY-----\n");
});

test("the API server's certificate has GetAPIServerAltNames' names, sorted as kubeadm sorts them, and no loopback", async () => {
  expect(await sans(cluster.node("cp-1").apiserver.certFile)).toBe(
    "DNS:api.example.internal, DNS:cp-1, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local, " +
      `IP Address:10.96.0.1, IP Address:${CP1.ip}, IP Address:${VIP}, IP Address:198.51.100.7`,
  );
  expect(await sans(cluster.node("cp-2").apiserver.certFile)).toContain(`DNS:cp-2, DNS:kubernetes,`);
  const ext = await x509(cluster.node("cp-1").apiserver.certFile, "-subject", "-ext", "extendedKeyUsage,keyUsage,basicConstraints");
  expect(ext).toContain("subject=CN = kube-apiserver");
  expect(ext).toContain("TLS Web Server Authentication\n");
  expect(ext).not.toContain("Client Authentication");
  expect(ext).toContain("Digital Signature, Key Encipherment");
  expect(ext).toContain("CA:FALSE");
});

test("etcd's server and peer certificates name the node, localhost, its address, 127.0.0.1 and ::1, for server and client use", async () => {
  for (const f of [cluster.node("cp-2").etcd.server.certFile, cluster.node("cp-2").etcd.peer.certFile]) {
    expect(await sans(f)).toBe(`DNS:cp-2, DNS:localhost, IP Address:${CP2.ip}, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1`);
    expect(await x509(f, "-subject", "-ext", "extendedKeyUsage")).toContain("subject=CN = cp-2\nX509v3 Extended Key Usage: \n    TLS Web Server Authentication, TLS Web Client Authentication");
  }
  const client = await x509(cluster.node("cp-1").etcd.healthcheckClient.certFile, "-subject", "-ext", "extendedKeyUsage");
  expect(client).toContain("subject=O = system:masters, CN = kube-etcd-healthcheck-client\nX509v3 Extended Key Usage: \n    TLS Web Client Authentication");
});

test("three CAs: the etcd CA and the front-proxy CA are not the cluster CA; joined nodes share them", async () => {
  const n1 = cluster.node("cp-1");
  const n2 = cluster.node("cp-2");
  expect(await verifies(n1.ca, n2.apiserver.certFile)).toBe(true);
  expect(await verifies(n1.ca, n2.apiserverKubeletClient.certFile)).toBe(true);
  expect(await verifies(n1.etcd.ca, n2.etcd.server.certFile)).toBe(true);
  expect(await verifies(n1.etcd.ca, n2.apiserverEtcdClient.certFile)).toBe(true);
  expect(await verifies(n1.path("front-proxy-ca.crt"), n2.frontProxyClient.certFile)).toBe(true);
  expect(await verifies(n1.ca, n1.etcd.server.certFile)).toBe(false);
  expect(await verifies(n1.etcd.ca, n1.apiserver.certFile)).toBe(false);
  expect(await verifies(n1.ca, n1.frontProxyClient.certFile)).toBe(false);
  for (const f of ["ca.crt", "ca.key", "etcd/ca.crt", "etcd/ca.key", "front-proxy-ca.crt", "sa.key", "sa.pub"]) {
    expect(readFileSync(n2.path(f), "utf8")).toBe(readFileSync(n1.path(f), "utf8"));
  }
  expect(await sans(n1.ca)).toBe("DNS:kubernetes");
  expect(await x509(n1.etcd.ca, "-subject")).toBe("subject=CN = etcd-ca\n");
});
