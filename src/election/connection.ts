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
//   the new client the old TCP connection. The price: each of etcd3's
//   service clients that is used (KV, Lease, Watch, and Maintenance for the
//   version check) holds its own TCP connection to the endpoint, three or
//   four per agent instead of one.
// - Whoever notices silence asks stalled(), not reset(): a silent member is
//   not a broken connection, and with one endpoint a new connection reaches
//   the same member (reconnect.ts). With several, every member is asked
//   first, each on a fresh client of its own (#probe), and the connection
//   moves to those that answer only when one it uses is silent. The old
//   client is closed only once the calls still on it have had their
//   deadline: a heartbeat in flight to a live member still proves what it
//   proves when it lands.
// - Watches require a leader (etcd's `hasleader` metadata): a member cut off
//   from its cluster then cancels the stream instead of staying silent.
// - Over TLS each endpoint's channel checks the server certificate against
//   that endpoint (see channelFactory).
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import type { PeerCertificate } from "node:tls";
import * as grpc from "@grpc/grpc-js";
import { Etcd3, EtcdPermissionDeniedError, GRPCDeadlineExceededError, type IDuplexStream, type IOptions, type IWatchRequest, type IWatchResponse } from "etcd3";
import { checkCertificateName } from "../certificate-names.ts";
import type { TlsFiles } from "../config/settings.ts";
import { type Clock, monotonicClock } from "../seams.ts";
import { DEFAULT_HOLD_MS } from "./proof.ts";
import type { Logger } from "../log.ts";
import { decideMove, decideReconnect, type ProbeAnswer, probeMs, type ReconnectDecision, type TcpLiveness } from "./reconnect.ts";
import { tcpLiveness } from "./tcp-liveness.ts";

export interface EtcdConnectOptions {
  endpoints: readonly string[];
  tls?: TlsFiles | undefined;
  /** Time allowed to establish a connection to an endpoint, ms (default 3000). */
  dialTimeoutMs?: number;
  /**
   * Name every server certificate is checked against (one of its DNS SANs).
   * Default: each endpoint's own host, an IP literal against the IP SANs.
   */
  tlsServerName?: string | undefined;
  /** The agent's hold time: one endpoint is never reconnected to twice within it. Default 2500 ms. */
  holdMs?: number;
  /** How long calls on a replaced client may still land before it is closed, ms (default 3000: the longest deadline vipd gives a call, and some). */
  drainMs?: number;
  clock?: Clock;
  /** What the kernel says of our TCP connections to an endpoint (tcp-liveness.ts); injectable for tests. */
  tcp?: (endpoint: string) => TcpLiveness;
  /** Asks one member, on a fresh client, whether it answers (several endpoints); injectable for tests. */
  probe?: (endpoint: string, deadlineMs: number) => Promise<ProbeAnswer>;
  /** Where a move decided after asking the members is told (the caller that noticed the silence has had its answer by then). */
  log?: Pick<Logger, "warn" | "info">;
}

export type WatchStream = IDuplexStream<IWatchRequest, IWatchResponse>;

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
      const md: grpc.Metadata = metadata.clone();
      // rpctypes.MetadataRequireLeaderKey / MetadataHasLeader in etcd's server.
      md.set("hasleader", "true");
      const stream = (client as unknown as { watch(md: grpc.Metadata, opts: object): WatchStream }).watch(md, {});
      // As etcd3's own watch() does: a failed stream counts against its host.
      stream.on("error", (err: Error) => (stream as unknown as { writable: boolean }).writable && this.pool.markFailed(resource, err));
      return stream;
    });
  }
}

/**
 * What an endpoint's server certificate must name, and the name to send as SNI.
 *
 * Bun quirk: grpc-js sends the endpoint's host as the TLS SNI servername, and
 * Bun's tls.connect refuses an IP address there ("Setting the TLS ServerName
 * to an IP address is not permitted"), so https://127.0.0.1 would never
 * connect. An IP endpoint therefore sends "localhost", through
 * `grpc.ssl_target_name_override` (etcd serves its one certificate whatever
 * the SNI says). grpc-js then checks the certificate against that name, not
 * the endpoint, and kubeadm puts "localhost" in every member's certificate:
 * any member would pass for any other. So the check is ours (channelFactory),
 * against the endpoint's IP, or the server name when one is given.
 */
