// kubeadm's PKI for the lab and every test that speaks TLS, made the way
// kubeadm makes it (its certs phase: certlist.go and pkiutil), with the
// openssl CLI in a fresh temporary directory:
//
//   <node>/etc/kubernetes/pki/                 (0755)
//     ca.crt ca.key                            cluster CA, CN kubernetes
//     apiserver.crt .key                       serverAuth; GetAPIServerAltNames
//     apiserver-kubelet-client.crt .key        clientAuth
//     front-proxy-ca.crt .key                  front-proxy CA
//     front-proxy-client.crt .key              clientAuth
//     sa.key sa.pub                            service-account key pair
//     apiserver-etcd-client.crt .key           clientAuth, from the etcd CA
//     etcd/ca.crt ca.key                       etcd CA, CN etcd-ca: not the cluster CA
//     etcd/server.crt .key                     serverAuth+clientAuth; node, localhost, IP, 127.0.0.1, ::1
//     etcd/peer.crt .key                       the same names and usages
//     etcd/healthcheck-client.crt .key         clientAuth
//
// Keys are RSA 2048 in PKCS#1 ("RSA PRIVATE KEY"), mode 0600, sa.pub too
// (kubeadm writes both with keyutil.WriteKey); certificates 0644. The
// first node is `kubeadm init`: it makes the three CAs and the service-account
// key; every other node is `kubeadm join --control-plane` with the CAs copied
// over and certificates of its own. Nothing here is added for vipd's sake:
// the API server's certificate names no loopback address, exactly as kubeadm's.
import { randomBytes } from "node:crypto";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { EtcdTls } from "./etcd.ts";
import { sh } from "./sh.ts";

/** The subject alternative names of a server certificate, exactly as given. */
export interface ServerNames {
  ips?: readonly string[];
  dns?: readonly string[];
}

export interface CertPair {
  readonly certFile: string;
  readonly keyFile: string;
}

/** A control-plane node as kubeadm knows it: nodeRegistration.name and localAPIEndpoint.advertiseAddress. */
export interface KubeadmNode {
  readonly name: string;
  readonly ip: string;
}

/** The parts of kubeadm's ClusterConfiguration that go into certificates. */
export interface KubeadmClusterOptions {
  /** controlPlaneEndpoint's host (the VIP); kubeadm adds it to the API server's names. */
  controlPlaneEndpoint?: string;
  /** apiServer.certSANs. */
  certSANs?: readonly string[];
  /** The first address of networking.serviceSubnet (default 10.96.0.0/12). */
  serviceIp?: string;
  /** networking.dnsDomain. */
  dnsDomain?: string;
  /** Validity of every certificate; kubeadm's are 1 year (CAs 10). */
  days?: number;
}

/** One node's /etc/kubernetes/pki. */
export interface KubeadmNodePki {
  readonly node: KubeadmNode;
  /** The node's root: its PKI is at etc/kubernetes/pki under it. */
  readonly root: string;
  /** `<root>/etc/kubernetes/pki`. */
  readonly dir: string;
  /** The cluster CA (ca.crt): what verifies the API server. */
  readonly ca: string;
  readonly apiserver: CertPair;
  readonly apiserverKubeletClient: CertPair;
  readonly apiserverEtcdClient: CertPair;
  readonly frontProxyClient: CertPair;
  readonly etcd: {
    /** The etcd CA (etcd/ca.crt). */
    readonly ca: string;
    readonly server: CertPair;
    readonly peer: CertPair;
    readonly healthcheckClient: CertPair;
  };
  /** etcd's TLS flags as kubeadm's etcd.yaml sets them (client and peer certificates required). */
  readonly etcdServing: EtcdTls;
  /** `<dir>/<rel>`. */
  path(rel: string): string;
}

export interface KubeadmPki {
  /** The temporary directory that holds every node's tree. */
  readonly dir: string;
  node(name: string): KubeadmNodePki;
  /** `kubeadm join --control-plane` of one more node, with the cluster's CAs. */
  join(node: KubeadmNode): Promise<KubeadmNodePki>;
  /**
   * A server certificate from the etcd CA for exactly these names, CN "etcd":
   * an etcd member kubeadm did not set up. (Node's and Bun's name check falls
   * back to the CN when a certificate has no DNS names; Go's does not.)
   */
  etcdServer(name: string, names: ServerNames): Promise<CertPair>;
  /** Removes the directory and everything in it. */
  remove(): void;
}

/**
 * The names kubeadm gives a node's etcd server and peer certificates
 * (GetEtcdAltNames): DNS the node name and localhost; IP its advertise
 * address, 127.0.0.1 and ::1.
 */
export function kubeadmEtcdNames(node: KubeadmNode): ServerNames {
  return { dns: [node.name, "localhost"], ips: [node.ip, "127.0.0.1", "::1"] };
}

