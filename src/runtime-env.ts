// Settings for the runtime under `vipd run`, which Bun's JavaScriptCore and
// its allocator (mimalloc) read from the environment only, once, before any
// JavaScript runs. An idle agent holding a VIP does little, but three runtime
// threads woke on their own several times for each thing it did: the JIT
// compiler thread, the garbage collector's marker threads and mimalloc's
// scavenger (BENCHMARKS.md, "Idle cost", measures them). So `vipd run`
// executes itself once more, as the same process, with these set.
import { readFileSync } from "node:fs";
import { execFileName, execve } from "./kernel/ffi/libc.ts";

export const QUIET_RUNTIME: Readonly<Record<string, string>> = {
  // JIT compiles happen on the main thread, between events, instead of
  // waking a compiler thread for each one.
  BUN_JSC_useConcurrentJIT: "0",
  // The main thread marks alone: no marker threads woken for each collection.
  BUN_JSC_numberOfGCMarkers: "1",
  // Freed memory goes back to the system at once, on the thread that freed
  // it, rather than a scavenger thread waking to do it later.
  MIMALLOC_PURGE_DELAY: "0",
};

/** The settings this module added, comma-separated; set only in the re-executed image. */
const ADDED = "VIPD_RUNTIME_ENV";

/**
 * Re-executes this process with QUIET_RUNTIME in its environment, unless it
 * is already there; returns only when nothing was done or the exec failed
 * (vipd then runs as before, only noisier). A setting already in the
 * environment is the operator's and is left as it is. In the re-executed
 * image, the added settings are taken out of process.env again, so hooks and
 * other programs vipd starts do not inherit them.
 */
export function quietRuntime(env: Record<string, string | undefined> = process.env): void {
  const added = env[ADDED];
  if (added !== undefined) {
    for (const name of added.split(",")) delete env[name];
    delete env[ADDED];
    return;
  }
  const missing = Object.keys(QUIET_RUNTIME).filter((name) => env[name] === undefined);
  if (missing.length === 0) return;
  let argv: string[];
  try {
    // The command line as the kernel has it: for a compiled vipd, process.argv
    // holds a path inside the binary instead.
    argv = readFileSync("/proc/self/cmdline", "utf8").split("\0").slice(0, -1);
  } catch {
    return;
  }
  const next = [
    ...Object.entries(env).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`),
    ...missing.map((name) => `${name}=${QUIET_RUNTIME[name]}`),
    `${ADDED}=${missing.join(",")}`,
  ];
  // The very file the kernel started, not /proc/self/exe: the process keeps
  // its name (ps, journald's _COMM), which the kernel takes from this path.
  execve(execFileName() ?? "/proc/self/exe", argv, next);
}
