// Who this run of vipd is, so that two runs under one node name can tell
// each other apart (design.md §6).
//
// A node name may be claimed by one live run at a time. A second run finds
// the first one's record at `<prefix>agents/<node>` and must decide whether
// that run is dead (a crash, kill -9, reboot: clear its keys at once and go
// on) or alive (a cloned VM, a second instance started by hand: refuse).
// On the same kernel and PID namespace the answer is exact: is that PID
// still the same process (same start time)? Across machines only etcd can
// tell: a live run keeps rewriting its heartbeat.
import { randomBytes } from "node:crypto";
import { readFileSync, readlinkSync } from "node:fs";
import { hostname } from "node:os";
import { jsonObject } from "./keys.ts";
import { LAYOUT_TEXT } from "./layout.ts";

export interface Incarnation {
  /** Random per run: election keys carry it, so a run knows its own keys. */
  readonly run: string;
  /** For people: the host name when the run started. */
  readonly host: string;
  /** /etc/machine-id (empty when the file is missing). */
  readonly machine: string;
  /** The kernel's boot_id: a reboot is a new one. */
  readonly boot: string;
  /** Namespace identities ("net:[4026531840]"): PIDs mean something only within one PID namespace. */
  readonly netns: string;
  readonly pidns: string;
  readonly pid: number;
  /** The process's start time in clock ticks since boot (/proc/<pid>/stat field 22): tells a reused PID apart. */
  readonly start: string;
  /** This run's hold time (ms): candidates wait for it before taking over (design.md §3). */
  readonly holdMs: number;
  readonly version: string;
  /**
   * The etcd layout this run writes, "MAJOR.MINOR" (layout.ts); absent from
   * vipd 0.2's records, which are layout 1.0. Read it with layoutOf().
   */
  readonly layout?: string;
  /** Wall-clock start, ISO 8601, for people. */
  readonly startedAt: string;
}

/** What the process can read about itself; injectable for tests. */
export interface ProcReader {
  read(path: string): string;
  link(path: string): string;
}

export const procFs: ProcReader = {
  read: (p) => readFileSync(p, "utf8"),
  link: (p) => readlinkSync(p),
};

function tryRead(proc: ProcReader, path: string): string {
  try {
    return proc.read(path).trim();
  } catch {
    return "";
  }
}

/** Field 22 of /proc/<pid>/stat, counted after the command name (which may hold spaces and parentheses). */
export function startTimeOf(stat: string): string | null {
  const close = stat.lastIndexOf(")");
  if (close < 0) return null;
  return stat.slice(close + 2).split(" ")[19] ?? null;
}

export function currentIncarnation(opts: { holdMs: number; version: string; proc?: ProcReader; pid?: number }): Incarnation {
  const proc = opts.proc ?? procFs;
  const pid = opts.pid ?? process.pid;
  const link = (p: string) => {
    try {
      return proc.link(p);
    } catch {
      return "";
    }
  };
  return {
    run: randomBytes(8).toString("hex"),
    host: hostname(),
    machine: tryRead(proc, "/etc/machine-id"),
    boot: tryRead(proc, "/proc/sys/kernel/random/boot_id"),
    netns: link("/proc/self/ns/net"),
    pidns: link("/proc/self/ns/pid"),
    pid,
    start: startTimeOf(tryRead(proc, `/proc/${pid}/stat`)) ?? "",
    holdMs: opts.holdMs,
    version: opts.version,
    layout: LAYOUT_TEXT,
    startedAt: new Date().toISOString(),
  };
}

/** Parses a record another run wrote; null when it is not one (a foreign writer, an older layout). */
export function decodeIncarnation(text: string): Incarnation | null {
  const r = jsonObject(text);
  if (!r) return null;
  const strings = ["run", "host", "machine", "boot", "netns", "pidns", "start", "version", "startedAt"];
  if (!strings.every((k) => typeof r[k] === "string") || !r.run) return null;
  if (!Number.isSafeInteger(r.pid) || !Number.isFinite(r.holdMs) || (r.holdMs as number) <= 0) return null;
  return r as unknown as Incarnation;
}

export function encodeIncarnation(i: Incarnation): string {
  return JSON.stringify(i);
}

/** "pid 4242 on cp-1 (machine 1a2b3c4d, started 2026-11-26T10:00:00Z)", for error messages. */
export function describeIncarnation(i: Incarnation): string {
  return `pid ${i.pid} on ${i.host || "an unnamed host"} (machine ${i.machine.slice(0, 8) || "unknown"}, started ${i.startedAt})`;
}

export type Verdict =
  /**
   * The other run's process is gone. `here`: it also shared our network
   * namespace, so this run can reach whatever it left in the kernel. Its
   * keys may be cleared at once only once nothing of it can answer: at start
   * this run removed, from every link, the VIPs of the fence table the dead
   * run left and every VIP configured now; the session then removes every
   * VIP the dead run's last heartbeat claimed, and clears only when that
   * succeeded, or else after its window (design.md §6). Not `here`: its fence
   * may still let traffic through in its own namespace until its proof runs
   * out: wait for its silence window first.
   */
  | { kind: "dead"; here: boolean }
  /** The other run's process is alive on this kernel: a second instance. Refuse. */
  | { kind: "alive" }
  /** Another kernel or PID namespace: only its heartbeats can tell (design.md §6). */
  | { kind: "elsewhere" };

/**
 * Judges another run's record from this one. `alive(pid, start)` says
 * whether that PID is still the process that started at `start`; it is only
 * asked when both runs share the kernel (boot_id) and the PID namespace.
 */
export function judge(mine: Incarnation, other: Incarnation, alive: (pid: number, start: string) => boolean): Verdict {
  const sameSpace = mine.boot !== "" && mine.boot === other.boot && mine.pidns !== "" && mine.pidns === other.pidns;
  if (!sameSpace) return { kind: "elsewhere" };
  if (alive(other.pid, other.start)) return { kind: "alive" };
  return { kind: "dead", here: mine.netns !== "" && mine.netns === other.netns };
}

/** Whether `pid` is still the process that started at `start` (same PID namespace as the caller). */
export function processAlive(pid: number, start: string, proc: ProcReader = procFs): boolean {
  let stat: string;
  try {
    stat = proc.read(`/proc/${pid}/stat`);
  } catch {
    return false;
  }
  // A zombie has exited: it holds no sockets, sends no heartbeats.
  const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
  if (state === "Z" || state === "X") return false;
  return startTimeOf(stat) === start;
}
