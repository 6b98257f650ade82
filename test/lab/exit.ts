// The lab's last resort when a test, benchmark or the demo dies before its
// destroy(): one registry of synchronous cleanups, run once when the process
// exits, or on Ctrl-C / SIGTERM before it exits. SIGHUP is left alone: a
// handler would undo `nohup` for a long benchmark.
//
// Cleanups run in reverse order of registration. Each resource registers its
// cleanup as it is created, and a process is always started after the
// namespace it runs in and the directory it writes to, so reverse order kills
// processes before their namespaces are deleted and before their directories
// are removed: nothing keeps running in a namespace nobody can name any more.

export type Cleanup = () => void;

/** Insertion-ordered: the order of registration. */
const cleanups = new Set<Cleanup>();
let hooked = false;

/** Runs cleanup at exit unless the returned function unregisters it first. */
export function onExit(cleanup: Cleanup): () => void {
  hook();
  // A wrapper per registration, so the same function registered twice runs twice.
  const entry: Cleanup = () => cleanup();
  cleanups.add(entry);
  return () => {
    cleanups.delete(entry);
  };
}

/**
 * Runs every registered cleanup now, newest first, and forgets them: each runs
 * at most once. One that throws does not keep the others from running.
 */
export function runExitCleanups(): void {
  const due = [...cleanups].reverse();
  cleanups.clear();
  for (const c of due) {
    try {
      c();
    } catch (e) {
      console.error(`lab exit cleanup failed: ${String(e)}`);
    }
  }
}

/** The number of registered cleanups (for tests of this module). */
export function pendingExitCleanups(): number {
  return cleanups.size;
}

// Exit codes of a process killed by the signal, as a shell reports them.
const SIGNALS = { SIGINT: 130, SIGTERM: 143 } as const;

function hook(): void {
  if (hooked) return;
  hooked = true;
  process.on("exit", runExitCleanups);
  // A handled signal no longer kills the process: clean up, then exit as the
  // signal would have, so callers still see the cause.
  for (const [sig, code] of Object.entries(SIGNALS)) {
    process.on(sig, () => {
      runExitCleanups();
      process.exit(code);
    });
  }
}
