// The only file-system access in config/: reading the config file and checking
// that TLS files named in it can be opened now, not at the first TLS handshake.

import { accessSync, constants, readFileSync, statSync } from "node:fs";
import type { Flags } from "./flags.ts";
import { type ConfigIssue, issue } from "./issue.ts";

/** Why a file cannot be read, as a person reads it: "it does not exist (ENOENT)". */
export interface FileProblem {
  /** ENOENT, EACCES, EISDIR, ... */
  readonly code: string;
  readonly text: string;
}

const WHY: Record<string, string> = {
  ENOENT: "it does not exist",
  ENOTDIR: "a folder on its path is not a folder",
  EACCES: "this user may not read it",
  EPERM: "this user may not read it",
  EISDIR: "it is a directory, not a file",
  ELOOP: "its symbolic links loop",
  ENAMETOOLONG: "the path is too long",
};

/** An error of the file system as a FileProblem; the code alone when it is none of the common ones. */
export function fileProblem(err: unknown): FileProblem {
  const code = (err as NodeJS.ErrnoException).code ?? String(err);
  return { code, text: WHY[code] ? `${WHY[code]} (${code})` : code };
}

/** Whether vipd can read the file at `path` now; null if so. */
export function checkReadableFile(path: string): FileProblem | null {
  try {
    accessSync(path, constants.R_OK);
    if (statSync(path).isDirectory()) return fileProblem({ code: "EISDIR" });
    return statSync(path).isFile() ? null : { code: "ENOTREG", text: "it is not a regular file" };
  } catch (e) {
    return fileProblem(e);
  }
}

/** --config, else VIPD_CONFIG; undefined if neither is given. */
export function configPath(flags: Flags, env: Record<string, string | undefined>): string | undefined {
  const flag = flags.config;
  if (typeof flag === "string" && flag !== "") return flag;
  const fromEnv = env.VIPD_CONFIG;
  return fromEnv === undefined || fromEnv === "" ? undefined : fromEnv;
}

export function readConfigFile(path: string): { ok: true; text: string } | { ok: false; issues: ConfigIssue[] } {
  try {
    return { ok: true, text: readFileSync(path, "utf8") };
  } catch (e) {
    const why = fileProblem(e);
    return { ok: false, issues: [issue(path, "", "a readable configuration file", why.code, `cannot read the configuration file: ${why.text}`)] };
  }
}
