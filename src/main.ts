#!/usr/bin/env bun
// vipd's entry point: the only place that reads process.argv, handles signals
// and picks the process exit code.
import { hostname } from "node:os";
import { EXIT_FAILURE, runCli } from "./cli/commands.ts";

const stopRequested = new Promise<string>((resolve) => {
  for (const sig of ["SIGTERM", "SIGINT"] as const) process.once(sig, () => resolve(sig));
});

let code: number;
try {
  code = await runCli({
    argv: process.argv.slice(2),
    env: process.env,
    hostname: hostname(),
    isTTY: Boolean(process.stderr.isTTY),
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
    stopRequested,
  });
} catch (err) {
  // A bug, not a user error: keep the stack for the report.
  console.error("vipd: internal error:", err);
  code = EXIT_FAILURE;
}
process.exit(code);
