// The commands as functions from arguments to an exit code. Only main.ts
// touches process.argv, signals and process.exit; everything here gets them
// through CliIO, so the whole CLI runs in tests.
import { Agent, StartRefused } from "../agent.ts";
import { configPath, FLAGS, type FlagSpec, formatIssues, loadSettings, parseFlags, readConfigFile, type Settings, summarize } from "../config/index.ts";
import { connectEtcd } from "../election/connection.ts";
import { describeEtcdError } from "../election/etcd-error.ts";
import { HealthServer } from "../health/server.ts";
import { createLogger, describeError, type LogLevel } from "../log.ts";
import { readStatus, renderStatusJson, renderStatusTable } from "./status.ts";
import { usage } from "./usage.ts";

declare const VIPD_VERSION: string | undefined;
export const VERSION = typeof VIPD_VERSION === "string" ? VIPD_VERSION : "0.1.0-dev";

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

export async function runCli(io: CliIO): Promise<number> {
  const [command, ...rest] = io.argv;
  switch (command) {
    case "run":
      return run(rest, io);
    case "validate":
      return validate(rest, io);
    case "status":
      return status(rest, io);
    case "version":
    case "--version":
      io.out(`vipd ${VERSION}\n`);
      return EXIT_OK;
    case undefined:
    case "help":
    case "--help":
    case "-h":
      (command === undefined ? io.err : io.out)(usage());
      return command === undefined ? EXIT_USAGE : EXIT_OK;
    default:
      io.err(`vipd: unknown command "${command}"\n\n${usage()}`);
      return EXIT_USAGE;
  }
}

const STATUS_FLAGS: readonly FlagSpec[] = [...FLAGS, { name: "json", type: "boolean", help: "vipd status: print JSON" }];

/**
 * `vipd status` needs no VIP of its own: on a machine without a config file
 * it reads all VIPs under the prefix. This stands in for the VIP documents so
 * the flags and environment still go through the one validated path.
 */
const NO_VIPS_DOCUMENT = "apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: 192.0.2.1\nlink: lo\n";

/** Flags + environment + file → settings, or the issues printed and exit 2. */
function settingsFrom(
  args: readonly string[],
  io: CliIO,
  opts: { file?: string; spec?: readonly FlagSpec[]; configOptional?: boolean } = {},
): { settings: Settings; skipped: { index: number; kind: string }[]; flags: Record<string, string | boolean>; fromFile: boolean } | number {
  const parsed = parseFlags(args, opts.spec ?? FLAGS);
  if (!parsed.ok) {
    io.err(`${formatIssues(parsed.issues)}\n\nRun "vipd --help" for usage.\n`);
    return EXIT_USAGE;
  }
  if (parsed.flags.help) {
    io.out(usage());
    return EXIT_OK;
  }
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
    io.err('vipd: no configuration file: give --config FILE or set VIPD_CONFIG\n\nRun "vipd --help" for usage.\n');
    return EXIT_USAGE;
  }
  const flags = { ...parsed.flags };
  delete flags.json;
  const loaded = loadSettings({ fileText: text, fileName: path ?? "(flags and environment)", env: io.env, flags, hostname: io.hostname, isTTY: io.isTTY });
  if (!loaded.ok) {
    io.err(`${formatIssues(loaded.issues)}\n`);
    return EXIT_USAGE;
  }
  return { settings: loaded.settings, skipped: loaded.skipped, flags: parsed.flags, fromFile: path !== undefined };
}

function validate(args: readonly string[], io: CliIO): number {
  const file = args.find((a) => !a.startsWith("-"));
  if (!file) {
    io.err('vipd validate: give the configuration file to check, e.g. "vipd validate /etc/vipd/vipd.yaml"\n');
    return EXIT_USAGE;
  }
  const r = settingsFrom(
    args.filter((a) => a !== file),
    io,
    { file },
  );
  if (typeof r === "number") return r;
  for (const s of r.skipped) io.out(`skipping document ${s.index} (${s.kind}): not a vipd document\n`);
  io.out(`${summarize(r.settings)}\n`);
  return EXIT_OK;
}

/** Who holds each VIP and who waits, read from etcd; no agent needed on this machine. */
async function status(args: readonly string[], io: CliIO): Promise<number> {
  const r = settingsFrom(args, io, { spec: STATUS_FLAGS, configOptional: true });
  if (typeof r === "number") return r;
  const { settings } = r;
  const vips = r.fromFile ? settings.vips.map((v) => v.ip) : undefined;
  let client: ReturnType<typeof connectEtcd> | null = null;
  try {
    client = connectEtcd({ endpoints: settings.etcd.endpoints, tls: settings.etcd.tls });
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

async function run(args: readonly string[], io: CliIO): Promise<number> {
  const r = settingsFrom(args, io);
  if (typeof r === "number") return r;
  const { settings } = r;
  const log = createLogger({ format: settings.log.format, level: settings.log.level as LogLevel, write: io.err });
  for (const s of r.skipped) log.info(`skipping document ${s.index} (${s.kind}): not a vipd document`);
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
