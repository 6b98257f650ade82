// Runs a command the way a systemd unit's [Service] section would, as far as
// the lab can without systemd as PID 1 (the test machines do not boot it;
// container.ts boots one in a container, for test/deploy/systemd.test.ts):
//
// - User=/Group=, AmbientCapabilities=, CapabilityBoundingSet=,
//   NoNewPrivileges=: setpriv, with supplementary groups from the user;
// - SystemCallFilter=, SystemCallErrorNumber=, SystemCallArchitectures=native,
//   RestrictAddressFamilies=, MemoryDenyWriteExecute=: a seccomp filter built
//   from the unit's own lines, its @groups expanded by this machine's
//   systemd-analyze (seccomp-exec.ts loads it);
// - ProtectSystem=strict: every mount read-only except /proc and /dev (so
//   /sys and its cgroups too, as ProtectKernelTunables= and
//   ProtectControlGroups= have them); ProtectKernelTunables=: /proc/sys
//   read-only; ProtectHome=: /home, /root and /run/user empty and
//   inaccessible;
// - LoadCredential=: each file copied into a fresh directory owned by the
//   user (0500, files 0400), exported as CREDENTIALS_DIRECTORY;
// - ExecStart=: split with systemd's quoting, ${VAR} expanded from the
//   service's environment (a clean one, as systemd gives: PATH, HOME, USER,
//   LOGNAME, SHELL, CREDENTIALS_DIRECTORY), working directory /.
//
// Not reproduced: PrivateTmp= (the lab's scratch files live in /tmp),
// PrivateDevices=, PrivateIPC=, ProtectProc=, ProtectClock=,
// ProtectHostname=, RestrictNamespaces=, LockPersonality= and the like:
// vipd uses none of what they take away. (ProtectProc=invisible, checked by
// hand with a hidepid=invisible /proc: a process of the same user with the
// same capabilities stays visible, so vipd still reads /proc/<pid>/stat of
// another vipd.)
//
// `root` stands for an installation into a scratch tree: absolute paths in
// LoadCredential= sources and ExecStart= are read under it, as if the tree
// were /.
import { chmodSync, chownSync, copyFileSync, linkSync, mkdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "./cluster.ts";
import { sh } from "./sh.ts";

/** One unit file: every assignment per section and key, in order. */
export class Unit {
  private constructor(
    readonly path: string,
    private readonly sections: ReadonlyMap<string, ReadonlyMap<string, readonly string[]>>,
  ) {}

  /**
   * Parses unit file syntax: [Section] headers, Key=Value lines, # and ;
   * comments, backslash continuations; an empty assignment resets a list.
   */
  static parse(path: string, text: string): Unit {
    const sections = new Map<string, Map<string, string[]>>();
    let current: Map<string, string[]> | null = null;
    const lines = text.replace(/\\\n/g, " ").split("\n");
    for (const [i, raw] of lines.entries()) {
      const line = raw.trim();
      if (!line || line.startsWith("#") || line.startsWith(";")) continue;
      const header = /^\[(.+)\]$/.exec(line);
      if (header) {
        current = sections.get(header[1]!) ?? new Map();
        sections.set(header[1]!, current);
        continue;
      }
      const eq = line.indexOf("=");
      if (!current || eq < 0) throw new Error(`${path}:${i + 1}: not a unit file line: ${line}`);
      const key = line.slice(0, eq).trim();
      const value = line.slice(eq + 1).trim();
      if (value === "") current.set(key, []);
      else current.set(key, [...(current.get(key) ?? []), value]);
    }
    return new Unit(path, sections);
  }

  static read(path: string): Unit {
    return Unit.parse(path, readFileSync(path, "utf8"));
  }

  /** Every value assigned to key in [section], in order (an empty assignment cleared the earlier ones). */
  all(section: string, key: string): readonly string[] {
    return this.sections.get(section)?.get(key) ?? [];
  }

  /** The value in force for a single-valued key: the last assignment. */
  one(section: string, key: string): string | undefined {
    return this.all(section, key).at(-1);
  }

  /** Space-separated list settings (AmbientCapabilities=, SystemCallFilter= lines), all lines joined. */
  words(section: string, key: string): string[] {
    return this.all(section, key).flatMap((v) => v.split(/\s+/)).filter(Boolean);
  }
}

/**
 * Splits an ExecStart= command line as systemd does for the cases vipd's
 * unit uses: words separated by blanks, "double" and 'single' quotes, `\`
 * escapes, and ${NAME} replaced inside a word. The prefixes (-, @, +, !, :)
 * and bare $NAME (which systemd splits into several words) are refused
 * rather than half-supported.
 */
export function splitCommandLine(line: string, env: Readonly<Record<string, string>>): string[] {
  if (/^[-@+!:]/.test(line)) throw new Error(`ExecStart prefix ${line[0]} is not supported here: ${line}`);
  const words: string[] = [];
  let word: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === " " || c === "\t") {
      if (word !== null) words.push(word);
      word = null;
      continue;
    }
    word ??= "";
    if (c === '"' || c === "'") {
      const end = line.indexOf(c, i + 1);
      if (end < 0) throw new Error(`unbalanced ${c} in ${line}`);
      const quoted = line.slice(i + 1, end);
      word += c === '"' ? expand(quoted, env) : quoted;
      i = end;
    } else if (c === "\\") {
      word += line[++i] ?? "";
    } else if (c === "$") {
      const m = /^\$\{([A-Za-z_][A-Za-z0-9_]*)\}/.exec(line.slice(i));
      if (!m) throw new Error(`only \${NAME} is supported in ExecStart here: ${line}`);
      word += env[m[1]!] ?? "";
      i += m[0].length - 1;
    } else {
      word += c;
    }
  }
  if (word !== null) words.push(word);
  return words;
}

