// deploy/cloud-init.yaml: cloud-init's own schema check accepts it, and its
// write_files and runcmd, run against a scratch root with `npm run release`'s
// artifacts behind a file:// URL and a systemctl that only records, install
// what the README says, refuse a tampered tarball, and start nothing when
// anything is wrong. (install.test.ts runs the same steps on a lab node and
// starts the result; systemd.test.ts runs them under a real systemd.)
import { afterEach, beforeAll, expect, test } from "bun:test";
import { copyFileSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "../lab/cluster.ts";
import { sh } from "../lab/sh.ts";
import { verifyUnit } from "../lab/systemd-analyze.ts";
import { applyWriteFiles, CLOUD_INIT, type CloudConfig, readCloudConfig, recordingSystemctl, seedAccounts, underRoot, writeFileAt } from "./cloud-config.ts";
import { HOST_ARCH, releaseDir, VERSION } from "./release-artifacts.ts";

const INSTALLER = "/usr/local/sbin/vipd-install";
let config: CloudConfig;
let release: string;
const scratch: string[] = [];

beforeAll(async () => {
  config = await readCloudConfig();
  release = await releaseDir();
}, 120_000);

afterEach(() => {
  for (const d of scratch.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  scratch.push(d);
  return d;
}

/** A scratch root with the account files useradd --root needs, and cloud-init's files written into it. */
function scratchRoot(opts: { skip?: string[] } = {}): string {
  const root = tempDir("vipd-root-");
  seedAccounts(root);
  applyWriteFiles(root, config.writeFiles.filter((f) => !opts.skip?.includes(f.path)));
  return root;
}

/** Runs runcmd's install entry against root; the test gives the environment the operator would not. */
async function install(root: string, env: Record<string, string> = {}) {
  const systemctl = recordingSystemctl(tempDir("vipd-systemctl-"));
  const entry = config.runcmd.find((c) => c[0] === INSTALLER);
  if (!entry) throw new Error(`runcmd does not run ${INSTALLER}`);
  const p = Bun.spawn(underRoot(root, entry), {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ROOT: root, SYSTEMCTL: systemctl.path, RELEASE_URL: `file://${release}`, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err, systemctl: systemctl.calls() };
}

const mode = (path: string) => (statSync(path).mode & 0o7777).toString(8).padStart(4, "0");

test("cloud-init's schema check accepts the example", async () => {
  expect(await sh(["cloud-init", "schema", "--config-file", CLOUD_INIT])).toContain("Valid cloud-config");
});

test("the example installs the release it names, the way the README says", () => {
  const script = writeFileAt(config, INSTALLER).content;
  // The release the installer asks for by default is this one.
  expect(script).toContain(`: "\${RELEASE_VERSION:=${VERSION}}"`);
  expect(script.startsWith("#!/bin/sh\n")).toBe(true);
  expect(writeFileAt(config, INSTALLER).permissions).toBe("0755");
  // install first, then the operator's kubeadm step, then the wait.
  expect(config.runcmd.map((c) => c[0])).toEqual([INSTALLER, "/usr/local/bin/vipd"]);
  expect(config.runcmd[1]!.slice(1, 4)).toEqual(["wait", "--for", "standing"]);
  const yaml = writeFileAt(config, "/etc/vipd/vipd.yaml").content;
  expect(yaml).toContain("endpoints: [https://192.168.0.11:2379, https://192.168.0.12:2379, https://192.168.0.13:2379]");
  expect(yaml).toContain("url: https://127.0.0.1:6443/readyz");
});

test("write_files and runcmd against a scratch root: the binary, the unit, the user, the service enabled and started", async () => {
  const root = scratchRoot();
  const r = await install(root);
  expect(r.err).toContain(`installed vipd ${VERSION}`);
  expect(r.code).toBe(0);

  const unpacked = tempDir("vipd-unpacked-");
  await sh(["tar", "-xzf", join(release, `vipd-${VERSION}-linux-${HOST_ARCH}.tar.gz`), "-C", unpacked]);
  const rel = join(unpacked, `vipd-${VERSION}-linux-${HOST_ARCH}`);
  const files: [string, string, string?][] = [
    ["usr/local/sbin/vipd-install", "0755"],
    ["usr/local/bin/vipd", "0755", join(rel, "vipd")],
    ["etc/systemd/system/vipd.service", "0644", join(REPO_ROOT, "deploy", "vipd.service")],
    ["etc/vipd/vipd.yaml", "0644"],
    ["usr/local/share/doc/vipd/README.md", "0644", join(REPO_ROOT, "README.md")],
    ["usr/local/share/doc/vipd/LICENSE", "0644", join(REPO_ROOT, "LICENSE")],
    ["usr/local/share/doc/vipd/THIRD_PARTY_LICENSES", "0644", join(rel, "THIRD_PARTY_LICENSES")],
    ["usr/local/share/doc/vipd/vipd.yaml.example", "0644", join(rel, "vipd.yaml.example")],
  ];
  for (const [path, want, same] of files) {
    const at = join(root, path);
    expect([path, mode(at), statSync(at).uid, statSync(at).gid]).toEqual([path, want, 0, 0]);
    if (same) expect(readFileSync(at).equals(readFileSync(same))).toBe(true);
  }
  expect(mode(join(root, "etc/vipd"))).toBe("0755");

  // The system user, in the root's own account files, not this machine's.
  const vipd = readFileSync(join(root, "etc/passwd"), "utf8").split("\n").find((l) => l.startsWith("vipd:"))!.split(":");
  expect(Number(vipd[2])).toBeLessThan(1000);
  expect(vipd.slice(5)).toEqual(["/nonexistent", "/usr/sbin/nologin"]);
  expect(readFileSync(join(root, "etc/group"), "utf8")).toMatch(/^vipd:x:\d+:$/m);

  expect(r.systemctl).toEqual(["daemon-reload", "enable vipd.service", "start --no-block vipd.service"]);
  // The installed unit, with the installed binary, is one systemd accepts.
  expect(await verifyUnit(join(root, "etc/systemd/system/vipd.service"), root)).toEqual({ code: 0, output: "" });

  // Again: nothing changes, nobody is created twice, nothing is restarted.
  const again = await install(root);
  expect(again.code).toBe(0);
  expect(readFileSync(join(root, "etc/passwd"), "utf8").match(/^vipd:/gm)).toHaveLength(1);
  expect(again.systemctl).toEqual(["daemon-reload", "enable vipd.service", "start --no-block vipd.service"]);

  // Over an older binary with the service not running: started on the new one, no drain
  // (install.test.ts upgrades a running one: drain, restart, undrain).
  writeFileSync(join(root, "usr/local/bin/vipd"), "#!/bin/sh\n");
  const upgrade = await install(root);
  expect(upgrade.code).toBe(0);
  expect(upgrade.systemctl).toEqual(["daemon-reload", "enable vipd.service", "is-active --quiet vipd.service", "start --no-block vipd.service"]);
}, 60_000);

test("a tarball that does not match SHA256SUMS is not installed, and nothing starts", async () => {
  const tampered = tempDir("vipd-tampered-");
  cpSync(release, tampered, { recursive: true });
  const tarball = join(tampered, `vipd-${VERSION}-linux-${HOST_ARCH}.tar.gz`);
  const bytes = readFileSync(tarball);
  const middle = bytes.length >> 1;
  bytes.writeUInt8(bytes.readUInt8(middle) ^ 0xff, middle);
  writeFileSync(tarball, bytes);
  const root = scratchRoot();
  const r = await install(root, { RELEASE_URL: `file://${tampered}` });
  expect(r.code).not.toBe(0);
  expect(r.err).toContain(`vipd-${VERSION}-linux-${HOST_ARCH}.tar.gz does not match its checksum: not installing it`);
  expect(existsSync(join(root, "usr/local/bin/vipd"))).toBe(false);
  expect(existsSync(join(root, "etc/systemd/system/vipd.service"))).toBe(false);
  expect(r.systemctl).toEqual([]);
}, 60_000);

test("a pinned RELEASE_SHA256 that SHA256SUMS does not list stops the install", async () => {
  const root = scratchRoot();
  const r = await install(root, { RELEASE_SHA256: "0".repeat(64) });
  expect(r.code).not.toBe(0);
  expect(r.err).toContain("SHA256SUMS does not list the RELEASE_SHA256 you gave");
  expect(existsSync(join(root, "usr/local/bin/vipd"))).toBe(false);
  const sums = readFileSync(join(release, "SHA256SUMS"), "utf8");
  const mine = sums.split("\n").find((l) => l.endsWith(`vipd-${VERSION}-linux-${HOST_ARCH}.tar.gz`))!.split(" ")[0]!;
  const pinned = await install(scratchRoot(), { RELEASE_SHA256: mine });
  expect(pinned.code).toBe(0);
}, 60_000);

test("without a configuration, or with a broken one, the binary is installed but nothing starts", async () => {
  const none = scratchRoot({ skip: ["/etc/vipd/vipd.yaml"] });
  const r = await install(none);
  expect(r.code).not.toBe(0);
  expect(r.err).toContain(`no ${none}/etc/vipd/vipd.yaml: write one`);
  expect(r.systemctl).toEqual([]);

  const broken = scratchRoot();
  copyFileSync(join(broken, "etc/vipd/vipd.yaml"), join(broken, "etc/vipd/good.yaml"));
  writeFileSync(join(broken, "etc/vipd/vipd.yaml"), readFileSync(join(broken, "etc/vipd/good.yaml"), "utf8").replace("name: 192.168.0.15", "name: 192.168.0.300"));
  const b = await install(broken);
  expect(b.code).not.toBe(0);
  expect(b.err).toContain('name: expected an IPv4 or IPv6 address, received "192.168.0.300"');
  expect(b.err).toContain("is not valid as vipd.service runs it (above)");
  expect(b.systemctl).toEqual([]);

  // Valid alone, but the unit adds --apiserver-ca, which needs the gate's URL in the file.
  const gateless = scratchRoot();
  const withGate = readFileSync(join(gateless, "etc/vipd/vipd.yaml"), "utf8");
  expect(withGate).toContain("apiServer:\n  url: https://127.0.0.1:6443/readyz\n");
  writeFileSync(join(gateless, "etc/vipd/vipd.yaml"), withGate.replace("apiServer:\n  url: https://127.0.0.1:6443/readyz\n", ""));
  const g = await install(gateless);
  expect(g.code).not.toBe(0);
  expect(g.err).toContain("flag --apiserver-ca: the kube-apiserver gate is off without apiServer.url: set apiServer.url");
  expect(g.err).toContain("is not valid as vipd.service runs it (above)");
  expect(g.systemctl).toEqual([]);
}, 60_000);