/**
 * The names kubeadm gives a node's API server certificate
 * (GetAPIServerAltNames): DNS the node name, kubernetes, kubernetes.default,
 * kubernetes.default.svc, kubernetes.default.svc.<domain>; IP the service
 * IP and the advertise address; then controlPlaneEndpoint and certSANs.
 * Never 127.0.0.1 unless certSANs asks for it.
 */
export function kubeadmApiServerNames(node: KubeadmNode, o: KubeadmClusterOptions = {}): ServerNames {
  const dns = [node.name, "kubernetes", "kubernetes.default", "kubernetes.default.svc", `kubernetes.default.svc.${o.dnsDomain ?? "cluster.local"}`];
  const ips = [o.serviceIp ?? "10.96.0.1", node.ip];
  for (const name of [...(o.controlPlaneEndpoint ? [o.controlPlaneEndpoint] : []), ...(o.certSANs ?? [])]) {
    (/^[\d.]+$|:/.test(name) ? ips : dns).push(name);
  }
  return { dns, ips };
}

const OPENSSL_REQ_CONFIG = "[req]\ndistinguished_name = dn\n[dn]\n";

/**
 * Makes the PKI of a cluster whose first node ran `kubeadm init` and whose
 * other nodes joined as control-plane nodes.
 */
export async function makeKubeadmPki(nodes: readonly KubeadmNode[], opts: KubeadmClusterOptions = {}): Promise<KubeadmPki> {
  if (nodes.length === 0) throw new Error("a kubeadm PKI needs at least one node");
  const dir = mkdtempSync(join(tmpdir(), "vipd-pki-"));
  const scratch = join(dir, "scratch");
  mkdirSync(scratch);
  writeFileSync(join(scratch, "req.cnf"), OPENSSL_REQ_CONFIG);
  const days = opts.days ?? 2;
  const remove = () => rmSync(dir, { recursive: true, force: true });
  const trees = new Map<string, KubeadmNodePki>();
  let scratchSeq = 0;

  /** keyutil.WriteKey: RSA as PKCS#1, 0600. */
  const rsaKey = async (file: string) => {
    await sh(["openssl", "genrsa", "-traditional", "-out", file, "2048"]);
    chmodSync(file, 0o600);
  };
  /** Writes `pki/<base>.crt` signed by `pki/<ca>.crt`, for `subject`, with these extensions (pkiutil.NewSignedCert). */
  const sign = async (pki: string, base: string, ca: string, subject: string, ext: string[]) => {
    const key = join(pki, `${base}.key`);
    const crt = join(pki, `${base}.crt`);
    const csr = join(scratch, `${scratchSeq}.csr`);
    const extFile = join(scratch, `${scratchSeq++}.ext`);
    await rsaKey(key);
    await sh(["openssl", "req", "-new", "-config", join(scratch, "req.cnf"), "-key", key, "-subj", subject, "-out", csr]);
    writeFileSync(extFile, [
      "basicConstraints = critical, CA:FALSE",
      "keyUsage = critical, digitalSignature, keyEncipherment",
      // Go's x509 gives a leaf the CA's key identifier and none of its own.
      "authorityKeyIdentifier = keyid",
      "subjectKeyIdentifier = none",
      ...ext,
    ].join("\n") + "\n");
    await sh(["openssl", "x509", "-req", "-in", csr, "-CA", join(pki, `${ca}.crt`), "-CAkey", join(pki, `${ca}.key`),
      "-set_serial", `0x${randomBytes(8).toString("hex")}`, "-days", String(days), "-extfile", extFile, "-out", crt]);
    chmodSync(crt, 0o644);
    return { certFile: crt, keyFile: key };
  };
  /** certutil.NewSelfSignedCACert: its CN is also its one DNS name. */
  const selfSignedCa = async (pki: string, base: string, cn: string) => {
    const key = join(pki, `${base}.key`);
    const crt = join(pki, `${base}.crt`);
    const cnf = join(scratch, `${scratchSeq++}.cnf`);
    writeFileSync(cnf, `${OPENSSL_REQ_CONFIG}[ca]\nbasicConstraints = critical, CA:TRUE\n` +
      `keyUsage = critical, digitalSignature, keyEncipherment, keyCertSign\nsubjectKeyIdentifier = hash\nsubjectAltName = DNS:${cn}\n`);
    await rsaKey(key);
    await sh(["openssl", "req", "-x509", "-new", "-config", cnf, "-extensions", "ca", "-key", key, "-subj", `/CN=${cn}`,
      "-set_serial", "0", "-days", String(days * 5), "-out", crt]);
    chmodSync(crt, 0o644);
  };
  const san = (n: ServerNames) => {
    // pkiutil.RemoveDuplicateAltNames sorts the DNS names; IPs keep their order.
    const all = [...new Set(n.dns ?? [])].sort().map((d) => `DNS:${d}`).concat([...new Set(n.ips ?? [])].map((ip) => `IP:${ip}`));
    if (all.length === 0) throw new Error("a server certificate needs at least one name");
    return `subjectAltName = ${all.join(", ")}`;
  };
  const SERVER = "extendedKeyUsage = serverAuth";
  const SERVER_CLIENT = "extendedKeyUsage = serverAuth, clientAuth";
  const CLIENT = "extendedKeyUsage = clientAuth";

  const tree = (node: KubeadmNode): KubeadmNodePki => {
    const root = join(dir, node.name);
    const pki = join(root, "etc/kubernetes/pki");
    const p = (rel: string) => join(pki, rel);
    const pair = (base: string) => ({ certFile: p(`${base}.crt`), keyFile: p(`${base}.key`) });
    const etcd = { ca: p("etcd/ca.crt"), server: pair("etcd/server"), peer: pair("etcd/peer"), healthcheckClient: pair("etcd/healthcheck-client") };
    return {
      node, root, dir: pki, path: p,
      ca: p("ca.crt"),
      apiserver: pair("apiserver"),
      apiserverKubeletClient: pair("apiserver-kubelet-client"),
      apiserverEtcdClient: pair("apiserver-etcd-client"),
      frontProxyClient: pair("front-proxy-client"),
      etcd,
      etcdServing: { caFile: etcd.ca, ...etcd.server, peer: etcd.peer, clientCertAuth: true, probe: etcd.healthcheckClient },
    };
  };
  /** The certificates each control-plane node makes for itself. */
  const nodeCerts = async (t: KubeadmNodePki) => {
    const pki = t.dir;
    await Promise.all([
      sign(pki, "apiserver", "ca", "/CN=kube-apiserver", [SERVER, san(kubeadmApiServerNames(t.node, opts))]),
      sign(pki, "apiserver-kubelet-client", "ca", "/O=system:masters/CN=kube-apiserver-kubelet-client", [CLIENT]),
      sign(pki, "front-proxy-client", "front-proxy-ca", "/CN=front-proxy-client", [CLIENT]),
      sign(pki, "etcd/server", "etcd/ca", `/CN=${t.node.name}`, [SERVER_CLIENT, san(kubeadmEtcdNames(t.node))]),
      sign(pki, "etcd/peer", "etcd/ca", `/CN=${t.node.name}`, [SERVER_CLIENT, san(kubeadmEtcdNames(t.node))]),
      sign(pki, "etcd/healthcheck-client", "etcd/ca", "/O=system:masters/CN=kube-etcd-healthcheck-client", [CLIENT]),
      sign(pki, "apiserver-etcd-client", "etcd/ca", "/O=system:masters/CN=kube-apiserver-etcd-client", [CLIENT]),
    ]);
  };
  /** The CAs and the service-account key, shared by every control-plane node. */
  const SHARED = ["ca.crt", "ca.key", "front-proxy-ca.crt", "front-proxy-ca.key", "sa.key", "sa.pub", "etcd/ca.crt", "etcd/ca.key"];

  const init = async (node: KubeadmNode) => {
    const t = tree(node);
    mkdirSync(t.path("etcd"), { recursive: true, mode: 0o755 });
    await Promise.all([
      selfSignedCa(t.dir, "ca", "kubernetes"),
      selfSignedCa(t.dir, "front-proxy-ca", "front-proxy-ca"),
      selfSignedCa(t.dir, "etcd/ca", "etcd-ca"),
      rsaKey(t.path("sa.key")).then(async () => {
        await sh(["openssl", "rsa", "-in", t.path("sa.key"), "-pubout", "-out", t.path("sa.pub")]);
        chmodSync(t.path("sa.pub"), 0o600);
      }),
    ]);
    await nodeCerts(t);
    trees.set(node.name, t);
    return t;
  };
  const first = () => trees.values().next().value as KubeadmNodePki;
  const join_ = async (node: KubeadmNode) => {
    if (trees.has(node.name)) throw new Error(`node ${node.name} is already in this PKI`);
    const t = tree(node);
    mkdirSync(t.path("etcd"), { recursive: true, mode: 0o755 });
    for (const rel of SHARED) {
      copyFileSync(first().path(rel), t.path(rel));
      chmodSync(t.path(rel), rel.endsWith(".crt") ? 0o644 : 0o600);
    }
    await nodeCerts(t);
    trees.set(node.name, t);
    return t;
  };

  try {
    await init(nodes[0]!);
    await Promise.all(nodes.slice(1).map(join_));
  } catch (e) {
    remove();
    throw e;
  }
  return {
    dir,
    node: (name) => {
      const t = trees.get(name);
      if (!t) throw new Error(`no node ${name} in this PKI`);
      return t;
    },
    join: join_,
    etcdServer: async (name, names) => {
      const out = join(dir, "extra");
      mkdirSync(join(out, "etcd"), { recursive: true });
      for (const rel of ["etcd/ca.crt", "etcd/ca.key"]) copyFileSync(first().path(rel), join(out, rel));
      return sign(out, `etcd/${name}`, "etcd/ca", "/CN=etcd", [SERVER_CLIENT, san(names)]);
    },
    remove,
  };
}
