// The commands about this node's own agent: run it, wait for it, and ask the
// running one to reload.
import { Agent, StartRefused } from "../agent.ts";
import { CONFIG_FLAG, configPath, FLAGS, HELP_FLAG } from "../config/index.ts";
import { formatHostPort } from "../config/fields.ts";
import { HealthServer } from "../health/server.ts";
import { kernelTooOld, readKernelRelease } from "../kernel/kernel-release.ts";
import { askNetnsLockHolder } from "../kernel/netns-lock.ts";
import { describeError, reconfigurableLogger } from "../log.ts";
import { type CliIO, type Command, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, flag, JSON_FLAG, parse, settingFlags, VERSION } from "./command.ts";
import { parseReloadAnswer, RELOAD_REQUEST, Reloader, reloadExitCode, renderReloadAnswer, type Reread } from "./reload.ts";
import { documentNotes, settingsFrom } from "./settings-from.ts";
import { waitFor, type WaitFor } from "./wait.ts";

export const RUN: Command = {
  name: "run",
  synopsis: "run --config FILE [flags]",
  summary: "hold and announce the VIPs this node wins",
  flags: FLAGS,
  notes: "SIGHUP (or \"vipd reload\") re-reads the configuration: VIPs are added and removed live, the log settings change; other settings need a restart. SIGTERM stops.",
  run: (args, io) => run(args, io),
};

export const WAIT: Command = {
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
};

export const RELOAD: Command = {
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
};

async function run(args: readonly string[], io: CliIO): Promise<number> {
  const r = settingsFrom(RUN, args, io);
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
    reread: () => agent.timed("reload", () => reread(args, io)),
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
  const r = settingsFrom(RUN, args, { ...io, out: () => {}, err: (t) => void (problems += t) });
  if (typeof r !== "number") return { ok: true, settings: r.settings };
  return { ok: false, problems: problems.split("\n").filter((l) => l.trim() !== "") };
}

async function wait(args: readonly string[], io: CliIO): Promise<number> {
  const r = settingsFrom(WAIT, args, io, { configOptional: true });
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

/** How long `vipd reload` waits for the agent's answer: its reload waits up to 5 s for releases. */
const RELOAD_ANSWER_MS = 30_000;

/** `vipd reload`: asks the vipd of this network namespace to reload, and reports what it did. */
async function reload(args: readonly string[], io: CliIO): Promise<number> {
  const parsed = parse(RELOAD, args, io);
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
