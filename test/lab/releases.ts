// The release before this tree, N−1, which the rolling-upgrade test runs
// beside this one (docs/design.md §2, "Versions side by side"). Recorded here
// alone: when a release is tagged, this names the one before the next.
//
// Its binary is built from the commit itself: `git archive` of the commit
// into a scratch directory (a clean clone has it; a shallow one must fetch
// it), this checkout's node_modules linked in, `bun build.ts` for this
// machine's architecture there. The dependencies are this tree's: a release
// whose package-lock.json differs would need its own `npm ci` (the build
// refuses to go on then). The binary is cached under /var/cache/vipd-lab/,
// keyed by the commit, so each machine builds it once.
import { chmodSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "./cluster.ts";
import { sh } from "./sh.ts";

export interface Release {
  readonly version: string;
  readonly tag: string;
  /** The full hash of the tag's commit: the tag may be missing from a clone, the commit may not. */
  readonly commit: string;
}

/** N−1: vipd 0.2.0, the first release whose layout 0.3's agents must run beside. */
export const PREVIOUS_RELEASE: Release = Object.freeze({
  version: "0.2.0",
  tag: "v0.2.0",
  commit: "bd03bd74f626a8eb26c9ba94ec2338cc7d2b409f",
});

export const RELEASE_CACHE = "/var/cache/vipd-lab";

const arch = () => (process.arch === "arm64" ? "arm64" : "x64");

/** The path of the release's binary for this machine, built and cached on first use. */
export async function releaseBinary(release: Release = PREVIOUS_RELEASE): Promise<string> {
  const dir = join(RELEASE_CACHE, `vipd-${release.version}-${release.commit}-linux-${arch()}`);
  const binary = join(dir, "vipd");
  if (existsSync(binary)) return binary;
  const have = await sh(["git", "-C", REPO_ROOT, "cat-file", "-t", release.commit], { allowFail: true });
  if (have.trim() !== "commit") {
    throw new Error(`vipd ${release.version}'s commit ${release.commit} is not in this clone (${REPO_ROOT}): a shallow clone? ` +
      `"git fetch --unshallow" or "git fetch origin ${release.tag}" brings it`);
  }
  mkdirSync(RELEASE_CACHE, { recursive: true });
  const src = mkdtempSync(join(tmpdir(), `vipd-${release.version}-src-`));
  try {
    await sh(["sh", "-c", 'git -C "$1" archive "$2" | tar -x -C "$3"', "archive", REPO_ROOT, release.commit, src]);
    const lock = (p: string) => Bun.file(join(p, "package-lock.json")).json().then((j: { packages?: Record<string, unknown> }) => JSON.stringify({ ...j.packages, "": null }));
    if ((await lock(src)) !== (await lock(REPO_ROOT))) {
      throw new Error(`vipd ${release.version} (${release.commit}) locks other dependencies than this tree: building it with this node_modules would not build that release`);
    }
    symlinkSync(join(REPO_ROOT, "node_modules"), join(src, "node_modules"));
    await sh([process.execPath, join(src, "build.ts"), arch()]);
    const built = join(src, "dist", "vipd");
    const version = (await sh([built, "version"])).trim();
    if (!version.startsWith(`vipd ${release.version} `)) throw new Error(`the binary built from ${release.commit} says "${version}", not vipd ${release.version}`);
    // Into the cache in one step: a concurrent build or an interrupted one never leaves half a binary there.
    const staging = mkdtempSync(join(RELEASE_CACHE, ".staging-"));
    chmodSync(staging, 0o755);
    renameSync(built, join(staging, "vipd"));
    try {
      renameSync(staging, dir);
    } catch (e) {
      rmSync(staging, { recursive: true, force: true });
      if (!existsSync(binary)) throw e;
    }
    return binary;
  } finally {
    rmSync(src, { recursive: true, force: true });
  }
}
