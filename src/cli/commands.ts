// The commands as functions from arguments to an exit code. Only main.ts
// touches process.argv, signals and process.exit; everything here gets them
// through CliIO, so the whole CLI runs in tests.
import { Agent } from "../agent.ts";
import { configPath, formatIssues, loadSettings, parseFlags, readConfigFile, type Settings, summarize } from "../config/index.ts";
import { HealthServer } from "../health/server.ts";
import { createLogger, describeError, type LogLevel } from "../log.ts";
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

/** Flags + environment + file → settings, or the issues printed and exit 2. */
function settingsFrom(args: readonly string[], io: CliIO, fileArg?: string): { settings: Settings; skipped: { index: number; kind: string }[] } | number {
  const parsed = parseFlags(args);
  if (!parsed.ok) {
    io.err(`${formatIssues(parsed.issues)}\n\nRun "vipd --help" for usage.\n`);
    return EXIT_USAGE;
  }
  if (parsed.flags.help) {
    io.out(usage());
    return EXIT_OK;
  }
  const path = fileArg ?? configPath(parsed.flags, io.env);
  if (!path) {
    io.err('vipd: no configuration file: give --config FILE or set VIPD_CONFIG\n\nRun "vipd --help" for usage.\n');
    return EXIT_USAGE;
  }
  const file = readConfigFile(path);
  if (!file.ok) {
    io.err(`${formatIssues(file.issues)}\n`);
    return EXIT_USAGE;
  }
  const loaded = loadSettings({ fileText: file.text, fileName: path, env: io.env, flags: parsed.flags, hostname: io.hostname, isTTY: io.isTTY });
  if (!loaded.ok) {
    io.err(`${formatIssues(loaded.issues)}\n`);
    return EXIT_USAGE;
  }
  return { settings: loaded.settings, skipped: loaded.skipped };
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
    file,
  );
  if (typeof r === "number") return r;
  for (const s of r.skipped) io.out(`skipping document ${s.index} (${s.kind}): not a vipd document\n`);
  io.out(`${summarize(r.settings)}\n`);
  return EXIT_OK;
}

async function run(args: readonly string[], io: CliIO): Promise<number> {
  const r = settingsFrom(args, io);
  if (typeof r === "number") return r;
  const { settings } = r;
  const log = createLogger({ format: settings.log.format, level: settings.log.level as LogLevel, write: io.err });
  for (const s of r.skipped) log.info(`skipping document ${s.index} (${s.kind}): not a vipd document`);
  log.info("starting vipd", { version: VERSION, node: settings.nodeName, vips: settings.vips.map((v) => v.ip).join(","), ttl: settings.election.leaseTTL });

  let agent: Agent;
  try {
    agent = await Agent.start(settings, log);
  } catch (err) {
    log.error(`cannot start: ${describeError(err)}`);
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
  const signal = await io.stopRequested;
  const t0 = performance.now();
  log.info("stopping", { signal });
  await agent.stop();
  server.stop();
  log.info("stopped", { ms: Math.round(performance.now() - t0) });
  return EXIT_OK;
}
