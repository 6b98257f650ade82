// The N-node lab: a Segment (netns.ts) with control-plane nodes n1..nN and a
// client "c"; on every node an etcd member of one cluster (peers and clients
// on the node's 192.0.2.x, clients also on 127.0.0.1 inside the namespace, as
// on a kubeadm node), a stand-in kube-apiserver on :6443, and — started and
// stopped per node — the VIP implementation under test. Shared by the fault
// matrix test, the demo and the failover benchmark.
//
// Every process is spawned here or in etcd.ts, tracked by PID and killed by
// PID only: on destroy(), and synchronously on exit (Ctrl-C, failure) if a
// caller never got that far. Logs go to one temporary directory per lab.
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { type EtcdCluster, type EtcdOptions, startEtcdCluster } from "./etcd.ts";
import { onExit } from "./exit.ts";
import type { VipImplementation } from "./implementations.ts";
import { type Host, Segment } from "./netns.ts";
import { FENCE_FAMILY, FENCE_TABLE } from "./ownership.ts";
import { sleep, waitFor } from "./sh.ts";

/** The lab's clock: epoch milliseconds with sub-millisecond resolution, comparable across processes. */
export const labNow = (): number => performance.timeOrigin + performance.now();

export const VIP = "192.0.2.100";
export const APISERVER_PORT = 6443;
export const REPO_ROOT = join(import.meta.dir, "..", "..");

/** A process the lab started, known by PID. */
export class LabProcess {
  private exitedAt: number | null = null;

  constructor(
    readonly name: string,
    private readonly proc: Subprocess,
    readonly logFile: string,
  ) {
    // Descendants first: a parent that outlives its child for a moment may
    // start another (keepalived restarts its VRRP child).
    const unregister = onExit(() => {
      for (const pid of this.tree().reverse()) tryKill(pid, "SIGKILL");
    });
    void proc.exited.then(() => {
      this.exitedAt = labNow();
      unregister();
    });
  }

  get pid(): number {
    return this.proc.pid;
  }
  get running(): boolean {
    return this.exitedAt === null;
  }
  get exited(): Promise<number> {
    return this.proc.exited;
  }

  /** The program's stdout, when it was spawned with `stdout: "pipe"`. */
  get stdout(): ReadableStream<Uint8Array> | null {
    const s = this.proc.stdout;
    return s instanceof ReadableStream ? s : null;
  }

  /** The program's stderr, when it was spawned with `stderr: "pipe"`. */
  get stderr(): ReadableStream<Uint8Array> | null {
    const s = this.proc.stderr;
    return s instanceof ReadableStream ? s : null;
  }

  /**
   * This PID and its descendants', parents first. keepalived forks its VRRP
   * process, and a crash or freeze must hit the whole program, not just the parent.
   */
  tree(): number[] {
    return processTree(this.pid);
  }

  /** Sends sig to this PID only (what `systemctl stop` would do for a single-process service). */
  signal(sig: NodeJS.Signals): void {
    if (this.running) process.kill(this.pid, sig);
  }

  /** Sends sig to every process of the tree (SIGKILL = crash, SIGSTOP = freeze). */
  signalTree(sig: NodeJS.Signals): void {
    for (const pid of this.tree()) {
      try {
        process.kill(pid, sig);
      } catch {
        // exited meanwhile
      }
    }
  }

  /** Signals (SIGTERM by default), waits up to graceMs, then SIGKILLs the tree. Returns the exit code. */
  async stop(sig: NodeJS.Signals = "SIGTERM", graceMs = 5000): Promise<number> {
    if (this.running) {
      const pids = this.tree().map((pid) => ({ pid, started: startTime(pid) }));
      // A frozen process cannot act on SIGTERM until it runs again.
      for (const { pid } of pids) tryKill(pid, "SIGCONT");
      tryKill(this.pid, sig);
      const done = await Promise.race([this.proc.exited.then(() => true), sleep(graceMs).then(() => false)]);
      if (!done) for (const pid of this.tree()) tryKill(pid, "SIGKILL");
      // Children that outlived their parent (a SIGKILLed keepalived's VRRP
      // child) are re-parented and out of the tree: kill them by PID, but only
      // if the PID still names the same process (same start time).
      for (const { pid, started } of pids) {
        if (started !== null && startTime(pid) === started) tryKill(pid, "SIGKILL");
      }
    }
    return await this.proc.exited;
  }

