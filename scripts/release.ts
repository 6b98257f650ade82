// The release: dist/release/vipd-<version>-linux-{x64,arm64}.tar.gz and
// SHA256SUMS, what deploy/cloud-init.yaml downloads.
//
//   npm run release [-- --out DIR]
//
// Each tarball holds one folder, vipd-<version>-linux-<arch>/, with the
// binary, the systemd unit, vipd-install (the script deploy/cloud-init.yaml
// writes, taken from there so the two never differ; README's install block
// runs it from the unpacked folder), an example configuration, LICENSE,
// README.md and THIRD_PARTY_LICENSES. The same commit gives the same bytes wherever it is
// checked out: build.ts's binaries are path-independent, and the tarballs
// are made with sorted entries, one mtime (the commit's date, or
// SOURCE_DATE_EPOCH), owner and group 0 with no names, fixed modes, GNU
// format (no pax headers carrying atime/ctime) and `gzip -n` (no name, no
// time in the gzip header).
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { parse } from "yaml";
import { type Arch, buildBinary, TARGETS } from "../build.ts";
import { bundledPackages, thirdPartyNotices } from "./third-party.ts";

const ROOT = join(import.meta.dir, "..");

/** Runs argv and returns its stdout; throws with its stderr on a non-zero exit. */
function run(argv: readonly string[], opts: { cwd?: string } = {}): string {
  const r = Bun.spawnSync([...argv], { cwd: opts.cwd ?? ROOT, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")} exited ${r.exitCode}: ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
}

/** Seconds since the epoch for every file's mtime: SOURCE_DATE_EPOCH, else the commit's date. */
function sourceDateEpoch(): number {
  const env = process.env.SOURCE_DATE_EPOCH;
  if (env !== undefined) {
    if (!/^\d+$/.test(env)) throw new Error(`SOURCE_DATE_EPOCH: expected whole seconds since 1970, got ${JSON.stringify(env)}`);
    return Number(env);
  }
  return Number(run(["git", "log", "-1", "--format=%ct", "HEAD"]).trim());
}

async function sha256(file: string): Promise<string> {
  const hasher = new Bun.CryptoHasher("sha256");
  for await (const chunk of Bun.file(file).stream()) hasher.update(chunk);
  return hasher.digest("hex");
}

/** deploy/cloud-init.yaml's vipd-install, as cloud-init writes it to /usr/local/sbin/vipd-install. */
async function vipdInstall(): Promise<string> {
  const file = join(ROOT, "deploy", "cloud-init.yaml");
  const doc = parse(await Bun.file(file).text()) as { write_files?: { path: string; content: string }[] };
  const script = doc.write_files?.find((f) => f.path === "/usr/local/sbin/vipd-install")?.content;
  if (!script?.startsWith("#!/bin/sh\n")) throw new Error(`${file}: write_files holds no /usr/local/sbin/vipd-install starting with #!/bin/sh`);
  return script;
}

/** Fills stage/<folder>/ with what one tarball holds; returns the files bun bundled. */
async function stage(arch: Arch, dir: string, example: string, installer: string): Promise<readonly string[]> {
  mkdirSync(dir, { recursive: true });
  const built = await buildBinary(arch, join(dir, "vipd"));
  copyFileSync(join(ROOT, "deploy", "vipd.service"), join(dir, "vipd.service"));
  copyFileSync(join(ROOT, "LICENSE"), join(dir, "LICENSE"));
  copyFileSync(join(ROOT, "README.md"), join(dir, "README.md"));
  writeFileSync(join(dir, "vipd.yaml.example"), example);
  writeFileSync(join(dir, "vipd-install"), installer);
  writeFileSync(join(dir, "THIRD_PARTY_LICENSES"), thirdPartyNotices(bundledPackages(built.inputs), Bun.version));
  // Modes in the tarball must not depend on the builder's umask.
  chmodSync(dir, 0o755);
  for (const f of ["vipd.service", "LICENSE", "README.md", "vipd.yaml.example", "THIRD_PARTY_LICENSES"]) chmodSync(join(dir, f), 0o644);
  for (const f of ["vipd", "vipd-install"]) chmodSync(join(dir, f), 0o755);
  return built.inputs;
}

/** tar + gzip with nothing of the build machine in the bytes (see the top of this file). */
function pack(stageDir: string, folder: string, tarball: string, epoch: number): void {
  const tar = ["tar", "--sort=name", `--mtime=@${epoch}`, "--owner=0", "--group=0", "--numeric-owner", "--format=gnu",
    "--no-acls", "--no-xattrs", "-C", stageDir, "-cf", "-", folder];
  // Through sh for the pipe; every argument is quoted.
  const q = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
  run(["sh", "-c", `set -e; ${tar.map(q).join(" ")} | gzip -n -6 > ${q(tarball)}`]);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { out: { type: "string", default: join(ROOT, "dist", "release") } } });
  const out = values.out!;
  const version = (await Bun.file(join(ROOT, "package.json")).json()).version as string;
  const epoch = sourceDateEpoch();
  const dirty = run(["git", "status", "--porcelain", "--untracked-files=no"]).trim() !== "";
  if (dirty) console.warn("release: the working tree has uncommitted changes; the binaries say so (commit ...-dirty) and no clean clone will rebuild these bytes");

  const example = run([process.execPath, join(ROOT, "src", "main.ts"), "config", "example"]);
  const installer = await vipdInstall();
  const work = mkdtempSync(join(tmpdir(), "vipd-release-"));
  try {
    mkdirSync(out, { recursive: true });
    const sums: string[] = [];
    for (const arch of Object.keys(TARGETS) as Arch[]) {
      const t0 = performance.now();
      const folder = `vipd-${version}-linux-${arch}`;
      const name = `${folder}.tar.gz`;
      await stage(arch, join(work, folder), example, installer);
      rmSync(join(out, name), { force: true });
      pack(work, folder, join(out, name), epoch);
      sums.push(`${await sha256(join(out, name))}  ${name}`);
      console.log(`${join(out, name)} in ${Math.round(performance.now() - t0)} ms`);
    }
    // sha256sum's own format (`sha256sum -c SHA256SUMS` checks it), sorted by file name,
    // which follows the 64 hex digits and two spaces.
    writeFileSync(join(out, "SHA256SUMS"), `${sums.sort((a, b) => a.slice(66).localeCompare(b.slice(66))).join("\n")}\n`);
    console.log(`${join(out, "SHA256SUMS")} (mtime ${new Date(epoch * 1000).toISOString()})`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
