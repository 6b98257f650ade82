// The only file-system access in config/: reading the config file and checking
// that TLS files named in it can be opened now, not at the first TLS handshake.

import { accessSync, constants, readFileSync, statSync } from "node:fs";
import type { Flags } from "./flags.ts";
import { type ConfigIssue, issue } from "./issue.ts";

export function isReadableFile(path: string): boolean {
  try {
    accessSync(path, constants.R_OK);
    return statSync(path).isFile();
  } catch {
    return false;
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
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    return { ok: false, issues: [issue(path, "", "a readable configuration file", code, `reading the configuration file: ${code}`)] };
  }
}
