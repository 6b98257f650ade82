// Real etcd servers for tests, the lab and the demo: a single member on
// loopback, or a static N-member cluster whose members may each live in a
// network namespace (see netns.ts). Every process is tracked by PID and killed
// by PID only — on stop(), and on process exit if a test failed half-way.
// Data directories live under fresh temporary directories and are removed
// with their process. Each member's stderr (zap, warn level) goes to
// `<tmp>/etcd.log` for debugging.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onExit } from "./exit.ts";
import { sh, sleep } from "./sh.ts";

export interface EtcdTls {
  caFile: string;
  /** Server certificate and key (for peer traffic too, unless `peer` is given). */
  certFile: string;
  keyFile: string;
  /** Peer certificate and key (kubeadm's etcd/peer.crt). */
  peer?: { certFile: string; keyFile: string };
  /** Require client certificates signed by caFile (`--client-cert-auth`). Default true. */
  clientCertAuth?: boolean;
  /** A client certificate for the readiness probe; needed when clientCertAuth is on. */
  probe?: { certFile: string; keyFile: string };
}

export interface EtcdOptions {
  tls?: EtcdTls;
  /** Raft timings in ms; etcd's defaults (100/1000) unless given. */
  heartbeatMs?: number;
  electionMs?: number;
  logLevel?: "debug" | "info" | "warn" | "error";
  readyTimeoutMs?: number;
  /**
   * Raft pre-vote (`--pre-vote`): on by default from etcd 3.5 (what kubeadm
   * runs), off in 3.4 (Debian's etcd-server). Without it a member cut off
   * from its cluster campaigns with ever higher terms, and on rejoining
   * deposes the leader: the cluster takes no write until it elects again.
   * Absent: the etcd binary's own default (3.4.23 here: off).
   */
  preVote?: boolean;
  /** More etcd flags, appended as given. */
  extraArgs?: readonly string[];
}

export interface EtcdServer {
  readonly endpoints: string[];
  readonly pid: number;
  readonly dataDir: string;
  readonly logFile: string;
  /** Sends a signal without stopping (e.g. SIGSTOP / SIGCONT to freeze etcd). */
  signal(sig: NodeJS.Signals): void;
  /** Kills this PID (SIGTERM by default), waits for it, removes the data dir. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** One running etcd process. */
class Member {
  proc: ReturnType<typeof Bun.spawn> | null = null;
  private unregisterExit = () => {};

  constructor(
    readonly name: string,
    readonly argv: readonly string[],
    readonly dir: string,
    readonly ns: string | undefined,
  ) {}

  get dataDir(): string {
    return join(this.dir, "data");
  }
  get logFile(): string {
    return join(this.dir, "etcd.log");
  }
  get pid(): number {
    if (!this.proc) throw new Error(`etcd member ${this.name} is not running`);
    return this.proc.pid;
  }

  spawn(extra: readonly string[] = []): void {
    // `ip netns exec` execs the command in place, so the PID is etcd's own.
    const cmd = this.ns ? ["ip", "netns", "exec", this.ns, ...this.argv, ...extra] : [...this.argv, ...extra];
    const proc = Bun.spawn(cmd, { stdin: "ignore", stdout: "ignore", stderr: Bun.file(this.logFile) });
    this.proc = proc;
    this.unregisterExit = onExit(() => {
      // Only while it runs: once reaped, its PID may name another process.
      if (proc.exitCode === null && proc.signalCode === null) process.kill(proc.pid, "SIGKILL");
    });
  }

  signal(sig: NodeJS.Signals): void {
    process.kill(this.pid, sig);
  }

  async kill(sig: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    if (proc.exitCode === null && proc.signalCode === null) {
      // A frozen process cannot act on SIGTERM until it runs again.
      process.kill(proc.pid, "SIGCONT");
      process.kill(proc.pid, sig);
      const done = await Promise.race([proc.exited.then(() => true), sleep(5000).then(() => false)]);
      if (!done) {
        process.kill(proc.pid, "SIGKILL");
        await proc.exited;
      }
    }
    this.proc = null;
    this.unregisterExit();
  }

  logTail(lines = 20): string {
    try {
      return readFileSync(this.logFile, "utf8").trim().split("\n").slice(-lines).join("\n");
    } catch {
      return "(no log)";
    }
  }
}

/** Data directories by path, each with the function that unregisters its exit cleanup. */
const dirs = new Map<string, () => void>();

function freshDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `vipd-etcd-${name}-`));
  dirs.set(dir, onExit(() => rmSync(dir, { recursive: true, force: true })));
  return dir;
}