  logTail(lines = 20): string {
    try {
      return readFileSync(this.logFile, "utf8").trim().split("\n").slice(-lines).join("\n");
    } catch {
      return "(no log)";
    }
  }
}

function tryKill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** The process's start time in clock ticks since boot (/proc/<pid>/stat field 22); null if gone. */
function startTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}

/** pid and its descendants, from /proc/<pid>/task/<tid>/children. */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    const p = out[i]!;
    let tids: string[] = [];
    try {
      tids = [...new Bun.Glob("*").scanSync({ cwd: `/proc/${p}/task`, onlyFiles: false })];
    } catch {
      continue;
    }
    for (const tid of tids) {
      try {
        const kids = readFileSync(`/proc/${p}/task/${tid}/children`, "utf8").trim();
        for (const k of kids ? kids.split(" ") : []) out.push(Number(k));
      } catch {
        // thread or process gone
      }
    }
  }
  return out;
}

/** Which of a program's output streams come back to the lab instead of going to its log. */
export interface SpawnStreams {
  stdout?: "pipe";
  stderr?: "pipe";
}

/**
 * Spawns argv in namespace ns as a LabProcess (tracked by PID, killed on exit
 * if nobody stopped it), stdout and stderr appended to logFile unless piped.
 * The Lab's spawnIn adds its own bookkeeping; tests that need no lab (a
 * scratch namespace) call this directly.
 */
export function spawnInNetns(ns: string, logFile: string, name: string, argv: readonly string[], opts: SpawnStreams = {}): LabProcess {
  // `ip netns exec` execs the command in place, so the PID is the program's own.
  // One append-mode descriptor for both streams, so neither overwrites the other.
  const log = openSync(logFile, "a");
  try {
    const proc = Bun.spawn(["ip", "netns", "exec", ns, ...argv], {
      cwd: REPO_ROOT,
      stdin: "ignore",
      stdout: opts.stdout ?? log,
      stderr: opts.stderr ?? log,
    });
    return new LabProcess(name, proc, logFile);
  } finally {
    closeSync(log);
  }
}

/** What an implementation needs to run on one node. */
export interface NodeContext {
  readonly name: string;
  /** 0-based position: n1 is 0. keepalived gives n1 priority 101. */
  readonly index: number;
  readonly host: Host;
  /** The other nodes. */
  readonly peers: readonly Host[];
  readonly vip: string;
  /** A private directory for config files and scripts. */
  readonly dir: string;
  /** The node's own etcd member, as the agent on a kubeadm node would use it. */
  readonly etcdEndpoint: string;
  readonly apiserverUrl: string;
  /** Spawns argv inside the node's namespace, stdout and stderr to `<dir>/<name>.log`. */
  spawn(name: string, argv: readonly string[]): LabProcess;
}

export interface LabNode {
  readonly name: string;
  readonly host: Host;
  readonly dir: string;
  apiserver: LabProcess;
  vip: LabProcess | null;
}

export interface LabOptions {
  /** Control-plane nodes; 3 by default. */
  nodes?: number;
  /** Namespace prefix tag (random by default). */
  tag?: string;
  etcd?: EtcdOptions;
  /** Called as each setup step begins (for progress indicators). */
  onStep?: (step: string) => void;
  /** Keep the log directory after destroy() (it is printed by the caller). */
  keepLogs?: boolean;
}

