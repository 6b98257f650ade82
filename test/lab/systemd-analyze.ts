// systemd-analyze on unit files, without systemd running: `verify` (the
// checks systemd makes when it loads a unit) and `security --offline`
// (the exposure score). Used by the deploy tests and `npm run bench:unit`.
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { Unit } from "./unit-sandbox.ts";

/** Where Debian keeps the units packages install. */
const SYSTEM_UNITS = "/lib/systemd/system";

export interface Verified {
  readonly code: number;
  /** Everything systemd-analyze said: empty for a unit without a single warning. */
  readonly output: string;
}

/**
 * `systemd-analyze verify` of one unit file, in a scratch root holding this
 * machine's system units (so After=/WantedBy= targets resolve) and the
 * unit's ExecStart= program: taken from `installed` (a tree the unit was
 * installed into) when given, else an executable stand-in, since verify
 * only checks that the program exists and is executable.
 */
export async function verifyUnit(unitFile: string, installed?: string): Promise<Verified> {
  const root = mkdtempSync(join(tmpdir(), "vipd-verify-"));
  try {
    cpSync(SYSTEM_UNITS, join(root, "usr/lib/systemd/system"), { recursive: true, verbatimSymlinks: true });
    const target = join(root, "etc/systemd/system", basename(unitFile));
    mkdirSync(dirname(target), { recursive: true });
    copyFileSync(unitFile, target);
    for (const line of Unit.read(unitFile).all("Service", "ExecStart")) {
      const program = line.replace(/^[-@+!:]+/, "").split(/\s+/)[0]!;
      const into = join(root, program);
      mkdirSync(dirname(into), { recursive: true });
      if (installed && existsSync(join(installed, program))) copyFileSync(join(installed, program), into);
      else writeFileSync(into, "#!/bin/sh\n");
      chmodSync(into, 0o755);
    }
    const p = Bun.spawn(["systemd-analyze", "verify", "--man=no", `--root=${root}`, target], { stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    return { code, output: (out + err).trim() };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/** The overall exposure `systemd-analyze security --offline=true` gives a unit file (0 best, 10 worst). */
export async function exposure(unitFile: string): Promise<number> {
  const p = Bun.spawn(["systemd-analyze", "security", "--offline=true", "--no-pager", unitFile], { stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  const m = /Overall exposure level for \S+: (\d+(?:\.\d+)?)/.exec(out + err);
  if (!m) throw new Error(`systemd-analyze security ${unitFile}: no overall exposure in its output:\n${out}${err}`);
  return Number(m[1]);
}

/** keepalived's unit as Debian ships it: the common peer to compare with. */
export const KEEPALIVED_UNIT = join(SYSTEM_UNITS, "keepalived.service");
