// The commands as data: each names its flags, its one-line summary and its
// function from arguments to an exit code. `vipd --help` and
// `vipd <command> --help` are printed from this table. Only main.ts touches
// process.argv, signals and process.exit; everything here gets them through
// CliIO, so the whole CLI runs in tests.
import { userInfo } from "node:os";
import { basename } from "node:path";
import type { Etcd3 } from "etcd3";
import { Agent, StartRefused } from "../agent.ts";
import {
  CONFIG_FLAG, checkReadableFile, configPath, etcdTls, KUBEADM_ETCD_CLIENT, kubeadmEtcdClient, NODE_CONFIG, nodePath, FLAGS, type FlagSpec, flagHelp, formatIssues, HELP_FLAG, LEAVES, type LoadInput, loadSettings, parseFlags,
  readConfigFile, type Settings, settingFlag, type SkippedDocument, summarize,
} from "../config/index.ts";
import { configExample } from "../config/example.ts";
import { formatHostPort, NODE_NAME } from "../config/fields.ts";
import { connectEtcd } from "../election/connection.ts";
import { describeEtcdError } from "../election/etcd-error.ts";
import { HealthServer } from "../health/server.ts";
import { askNetnsLockHolder } from "../kernel/netns-lock.ts";
import { describeError, reconfigurableLogger } from "../log.ts";
import { parseIp } from "../kernel/ip.ts";
import { kernelTooOld, readKernelRelease } from "../kernel/kernel-release.ts";
import { type Asker, askerName, drain, handover, undrain } from "./operate.ts";
import { parseReloadAnswer, RELOAD_REQUEST, Reloader, reloadExitCode, renderReloadAnswer, type Reread } from "./reload.ts";
import { readStatus, renderStatusJson, renderStatusTable } from "./status.ts";
import { BUILD, versionLine } from "../version.ts";
import { type LinkCheck, preflight } from "./preflight.ts";
import { waitFor, type WaitFor } from "./wait.ts";

export const VERSION = BUILD.version;

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export interface CliIO {
  readonly argv: readonly string[];
  readonly env: Record<string, string | undefined>;
  readonly hostname: string;
  readonly isTTY: boolean;
  /** stderr is journald's stream: log lines carry their priority. Absent: false. */
  readonly journal?: boolean;
  out(text: string): void;
  err(text: string): void;
  /** Resolves with the signal's name when the process is asked to stop. */
  readonly stopRequested: Promise<string>;
  /** Yields each time the process is asked to reload (SIGHUP); absent: never. */
  readonly reloadRequested?: AsyncIterable<string>;
  /** All of standard input, for `vipd validate -`; absent: there is none. */
  readonly readStdin?: () => Promise<string>;
  /** Looks up this network namespace's links, for `vipd validate`'s warnings; absent: links are not checked. */
  readonly links?: LinkCheck;
  /** The running kernel's release (uname -r); tests pass one to play another kernel. */
  readonly kernelRelease?: () => string;
}

interface Command {
  /** As typed after `vipd`: "run", "config example". */
  readonly name: string;
  /** The usage line, after "vipd ". */
  readonly synopsis: string;
  readonly summary: string;
  readonly flags: readonly FlagSpec[];
  /** Lines after the flags in `--help`. */
  readonly notes?: string;
  run(args: readonly string[], io: CliIO): number | Promise<number>;
}

const flag = (name: string, type: "string" | "boolean", help: string, value?: string): FlagSpec =>
  Object.freeze({ name, type, help, ...(value ? { value } : {}) });

const settingFlags = (prefix: string) => LEAVES.filter((l) => l.path.startsWith(prefix)).map(settingFlag);
const JSON_FLAG = flag("json", "boolean", "print JSON");
/** Commands that only talk to etcd: its flags, and --config to read them from a file. */
const ETCD_COMMAND_FLAGS = [CONFIG_FLAG, ...settingFlags("etcd."), HELP_FLAG];