export class Lab {
  readonly vip = VIP;
  readonly nodes: LabNode[] = [];
  private impl: VipImplementation | null = null;
  /** Every process this lab spawned (etcd's are etcd.ts's). */
  private readonly procs = new Set<LabProcess>();
  private destroyed = false;
  private etcdOptions: EtcdOptions = {};
  private unregisterDir = () => {};

  private constructor(
    readonly seg: Segment,
    readonly client: Host,
    readonly dir: string,
    private readonly keepLogs: boolean,
    public etcd: EtcdCluster | null = null,
  ) {
    if (!keepLogs) this.unregisterDir = onExit(() => rmSync(dir, { recursive: true, force: true }));
  }

  /** Whether etcd runs with raft pre-vote (etcd.ts EtcdOptions.preVote). */
  get etcdPreVote(): boolean {
    return this.etcdOptions.preVote ?? false;
  }

  static async start(opts: LabOptions = {}): Promise<Lab> {
    const n = opts.nodes ?? 3;
    const step = opts.onStep ?? (() => {});
    const names = Array.from({ length: n }, (_, i) => `n${i + 1}`);
    step("creating namespaces and the bridge");
    const seg = await Segment.create([...names, "c"], opts.tag ? { tag: opts.tag } : {});
    const dir = mkdtempSync(join(tmpdir(), "vipd-lab-"));
    const lab = new Lab(seg, seg.host("c"), dir, opts.keepLogs ?? false);
    try {
      step(`starting ${n} etcd members and waiting for quorum`);
      // Pre-vote as etcd ≥ 3.5 (what kubeadm runs) does by default, unless
      // asked otherwise; Debian's 3.4 does not (etcd.ts preVote says what that does).
      lab.etcdOptions = { readyTimeoutMs: 30000, preVote: true, ...opts.etcd };
      lab.etcd = await startEtcdCluster(names.map((name) => ({ name, ns: seg.host(name).ns, ip: seg.host(name).ip4 })), lab.etcdOptions);
      step("starting stand-in kube-apiservers");
      for (const name of names) {
        const host = seg.host(name);
        const nodeDir = mkdtempSync(join(dir, `${name}-`));
        const apiserver = lab.spawnIn(host.ns, join(nodeDir, "apiserver.log"), `apiserver-${name}`,
          [process.execPath, join(import.meta.dir, "stand-in-apiserver.ts"), name, String(APISERVER_PORT)]);
        lab.nodes.push({ name, host, dir: nodeDir, apiserver, vip: null });
      }
      for (const node of lab.nodes) {
        await waitFor(`stand-in apiserver on ${node.name}`, async () => {
          if (!node.apiserver.running) throw new Error(node.apiserver.logTail());
          return (await seg.exec(node.host, ["curl", "-sf", "--max-time", "1", `http://127.0.0.1:${APISERVER_PORT}/readyz`], { allowFail: true })) === "ok";
        }, 10000, 50);
      }
    } catch (e) {
      await lab.destroy();
      throw e;
    }
    return lab;
  }

