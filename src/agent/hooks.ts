// State-change hooks: the operator's programs, run after this node acquired,
// released or was fenced off a VIP (keepalived's `notify`, without a shell).
//
// A hook never delays the change it reports: the slot calls changed() once
// the kernel has confirmed the change, and the program runs in the
// background. Hooks are level-triggered: per VIP at most one runs and at most
// one waits, and a newer change replaces the waiting one. So a flapping VIP
// cannot pile hooks up, VIPD_EVENT always names a state the VIP was in, and
// the newest state is always the last one delivered.
//
// No shell: the argv runs as it is (posix_spawn), with vipd's environment and
// the change's VIPD_* variables. Each run gets a session and process group of
// its own, so that a timeout kills whatever the hook started too, and a
// Ctrl-C at vipd's terminal does not reach it.
//
// About 380 lines, kept whole: it is one runner, read in the order a run
// happens: the queue per VIP, one run with its timeout and process-group
// kill, its output cut to a budget, and why a program could not start (which
// the metrics count as "missing").
import { accessSync, constants, statSync } from "node:fs";
import type { Subprocess } from "bun";
import { describeError, type Fields, type Logger } from "../log.ts";
import { HOOK_EVENTS, type HookEvent, type HookResult } from "../vip/hook-events.ts";

export interface HookSettings {
  /** An argv per event; absent or [] means no hook for that event. */
  readonly acquired?: readonly string[];
  readonly released?: readonly string[];
  readonly fenced?: readonly string[];
  /** How long one run may take before it and its process group are killed. */
  readonly timeoutMs: number;
}

/** One ownership change, as the slot reports it. */
export interface HookChange {
  readonly vip: string;
  readonly link: string;
  readonly node: string;
  readonly held: boolean;
  /** "elected" for an acquisition, a ReleaseCode (vip/decision.ts) for a release. */
  readonly code: string;
  /** Why, in words: VIPD_REASON. */
  readonly reason: string;
}

/** What a slot needs: report a change. Returns at once; the hook runs later. */
export interface HookSink {
  changed(c: HookChange): void;
}

/**
 * Which event a change is. "fenced": the node lost the VIP because it could
 * no longer prove it: no committed heartbeat proves its key any more, or
 * another node is first in the queue while we held it (it took over after
 * our heartbeats stopped reaching etcd). A release is only ever reported for
 * a VIP that was held, so "not-elected" here always means "while held".
 * Every other release (stop, reload, link, gate, drain, hand-over, conflict,
 * a kernel that refuses the address) is one this node chose: "released".
 */
export function hookEvent(held: boolean, code: string): HookEvent {
  if (held) return "acquired";
  return code === "fence-expired" || code === "not-elected" ? "fenced" : "released";
}

export interface HookMetrics {
  hookRan(event: HookEvent, result: HookResult, durationMs: number): void;
}

export interface HookRunnerDeps {
  readonly hooks: HookSettings;
  readonly log: Logger;
  readonly metrics?: HookMetrics;
  /** The environment every hook starts with: vipd's own. */
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** Output logged per run, at most: a chatty hook must not flood vipd's log. */
export const OUTPUT_MAX_LINES = 50;
export const OUTPUT_MAX_BYTES = 16 * 1024;
/** A longer line is logged cut, with "..." at its end. */
export const OUTPUT_MAX_LINE = 1000;
/**
 * After the hook exits, how long its output may still take to drain. A
 * process it left behind may keep the pipes open for ever; we stop reading.
 */
const OUTPUT_DRAIN_MS = 200;

interface Lane {
  running: Promise<void> | null;
  waiting: HookChange | null;
}

export class HookRunner implements HookSink {
  readonly #d: HookRunnerDeps;
  #hooks: HookSettings;
  readonly #lanes = new Map<string, Lane>();
  /** Runs whose process is alive, with the way to kill each. */
  readonly #live = new Map<Subprocess, (why: "stop") => void>();
  #closed = false;

  constructor(deps: HookRunnerDeps) {
    this.#d = deps;
    this.#hooks = deps.hooks;
  }

  /** New hook settings (a reloaded configuration): for the runs that start from now on. */
  configure(hooks: HookSettings): void {
    this.#hooks = hooks;
  }

  /**
   * Warns once for each configured hook whose program cannot run now, so the
   * operator hears of it at start-up rather than at the first failover. Not
   * an error: the program may be installed later, and each run reports again.
   */
  checkPrograms(): void {
    for (const event of HOOK_EVENTS) {
      const argv = this.#argv(event);
      const problem = argv && programProblem(argv[0]!);
      if (problem) this.#d.log.warn(`the ${event} hook cannot run: ${problem}`, { event, hook: argv[0] });
    }
  }