/** Where the commands that only talk to etcd find it when no flag says (README, "vipd status"). */
const ETCD_SOURCES = [
  "Each etcd setting comes from the flag, else VIPD_ETCD_*, else etcdctl's ETCDCTL_ENDPOINTS, ETCDCTL_CACERT, ETCDCTL_CERT and",
  `ETCDCTL_KEY, else the file (--config, else this node's ${NODE_CONFIG}); when none names an etcd TLS file, kubeadm's`,
  `etcd client files (${KUBEADM_ETCD_CLIENT.caFile}, ${basename(KUBEADM_ETCD_CLIENT.certFile)}, ${basename(KUBEADM_ETCD_CLIENT.keyFile)}) if this user can read them.`,
].join("\n");

const COMMANDS: readonly Command[] = [
  {
    name: "run",
    synopsis: "run --config FILE [flags]",
    summary: "hold and announce the VIPs this node wins",
    flags: FLAGS,
    notes: "SIGHUP (or \"vipd reload\") re-reads the configuration: VIPs are added and removed live, the log settings change; other settings need a restart. SIGTERM stops.",
    run: (args, io) => run(args, io),
  },
  {
    name: "validate",
    synopsis: "validate FILE|- [flags]",
    summary: "check a config file: exit 0 and a summary, or 2 and every problem",
    flags: FLAGS.filter((f) => f !== CONFIG_FLAG),
    notes: [
      'FILE "-" reads the configuration from standard input. The flags and VIPD_ variables are checked with it, as "vipd run" would take them.',
      "Warnings, on stderr with exit 0: a TLS file that does not exist yet or that this user may not read (kubeadm writes its",
      "certificates later; vipd's own user may read what yours may not), and an unknown VIPD_ variable (this shell's",
      'environment is not the agent\'s). "vipd run" refuses both.',
      "Then, about this machine: a VIP's link that is not in this network namespace, a hook program that cannot run.",
    ].join("\n"),
    run: (args, io) => validate(args, io),
  },
  {
    name: "status",
    synopsis: "status [--json] [--config FILE] [etcd flags]",
    summary: "who holds each VIP and who waits, read from etcd (no agent needed here)",
    flags: [...ETCD_COMMAND_FLAGS, JSON_FLAG],
    notes: `With --config, only that file's VIPs are listed; without, every VIP under the prefix.\n${ETCD_SOURCES}`,
    run: (args, io) => status(args, io),
  },
  {
    name: "drain",
    synopsis: "drain NODE [--reason TEXT] [--wait [--timeout SECONDS]] [--force] [etcd flags]",
    summary: "stop NODE standing for any VIP, handing over what it holds now; it stays drained across restarts",
    flags: [
      flag("reason", "string", "why, recorded with who asked and when (shown by vipd status)", "TEXT"),
      flag("wait", "boolean", "wait until NODE holds and stands for no VIP, and the next holders answer for what it held"),
      flag("timeout", "string", "with --wait, give up after this many seconds (default: 60)", "SECONDS"),
      flag("force", "boolean", "drain even when NODE is the last healthy candidate of a VIP (the VIP goes dark)"),
      ...ETCD_COMMAND_FLAGS,
    ],
    notes: 'Refuses, unless --force, when a VIP NODE stands for has no other healthy candidate.\n"vipd undrain NODE" ends it. Exit codes: 0 done; 1 refused, timed out, or etcd failed; 2 bad usage.\n' + ETCD_SOURCES,
    run: (args, io) => operate("drain", args, io),
  },
  {
    name: "undrain",
    synopsis: "undrain NODE [etcd flags]",
    summary: "let a drained NODE stand for its VIPs again",
    flags: ETCD_COMMAND_FLAGS,
    notes: `Exit codes: 0 done (also when NODE was not drained); 1 etcd failed; 2 bad usage.\n${ETCD_SOURCES}`,
    run: (args, io) => operate("undrain", args, io),
  },
  {
    name: "handover",
    synopsis: "handover VIP [--to NODE] [--timeout SECONDS] [etcd flags]",
    summary: "move VIP from its holder to the next healthy candidate, or to NODE, the way a graceful stop does",
    flags: [
      flag("to", "string", "the node to take the VIP; it must stand for it and be healthy (default: the next healthy one in line)", "NODE"),
      flag("timeout", "string", "give up after this many seconds (default: 30)", "SECONDS"),
      ...ETCD_COMMAND_FLAGS,
    ],
    notes: `Waits until the new holder answers for the VIP, then prints how long the move took.\nExit codes: 0 done; 1 refused (no healthy target), timed out, or etcd failed; 2 bad usage.\n${ETCD_SOURCES}`,
    run: (args, io) => operate("handover", args, io),
  },
  {
    name: "wait",
    synopsis: "wait [--for healthy|standing|holding] [--timeout SECONDS] [--config FILE | --health-listen HOST:PORT]",
    summary: "wait until this node's vipd is healthy, stands for every VIP, or holds a VIP (for cloud-init and scripts)",
    flags: [
      flag(
        "for",
        "string",
        'what to wait for: "healthy" (/healthz answers 200), "standing" (this node is in the election for every VIP, or holds it) or "holding" (this node holds a VIP) (default: healthy)',
        "healthy|standing|holding",
      ),
      flag("timeout", "string", "give up after this many seconds (default: 60)", "SECONDS"),
      CONFIG_FLAG,
      ...settingFlags("health."),
      HELP_FLAG,
    ],
    notes: "Exit codes: 0 done; 1 timed out (the last answer on stderr; for standing, each VIP that is not and why); 2 bad usage.",
    run: (args, io) => wait(args, io),
  },
  {
    name: "reload",
    synopsis: "reload [--json]",
    summary: "make this node's running vipd re-read its configuration: VIPs added, removed and kept (as SIGHUP does)",
    flags: [JSON_FLAG, HELP_FLAG],
    notes: [
      "Run it on the node, in vipd's network namespace: it asks the vipd running there, which re-reads the",
      "file, flags and environment it was started with, applies what can change live, and says what it did.",
      "Exit codes: 0 reloaded, all of it applied; 1 applied only in part (changed settings that need a restart,",
      "removed VIPs still being released), or no vipd answered; 2 the configuration is not valid (nothing",
      "changed, vipd runs as before), or bad usage.",
    ].join("\n"),
    run: (args, io) => reload(args, io),
  },
  {
    name: "config example",
    synopsis: "config example",
    summary: "print a commented configuration file with every setting and its default",
    flags: [HELP_FLAG],
    run: (args, io) => withHelp("config example", args, io, () => {
      io.out(configExample());
      return EXIT_OK;
    }),
  },
  {
    name: "version",
    synopsis: "version",
    summary: "print the version, commit, Bun version and target",
    flags: [HELP_FLAG],
    run: (args, io) => withHelp("version", args, io, () => {
      io.out(`${versionLine()}\n`);
      return EXIT_OK;
    }),
  },
];

