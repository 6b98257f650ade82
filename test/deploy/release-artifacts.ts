// The release the deploy tests install from: `npm run release` into
// dist/test-release (not dist/release, which is the developer's), made once
// per test process however many test files ask for it.
import { join } from "node:path";
import { REPO_ROOT } from "../lab/cluster.ts";
import { sh } from "../lab/sh.ts";

export const VERSION = (await Bun.file(join(REPO_ROOT, "package.json")).json()).version as string;
export const HOST_ARCH = process.arch === "arm64" ? "arm64" : "x64";

let made: Promise<string> | null = null;

/** Runs scripts/release.ts with `--out dir` in `checkout`; returns its output. */
export function runRelease(checkout: string, out: string): Promise<string> {
  return sh([join(checkout, "node_modules", ".bin", "bun"), join(checkout, "scripts", "release.ts"), "--out", out]);
}

/** The directory holding the tarballs and SHA256SUMS. */
export function releaseDir(): Promise<string> {
  const out = join(REPO_ROOT, "dist", "test-release");
  made ??= runRelease(REPO_ROOT, out).then(() => out);
  return made;
}