function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  dirs.get(dir)?.();
  dirs.delete(dir);
}

/** A free TCP port on 127.0.0.1 (asks the kernel for one, then releases it). */
function freePort(): number {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = s.port;
  s.stop(true);
  return port;
}

function commonArgs(name: string, dataDir: string, opts: EtcdOptions): string[] {
  const a = [
    "/usr/bin/etcd",
    `--name=${name}`,
    `--data-dir=${dataDir}`,
    "--logger=zap",
    "--log-outputs=stderr",
    `--log-level=${opts.logLevel ?? "warn"}`,
    `--heartbeat-interval=${opts.heartbeatMs ?? 100}`,
    `--election-timeout=${opts.electionMs ?? 1000}`,
    ...(opts.preVote === undefined ? [] : [`--pre-vote=${opts.preVote}`]),
    ...(opts.extraArgs ?? []),
  ];
  const t = opts.tls;
  if (t) {
    a.push(`--cert-file=${t.certFile}`, `--key-file=${t.keyFile}`, `--trusted-ca-file=${t.caFile}`);
    if (t.clientCertAuth ?? true) a.push("--client-cert-auth");
    a.push(`--peer-cert-file=${t.peer?.certFile ?? t.certFile}`, `--peer-key-file=${t.peer?.keyFile ?? t.keyFile}`,
      `--peer-trusted-ca-file=${t.caFile}`, "--peer-client-cert-auth");
  }
  return a;
}

/** GET /health on one client URL; true when etcd answers {"health":"true"}. */
async function healthy(url: string, tls: EtcdTls | undefined, ns: string | undefined): Promise<boolean> {
  const tlsOpt = tls
    ? { ca: readFileSync(tls.caFile, "utf8"),
        ...(tls.probe ? { cert: readFileSync(tls.probe.certFile, "utf8"), key: readFileSync(tls.probe.keyFile, "utf8") } : {}) }
    : undefined;
  if (!ns) {
    try {
      const r = await fetch(`${url}/health`, { tls: tlsOpt, signal: AbortSignal.timeout(1000) });
      return r.ok && ((await r.json()) as { health?: string }).health === "true";
    } catch {
      return false;
    }
  }
  // Inside a namespace: run the same probe with bun itself in that namespace.
  // It prints its verdict rather than exiting with it: a refused connection
  // makes fetch throw, and that must read as "not yet", not as a crash.
  const script = `let ok = false; try { const r = await fetch(${JSON.stringify(`${url}/health`)}, { tls: ${JSON.stringify(tlsOpt)}, signal: AbortSignal.timeout(1000) });` +
    ` ok = r.ok && (await r.json()).health === "true"; } catch {} console.log(ok ? "healthy" : "not-healthy");`;
  const out = await sh(["ip", "netns", "exec", ns, process.execPath, "-e", script], { allowFail: true });
  return out.trim() === "healthy";
}

async function waitReady(members: readonly Member[], urls: readonly string[], opts: EtcdOptions): Promise<void> {
  const end = performance.now() + (opts.readyTimeoutMs ?? 15000);
  for (const [i, m] of members.entries()) {
    for (;;) {
      const p = m.proc;
      if (p && p.exitCode !== null) {
        throw new Error(`etcd ${m.name} exited with ${p.exitCode} while starting:\n${m.logTail()}`);
      }
      if (await healthy(urls[i]!, opts.tls, m.ns)) break;
      if (performance.now() > end) throw new Error(`etcd ${m.name} not healthy in time:\n${m.logTail()}`);
      await sleep(50);
    }
  }
}