function expand(s: string, env: Readonly<Record<string, string>>): string {
  return s.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => env[name] ?? "");
}

/** Address families by name (linux/socket.h). */
const FAMILIES: Record<string, number> = { AF_UNIX: 1, AF_INET: 2, AF_INET6: 10, AF_NETLINK: 16, AF_PACKET: 17 };
/** Errno numbers SystemCallErrorNumber= may name here (asm-generic/errno-base.h). */
const ERRNOS: Record<string, number> = { EPERM: 1, EACCES: 13, ENOSYS: 38 };
/** What systemd lets through whatever the allow list says (systemd.exec(5), SystemCallFilter=). */
const IMPLICIT = ["execve", "exit", "exit_group", "getrlimit", "rt_sigreturn", "sigreturn"];

/** systemd-analyze's @groups on this machine: group → its members (calls and nested @groups). */
async function syscallGroups(): Promise<Map<string, string[]>> {
  const groups = new Map<string, string[]>();
  let current: string[] | null = null;
  for (const line of (await sh(["systemd-analyze", "syscall-filter", "--no-pager"])).split("\n")) {
    if (/^@\S+$/.test(line)) groups.set(line, (current = []));
    else if (/^\s+[@\w]/.test(line) && current) current.push(line.trim());
    else if (!line.startsWith(" ")) current = null;
  }
  return groups;
}

function expandCalls(names: readonly string[], groups: ReadonlyMap<string, string[]>, seen = new Set<string>()): Set<string> {
  const out = new Set<string>();
  for (const name of names) {
    if (!name.startsWith("@")) {
      out.add(name);
      continue;
    }
    if (seen.has(name)) continue;
    seen.add(name);
    const members = groups.get(name);
    if (!members) throw new Error(`systemd-analyze knows no system call group ${name}`);
    for (const c of expandCalls(members, groups, seen)) out.add(c);
  }
  return out;
}

export interface SeccompPolicy {
  allow: string[];
  errno: number;
  families?: number[];
  denyWriteExecute?: boolean;
}

/**
 * The seccomp policy of the unit's SystemCallFilter= lines: the first line
 * without ~ starts an allow list, ~ lines take calls out of it (systemd's
 * order-independent reading for an allow list), plus the implicit calls.
 */
