// What this build is: set by build.ts for a compiled binary, guessed for a
// run from source.
import { readFileSync } from "node:fs";

declare const VIPD_VERSION: string | undefined;
declare const VIPD_COMMIT: string | undefined;
declare const VIPD_TARGET: string | undefined;

/**
 * From source: package.json's version with "-dev", so that agents run from a
 * checkout tell their version in etcd (vipd status) like a build does.
 */
function sourceVersion(): string {
  try {
    return `${(JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }).version}-dev`;
  } catch {
    return "dev";
  }
}

export const BUILD = Object.freeze({
  version: typeof VIPD_VERSION === "string" ? VIPD_VERSION : sourceVersion(),
  commit: typeof VIPD_COMMIT === "string" ? VIPD_COMMIT : "source",
  target: typeof VIPD_TARGET === "string" ? VIPD_TARGET : `${process.platform}-${process.arch} (from source)`,
  bun: Bun.version,
});

/** "vipd 0.2.0 (commit 1a2b3c4, Bun 1.4.5, linux-x64)" */
export function versionLine(): string {
  return `vipd ${BUILD.version} (commit ${BUILD.commit}, Bun ${BUILD.bun}, ${BUILD.target})`;
}