/** `vipd --help`: every command, and how to learn its flags. */
export function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length)) + 2;
  return `vipd — floating virtual IP agent for highly available control planes

Usage: vipd <command> [flags]

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(width)}${c.summary}`).join("\n")}

"vipd <command> --help" lists a command's flags ("vipd run --help": every setting);
each setting is also read from the environment variable shown there (VIPD_...),
and from the configuration file.

Exit codes: 0 clean stop, 2 bad usage or configuration, 1 anything else.
`;
}

/** `vipd <command> --help`. */
export function commandHelp(name: string): string {
  const c = COMMANDS.find((x) => x.name === name)!;
  return `vipd ${c.synopsis}

${c.summary}.

Flags:
${flagHelp(c.flags)}
${c.notes ? `\n${c.notes}\n` : ""}`;
}

export async function runCli(io: CliIO): Promise<number> {
  const [first, second, ...rest] = io.argv;
  if (first === undefined) {
    io.err(usage());
    return EXIT_USAGE;
  }
  if (first === "help" || first === "--help" || first === "-h") {
    io.out(usage());
    return EXIT_OK;
  }
  if (first === "--version") return commandNamed("version")!.run([], io);
  const two = second === undefined ? undefined : commandNamed(`${first} ${second}`);
  if (two) return two.run(rest, io);
  const one = commandNamed(first);
  if (one) return one.run(io.argv.slice(1), io);
  const hint = first === "config" ? `: did you mean "vipd config example"?` : "";
  io.err(`vipd: unknown command "${[first, ...(first === "config" && second ? [second] : [])].join(" ")}"${hint}\n\n${usage()}`);
  return EXIT_USAGE;
}

function commandNamed(name: string): Command | undefined {
  return COMMANDS.find((c) => c.name === name);
}

/** Parses a command's flags, answers --help, and reports bad usage with exit 2. */
interface Parsed {
  flags: Record<string, string | boolean>;
  positionals: string[];
}

function parse(name: string, args: readonly string[], io: CliIO): Parsed | number {
  const parsed = parseFlags(args, commandNamed(name)!.flags);
  if (!parsed.ok) {
    io.err(`${formatIssues(parsed.issues)}\n\nRun "vipd ${name} --help" for usage.\n`);
    return EXIT_USAGE;
  }
  if (parsed.flags.help) {
    io.out(commandHelp(name));
    return EXIT_OK;
  }
  return parsed;
}

function withHelp(name: string, args: readonly string[], io: CliIO, fn: () => number): number {
  const p = parse(name, args, io);
  if (typeof p === "number") return p;
  if (p.positionals.length) {
    io.err(`vipd ${name}: unexpected ${JSON.stringify(p.positionals[0])}\n\nRun "vipd ${name} --help" for usage.\n`);
    return EXIT_USAGE;
  }
  return fn();
}

/**
 * `vipd status` and `vipd wait` need no VIP of their own: on a machine
 * without a config file they stand this in for the VIP documents, so the
 * flags and environment still go through the one validated path.
 */
const NO_VIPS_DOCUMENT = "apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: 192.0.2.1\nlink: lo\n";
const SETTING_FLAGS = new Set(FLAGS.map((f) => f.name));

interface Loaded {
  settings: Settings;
  skipped: SkippedDocument[];
  machineConfigs: { index: number; vips: number }[];
  flags: Record<string, string | boolean>;
  fromFile: boolean;
}

interface From {
  /** A file named by the command's own argument rather than --config. */
  file?: string;
  /** Its text, already read (standard input). */
  text?: string;
  configOptional?: boolean;
  parsed?: Parsed;
}

/**
 * What a command's load refuses and what it only warns about. `run` (and its
 * reloads) refuses all; `validate` runs where the agent does not, so a TLS
 * file missing yet or unreadable to this user, and a VIPD_ variable of this
 * shell, are warnings there; the etcd commands need their files now.
 */
function strictness(name: string): Pick<LoadInput, "unreadableFiles" | "unknownVariables"> {
  if (name === "run") return { unreadableFiles: "error", unknownVariables: "error" };
  if (name === "validate") return { unreadableFiles: "warning", unknownVariables: "warning" };
  return { unreadableFiles: "error", unknownVariables: "warning" };
}

/** Flags + environment + file → settings, or the issues printed and exit 2; warnings printed on stderr either way. */
function settingsFrom(name: string, args: readonly string[], io: CliIO, opts: From = {}): Loaded | number {
  const parsed = opts.parsed ?? parse(name, args, io);
  if (typeof parsed === "number") return parsed;
  const explicit = opts.file ?? configPath(parsed.flags, io.env);
  const day2 = DAY2_COMMANDS.has(name);
  let path = explicit;
  let etcdClient: LoadInput["etcdClient"];
  let kubeadmNote: string | null = null;
  if (day2) {
    // On a node, the node's own file (its etcd endpoints and prefix) and the
    // etcd client files the unit uses: `vipd status` there needs no flags.
    const own = nodePath(NODE_CONFIG, io.env);
    const why = explicit === undefined ? checkReadableFile(own) : null;
    if (explicit === undefined && why === null) path = own;
    else if (why && why.code !== "ENOENT" && why.code !== "ENOTDIR") io.err(`vipd ${name}: not reading this node's ${own}: ${why.text}\n`);
    const kubeadm = kubeadmEtcdClient(io.env, checkReadableFile);
    etcdClient = { tlsFallback: kubeadm.files, fallbackSource: "kubeadm's etcd client files" };
    kubeadmNote = kubeadm.note;
  }
  let text = NO_VIPS_DOCUMENT;
  if (opts.text !== undefined) text = opts.text;
  else if (path) {
    const file = readConfigFile(path);
    if (!file.ok) {
      io.err(`${formatIssues(file.issues)}\n`);
      return EXIT_USAGE;
    }
    text = file.text;
  } else if (!opts.configOptional) {
    io.err(`vipd: no configuration file: give --config FILE or set VIPD_CONFIG\n\nRun "vipd ${name} --help" for usage.\n`);
    return EXIT_USAGE;
  }
  // The command's own flags (--json, --for) are not settings.
  const flags = Object.fromEntries(Object.entries(parsed.flags).filter(([k]) => SETTING_FLAGS.has(k)));
  const loaded = loadSettings({ fileText: text, fileName: path ?? "(flags and environment)", env: io.env, flags, hostname: io.hostname, isTTY: io.isTTY, ...strictness(name), ...(etcdClient ? { etcdClient } : {}) });
  if (loaded.warnings.length > 0) io.err(`${formatIssues(loaded.warnings, "warning")}\n`);
  if (!loaded.ok) {
    io.err(`${formatIssues(loaded.issues)}\n`);
    return EXIT_USAGE;
  }
  // Only where kubeadm's files were wanted: nothing else named TLS files for an https:// etcd.
  const e = loaded.settings.etcd;
  if (kubeadmNote && !e.caFile && !e.certFile && !e.keyFile && !e.endpoints.some((x) => x.startsWith("http://"))) io.err(`vipd ${name}: ${kubeadmNote}\n`);
  return { settings: loaded.settings, skipped: loaded.skipped, machineConfigs: loaded.machineConfigs, flags: parsed.flags, fromFile: explicit !== undefined };
}

