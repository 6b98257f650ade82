// `npm run release`: reproducible tarballs with exactly the files an operator
// needs, and binaries that run and say what they are. Reproducible means
// wherever the checkout is: this checkout is copied as a clone would hold it
// (tracked and untracked-but-not-ignored files, .git; node_modules
// hard-linked), that copy is copied again to another directory, both make a
// release, and SHA256SUMS must come out byte for byte the same. (Two copies
// of one snapshot, so that an edit to the working tree meanwhile cannot
// make the two differ.)
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "../lab/cluster.ts";
import { sh } from "../lab/sh.ts";
import { readCloudConfig, writeFileAt } from "./cloud-config.ts";
import { runRelease, VERSION } from "./release-artifacts.ts";

const ARCHES = ["x64", "arm64"] as const;
const FILES = ["LICENSE", "README.md", "THIRD_PARTY_LICENSES", "vipd", "vipd-install", "vipd.service", "vipd.yaml.example"];
let scratch: string;
let checkout: string;
let release: string;
let elsewhere: string;
let unpacked: string;

/** Copies what a clone of `from` would hold into `to`, node_modules hard-linked. */
async function copyCheckout(from: string, to: string): Promise<void> {
  mkdirSync(to, { recursive: true });
  const list = join(scratch, "files");
  const files = (await sh(["git", "-C", from, "ls-files", "-co", "--exclude-standard", "-z"])).split("\0").filter((f) => f && !f.startsWith("node_modules/"));
  await Bun.write(list, files.join("\0"));
  await sh(["sh", "-c", `cd '${from}' && xargs -0 cp --parents -t '${to}' < '${list}'`]);
  await sh(["cp", "-a", join(from, ".git"), to]);
  await sh(["cp", "-al", join(from, "node_modules"), to]);
}

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), "vipd-release-test-"));
  checkout = join(scratch, "checkout");
  elsewhere = join(scratch, "somewhere", "else", "vipd");
  await copyCheckout(REPO_ROOT, checkout);
  await copyCheckout(checkout, elsewhere);
  release = join(checkout, "dist", "release");
  await runRelease(checkout, release);
  await runRelease(elsewhere, join(elsewhere, "dist", "release"));
  unpacked = join(scratch, "unpacked");
  mkdirSync(unpacked);
  for (const arch of ARCHES) await sh(["tar", "-xzf", join(release, `vipd-${VERSION}-linux-${arch}.tar.gz`), "-C", unpacked]);
}, 180_000);

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

const folder = (arch: string) => join(unpacked, `vipd-${VERSION}-linux-${arch}`);

test("the same checkout in two directories makes the same release: SHA256SUMS byte for byte", async () => {
  const mine = readFileSync(join(release, "SHA256SUMS"), "utf8");
  expect(readFileSync(join(elsewhere, "dist", "release", "SHA256SUMS"), "utf8")).toBe(mine);
  expect(mine.trim().split("\n").map((l) => l.split("  ")[1])).toEqual(ARCHES.map((a) => `vipd-${VERSION}-linux-${a}.tar.gz`).sort());
  // And the file is what sha256sum checks.
  expect(await sh(["sh", "-c", `cd '${release}' && sha256sum --check --strict SHA256SUMS`])).toContain(": OK");
});

