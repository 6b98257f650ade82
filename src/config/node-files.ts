// Where a control-plane node keeps what vipd's day-2 commands need: its own
// configuration file, and the etcd client certificates kubeadm writes, which
// deploy/vipd.service hands the agent through LoadCredential= (a test checks
// that the unit names these very paths). `vipd status`, `drain`, `undrain`
// and `handover` run on the node as root then need no flags.
import { join } from "node:path";
import type { FileProblem } from "./file.ts";

/** The configuration file deploy/cloud-init.yaml installs and the unit runs with. */
export const NODE_CONFIG = "/etc/vipd/vipd.yaml";

/** kubeadm's etcd CA and the client certificate it issues for etcd's health check: the unit's etcd-ca, etcd-cert, etcd-key. */
export const KUBEADM_ETCD_CLIENT = Object.freeze({
  caFile: "/etc/kubernetes/pki/etcd/ca.crt",
  certFile: "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
  keyFile: "/etc/kubernetes/pki/etcd/healthcheck-client.key",
});

/** kubeadm's cluster CA, which signs the API server's certificate: the unit's apiserver-ca. */
export const KUBEADM_APISERVER_CA = "/etc/kubernetes/pki/ca.crt";

/**
 * Prefixes every path above, for tests only: a lab "node" keeps its files in
 * a directory, since tests never write to the real /etc. Unset on a real
 * node; not a setting, so not listed by --help.
 */
export const TEST_ROOT_VARIABLE = "VIPD_TEST_ROOT";

export function nodePath(path: string, env: Record<string, string | undefined>): string {
  const root = env[TEST_ROOT_VARIABLE];
  return root ? join(root, path) : path;
}

export type EtcdClientFiles = { caFile: string; certFile: string; keyFile: string };

/**
 * kubeadm's etcd client files when this user can read all three; else null
 * and, when they exist but cannot be read (an operator not root), why, so
 * the command can say it rather than fail later at etcd with "no client
 * certificate".
 */
export function kubeadmEtcdClient(env: Record<string, string | undefined>, checkFile: (path: string) => FileProblem | null): { files: EtcdClientFiles | null; note: string | null } {
  const files = { caFile: nodePath(KUBEADM_ETCD_CLIENT.caFile, env), certFile: nodePath(KUBEADM_ETCD_CLIENT.certFile, env), keyFile: nodePath(KUBEADM_ETCD_CLIENT.keyFile, env) };
  const problems = Object.values(files).map((path) => ({ path, why: checkFile(path) })).filter((p) => p.why !== null);
  if (problems.length === 0) return { files, note: null };
  if (problems.every((p) => p.why!.code === "ENOENT" || p.why!.code === "ENOTDIR")) return { files: null, note: null };
  const first = problems.find((p) => p.why!.code !== "ENOENT")!;
  return { files: null, note: `not using kubeadm's etcd client certificate: ${first.path}: ${first.why!.text}; run as root, or give --etcd-ca, --etcd-cert and --etcd-key (or ETCDCTL_CACERT, ETCDCTL_CERT, ETCDCTL_KEY)` };
}