/** One line per document vipd reads only in part, or not at all. */
function documentNotes(r: Loaded): string[] {
  return [
    ...r.machineConfigs.map((m) => `reading document ${m.index} (Talos machine config) for its VIPs (${m.vips} found); the rest of it is not vipd's`),
    ...r.skipped.map((s) => s.known
      ? `skipping document ${s.index} (${s.kind}): a Talos document, not vipd's`
      : `skipping document ${s.index} (${s.kind}): a kind vipd does not know, in a file with a Talos machine config (a newer Talos's?)`),
  ];
}

/** The commands that only talk to etcd, run from an operator's shell on a node or an admin machine. */
const DAY2_COMMANDS: ReadonlySet<string> = new Set(["status", "drain", "undrain", "handover"]);

/** What `vipd validate -` calls standard input in its problems ("(stdin):12: document 0 ..."). */
const STDIN_NAME = "(stdin)";

async function validate(args: readonly string[], io: CliIO): Promise<number> {
  const parsed = parse("validate", args, io);
  if (typeof parsed === "number") return parsed;
  const [file, ...more] = parsed.positionals;
  if (!file || more.length) {
    io.err('vipd validate: give the one configuration file to check, e.g. "vipd validate /etc/vipd/vipd.yaml", or "-" for standard input\n');
    return EXIT_USAGE;
  }
  let text: string | undefined;
  if (file === "-") {
    try {
      text = io.readStdin ? await io.readStdin() : "";
    } catch (err) {
      io.err(`vipd validate: reading standard input: ${describeError(err)}\n`);
      return EXIT_USAGE;
    }
  }
  const r = settingsFrom("validate", args, io, { file: file === "-" ? STDIN_NAME : file, parsed, ...(text === undefined ? {} : { text }) });
  if (typeof r === "number") return r;
  const machine = await preflight(r.settings, io.links);
  if (machine.length > 0) io.err(`${formatIssues(machine, "machine")}\n`);
  for (const line of documentNotes(r)) io.out(`${line}\n`);
  io.out(`${summarize(r.settings)}\n`);
  return EXIT_OK;
}