export async function seccompPolicy(unit: Unit): Promise<SeccompPolicy> {
  const lines = unit.all("Service", "SystemCallFilter");
  if (!lines.length || lines[0]!.startsWith("~")) throw new Error(`${unit.path}: the lab only reproduces a SystemCallFilter= allow list`);
  const groups = await syscallGroups();
  const allow = new Set<string>();
  const deny = new Set<string>();
  for (const line of lines) {
    const into = line.startsWith("~") ? deny : allow;
    for (const c of expandCalls(line.replace(/^~/, "").split(/\s+/).filter(Boolean), groups)) into.add(c);
  }
  const errnoName = unit.one("Service", "SystemCallErrorNumber");
  const errno = errnoName === undefined ? 1 : ERRNOS[errnoName];
  if (errno === undefined) throw new Error(`${unit.path}: SystemCallErrorNumber=${errnoName} is not known here`);
  const families = unit.words("Service", "RestrictAddressFamilies").map((f) => {
    const n = FAMILIES[f];
    if (n === undefined) throw new Error(`${unit.path}: RestrictAddressFamilies=${f} is not known here`);
    return n;
  });
  return {
    allow: [...new Set([...allow].filter((c) => !deny.has(c)).concat(IMPLICIT))].sort(),
    errno,
    ...(families.length ? { families } : {}),
    ...(unit.one("Service", "MemoryDenyWriteExecute") === "yes" ? { denyWriteExecute: true } : {}),
  };
}

/** The user's entry in /etc/passwd. */
export function passwdEntry(user: string): { uid: number; gid: number; home: string; shell: string } | null {
  for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
    const f = line.split(":");
    if (f[0] === user) return { uid: Number(f[2]), gid: Number(f[3]), home: f[5]!, shell: f[6]! };
  }
  return null;
}

const q = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
const capList = (caps: readonly string[]) => caps.map((c) => `+${c.replace(/^CAP_/i, "").toLowerCase()}`).join(",");

export interface SandboxOptions {
  /** Scratch directory (not under a path the sandbox hides) for the policy, credentials and log. */
  dir: string;
  /** Read LoadCredential= sources and ExecStart='s absolute paths under this tree. */
  root?: string;
  /** Run this instead of ExecStart= (already split; no expansion). */
  argv?: readonly string[];
  /** Copy the LoadCredential= files (default true; false for a command that does not use them). */
  loadCredentials?: boolean;
}

export interface Sandboxed {
  /** The argv to spawn, in the node's network namespace (SmallLab.spawn). */
  readonly argv: string[];
  /** What the service writes to stdout and stderr. */
  readonly logFile: string;
  /** ExecStart= after expansion, as the service runs it. */
  readonly command: readonly string[];
  readonly credentialsDir: string | null;
  readonly policy: SeccompPolicy;
}