  node(name: string): LabNode {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no node ${name} in the lab (${this.nodes.map((x) => x.name).join(", ")})`);
    return n;
  }

  get etcdCluster(): EtcdCluster {
    if (!this.etcd) throw new Error("the lab's etcd cluster is not running");
    return this.etcd;
  }

  /** Spawns argv in namespace ns, stdout and stderr appended to logFile unless piped back. */
  spawnIn(ns: string, logFile: string, name: string, argv: readonly string[], opts: SpawnStreams = {}): LabProcess {
    return this.track(spawnInNetns(ns, logFile, name, argv, opts));
  }

  private track(p: LabProcess): LabProcess {
    this.procs.add(p);
    return p;
  }

  /** Spawns argv in the client namespace with stdout piped back (the prober). */
  spawnClient(name: string, argv: readonly string[]): { proc: LabProcess; stdout: ReadableStream<Uint8Array> } {
    const logFile = join(this.dir, `${name}.log`);
    const proc = Bun.spawn(["ip", "netns", "exec", this.client.ns, ...argv], {
      cwd: REPO_ROOT, stdin: "ignore", stdout: "pipe", stderr: Bun.file(logFile),
    });
    return { proc: this.track(new LabProcess(name, proc, logFile)), stdout: proc.stdout };
  }

  context(node: LabNode): NodeContext {
    return {
      name: node.name,
      index: this.nodes.indexOf(node),
      host: node.host,
      peers: this.nodes.filter((x) => x !== node).map((x) => x.host),
      vip: this.vip,
      dir: node.dir,
      etcdEndpoint: "http://127.0.0.1:2379",
      apiserverUrl: `http://127.0.0.1:${APISERVER_PORT}/readyz`,
      spawn: (name, argv) => this.spawnIn(node.host.ns, join(node.dir, `${name}.log`), `${name}-${node.name}`, argv),
    };
  }

  /** The implementation nodes run; set by startVip on all nodes. */
  get implementation(): VipImplementation | null {
    return this.impl;
  }

  /** Starts impl on one node (all nodes must run the same one). */
  async startVip(impl: VipImplementation, node: LabNode): Promise<void> {
    if (this.impl && this.impl.id !== impl.id && this.nodes.some((n) => n.vip?.running)) {
      throw new Error(`the lab runs ${this.impl.id}; stop it before starting ${impl.id}`);
    }
    if (node.vip?.running) throw new Error(`${this.impl?.id} already runs on ${node.name}`);
    this.impl = impl;
    node.vip = await impl.start(this.context(node));
  }

  async startVipEverywhere(impl: VipImplementation): Promise<void> {
    for (const node of this.nodes) if (!node.vip?.running) await this.startVip(impl, node);
  }

  /** Stops the implementation on a node: sig to its main PID, SIGKILL after graceMs. */
  async stopVip(node: LabNode, sig: NodeJS.Signals = "SIGTERM", graceMs = 5000): Promise<number | null> {
    const p = node.vip;
    if (!p) return null;
    const code = await p.stop(sig, graceMs);
    node.vip = null;
    return code;
  }

  async stopVipEverywhere(sig: NodeJS.Signals = "SIGTERM"): Promise<void> {
    await Promise.all(this.nodes.map((n) => this.stopVip(n, sig)));
  }

  /** Switches the node's stand-in apiserver's /readyz between 200 and 500. */
  setApiserverReady(node: LabNode, ready: boolean): void {
    node.apiserver.signal(ready ? "SIGUSR2" : "SIGUSR1");
  }

  /** Nodes whose kernel has the VIP right now (`ip addr`). */
  async holders(): Promise<LabNode[]> {
    const has = await Promise.all(this.nodes.map((n) => this.seg.has(n.host, this.vip)));
    return this.nodes.filter((_, i) => has[i]);
  }

  /** Removes a VIP left on a node's link (after a crash), so the next trial starts clean. */
  async clearVip(node: LabNode): Promise<void> {
    await this.seg.ip(node.host.ns, "addr", "flush", "dev", node.host.link, "to", `${this.vip}/32`);
  }

  /**
   * Removes vipd's nftables fence table from a node, as a reboot would (a
   * node without one: nothing to do), so a restarted agent starts clean.
   */
  async clearFence(node: LabNode): Promise<void> {
    await this.seg.exec(node.host, ["nft", "delete", "table", FENCE_FAMILY, FENCE_TABLE], { allowFail: true });
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    await Promise.all(this.nodes.map((n) => this.stopVip(n, "SIGTERM", 2000)));
    await Promise.all(this.nodes.map((n) => n.apiserver.stop("SIGTERM", 2000)));
    await this.etcd?.stopAll();
    for (const p of this.procs) await p.stop("SIGTERM", 2000);
    await this.seg.destroy();
    if (!this.keepLogs) {
      rmSync(this.dir, { recursive: true, force: true });
      this.unregisterDir();
    }
  }
}