  changed(c: HookChange): void {
    if (this.#closed) return;
    const lane = this.#lanes.get(c.vip) ?? { running: null, waiting: null };
    this.#lanes.set(c.vip, lane);
    if (lane.running) {
      // Level-triggered: only the newest state matters. Replacing a waiting
      // change with one that has no hook drops it: it no longer describes the VIP.
      if (lane.waiting) this.#d.log.debug("hook skipped: a newer change replaced it", this.#fields(hookEvent(lane.waiting.held, lane.waiting.code), lane.waiting));
      lane.waiting = c;
      return;
    }
    this.#start(lane, c);
  }

  /** Resolves once no hook runs or waits. */
  async idle(): Promise<void> {
    for (;;) {
      const running = [...this.#lanes.values()].flatMap((l) => (l.running ? [l.running] : []));
      if (running.length === 0) return;
      await Promise.all(running);
    }
  }

  /**
   * vipd is stopping: lets the hooks that run or wait finish, for at most one
   * hook timeout, then kills what still runs. A "released" hook of the
   * shutdown itself completes this way. Returns at once when nothing runs.
   */
  async stop(): Promise<void> {
    const lanes = [...this.#lanes.values()];
    if (lanes.every((l) => !l.running)) {
      this.#closed = true;
      return;
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<void>((r) => (timer = setTimeout(r, this.#hooks.timeoutMs)));
    await Promise.race([this.idle(), deadline]);
    clearTimeout(timer);
    this.#closed = true;
    for (const lane of lanes) {
      if (lane.waiting) this.#d.log.warn("hook not run: vipd stopped first", this.#fields(hookEvent(lane.waiting.held, lane.waiting.code), lane.waiting));
      lane.waiting = null;
    }
    for (const kill of this.#live.values()) kill("stop");
    await this.idle();
  }

  #argv(event: HookEvent): readonly string[] | null {
    const argv = this.#hooks[event];
    return argv && argv.length > 0 ? argv : null;
  }

  #fields(event: HookEvent, c: HookChange, argv = this.#argv(event)): Fields {
    return { event, vip: c.vip, hook: argv?.[0] };
  }

  #start(lane: Lane, c: HookChange): void {
    const event = hookEvent(c.held, c.code);
    const argv = this.#argv(event);
    if (!argv) return;
    // Spawned on a later turn of the event loop: not even the spawn goes
    // before what the caller does next (announcing the address, telling etcd).
    lane.running = new Promise((r) => setImmediate(r))
      .then(() => this.#run(event, argv, c))
      // A bug here must not become an unhandled rejection that ends vipd.
      .catch((err) => this.#d.log.error("running a hook failed", { ...this.#fields(event, c, argv), error: describeError(err) }))
      .finally(() => {
        lane.running = null;
        const next = lane.waiting;
        lane.waiting = null;
        if (next && !this.#closed) this.#start(lane, next);
      });
  }

  async #run(event: HookEvent, argv: readonly string[], c: HookChange): Promise<void> {
    const { log, metrics } = this.#d;
    const { timeoutMs } = this.#hooks;
    const fields = this.#fields(event, c, argv);
    const env = {
      ...this.#d.env,
      VIPD_EVENT: event,
      VIPD_VIP: c.vip,
      VIPD_LINK: c.link,
      VIPD_NODE: c.node,
      VIPD_REASON: c.reason,
    };
    const t0 = performance.now();
    let proc: Subprocess<"ignore", "pipe", "pipe">;
    try {
      proc = Bun.spawn([...argv], { env, stdin: "ignore", stdout: "pipe", stderr: "pipe", detached: true });
    } catch (err) {
      const problem = spawnProblem(err, argv[0]!);
      log.error(`the ${event} hook could not start: ${problem.text}`, fields);
      metrics?.hookRan(event, problem.missing ? "missing" : "failed", performance.now() - t0);
      return;
    }
    log.debug("hook started", { ...fields, pid: proc.pid, reason: c.reason });

    let killed: "timeout" | "stop" | null = null;
    const kill = (why: "timeout" | "stop") => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      killed ??= why;
      killGroup(proc);
    };
    this.#live.set(proc, kill);
    const timer = setTimeout(() => kill("timeout"), timeoutMs);

    const output = new HookOutput(log, fields);
    const readers = [readLines(proc.stdout, (l) => output.line("stdout", l)), readLines(proc.stderr, (l) => output.line("stderr", l))];
    await proc.exited;
    clearTimeout(timer);
    this.#live.delete(proc);
    let drained: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([Promise.all(readers.map((r) => r.done)), new Promise((r) => (drained = setTimeout(r, OUTPUT_DRAIN_MS)))]);
    clearTimeout(drained);
    for (const r of readers) r.cancel();
    output.finish();

    const ms = Math.round(performance.now() - t0);
    const last = output.lastLine === null ? {} : { lastLine: output.lastLine };
    let result: HookResult;
    if (killed === "timeout") {
      result = "timeout";
      log.warn(`the ${event} hook ran longer than ${timeoutMs / 1000} s: killed it and its process group`, { ...fields, ms, ...last });
    } else if (killed === "stop") {
      result = "timeout";
      log.warn(`the ${event} hook was still running when vipd stopped: killed it and its process group`, { ...fields, ms, ...last });
    } else if (proc.exitCode === 0) {
      result = "ok";
      log.info(`the ${event} hook ran`, { ...fields, ms });
    } else {
      result = "failed";
      const status = proc.exitCode !== null ? `exit status ${proc.exitCode}` : `killed by ${proc.signalCode}`;
      log.warn(`the ${event} hook failed: ${status}`, { ...fields, ms, ...last });
    }
    metrics?.hookRan(event, result, ms);
  }
}

/** SIGKILL to the hook's process group (its pid: it leads a session of its own), and to the hook itself. */
function killGroup(proc: Subprocess): void {
  try {
    process.kill(-proc.pid, "SIGKILL");
  } catch {
    // ESRCH: the group is gone already.
  }
  proc.kill("SIGKILL");
}

/** Why a program cannot run, in words; null when it looks runnable. */
export function programProblem(path: string): string | null {
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === "ENOENT" || code === "ENOTDIR") return `${path} does not exist`;
    return `${path}: ${describeError(err)}`;
  }
  if (!st.isFile()) return `${path} is not a file`;
  try {
    accessSync(path, constants.X_OK);
  } catch {
    return `${path} is not executable (chmod +x)`;
  }
  return null;
}

/** A spawn that failed: the sentence, and whether the program is missing or unrunnable (metrics: "missing"). */
function spawnProblem(err: unknown, path: string): { text: string; missing: boolean } {
  switch ((err as { code?: string }).code) {
    case "ENOENT":
    case "ENOTDIR":
      return { text: `${path} does not exist (or its #! interpreter does not)`, missing: true };
    case "EACCES":
      return { text: `${path} is not executable, or a directory on its path may not be searched`, missing: true };
    case "ENOEXEC":
      return { text: `${path} is not a program Linux can run (a script needs a #! line)`, missing: true };
    default:
      return { text: `${path}: ${describeError(err)}`, missing: false };
  }
}

/**
 * One run's output, logged line by line and attributed to the hook, up to
 * OUTPUT_MAX_LINES lines and OUTPUT_MAX_BYTES; the rest is counted, and the
 * last line is kept for the report of a failure.
 */
class HookOutput {
  lastLine: string | null = null;
  #lines = 0;
  #bytes = 0;
  #dropped = 0;

  constructor(
    private readonly log: Logger,
    private readonly fields: Fields,
  ) {}

  line(stream: "stdout" | "stderr", text: string): void {
    const line = text.length > OUTPUT_MAX_LINE ? `${text.slice(0, OUTPUT_MAX_LINE)}...` : text;
    if (line.trim() !== "") this.lastLine = line;
    const bytes = Buffer.byteLength(line);
    if (this.#lines >= OUTPUT_MAX_LINES || this.#bytes + bytes > OUTPUT_MAX_BYTES) {
      this.#dropped++;
      return;
    }
    this.#lines++;
    this.#bytes += bytes;
    this.log.info("hook output", { ...this.fields, stream, line });
  }

  finish(): void {
    if (this.#dropped > 0) {
      this.log.warn(`hook output cut: ${this.#dropped} more lines not logged (at most ${OUTPUT_MAX_LINES} lines or ${OUTPUT_MAX_BYTES} bytes a run)`, this.fields);
    }
  }
}

/** Reads a stream as text lines; cancel() stops reading (a process the hook left behind may hold the pipe). */
function readLines(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void): { done: Promise<void>; cancel: () => void } {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let partial = "";
  let cancelled = false;
  let skipping = false;
  const emit = (line: string) => cancelled || onLine(line.endsWith("\r") ? line.slice(0, -1) : line);
  const done = (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        partial += decoder.decode(value, { stream: true });
        for (let nl = partial.indexOf("\n"); nl >= 0; nl = partial.indexOf("\n")) {
          if (!skipping) emit(partial.slice(0, nl));
          skipping = false;
          partial = partial.slice(nl + 1);
        }
        // A line this long is logged cut: emit its start now and skip the
        // rest up to its newline, so memory stays bounded.
        if (partial.length > OUTPUT_MAX_LINE) {
          if (!skipping) emit(partial);
          skipping = true;
          partial = "";
        }
      }
      partial += decoder.decode();
    } catch {
      // Cancelled, or the pipe broke: what was read is all there is.
    }
    if (partial !== "" && !skipping) emit(partial);
    partial = "";
  })();
  const cancel = () => {
    cancelled = true;
    reader.cancel().catch(() => {});
  };
  return { done, cancel };
}
