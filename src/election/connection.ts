// The etcd client: endpoints, optional mutual TLS, and fault handling that
// leaves retries to vipd's own loops (design.md §7).
//
// - etcd3's default per-host circuit breaker stops calling a host for 5 s
//   after three failures, and its global retry multiplies every deadline by
//   three. Our loops retry on their own schedule, so every call here is one
//   attempt with the deadline its caller chose.
// - reset() replaces every channel. A stream or call that stalled is never
//   retried on the same HTTP/2 connection: over a half-open TCP link (a peer
//   that vanished without a FIN) it would hang until TCP gives up, minutes
//   later. Each client gets its own subchannel pool, or grpc-js would hand
//   the new client the old TCP connection.
// - Watches require a leader (etcd's `hasleader` metadata): a member cut off
//   from its cluster then cancels the stream instead of staying silent.
import { readFileSync } from "node:fs";
import type { Metadata } from "@grpc/grpc-js";
import { Etcd3, type IDuplexStream, type IOptions, type IWatchRequest, type IWatchResponse } from "etcd3";

/** Any of them may be absent: no CA = the system's roots; no cert/key = no client certificate. */
export interface EtcdTlsFiles {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

export interface EtcdConnectOptions {
  endpoints: readonly string[];
  tls?: EtcdTlsFiles | undefined;
  /** Time allowed to establish a connection to an endpoint, ms (default 3000). */
  dialTimeoutMs?: number;
  /**
   * Name the server certificate is checked against. Default: "localhost" when
   * an endpoint is an IP literal (see connectEtcd), else the endpoint's host.
   */
  tlsServerName?: string;
}

export type WatchStream = IDuplexStream<IWatchRequest, IWatchResponse>;

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

/** etcd3's client, with the one thing it does not offer: a watch stream that requires a leader. */
class VipdEtcd extends Etcd3 {
  watchRequiringLeader(): Promise<WatchStream> {
    return this.pool.withConnection("Watch", ({ resource, client, metadata }) => {
      const md: Metadata = metadata.clone();
      // rpctypes.MetadataRequireLeaderKey / MetadataHasLeader in etcd's server.
      md.set("hasleader", "true");
      const stream = (client as unknown as { watch(md: Metadata, opts: object): WatchStream }).watch(md, {});
      // As etcd3's own watch() does: a failed stream counts against its host.
      stream.on("error", (err: Error) => (stream as unknown as { writable: boolean }).writable && this.pool.markFailed(resource, err));
      return stream;
    });
  }
}

function options(opts: EtcdConnectOptions): IOptions {
  if (opts.endpoints.length === 0) throw new Error("connecting to etcd: no endpoints given");
  const out: IOptions = {
    hosts: [...opts.endpoints],
    dialTimeout: opts.dialTimeoutMs ?? 3000,
    faultHandling: { host: () => once, global: once },
    grpcOptions: { "grpc.use_local_subchannel_pool": 1 },
  };
  const secure = opts.tls !== undefined || opts.endpoints.some((e) => e.toLowerCase().startsWith("https:"));
  if (opts.tls) {
    const { caFile, certFile, keyFile } = opts.tls;
    out.credentials = {
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
    if (name) out.grpcOptions = { ...out.grpcOptions, "grpc.ssl_target_name_override": name };
  }
  return out;
}

/** Opens a client (for one-shot commands such as `vipd status`). Files are read now, so a missing certificate is reported here, by name. */
export function connectEtcd(opts: EtcdConnectOptions): Etcd3 {
  return new Etcd3(options(opts));
}

/** The agent's connection: one client at a time, replaced on reset(). */
export class EtcdConnection {
  readonly #options: IOptions;
  #client: VipdEtcd;
  #resets = 0;
  #closed = false;
  readonly #onReset = new Set<() => void>();

  constructor(opts: EtcdConnectOptions) {
    this.#options = options(opts);
    this.#client = new VipdEtcd(this.#options);
  }

  /** The current client; ask again after an await, it may have been replaced. */
  get client(): Etcd3 {
    return this.#client;
  }

  get resets(): number {
    return this.#resets;
  }

  /** A watch stream that etcd cancels when its member loses the leader. */
  watch(): Promise<WatchStream> {
    return this.#client.watchRequiringLeader();
  }

  /**
   * Closes every channel and opens new ones on the next call. Streams and
   * calls on the old channels may hang on: every user is told, so that each
   * moves to the new connection at once, whoever noticed the stall.
   */
  reset(): void {
    if (this.#closed) return;
    this.#resets++;
    const old = this.#client;
    this.#client = new VipdEtcd(this.#options);
    old.close();
    for (const fn of this.#onReset) fn();
  }

  /** Calls fn after every reset(); returns a function that stops it. */
  onReset(fn: () => void): () => void {
    this.#onReset.add(fn);
    return () => this.#onReset.delete(fn);
  }

  close(): void {
    this.#closed = true;
    this.#client.close();
  }
}

/** A gRPC deadline `ms` from now. */
export const within = (ms: number) => ({ deadline: new Date(Date.now() + ms) });
