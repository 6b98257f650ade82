// A throwaway PKI for TLS tests and the lab: one CA, one server certificate
// (also usable for etcd peer traffic, so it carries both serverAuth and
// clientAuth) and one client certificate, made with the openssl CLI in a
// fresh temporary directory. EC P-256 keys: fast to generate and accepted by
// etcd (Go) and grpc-js alike.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sh } from "./sh.ts";

export interface TestCerts {
  readonly dir: string;
  readonly caFile: string;
  readonly serverCertFile: string;
  readonly serverKeyFile: string;
  readonly clientCertFile: string;
  readonly clientKeyFile: string;
  /** Removes the directory and everything in it. */
  remove(): void;
}

const KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/**
 * Makes a CA and a server and client certificate signed by it. The server
 * certificate's SANs are 127.0.0.1, ::1, localhost and every address in `ips`.
 */
export async function makeCerts(opts: { ips?: readonly string[]; days?: number } = {}): Promise<TestCerts> {
  const dir = mkdtempSync(join(tmpdir(), "vipd-certs-"));
  const p = (name: string) => join(dir, name);
  const days = String(opts.days ?? 2);
  try {
    await sh(["openssl", "req", "-x509", ...KEY, "-keyout", p("ca.key"), "-out", p("ca.crt"),
      "-days", days, "-subj", "/CN=vipd test CA"]);
    const ips = ["127.0.0.1", "::1", ...(opts.ips ?? [])];
    const san = [...new Set(ips)].map((ip) => `IP:${ip}`).concat("DNS:localhost").join(",");
    writeFileSync(p("server.ext"), `subjectAltName=${san}\nextendedKeyUsage=serverAuth,clientAuth\n`);
    writeFileSync(p("client.ext"), "extendedKeyUsage=clientAuth\n");
    for (const [name, cn] of [["server", "etcd"], ["client", "vipd"]] as const) {
      await sh(["openssl", "req", ...KEY, "-keyout", p(`${name}.key`), "-out", p(`${name}.csr`), "-subj", `/CN=${cn}`]);
      await sh(["openssl", "x509", "-req", "-in", p(`${name}.csr`), "-CA", p("ca.crt"), "-CAkey", p("ca.key"),
        "-CAcreateserial", "-out", p(`${name}.crt`), "-days", days, "-extfile", p(`${name}.ext`)]);
    }
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    dir,
    caFile: p("ca.crt"),
    serverCertFile: p("server.crt"),
    serverKeyFile: p("server.key"),
    clientCertFile: p("client.crt"),
    clientKeyFile: p("client.key"),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