/** Starts one etcd member on 127.0.0.1 with random free ports in the current namespace. */
export async function startEtcd(opts: EtcdOptions = {}): Promise<EtcdServer> {
  const name = "solo";
  const dir = freshDir(name);
  const scheme = opts.tls ? "https" : "http";
  const client = `${scheme}://127.0.0.1:${freePort()}`;
  const peer = `${scheme}://127.0.0.1:${freePort()}`;
  const argv = [
    ...commonArgs(name, join(dir, "data"), opts),
    `--listen-client-urls=${client}`, `--advertise-client-urls=${client}`,
    `--listen-peer-urls=${peer}`, `--initial-advertise-peer-urls=${peer}`,
    `--initial-cluster=${name}=${peer}`, "--initial-cluster-state=new",
    `--initial-cluster-token=vipd-${Math.random().toString(36).slice(2, 8)}`,
  ];
  const m = new Member(name, argv, dir, undefined);
  m.spawn();
  try {
    await waitReady([m], [client], opts);
  } catch (e) {
    await m.kill("SIGKILL");
    removeDir(dir);
    throw e;
  }
  return {
    endpoints: [client],
    pid: m.pid,
    dataDir: m.dataDir,
    logFile: m.logFile,
    signal: (sig) => m.signal(sig),
    stop: async (sig) => {
      await m.kill(sig);
      removeDir(dir);
    },
  };
}

export interface ClusterMemberSpec {
  name: string;
  /** Network namespace to run in; the current namespace when absent. */
  ns?: string;
  /** Address for peers (ip:2380) and clients (ip:2379). */
  ip: string;
}

export interface EtcdCluster {
  /** Client URLs, one per member (ip:2379). */
  readonly endpoints: string[];
  endpointsOf(name: string): string[];
  pid(name: string): number;
  signal(name: string, sig: NodeJS.Signals): void;
  stopMember(name: string, signal?: NodeJS.Signals): Promise<void>;
  /** Restarts a stopped member on its old data dir (`--initial-cluster-state existing`). */
  startMember(name: string): Promise<void>;
  stopAll(): Promise<void>;
}

const host = (ip: string) => (ip.includes(":") ? `[${ip}]` : ip);

/**
 * Starts a static cluster. Members in a namespace also listen for clients on
 * 127.0.0.1:2379 there, as on a real control-plane node.
 */
export async function startEtcdCluster(specs: readonly ClusterMemberSpec[], opts: EtcdOptions = {}): Promise<EtcdCluster> {
  const scheme = opts.tls ? "https" : "http";
  const token = `vipd-${Math.random().toString(36).slice(2, 8)}`;
  const peerUrl = (s: ClusterMemberSpec) => `${scheme}://${host(s.ip)}:2380`;
  const clientUrl = (s: ClusterMemberSpec) => `${scheme}://${host(s.ip)}:2379`;
  const initial = specs.map((s) => `${s.name}=${peerUrl(s)}`).join(",");
  const members = new Map<string, { spec: ClusterMemberSpec; m: Member }>();
  for (const s of specs) {
    const dir = freshDir(s.name);
    const listen = [clientUrl(s), ...(s.ns ? [`${scheme}://127.0.0.1:2379`] : [])].join(",");
    const argv = [
      ...commonArgs(s.name, join(dir, "data"), opts),
      `--listen-client-urls=${listen}`, `--advertise-client-urls=${clientUrl(s)}`,
      `--listen-peer-urls=${peerUrl(s)}`, `--initial-advertise-peer-urls=${peerUrl(s)}`,
      `--initial-cluster=${initial}`, `--initial-cluster-token=${token}`,
    ];
    members.set(s.name, { spec: s, m: new Member(s.name, argv, dir, s.ns) });
  }
  const get = (name: string) => {
    const e = members.get(name);
    if (!e) throw new Error(`no etcd member ${name} in this cluster`);
    return e;
  };
  const stopAll = async () => {
    for (const { m } of members.values()) {
      await m.kill();
      removeDir(m.dir);
    }
  };
  try {
    for (const { m } of members.values()) m.spawn(["--initial-cluster-state=new"]);
    const all = [...members.values()];
    await waitReady(all.map((e) => e.m), all.map((e) => clientUrl(e.spec)), opts);
  } catch (e) {
    await stopAll();
    throw e;
  }
  return {
    endpoints: specs.map(clientUrl),
    endpointsOf: (name) => [clientUrl(get(name).spec)],
    pid: (name) => get(name).m.pid,
    signal: (name, sig) => get(name).m.signal(sig),
    stopMember: (name, sig) => get(name).m.kill(sig),
    startMember: async (name) => {
      const { m, spec } = get(name);
      if (m.proc) throw new Error(`etcd member ${name} is already running`);
      m.spawn(["--initial-cluster-state=existing"]);
      await waitReady([m], [clientUrl(spec)], opts);
    },
    stopAll,
  };
}