/** Who holds each VIP and who waits, read from etcd; no agent needed on this machine. */
async function status(args: readonly string[], io: CliIO): Promise<number> {
  const r = settingsFrom("status", args, io, { configOptional: true });
  if (typeof r === "number") return r;
  const vips = r.fromFile ? r.settings.vips.map((v) => v.ip) : undefined;
  return withEtcd("status", r.settings, io, async (client) => {
    const report = await readStatus(client, r.settings.etcd.prefix, vips);
    io.out(r.flags.json ? renderStatusJson(report) : renderStatusTable(report));
    return EXIT_OK;
  });
}

/** Runs `fn` with a client for the configured etcd; an etcd failure is a sentence and exit 1. */
async function withEtcd(name: string, settings: Settings, io: CliIO, fn: (client: Etcd3) => Promise<number>): Promise<number> {
  let client: Etcd3 | null = null;
  try {
    client = connectEtcd({
      endpoints: settings.etcd.endpoints,
      tls: etcdTls(settings.etcd),
      ...(settings.etcd.serverName ? { tlsServerName: settings.etcd.serverName } : {}),
    });
    return await fn(client);
  } catch (err) {
    io.err(`vipd ${name}: ${describeEtcdError(err, settings.etcd.endpoints)}\n`);
    return EXIT_FAILURE;
  } finally {
    client?.close();
  }
}