test("each tarball holds one folder with the binary, vipd-install, the unit, an example, the licences and the README, owned by 0:0 at the commit's time", async () => {
  const epoch = Number((await sh(["git", "-C", checkout, "log", "-1", "--format=%ct", "HEAD"])).trim());
  for (const arch of ARCHES) {
    const name = `vipd-${VERSION}-linux-${arch}`;
    const listing = (await sh(["env", "TZ=UTC", "tar", "--list", "--verbose", "--numeric-owner", "--full-time", "-zf", join(release, `${name}.tar.gz`)])).trim().split("\n");
    // -rw-r--r-- 0/0 1073 2026-11-26 16:38:07 vipd-0.2.0-linux-x64/LICENSE
    const entries = listing.map((l) => {
      const [perm, owner, , date, time, path] = l.split(/\s+/);
      return { perm, owner, when: Date.parse(`${date}T${time}Z`) / 1000, path };
    });
    expect(entries.map((e) => e.path)).toEqual([`${name}/`, ...FILES.map((f) => `${name}/${f}`)]);
    for (const e of entries) {
      expect([e.path, e.owner, e.when]).toEqual([e.path, "0/0", epoch]);
      expect([e.path, e.perm]).toEqual([e.path, e.path!.endsWith("/") ? "drwxr-xr-x" : /\/vipd(-install)?$/.test(e.path!) ? "-rwxr-xr-x" : "-rw-r--r--"]);
    }
  }
});

test("the binaries say what they are: x64 runs here, arm64 is an aarch64 executable built for linux-arm64", async () => {
  const v = await sh([join(folder("x64"), "vipd"), "version"]);
  expect(v).toMatch(new RegExp(`^vipd ${VERSION.replaceAll(".", "\\.")} \\(commit [0-9a-f]{12}(-dirty)?, Bun \\d+\\.\\d+\\.\\d+, linux-x64\\)\\n$`));
  for (const [arch, machine] of [["x64", 62], ["arm64", 183]] as const) {
    const bin = readFileSync(join(folder(arch), "vipd"));
    // ELF header: magic (4), class (1) = 2 (64-bit), ..., e_machine (2, little-endian) at 18: 62 x86-64, 183 AArch64.
    expect([arch, bin.subarray(0, 4).toString("latin1"), bin[4], bin.readUInt16LE(18)]).toEqual([arch, "\x7fELF", 2, machine]);
    expect(bin.includes(`"linux-${arch}"`)).toBe(true);
    expect(bin.includes(`"linux-${arch === "x64" ? "arm64" : "x64"}"`)).toBe(false);
    // Nothing of the build machine's checkout path.
    expect(bin.includes(checkout)).toBe(false);
  }
});

test("the unit, vipd-install and licence are the repository's, the example validates, the notices cover what the binary embeds", async () => {
  const installer = writeFileAt(await readCloudConfig(join(checkout, "deploy", "cloud-init.yaml")), "/usr/local/sbin/vipd-install").content;
  for (const arch of ARCHES) {
    expect(readFileSync(join(folder(arch), "vipd.service"), "utf8")).toBe(readFileSync(join(checkout, "deploy", "vipd.service"), "utf8"));
    expect(readFileSync(join(folder(arch), "vipd-install"), "utf8")).toBe(installer);
    expect(readFileSync(join(folder(arch), "LICENSE"), "utf8")).toBe(readFileSync(join(checkout, "LICENSE"), "utf8"));
    expect(readFileSync(join(folder(arch), "README.md"), "utf8")).toBe(readFileSync(join(checkout, "README.md"), "utf8"));
  }
  expect(await sh([join(folder("x64"), "vipd"), "validate", join(folder("x64"), "vipd.yaml.example")])).toContain("192.168.0.15");
  const notices = readFileSync(join(folder("x64"), "THIRD_PARTY_LICENSES"), "utf8");
  for (const pkg of ["etcd3", "@grpc/grpc-js", "@grpc/proto-loader", "protobufjs", "@protobufjs/base64", "long", "cockatiel", "consola", "valibot", "yaml", "prom-client"]) {
    expect(notices).toMatch(new RegExp(`^  ${pkg.replace("/", "\\/")} \\d+\\.\\d+\\.\\d+ \\(`, "m"));
  }
  expect(notices).toContain(`Bun ${Bun.version}: https://bun.sh`);
  expect(notices).toContain("Apache License");
  // Dev tools and a dependency's CLI never reach the binary.
  for (const absent of ["typescript", "yargs", "@types/node"]) expect(notices).not.toMatch(new RegExp(`^  ${absent} `, "m"));
});
