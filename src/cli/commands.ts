// The commands as data: each names its flags, its one-line summary and its
// function from arguments to an exit code. `vipd --help` and
// `vipd <command> --help` are printed from this table. Only main.ts touches
// process.argv, signals and process.exit; everything here gets them through
// CliIO, so the whole CLI runs in tests.
import { Agent, StartRefused } from "../agent.ts";
import {
  CONFIG_FLAG, configPath, etcdTls, FLAGS, type FlagSpec, flagHelp, formatIssues, HELP_FLAG, LEAVES, loadSettings, parseFlags,
  readConfigFile, type Settings, settingFlag, summarize,
} from "../config/index.ts";
import { configExample } from "../config/example.ts";
import { connectEtcd } from "../election/connection.ts";
import { describeEtcdError } from "../election/etcd-error.ts";
import { formatListen, HealthServer } from "../health/server.ts";
import { createLogger, describeError, type LogLevel } from "../log.ts";
import { readStatus, renderStatusJson, renderStatusTable } from "./status.ts";
import { BUILD, versionLine } from "./version.ts";
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
  out(text: string): void;
  err(text: string): void;
  /** Resolves with the signal's name when the process is asked to stop. */
  readonly stopRequested: Promise<string>;
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

const COMMANDS: readonly Command[] = [
  {
    name: "run",
    synopsis: "run --config FILE [flags]",
    summary: "hold and announce the VIPs this node wins",
    flags: FLAGS,
    run: (args, io) => run(args, io),
  },
  {
    name: "validate",
    synopsis: "validate FILE [flags]",
    summary: "check a config file: exit 0 and a summary, or 2 and every problem",
    flags: FLAGS.filter((f) => f !== CONFIG_FLAG),
    run: (args, io) => validate(args, io),
  },
  {
    name: "status",
    synopsis: "status [--json] [--config FILE] [etcd flags]",
    summary: "who holds each VIP and who waits, read from etcd (no agent needed here)",
    flags: [CONFIG_FLAG, ...settingFlags("etcd."), JSON_FLAG, HELP_FLAG],
    notes: "With --config, only that file's VIPs are listed; without, every VIP under the prefix.",
    run: (args, io) => status(args, io),
  },
  {
    name: "wait",
    synopsis: "wait [--for healthy|holding] [--timeout SECONDS] [--config FILE | --health-listen HOST:PORT]",
    summary: "wait until this node's vipd is healthy, or holds a VIP (for cloud-init and scripts)",
    flags: [
      flag("for", "string", 'what to wait for: "healthy" (/healthz answers 200) or "holding" (this node holds a VIP) (default: healthy)', "healthy|holding"),
      flag("timeout", "string", "give up after this many seconds (default: 60)", "SECONDS"),
      CONFIG_FLAG,
      ...settingFlags("health."),
      HELP_FLAG,
    ],
    notes: "Exit codes: 0 done; 1 timed out (the last answer on stderr); 2 bad usage.",
    run: (args, io) => wait(args, io),
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

"vipd <command> --help" lists a command's flags; each setting is also read from
the environment variable shown there (VIPD_...), and from the configuration file.

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
function parse(name: string, args: readonly string[], io: CliIO): { flags: Record<string, string | boolean>; positionals: string[] } | number {
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
  skipped: { index: number; kind: string }[];
  machineConfigs: { index: number; vips: number }[];
  flags: Record<string, string | boolean>;
  fromFile: boolean;
}

/** Flags + environment + file → settings, or the issues printed and exit 2. */
function settingsFrom(name: string, args: readonly string[], io: CliIO, opts: { file?: string; configOptional?: boolean } = {}): Loaded | number {
  const parsed = parse(name, args, io);
  if (typeof parsed === "number") return parsed;
  const path = opts.file ?? configPath(parsed.flags, io.env);
  let text = NO_VIPS_DOCUMENT;
  if (path) {
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
  const loaded = loadSettings({ fileText: text, fileName: path ?? "(flags and environment)", env: io.env, flags, hostname: io.hostname, isTTY: io.isTTY });
  if (!loaded.ok) {
    io.err(`${formatIssues(loaded.issues)}\n`);
    return EXIT_USAGE;
  }
  return { settings: loaded.settings, skipped: loaded.skipped, machineConfigs: loaded.machineConfigs, flags: parsed.flags, fromFile: path !== undefined };
}

/** One line per document vipd reads only in part, or not at all. */
function documentNotes(r: Loaded): string[] {
  return [
    ...r.machineConfigs.map((m) => `reading document ${m.index} (Talos machine config) for its VIPs (${m.vips} found); the rest of it is not vipd's`),
    ...r.skipped.map((s) => `skipping document ${s.index} (${s.kind}): not a vipd document`),
  ];
}

function validate(args: readonly string[], io: CliIO): number {
  const parsed = parse("validate", args, io);
  if (typeof parsed === "number") return parsed;
  const [file, ...more] = parsed.positionals;
  if (!file || more.length) {
    io.err('vipd validate: give the one configuration file to check, e.g. "vipd validate /etc/vipd/vipd.yaml"\n');
    return EXIT_USAGE;
  }
  const r = settingsFrom("validate", args.filter((a) => a !== file), io, { file });
  if (typeof r === "number") return r;
  for (const line of documentNotes(r)) io.out(`${line}\n`);
  io.out(`${summarize(r.settings)}\n`);
  return EXIT_OK;
}

/** Who holds each VIP and who waits, read from etcd; no agent needed on this machine. */
async function status(args: readonly string[], io: CliIO): Promise<number> {
  const r = settingsFrom("status", args, io, { configOptional: true });
  if (typeof r === "number") return r;
  const { settings } = r;
  const vips = r.fromFile ? settings.vips.map((v) => v.ip) : undefined;
  let client: ReturnType<typeof connectEtcd> | null = null;
  try {
    client = connectEtcd({
      endpoints: settings.etcd.endpoints,
      tls: etcdTls(settings.etcd),
      ...(settings.etcd.serverName ? { tlsServerName: settings.etcd.serverName } : {}),
    });
    const report = await readStatus(client, settings.etcd.prefix, vips);
    io.out(r.flags.json ? renderStatusJson(report) : renderStatusTable(report));
    return EXIT_OK;
  } catch (err) {
    io.err(`vipd status: ${describeEtcdError(err, settings.etcd.endpoints)}\n`);
    return EXIT_FAILURE;
  } finally {
    client?.close();
  }
}

async function wait(args: readonly string[], io: CliIO): Promise<number> {
  const r = settingsFrom("wait", args, io, { configOptional: true });
  if (typeof r === "number") return r;
  const what = r.flags.for ?? "healthy";
  if (what !== "healthy" && what !== "holding") {
    io.err(`vipd wait: --for wants "healthy" or "holding", not ${JSON.stringify(what)}\n`);
    return EXIT_USAGE;
  }
  const timeout = r.flags.timeout === undefined ? 60 : Number(r.flags.timeout);
  if (!Number.isFinite(timeout) || timeout <= 0 || timeout > 86_400) {
    io.err(`vipd wait: --timeout wants a number of seconds above 0 and at most 86400, not ${JSON.stringify(r.flags.timeout)}\n`);
    return EXIT_USAGE;
  }
  const done = await waitFor(what as WaitFor, r.settings.health.listen, timeout * 1000);
  if (done.ok) {
    io.out(`vipd on ${formatListen(r.settings.health.listen)}: ${done.detail}\n`);
    return EXIT_OK;
  }
  io.err(`vipd wait: not ${what} after ${timeout} s: ${done.detail}\n`);
  return EXIT_FAILURE;
}

async function run(args: readonly string[], io: CliIO): Promise<number> {
  const r = settingsFrom("run", args, io);
  if (typeof r === "number") return r;
  const { settings } = r;
  const log = createLogger({ format: settings.log.format, level: settings.log.level as LogLevel, write: io.err });
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