/** `vipd drain`, `undrain` and `handover`: one positional argument, etcd flags, an outcome. */
async function operate(name: "drain" | "undrain" | "handover", args: readonly string[], io: CliIO): Promise<number> {
  const parsed = parse(name, args, io);
  if (typeof parsed === "number") return parsed;
  const [what, ...more] = parsed.positionals;
  const noun = name === "handover" ? "VIP" : "NODE";
  const bad = (why: string) => {
    io.err(`vipd ${name}: ${why}\n\nRun "vipd ${name} --help" for usage.\n`);
    return EXIT_USAGE;
  };
  if (!what || more.length) return bad(`give exactly one ${noun}`);
  const target = name === "handover" ? parseIp(what)?.text : NODE_NAME.test(what) ? what : undefined;
  if (!target) return bad(name === "handover" ? `${JSON.stringify(what)} is not an IPv4 or IPv6 address` : `${JSON.stringify(what)} is not a node name (letters, digits, ".", "_" and "-", starting and ending with a letter or digit)`);
  const to = parsed.flags.to;
  if (typeof to === "string" && !NODE_NAME.test(to)) return bad(`--to ${JSON.stringify(to)} is not a node name`);
  const timeout = parsed.flags.timeout === undefined ? (name === "handover" ? 30 : 60) : Number(parsed.flags.timeout);
  if (!Number.isFinite(timeout) || timeout <= 0 || timeout > 3600) return bad(`--timeout wants a number of seconds above 0 and at most 3600, not ${JSON.stringify(parsed.flags.timeout)}`);
  if (parsed.flags.timeout !== undefined && name === "drain" && !parsed.flags.wait) return bad("--timeout only applies with --wait");
  const r = settingsFrom(name, args, io, { configOptional: true, parsed });
  if (typeof r === "number") return r;
  const asker: Asker = {
    by: askerName(io.env, io.hostname, () => userInfo().username),
    now: Date.now,
    out: (line) => io.out(`${line}\n`),
    err: (line) => io.err(`vipd ${name}: ${line}\n`),
  };
  const prefix = r.settings.etcd.prefix;
  return withEtcd(name, r.settings, io, async (client) => {
    const outcome = name === "drain"
      ? await drain(client, prefix, { node: target, reason: typeof parsed.flags.reason === "string" ? parsed.flags.reason : "", force: parsed.flags.force === true, waitMs: parsed.flags.wait ? timeout * 1000 : null }, asker)
      : name === "undrain"
        ? await undrain(client, prefix, target, asker)
        : await handover(client, prefix, { vip: target, to: typeof to === "string" ? to : null, timeoutMs: timeout * 1000 }, asker);
    return outcome === "done" ? EXIT_OK : EXIT_FAILURE;
  });
}