export function serverIdentity(host: string, tlsServerName?: string): { expect: string; sni: string | undefined } {
  const expect = tlsServerName ?? host;
  if (isIP(expect)) return { expect, sni: "localhost" };
  return { expect, sni: expect === host ? undefined : expect };
}

/** "127.0.0.1:2379" → "127.0.0.1", "[::1]:2379" → "::1", "etcd-1:2379" → "etcd-1". */
function hostOf(address: string): string {
  const host = new URL(`https://${address}`).hostname;
  return host.startsWith("[") ? host.slice(1, -1) : host;
}

/**
 * grpc-js's channelFactoryOverride client option: etcd3 builds one set of TLS
 * credentials for all its hosts (IOptions.credentials takes only the PEMs), but
 * creates every host's clients with the address of that host, so this factory
 * gives each endpoint's channel credentials whose identity check knows the
 * endpoint. Credentials are made once per endpoint and shared by its clients.
 */
function channelFactory(pems: { ca?: Buffer; key?: Buffer; cert?: Buffer }, tlsServerName: string | undefined) {
  const byHost = new Map<string, { creds: grpc.ChannelCredentials; sni: string | undefined }>();
  return (address: string, _etcd3Credentials: grpc.ChannelCredentials, options: grpc.ChannelOptions): grpc.ChannelInterface => {
    const host = hostOf(address);
    let e = byHost.get(host);
    if (!e) {
      const { expect, sni } = serverIdentity(host, tlsServerName);
      // Replaces tls.checkServerIdentity (on Bun as on Node), which runs only
      // once the chain is verified against the CA. grpc-js passes it the SNI
      // name, so it ignores that and checks its own endpoint's name.
      const checkServerIdentity = (_sni: string, cert: PeerCertificate) => checkCertificateName(expect, cert);
      e = { creds: grpc.credentials.createSsl(pems.ca, pems.key, pems.cert, { checkServerIdentity }), sni };
      byHost.set(host, e);
    }
    return new grpc.Channel(address, e.creds, e.sni ? { ...options, "grpc.ssl_target_name_override": e.sni } : options);
  };
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
  if (secure) {
    const { caFile, certFile, keyFile } = opts.tls ?? {};
    const pems = {
      ...(caFile ? { ca: readPem("CA file", caFile) } : {}),
      ...(certFile ? { cert: readPem("certificate file", certFile) } : {}),
      ...(keyFile ? { key: readPem("key file", keyFile) } : {}),
    };
    // etcd3 still builds credentials of its own from these, which the factory
    // replaces; it rejects a key without a certificate (or the reverse) here,
    // when the client is made, rather than at the first call.
    out.credentials = {
      rootCertificate: pems.ca ?? (undefined as unknown as Buffer),
      ...(pems.cert ? { certChain: pems.cert } : {}),
      ...(pems.key ? { privateKey: pems.key } : {}),
    };
    out.grpcOptions = { ...out.grpcOptions, channelFactoryOverride: channelFactory(pems, opts.tlsServerName) };
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
  readonly #endpoints: readonly string[];
  readonly #holdMs: number;
  readonly #drainMs: number;
  readonly #clock: Clock;
  readonly #tcp: (endpoint: string) => TcpLiveness;
  readonly #probeOne: (endpoint: string, deadlineMs: number) => Promise<ProbeAnswer>;
  readonly #log: Pick<Logger, "warn" | "info"> | undefined;
  #client: VipdEtcd;
  /** The endpoints the current client lists: all, or those that answered when it moved. */
  #inUse: readonly string[];
  #resets = 0;
  #lastResetAt: number | null = null;
  #probing: Promise<void> | null = null;
  #lastProbeAt: number | null = null;
  #closed = false;
  readonly #onReset = new Set<() => void>();
  /** Replaced clients whose calls may still land, each with the timer that closes it. */
  readonly #draining = new Map<VipdEtcd, ReturnType<typeof setTimeout>>();

  constructor(opts: EtcdConnectOptions) {
    this.#options = options(opts);
    this.#endpoints = [...opts.endpoints];
    this.#holdMs = opts.holdMs ?? DEFAULT_HOLD_MS;
    this.#drainMs = opts.drainMs ?? 3000;
    this.#clock = opts.clock ?? monotonicClock;
    this.#tcp = opts.tcp ?? tcpLiveness;
    this.#probeOne = opts.probe ?? ((endpoint, ms) => probeMember(this.#options, endpoint, ms));
    this.#log = opts.log;
    this.#inUse = this.#endpoints;
    this.#client = new VipdEtcd(this.#options);
  }

  /** The current client; ask again after an await, it may have been replaced. */
  get client(): Etcd3 {
    return this.#client;
  }

  get resets(): number {
    return this.#resets;
  }

  /** The endpoints the current client calls. */
  get inUse(): readonly string[] {
    return this.#inUse;
  }

  /** The members being asked now, if they are (for tests: resolves once the answer is acted on). */
  get probing(): Promise<void> | null {
    return this.#probing;
  }

  /** A watch stream that etcd cancels when its member loses the leader. */
  watch(): Promise<WatchStream> {
    return this.#client.watchRequiringLeader();
  }

  /**
   * Someone heard nothing on the connection for silentMs: replaces it when
   * a new one can help (reconnect.ts), and says what it decided and why.
   */
  stalled(silentMs: number): ReconnectDecision {
    if (this.#closed) return { reset: false, why: "closed" };
    const d = decideReconnect({
      now: this.#clock(),
      endpoints: this.#endpoints.length,
      lastResetAt: this.#lastResetAt,
      holdMs: this.#holdMs,
      silentMs,
      tcp: () => this.#tcp(this.#endpoints[0]!),
      probing: this.#probing !== null,
      lastProbeAt: this.#lastProbeAt,
    });
    if (d.reset) this.reset();
    if (d.probe) this.#probing = this.#probe().finally(() => (this.#probing = null));
    return d;
  }

  /** Asks every member at once, then moves to those that answer if decideMove says so. */
  async #probe(): Promise<void> {
    this.#lastProbeAt = this.#clock();
    const ms = probeMs(this.#holdMs);
    const answers = await Promise.all(this.#endpoints.map((e) => this.#probeOne(e, ms).catch((): ProbeAnswer => "fails")));
    if (this.#closed) return;
    const inUse = new Set(this.#inUse);
    const d = decideMove(this.#endpoints.map((endpoint, i) => ({ endpoint, answer: answers[i]!, inUse: inUse.has(endpoint) })));
    if (!d.reset) return this.#log?.info("etcd connection kept after asking every member", { why: d.why });
    this.#log?.warn("etcd connection moved to the members that answer", { why: d.why, endpoints: d.endpoints.join(",") });
    this.reset(d.endpoints);
  }

  /**
   * Opens new channels for every call from now on. Streams and calls on the
   * old channels may hang on: every user is told, so that each moves to the
   * new connection at once, whoever noticed the stall. The old client is
   * closed after drainMs, when every call on it has had its deadline.
   */
  reset(endpoints: readonly string[] = this.#endpoints): void {
    if (this.#closed) return;
    this.#resets++;
    this.#lastResetAt = this.#clock();
    const old = this.#client;
    this.#inUse = endpoints;
    this.#client = new VipdEtcd({ ...this.#options, hosts: [...endpoints] });
    this.#draining.set(old, setTimeout(() => {
      this.#draining.delete(old);
      old.close();
    }, this.#drainMs).unref());
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
    for (const [old, timer] of this.#draining) {
      clearTimeout(timer);
      old.close();
    }
    this.#draining.clear();
  }
}

/**
 * Asks one member on a client of its own (its own channel: a silent channel
 * of the connection's would make a live member look silent) with a
 * linearizable read, which a member answers only through a leader with a
 * quorum, as it would a heartbeat. Any answer counts, a refusal too (no
 * permission on the key: the read was ordered before that is checked).
 */
async function probeMember(base: IOptions, endpoint: string, deadlineMs: number): Promise<ProbeAnswer> {
  const c = new Etcd3({ ...base, hosts: [endpoint] });
  try {
    await c.kv.range({ key: Buffer.from("\0vipd-probe"), count_only: true }, within(deadlineMs));
    return "answers";
  } catch (e) {
    if (e instanceof GRPCDeadlineExceededError) return "silent";
    return e instanceof EtcdPermissionDeniedError ? "answers" : "fails";
  } finally {
    c.close();
  }
}

/** A gRPC deadline `ms` from now. */
export const within = (ms: number) => ({ deadline: new Date(Date.now() + ms) });
