// The etcd client: endpoints, optional mutual TLS, and fault handling that
// leaves retries to us. etcd3's default per-host circuit breaker stops
// calling a host for 5 s after three failures, which would delay recovery
// after a blip longer than the lease itself; its global retry multiplies
// every deadline by three. Our loops retry on their own schedule, so every
// call here is one attempt with the deadline its caller chose.
import { readFileSync } from "node:fs";
import { Etcd3, type IOptions } from "etcd3";

/** Any of them may be absent: no CA = the system's roots; no cert/key = no client certificate. */
export interface EtcdTlsFiles {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

export interface EtcdConnectOptions {
  endpoints: readonly string[];
  tls?: EtcdTlsFiles;
  /** Time allowed to establish a connection to an endpoint, ms (default 3000). */
  dialTimeoutMs?: number;
  /**
   * Name the server certificate is checked against. Default: "localhost" when
   * an endpoint is an IP literal (see connectEtcd), else the endpoint's host.
   */
  tlsServerName?: string;
}

const IP_HOST = /^[a-z]+:\/\/(\[[0-9a-f:.]+\]|\d+\.\d+\.\d+\.\d+)(:\d+)?\/?$/i;

type Policy = NonNullable<NonNullable<IOptions["faultHandling"]>["global"]>;

/** Runs the function once: no retry, no circuit breaker. */
const once = {
  onSuccess: () => ({ dispose() {} }),
  onFailure: () => ({ dispose() {} }),
  execute: (fn: (ctx: { signal: AbortSignal }) => unknown, signal?: AbortSignal) =>
    Promise.resolve().then(() => fn({ signal: signal ?? new AbortController().signal })),
} as unknown as Policy;

function readPem(what: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    throw new Error(`reading etcd ${what} ${file}: ${code}`);
  }
}

/** Opens a client. Files are read now, so a missing certificate is reported here, by name. */
export function connectEtcd(opts: EtcdConnectOptions): Etcd3 {
  if (opts.endpoints.length === 0) throw new Error("connecting to etcd: no endpoints given");
  const options: IOptions = {
    hosts: [...opts.endpoints],
    dialTimeout: opts.dialTimeoutMs ?? 3000,
    faultHandling: { host: () => once, global: once },
  };
  const secure = opts.tls !== undefined || opts.endpoints.some((e) => e.toLowerCase().startsWith("https:"));
  if (opts.tls) {
    const { caFile, certFile, keyFile } = opts.tls;
    options.credentials = {
      rootCertificate: caFile ? readPem("CA file", caFile) : (undefined as unknown as Buffer),
      ...(certFile ? { certChain: readPem("certificate file", certFile) } : {}),
      ...(keyFile ? { privateKey: readPem("key file", keyFile) } : {}),
    };
  }
  if (secure) {
    // Bun quirk: grpc-js passes the endpoint host as the TLS SNI servername,
    // and Bun's tls.connect refuses an IP address there ("Setting the TLS
    // ServerName to an IP address is not permitted"), so https://127.0.0.1
    // never connects. With a name override grpc-js sends that name instead and
    // checks the certificate against it; kubeadm's etcd server certificates
    // carry "localhost" on every node, and the CA check is unchanged.
    const name = opts.tlsServerName ?? (opts.endpoints.some((e) => IP_HOST.test(e)) ? "localhost" : undefined);
    if (name) options.grpcOptions = { "grpc.ssl_target_name_override": name };
  }
  return new Etcd3(options);
}

/** A gRPC deadline `ms` from now. */
export const within = (ms: number) => ({ deadline: new Date(Date.now() + ms) });