async function wait(args: readonly string[], io: CliIO): Promise<number> {
  const r = settingsFrom("wait", args, io, { configOptional: true });
  if (typeof r === "number") return r;
  const what = r.flags.for ?? "healthy";
  if (what !== "healthy" && what !== "standing" && what !== "holding") {
    io.err(`vipd wait: --for wants "healthy", "standing" or "holding", not ${JSON.stringify(what)}\n`);
    return EXIT_USAGE;
  }
  const timeout = r.flags.timeout === undefined ? 60 : Number(r.flags.timeout);
  if (!Number.isFinite(timeout) || timeout <= 0 || timeout > 86_400) {
    io.err(`vipd wait: --timeout wants a number of seconds above 0 and at most 86400, not ${JSON.stringify(r.flags.timeout)}\n`);
    return EXIT_USAGE;
  }
  const done = await waitFor(what as WaitFor, r.settings.health.listen, timeout * 1000);
  if (done.ok) {
    io.out(`vipd on ${formatHostPort(r.settings.health.listen)}: ${done.detail}\n`);
    return EXIT_OK;
  }
  io.err(`vipd wait: not ${what} after ${timeout} s: ${done.detail}\n`);
  return EXIT_FAILURE;
}

async function run(args: readonly string[], io: CliIO): Promise<number> {
  const r = settingsFrom("run", args, io);
  if (typeof r === "number") return r;
  const { settings } = r;
  const priorities = io.journal ?? false;
  const log = reconfigurableLogger({ format: settings.log.format, level: settings.log.level, write: io.err, priorities });
  const tooOld = kernelTooOld((io.kernelRelease ?? readKernelRelease)());
  if (tooOld) {
    log.error(tooOld);
    io.err(`vipd: ${tooOld}\n`);
    return EXIT_USAGE;
  }
  for (const line of documentNotes(r)) log.info(line);
  log.info("starting vipd", { version: VERSION, node: settings.nodeName, vips: settings.vips.map((v) => v.ip).join(","), holdMs: settings.election.holdTime, leaseTTL: settings.election.leaseTTL });

  let agent: Agent;
  try {
    agent = await Agent.start(settings, log, { version: VERSION });
  } catch (err) {
    if (err instanceof StartRefused) {
      log.error(err.message);
      io.err(`vipd: ${err.message}\n`);
      return EXIT_USAGE;
    }
    const code = (err as { code?: string }).code;
    const hint = code === "EPERM" || code === "EACCES" ? " — vipd needs CAP_NET_ADMIN and CAP_NET_RAW (run it as root, or grant them)" : "";
    log.error(`cannot start: ${describeError(err)}${hint}`);
    return EXIT_FAILURE;
  }
  let server: HealthServer;
  try {
    server = HealthServer.start(settings.health.listen, {
      health: () => agent.health(),
      status: () => agent.status(),
      metrics: () => agent.renderMetrics(),
    });
  } catch (err) {
    log.error(`cannot start: ${describeError(err)}`);
    await agent.stop();
    return EXIT_FAILURE;
  }
  const reloads = new Reloader({
    reread: () => reread(args, io),
    apply: (next) => agent.reload(next),
    applyLive: (next) => log.reconfigure({ format: next.log.format, level: next.log.level, write: io.err, priorities }),
    counted: (result) => agent.metrics.configReload(result),
    log,
    config: configPath(r.flags, io.env) ?? null,
    pid: process.pid,
  });
  agent.serve((request) => reloads.answer(request));
  void reloadOnSignals(io, reloads);
  const why = await Promise.race([
    io.stopRequested.then((signal) => ({ signal, fatal: null })),
    agent.fatal.then((fatal) => ({ signal: null, fatal })),
  ]);
  const t0 = performance.now();
  log.info("stopping", why.signal ? { signal: why.signal } : { reason: why.fatal });
  await agent.stop();
  server.stop();
  log.info("stopped", { ms: Math.round(performance.now() - t0) });
  if (why.fatal !== null) {
    io.err(`vipd: ${why.fatal}\n`);
    return EXIT_USAGE;
  }
  return EXIT_OK;
}

