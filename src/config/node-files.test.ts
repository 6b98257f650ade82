// Where the day-2 commands look on a node, and that the shipped unit hands
// the agent these very files.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { KUBEADM_APISERVER_CA, KUBEADM_ETCD_CLIENT, kubeadmEtcdClient, nodePath } from "./node-files.ts";

describe("kubeadm's files on a node", () => {
  test("deploy/vipd.service's LoadCredential= names exactly the paths the day-2 commands use", () => {
    const unit = readFileSync(join(import.meta.dir, "..", "..", "deploy", "vipd.service"), "utf8");
    const credentials = Object.fromEntries([...unit.matchAll(/^LoadCredential=([^:\n]+):(.+)$/gm)].map((m) => [m[1], m[2]]));
    expect(credentials).toEqual({
      "etcd-ca": KUBEADM_ETCD_CLIENT.caFile,
      "etcd-cert": KUBEADM_ETCD_CLIENT.certFile,
      "etcd-key": KUBEADM_ETCD_CLIENT.keyFile,
      "apiserver-ca": KUBEADM_APISERVER_CA,
    });
  });

  test("readable: all three, under the test root when one is set", () => {
    const seen: string[] = [];
    const r = kubeadmEtcdClient({ VIPD_TEST_ROOT: "/lab/n1" }, (p) => (seen.push(p), null));
    expect(r).toEqual({ files: { caFile: "/lab/n1/etc/kubernetes/pki/etcd/ca.crt", certFile: "/lab/n1/etc/kubernetes/pki/etcd/healthcheck-client.crt", keyFile: "/lab/n1/etc/kubernetes/pki/etcd/healthcheck-client.key" }, note: null });
    expect(seen).toHaveLength(3);
    expect(nodePath("/etc/vipd/vipd.yaml", {})).toBe("/etc/vipd/vipd.yaml");
  });

  test("absent (no kubeadm here): none, silently; present but the key unreadable: none, and a note that says what to do", () => {
    expect(kubeadmEtcdClient({}, () => ({ code: "ENOENT", text: "it does not exist (ENOENT)" }))).toEqual({ files: null, note: null });
    const r = kubeadmEtcdClient({}, (p) => (p.endsWith(".key") ? { code: "EACCES", text: "this user may not read it (EACCES)" } : null));
    expect(r.files).toBeNull();
    expect(r.note).toBe("not using kubeadm's etcd client certificate: /etc/kubernetes/pki/etcd/healthcheck-client.key: this user may not read it (EACCES); run as root, or give --etcd-ca, --etcd-cert and --etcd-key (or ETCDCTL_CACERT, ETCDCTL_CERT, ETCDCTL_KEY)");
  });
});
