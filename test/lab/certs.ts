// A throwaway PKI for TLS tests and the lab: one CA, a server certificate
// (also usable for etcd peer traffic, so it carries both serverAuth and
// clientAuth) and one client certificate, made with the openssl CLI in a
// fresh temporary directory; more server certificates from the same CA on
// request, with exactly the names a test needs. EC P-256 keys: fast to
// generate and accepted by etcd (Go) and grpc-js alike.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
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

export interface TestCerts {
  readonly dir: string;
  readonly caFile: string;
  readonly serverCertFile: string;
  readonly serverKeyFile: string;
  readonly clientCertFile: string;
  readonly clientKeyFile: string;
  /** Another server certificate signed by the same CA, for exactly these names. */
  server(name: string, names: ServerNames): Promise<CertPair>;
  /** Removes the directory and everything in it. */
  remove(): void;
}

/**
 * The names kubeadm gives a node's etcd server certificate (etcd/server.crt):
 * DNS: the node name, localhost; IP: the node's address, 127.0.0.1, ::1.
 */
export function kubeadmEtcdNames(nodeName: string, nodeIp: string): ServerNames {
  return { dns: [nodeName, "localhost"], ips: [nodeIp, "127.0.0.1", "::1"] };
}

const KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/**
 * Makes a CA and a server and client certificate signed by it. The server
 * certificate's SANs are `server` when given, else 127.0.0.1, ::1, localhost
 * and every address in `ips`.
 */
export async function makeCerts(opts: { ips?: readonly string[]; server?: ServerNames; days?: number } = {}): Promise<TestCerts> {
  const dir = mkdtempSync(join(tmpdir(), "vipd-certs-"));
  const p = (name: string) => join(dir, name);
  const days = String(opts.days ?? 2);
  const remove = () => rmSync(dir, { recursive: true, force: true });

  /** Writes NAME.key and NAME.crt, signed by the CA, with these extensions. */
  const issue = async (name: string, cn: string, ext: string): Promise<CertPair> => {
    writeFileSync(p(`${name}.ext`), ext);
    await sh(["openssl", "req", ...KEY, "-keyout", p(`${name}.key`), "-out", p(`${name}.csr`), "-subj", `/CN=${cn}`]);
    await sh(["openssl", "x509", "-req", "-in", p(`${name}.csr`), "-CA", p("ca.crt"), "-CAkey", p("ca.key"),
      "-CAcreateserial", "-out", p(`${name}.crt`), "-days", days, "-extfile", p(`${name}.ext`)]);
    return { certFile: p(`${name}.crt`), keyFile: p(`${name}.key`) };
  };
  const server = (name: string, names: ServerNames) => {
    const san = [...new Set(names.dns ?? [])].map((n) => `DNS:${n}`)
      .concat([...new Set(names.ips ?? [])].map((ip) => `IP:${ip}`));
    if (san.length === 0) throw new Error(`server certificate ${name}: no names given`);
    return issue(name, "etcd", `subjectAltName=${san.join(",")}\nextendedKeyUsage=serverAuth,clientAuth\n`);
  };

  try {
    await sh(["openssl", "req", "-x509", ...KEY, "-keyout", p("ca.key"), "-out", p("ca.crt"),
      "-days", days, "-subj", "/CN=vipd test CA"]);
    await server("server", opts.server ?? { ips: ["127.0.0.1", "::1", ...(opts.ips ?? [])], dns: ["localhost"] });
    await issue("client", "vipd", "extendedKeyUsage=clientAuth\n");
  } catch (e) {
    remove();
    throw e;
  }
  return {
    dir,
    caFile: p("ca.crt"),
    serverCertFile: p("server.crt"),
    serverKeyFile: p("server.key"),
    clientCertFile: p("client.crt"),
    clientKeyFile: p("client.key"),
    server,
    remove,
  };
}