/** Each SIGHUP reloads, as `vipd reload` does; signals during a reload make one more. */
async function reloadOnSignals(io: CliIO, reloads: Reloader): Promise<void> {
  if (!io.reloadRequested) return;
  for await (const signal of io.reloadRequested) await reloads.request(signal);
}

/** The file, flags and environment `run` started with, read and validated again; the problems as lines. */
function reread(args: readonly string[], io: CliIO): Reread {
  let problems = "";
  const r = settingsFrom("run", args, { ...io, out: () => {}, err: (t) => void (problems += t) });
  if (typeof r !== "number") return { ok: true, settings: r.settings };
  return { ok: false, problems: problems.split("\n").filter((l) => l.trim() !== "") };
}

/** How long `vipd reload` waits for the agent's answer: its reload waits up to 5 s for releases. */
const RELOAD_ANSWER_MS = 30_000;

/** `vipd reload`: asks the vipd of this network namespace to reload, and reports what it did. */
async function reload(args: readonly string[], io: CliIO): Promise<number> {
  const parsed = parse("reload", args, io);
  if (typeof parsed === "number") return parsed;
  if (parsed.positionals.length) {
    io.err(`vipd reload: unexpected ${JSON.stringify(parsed.positionals[0])}: it takes no arguments (the running vipd re-reads its own --config)\n\nRun "vipd reload --help" for usage.\n`);
    return EXIT_USAGE;
  }
  let line: string;
  try {
    line = await askNetnsLockHolder(RELOAD_REQUEST, RELOAD_ANSWER_MS);
  } catch (err) {
    const code = (err as { code?: string }).code;
    io.err(code === "ECONNREFUSED" || code === "ENOENT"
      ? "vipd reload: no vipd runs in this network namespace (nothing listens on its socket @vipd): start it, or run this where it runs\n"
      : `vipd reload: asking the running vipd: ${describeError(err)}\n`);
    return EXIT_FAILURE;
  }
  const answer = parseReloadAnswer(line);
  if (answer === null) {
    io.err("vipd reload: the running vipd closed the connection without an answer: it stopped meanwhile, or it predates live reload (then restart it to apply its configuration)\n");
    return EXIT_FAILURE;
  }
  if ("error" in answer) {
    io.err(`vipd reload: the running vipd answered: ${answer.error}\n`);
    return EXIT_FAILURE;
  }
  const code = reloadExitCode(answer);
  if (parsed.flags.json) io.out(`${JSON.stringify(answer)}\n`);
  else if (answer.result === "reloaded") io.out(`${renderReloadAnswer(answer)}\n`);
  else io.err(`${renderReloadAnswer(answer)}\n`);
  return code;
}