/** Builds the sandboxed command line for the unit's service; nothing runs yet. */
export async function sandbox(unit: Unit, opts: SandboxOptions): Promise<Sandboxed> {
  const under = (p: string) => (opts.root && p.startsWith("/") ? join(opts.root, p) : p);
  const user = unit.one("Service", "User");
  if (!user) throw new Error(`${unit.path}: no User=`);
  const pw = passwdEntry(user);
  if (!pw) throw new Error(`user ${user} does not exist on this machine`);
  const group = unit.one("Service", "Group") ?? user;

  // LoadCredential=ID:PATH → CREDENTIALS_DIRECTORY/ID, readable by the user alone.
  const creds = opts.loadCredentials === false ? [] : unit.all("Service", "LoadCredential");
  let credentialsDir: string | null = null;
  if (creds.length) {
    credentialsDir = join(opts.dir, "credentials");
    mkdirSync(credentialsDir, { recursive: true });
    for (const c of creds) {
      const colon = c.indexOf(":");
      if (colon < 0) throw new Error(`${unit.path}: LoadCredential=${c}: only ID:PATH is reproduced here`);
      const to = join(credentialsDir, c.slice(0, colon));
      copyFileSync(under(c.slice(colon + 1)), to);
      chownSync(to, pw.uid, pw.gid);
      chmodSync(to, 0o400);
    }
    chownSync(credentialsDir, pw.uid, pw.gid);
    chmodSync(credentialsDir, 0o500);
  }

  const env: Record<string, string> = {
    PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    HOME: pw.home,
    USER: user,
    LOGNAME: user,
    SHELL: pw.shell,
    ...(credentialsDir ? { CREDENTIALS_DIRECTORY: credentialsDir } : {}),
  };
  let command: string[];
  if (opts.argv) command = [...opts.argv];
  else {
    const exec = unit.one("Service", "ExecStart");
    if (!exec) throw new Error(`${unit.path}: no ExecStart=`);
    const credential = (w: string) => credentialsDir !== null && w.startsWith(`${credentialsDir}/`);
    command = splitCommandLine(exec, env).map((w) => (credential(w) ? w : under(w)));
  }

  const policy = await seccompPolicy(unit);
  const policyFile = join(opts.dir, "seccomp.json");
  writeFileSync(policyFile, JSON.stringify(policy));
  chmodSync(policyFile, 0o644);
  // The log gets a directory of its own that stays writable: a file open for
  // writing would keep its mount from turning read-only.
  const logDir = join(opts.dir, "log");
  mkdirSync(logDir, { recursive: true });
  const logFile = join(logDir, "service.log");
  writeFileSync(logFile, "");

  // The unit's user may not be able to read the checkout (a clone under a
  // 0700 directory, as mktemp -d makes): the loader and the runtime it runs
  // on go into the scratch directory, which the user can read.
  const loader = join(opts.dir, "seccomp-exec.ts");
  copyFileSync(join(REPO_ROOT, "test", "lab", "seccomp-exec.ts"), loader);
  chmodSync(loader, 0o644);
  const runtime = join(opts.dir, "bun");
  linkOrCopy(realpathSync(join(REPO_ROOT, "node_modules", ".bin", "bun")), runtime);
  chmodSync(runtime, 0o755);

  const ambient = unit.words("Service", "AmbientCapabilities");
  const bounding = unit.words("Service", "CapabilityBoundingSet");
  const setpriv = ["setpriv", `--reuid=${user}`, `--regid=${group}`, "--init-groups",
    ...(ambient.length ? [`--inh-caps=${capList(ambient)}`, `--ambient-caps=${capList(ambient)}`] : []),
    `--bounding-set=-all${bounding.length ? `,${capList(bounding)}` : ""}`,
    ...(unit.one("Service", "NoNewPrivileges") === "yes" ? ["--no-new-privs"] : [])];
  const protectSystem = unit.one("Service", "ProtectSystem") === "strict";
  const protectTunables = unit.one("Service", "ProtectKernelTunables") === "yes";
  const protectHome = unit.one("Service", "ProtectHome") === "yes";
  const script = [
    "set -e",
    // A mount namespace of its own (unshare below): none of this reaches the host.
    `mount --bind ${q(logDir)} ${q(logDir)}`,
    ...(protectSystem ? [
      `for m in $(findmnt -rn -o TARGET,FSTYPE | awk -v keep=${q(logDir)} '$2 != "nsfs" && $1 != keep && $1 !~ "^/(proc|dev)(/|$)" {print $1}'); do mount -o remount,bind,ro "$m"; done`,
    ] : []),
    ...(protectTunables ? ["mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys"] : []),
    ...(protectHome ? ["for d in /home /root /run/user; do if [ -d \"$d\" ]; then mount -t tmpfs -o ro,mode=000 tmpfs \"$d\"; fi; done"] : []),
    `exec >>${q(logFile)} 2>&1`,
    "cd /",
    `exec env -i ${Object.entries(env).map(([k, v]) => q(`${k}=${v}`)).join(" ")} ${setpriv.map(q).join(" ")} ` +
      `${q(runtime)} ${q(loader)} ${q(policyFile)} ` +
      `${command.map(q).join(" ")}`,
  ].join("\n");
  return {
    argv: ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
    logFile,
    command,
    credentialsDir,
    policy,
  };
}

/** A hard link where the file system allows one (no copy of a 100 MB runtime), else a copy. */
function linkOrCopy(from: string, to: string): void {
  // Never copy onto an earlier link: that would truncate the original.
  rmSync(to, { force: true });
  try {
    linkSync(from, to);
  } catch {
    copyFileSync(from, to);
  }
}

/** The capability bits of names like CAP_NET_ADMIN (linux/capability.h), as /proc/<pid>/status shows them. */
export function capMask(names: readonly string[]): bigint {
  const bits: Record<string, number> = { CAP_NET_ADMIN: 12, CAP_NET_RAW: 13 };
  return names.reduce((m, n) => {
    const b = bits[n.toUpperCase()];
    if (b === undefined) throw new Error(`capability ${n} is not known here`);
    return m | (1n << BigInt(b));
  }, 0n);
}

/**
 * Makes sure a system user exists, as an install would (`useradd --system`).
 * remove() deletes it again only when this call created it.
 */
export async function ensureSystemUser(name: string): Promise<{ created: boolean; remove(): Promise<void> }> {
  if (passwdEntry(name)) return { created: false, remove: async () => {} };
  await sh(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name]);
  return { created: true, remove: async () => void (await sh(["userdel", name])) };
}
