// deploy/cloud-init.yaml's own steps, run the way cloud-init would run them
// but against a scratch root: its write_files written under the root with
// their modes and owners, its runcmd entries with absolute paths read under
// the root. Tests supply the environment (ROOT, SYSTEMCTL, RELEASE_URL).
import { chmodSync, chownSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parse } from "yaml";
import { REPO_ROOT } from "../lab/cluster.ts";

export const CLOUD_INIT = join(REPO_ROOT, "deploy", "cloud-init.yaml");

export interface WriteFile {
  path: string;
  content: string;
  permissions?: string;
  owner?: string;
}

export interface CloudConfig {
  writeFiles: WriteFile[];
  runcmd: string[][];
}

export async function readCloudConfig(file = CLOUD_INIT): Promise<CloudConfig> {
  const text = await Bun.file(file).text();
  if (!text.startsWith("#cloud-config\n")) throw new Error(`${file}: cloud-init only reads user data that starts with #cloud-config`);
  const doc = parse(text) as { write_files?: WriteFile[]; runcmd?: (string | string[])[] };
  // A string entry would go through sh -c; the example uses argv lists only.
  const runcmd = (doc.runcmd ?? []).map((c) => {
    if (!Array.isArray(c)) throw new Error(`${file}: runcmd entry ${JSON.stringify(c)} is not an argv list`);
    return c.map(String);
  });
  return { writeFiles: doc.write_files ?? [], runcmd };
}

/** The file cloud-init writes at `path`. */
export function writeFileAt(config: CloudConfig, path: string): WriteFile {
  const f = config.writeFiles.find((w) => w.path === path);
  if (!f) throw new Error(`cloud-init.yaml writes no ${path}`);
  return f;
}

/** Numeric uid:gid of "user:group" in this machine's databases (root:root → 0:0). */
function ids(owner: string): [number, number] {
  const [user, group = user] = owner.split(":") as [string, string?];
  const find = (db: string, name: string) => {
    const line = readFileSync(db, "utf8").split("\n").find((l) => l.split(":")[0] === name);
    if (!line) throw new Error(`no ${name} in ${db}`);
    return Number(line.split(":")[2]);
  };
  return [find("/etc/passwd", user), find("/etc/group", group)];
}

/** Writes each file under root as cloud-init's write_files would (default mode 0644, owner root:root). */
export function applyWriteFiles(root: string, files: readonly WriteFile[], edit: (f: WriteFile) => string = (f) => f.content): void {
  for (const f of files) {
    const to = join(root, f.path);
    mkdirSync(dirname(to), { recursive: true });
    writeFileSync(to, edit(f));
    chmodSync(to, Number.parseInt(f.permissions ?? "0644", 8));
    const [uid, gid] = ids(f.owner ?? "root:root");
    chownSync(to, uid, gid);
  }
}

/** A runcmd entry with its absolute paths read under root. */
export function underRoot(root: string, argv: readonly string[]): string[] {
  return argv.map((w) => (w.startsWith("/") ? join(root, w) : w));
}

/**
 * A stand-in for systemctl that records each call, one line per call, in
 * `${dir}/systemctl.log`, and succeeds; `is-active` answers "inactive"
 * (exit 3), as nothing runs in a scratch root.
 */
export function recordingSystemctl(dir: string): { path: string; calls: () => string[] } {
  const path = join(dir, "systemctl");
  const log = join(dir, "systemctl.log");
  writeFileSync(log, "");
  writeFileSync(path, `#!/bin/sh\necho "$*" >> '${log}'\n[ "$1" != is-active ] || exit 3\n`);
  chmodSync(path, 0o755);
  return { path, calls: () => readFileSync(log, "utf8").split("\n").filter(Boolean) };
}

/** The account files `useradd --root` needs in a scratch root: root alone. */
export function seedAccounts(root: string): void {
  mkdirSync(join(root, "etc"), { recursive: true });
  writeFileSync(join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
  writeFileSync(join(root, "etc/group"), "root:x:0:\n");
  for (const f of ["shadow", "gshadow"]) writeFileSync(join(root, "etc", f), "", { mode: 0o640 });
}
