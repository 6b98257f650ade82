// A lab node with systemd as PID 1: systemd-nspawn boots a root tree
// (debian-tree.ts) with --volatile=overlay, so the tree stays as cached and
// every write lands in a tmpfs that goes with the container, in the network
// namespace of a lab host (netns.ts), so the node's services see its links,
// its etcd member on 127.0.0.1 and the segment.
//
// The test machines run no systemd and no D-Bus of their own: --register=no
// (no machined to register with) and --keep-unit (no transient scope unit to
// ask for) are what let nspawn run here. Commands reach the container with
// nsenter into all of its PID 1's namespaces, as root there, as cloud-init's
// runcmd would run them.
//
// stop() powers the container off (SIGTERM to nspawn); the lab's exit hook
// kills its PID 1, and with it everything in its PID namespace, and nspawn,
// both by PID, if a test dies first.
import { closeSync, openSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { onExit } from "./exit.ts";
import { sleep } from "./sh.ts";

export interface ContainerOptions {
  /** The root tree to boot (left unchanged). */
  readonly tree: string;
  /** The lab namespace (/run/netns/NAME) whose network the container uses. */
  readonly netns: string;
  /** The container's host name, which vipd takes as its node name. */
  readonly hostname: string;
  /** Host directories to show inside, read-only: host path → container path. */
  readonly bindReadOnly?: Readonly<Record<string, string>>;
  /** nspawn's own output and the container's console go here. */
  readonly logFile: string;
  readonly bootTimeoutMs?: number;
}

export interface ExecOptions {
  readonly env?: Readonly<Record<string, string>>;
  readonly stdin?: string;
  readonly timeoutMs?: number;
}

export interface ExecResult {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

/** Where nspawn keeps a directory per machine name on the host, even unregistered. */
const PROPAGATE = "/run/systemd/nspawn/propagate";

/** PATH as systemd gives services and root's shell on Debian. */
const PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export class Container {
  #pid1: number | null = null;
  readonly #unregister: () => void;

  private constructor(
    readonly opts: ContainerOptions,
    private readonly machine: string,
    private readonly nspawn: Subprocess<"ignore", number, number>,
  ) {
    this.#unregister = onExit(() => this.#kill());
  }

  /** PID 1 of the container, as this machine numbers it. */
  get pid1(): number {
    if (this.#pid1 === null) throw new Error(`container ${this.opts.hostname} has not booted`);
    return this.#pid1;
  }

  /** Boots the tree and returns once systemd reports the boot finished (running or degraded). */
  static async boot(opts: ContainerOptions): Promise<{ container: Container; bootMs: number }> {
    const t0 = performance.now();
    // A machine name of its own per container: nspawn keeps per-machine
    // state under PROPAGATE by that name, even unregistered.
    const machine = `vipd-${opts.hostname}-${process.pid}-${Math.random().toString(36).slice(2, 6)}`;
    const binds = Object.entries(opts.bindReadOnly ?? {}).map(([from, to]) => `--bind-ro=${from}:${to}`);
    const log = openSync(opts.logFile, "a");
    let nspawn: Subprocess<"ignore", number, number>;
    try {
      nspawn = Bun.spawn([
        "systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--boot",
        `--directory=${opts.tree}`, "--volatile=overlay",
        `--network-namespace-path=/run/netns/${opts.netns}`,
        // The node's root administers its network, as on a machine of its
        // own: nspawn keeps CAP_NET_ADMIN only with --private-network, and
        // systemd gives a service no capability its own bounding set lacks.
        "--capability=CAP_NET_ADMIN",
        `--machine=${machine}`, `--hostname=${opts.hostname}`,
        // The console's output to the log; nothing reads from it.
        "--console=read-only",
        ...binds,
      ], { stdin: "ignore", stdout: log, stderr: log });
    } finally {
      closeSync(log);
    }
    const c = new Container(opts, machine, nspawn);
    try {
      await c.#waitBooted(opts.bootTimeoutMs ?? 30_000);
    } catch (e) {
      await c.stop();
      throw e;
    }
    return { container: c, bootMs: performance.now() - t0 };
  }

  async #waitBooted(timeoutMs: number): Promise<void> {
    const end = performance.now() + timeoutMs;
    // nspawn's child is the container's PID 1 (systemd): the first PID in
    // its children list once the intermediate process has gone.
    while (this.#pid1 === null) {
      if (this.nspawn.exitCode !== null) throw new Error(`systemd-nspawn exited ${this.nspawn.exitCode} while booting ${this.opts.hostname}:\n${this.logTail()}`);
      const children = readChildren(this.nspawn.pid);
      if (children.length === 1 && comm(children[0]!) === "systemd") this.#pid1 = children[0]!;
      else if (performance.now() > end) throw new Error(`container ${this.opts.hostname}: no systemd under nspawn ${this.nspawn.pid} after ${timeoutMs} ms:\n${this.logTail()}`);
      else await sleep(20);
    }
    // Until systemd has made its private socket, systemctl cannot connect
    // and answers "offline" (or nothing) at once, without waiting.
    let r: ExecResult;
    for (;;) {
      const left = Math.max(1, Math.ceil((end - performance.now()) / 1000));
      r = await this.exec(["timeout", String(left), "systemctl", "is-system-running", "--wait"]);
      if (!["", "offline"].includes(r.out.trim()) || performance.now() > end) break;
      await sleep(50);
    }
    const state = r.out.trim();
    if (state !== "running" && state !== "degraded") {
      const failed = await this.exec(["systemctl", "--failed", "--no-pager"]);
      throw new Error(`container ${this.opts.hostname} did not finish booting: ${state || r.err.trim()}\n${failed.out}\n${this.logTail()}`);
    }
  }

  /**
   * Runs argv inside the container as its root, in all of its namespaces,
   * with a clean environment (PATH and `env`); kills it if it outlives timeoutMs.
   */
  async exec(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const env = Object.entries({ PATH, ...opts.env }).map(([k, v]) => `${k}=${v}`);
    const p = Bun.spawn(["nsenter", `--target=${this.pid1}`, "--all", "--", "env", "-i", ...env, ...argv], {
      stdin: opts.stdin === undefined ? "ignore" : new TextEncoder().encode(opts.stdin),
      stdout: "pipe",
      stderr: "pipe",
    });
    const timer = setTimeout(() => p.kill("SIGKILL"), opts.timeoutMs ?? 30_000);
    try {
      const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
      return { code, out, err };
    } finally {
      clearTimeout(timer);
    }
  }

  /** exec, and its stdout; throws with its stderr on a non-zero exit. */
  async run(argv: readonly string[], opts: ExecOptions = {}): Promise<string> {
    const r = await this.exec(argv, opts);
    if (r.code !== 0) throw new Error(`in container ${this.opts.hostname}: ${argv.join(" ")} exited ${r.code}: ${r.err.trim()}`);
    return r.out;
  }

  /**
   * Writes a file inside the container, as root, with this mode, creating
   * its directories. Through the container's own view of its file system,
   * not /proc/PID/root, where an absolute symbolic link would lead out of it.
   */
  async write(path: string, content: string, mode: number): Promise<void> {
    await this.run(["sh", "-c", 'set -e; mkdir -p "$(dirname "$1")"; umask 077; cat > "$1"; chmod "$2" "$1"', "write", path, mode.toString(8)], { stdin: content });
  }

  /**
   * Powers the container off (nspawn passes SIGTERM on as a shutdown
   * request); kills it after timeoutMs, which is also what happens when the
   * request came before systemd could handle it (PID 1 ignores a signal it
   * has no handler for).
   */
  async stop(timeoutMs = 15_000): Promise<void> {
    if (this.nspawn.exitCode === null && this.nspawn.signalCode === null) {
      this.nspawn.kill("SIGTERM");
      const done = await Promise.race([this.nspawn.exited.then(() => true), sleep(timeoutMs).then(() => false)]);
      if (!done) {
        this.#kill();
        await this.nspawn.exited;
      }
    }
    this.#unregister();
  }

  /**
   * SIGKILL to PID 1 (its PID namespace goes with it) and to nspawn, each
   * only while it runs, and the directory nspawn keeps for the machine on
   * the host, which it removes only when it shuts down on its own.
   */
  #kill(): void {
    if (this.nspawn.exitCode !== null || this.nspawn.signalCode !== null) return;
    // PID 1 is nspawn's child: while nspawn has not been reaped, its PID is still the container's.
    if (this.#pid1 !== null && readChildren(this.nspawn.pid).includes(this.#pid1)) process.kill(this.#pid1, "SIGKILL");
    this.nspawn.kill("SIGKILL");
    rmSync(join(PROPAGATE, this.machine), { recursive: true, force: true });
  }

  logTail(lines = 30): string {
    try {
      return readFileSync(this.opts.logFile, "utf8").trim().split("\n").slice(-lines).join("\n");
    } catch {
      return "(no log)";
    }
  }
}

function readChildren(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function comm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return "";
  }
}
