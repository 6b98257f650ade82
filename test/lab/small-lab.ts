// A few nodes on one segment, each with an etcd member of one cluster, and a
// scratch directory for configs: the setup of the agent tests that start
// vipd by hand, without the full Lab's apiservers and prober. close() stops
// every process it started (by PID), etcd, and removes the namespaces and
// the directory, whatever state the test left them in.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { REPO_ROOT, spawnInNetns } from "./cluster.ts";
import { type EtcdCluster, type EtcdOptions, startEtcdCluster } from "./etcd.ts";
import { onExit } from "./exit.ts";
import { type Host, Segment } from "./netns.ts";
import { OwnershipRecorder } from "./recorder.ts";

export class SmallLab {
  readonly #procs: Subprocess[] = [];
  readonly #witnesses: OwnershipRecorder[] = [];
  /** Exit cleanups of the directory and of every process: close() does their work itself. */
  readonly #unregister: (() => void)[] = [];

  private constructor(
    readonly seg: Segment,
    readonly etcd: EtcdCluster,
    readonly dir: string,
  ) {
    this.#unregister.push(onExit(() => rmSync(dir, { recursive: true, force: true })));
  }

  /**
   * `etcd` may depend on the hosts (a TLS certificate for their addresses).
   * `clients` are hosts on the same segment without an etcd member: a
   * client's namespace, for witnesses that watch the nodes from outside.
   */
  static async start(
    names: readonly string[],
    etcd: EtcdOptions | ((hosts: Host[]) => EtcdOptions | Promise<EtcdOptions>) = {},
    opts: { clients?: readonly string[] } = {},
  ): Promise<SmallLab> {
    const seg = await Segment.create([...names, ...(opts.clients ?? [])]);
    try {
      const hosts = names.map((n) => seg.host(n));
      const opts = typeof etcd === "function" ? await etcd(hosts) : etcd;
      const cluster = await startEtcdCluster(hosts.map((h) => ({ name: h.name, ns: h.ns, ip: h.ip4 })), opts);
      return new SmallLab(seg, cluster, mkdtempSync(join(tmpdir(), "vipd-small-lab-")));
    } catch (err) {
      await seg.destroy();
      throw err;
    }
  }

  host(name: string): Host {
    return this.seg.host(name);
  }

  /** Writes a file into the scratch directory; returns its path. */
  write(name: string, text: string): string {
    const path = join(this.dir, name);
    writeFileSync(path, text);
    return path;
  }

  /** A one-VIP config file, for `--config`. */
  vipConfig(name: string, vip: string, link = "eth0"): string {
    return this.write(name, `apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: ${vip}\nlink: ${link}\n`);
  }

  /** The ownership witness (recorder.ts) of one VIP, asking these hosts' eth0 by MAC; close() closes it first. */
  async witness(vip: string, hosts: readonly Host[]): Promise<OwnershipRecorder> {
    const w = await OwnershipRecorder.start({ vip, dir: this.dir, nodes: hosts.map((h) => ({ name: h.name, host: { ns: h.ns, link: "eth0" } })), spawnIn: spawnInNetns });
    this.#witnesses.push(w);
    return w;
  }

  /**
   * Runs `vipd run ARGS` from source inside the host's namespace. stderr is
   * piped for the test to read, or inherited with LAB_DEBUG=1 to watch it.
   */
  vipd(host: Host, args: readonly string[], opts: { env?: Record<string, string> } = {}): Subprocess<"ignore", "ignore", "pipe"> {
    const argv = [process.execPath, join(REPO_ROOT, "src", "main.ts"), "run", ...args];
    const p = Bun.spawn(["ip", "netns", "exec", host.ns, ...argv], {
      stdin: "ignore",
      stdout: "ignore",
      stderr: process.env.LAB_DEBUG ? "inherit" : "pipe",
      ...(opts.env ? { env: opts.env } : {}),
    }) as Subprocess<"ignore", "ignore", "pipe">;
    this.#track(p);
    return p;
  }

  /** Runs any program inside the host's namespace, stopped by close() if still running. */
  spawn(host: Host, argv: readonly string[]): Subprocess<"ignore", "pipe", "inherit"> {
    const p = Bun.spawn(["ip", "netns", "exec", host.ns, ...argv], { stdin: "ignore", stdout: "pipe", stderr: "inherit" });
    this.#track(p);
    return p;
  }

  #track(p: Subprocess): void {
    this.#procs.push(p);
    this.#unregister.push(onExit(() => {
      // Only while it runs: once reaped, its PID may name another process.
      if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
    }));
  }

  async close(): Promise<void> {
    // A witness reads the namespaces: it goes before they do.
    for (const w of this.#witnesses.splice(0)) await w.close();
    for (const p of this.#procs) {
      if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
      await p.exited;
    }
    await this.etcd.stopAll();
    await this.seg.destroy();
    rmSync(this.dir, { recursive: true, force: true });
    for (const u of this.#unregister.splice(0)) u();
  }
}

/** Stops a vipd with SIGTERM and returns what it wrote to stderr; the exit code must be 0. */
export async function stopVipd(p: Subprocess<"ignore", "ignore", "pipe">): Promise<{ code: number; log: string }> {
  p.kill("SIGTERM");
  const code = await p.exited;
  return { code, log: await readLog(p) };
}

/** What the process wrote to stderr (empty when it was inherited). */
export async function readLog(p: Subprocess<"ignore", "ignore", "pipe">): Promise<string> {
  return p.stderr ? new Response(p.stderr).text() : "";
}
