#!/usr/bin/env bun
// vipd's entry point: the only place that reads process.argv, handles signals
// and picks the process exit code.
import { fstatSync } from "node:fs";
import { hostname } from "node:os";
import { isJournalStream } from "./journal-stream.ts";
import { quietRuntime } from "./runtime-env.ts";

// Before the rest of vipd loads: quietRuntime may start this process over.
if (process.argv[2] === "run") quietRuntime();
const { EXIT_FAILURE, runCli } = await import("./cli/commands.ts");
const { kernelLinks } = await import("./cli/preflight.ts");

const stopRequested = new Promise<string>((resolve) => {
  for (const sig of ["SIGTERM", "SIGINT"] as const) process.once(sig, () => resolve(sig));
});

/**
 * SIGHUP, each time it comes (`vipd run` reloads its configuration). The
 * handler is installed at once: a SIGHUP's default action would end vipd.
 * Signals that come before anyone listens, or while the listener is busy,
 * count as one, as the kernel would count them.
 */
function signalStream(sig: NodeJS.Signals): AsyncIterable<string> {
  let pending = false;
  let wake: (() => void) | null = null;
  process.on(sig, () => {
    pending = true;
    wake?.();
  });
  return {
    async *[Symbol.asyncIterator]() {
      for (;;) {
        if (!pending) await new Promise<void>((r) => (wake = r));
        wake = null;
        pending = false;
        yield sig;
      }
    },
  };
}

/** Whether stderr, where vipd logs, is systemd's connection to journald (journal-stream.ts). */
function stderrIsJournal(): boolean {
  try {
    return isJournalStream(process.env.JOURNAL_STREAM, fstatSync(2, { bigint: true }));
  } catch {
    // No stderr at all: nothing to prefix.
    return false;
  }
}

let code: number;
try {
  code = await runCli({
    argv: process.argv.slice(2),
    env: process.env,
    hostname: hostname(),
    isTTY: Boolean(process.stderr.isTTY),
    journal: stderrIsJournal(),
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
    stopRequested,
    reloadRequested: signalStream("SIGHUP"),
    readStdin: () => Bun.stdin.text(),
    links: kernelLinks,
  });
} catch (err) {
  // A bug, not a user error: keep the stack for the report.
  console.error("vipd: internal error:", err);
  code = EXIT_FAILURE;
}
process.exit(code);
