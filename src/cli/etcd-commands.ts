// The day-2 commands, which talk to etcd only and need no agent on the
// machine they run on: status, drain, undrain, handover.
import { userInfo } from "node:os";
import { basename } from "node:path";
import type { Etcd3 } from "etcd3";
import { CONFIG_FLAG, etcdTls, HELP_FLAG, KUBEADM_ETCD_CLIENT, NODE_CONFIG, type Settings } from "../config/index.ts";
import { NODE_NAME } from "../config/fields.ts";
import { connectEtcd } from "../election/connection.ts";
import { describeEtcdError } from "../election/etcd-error.ts";
import { parseIp } from "../kernel/ip.ts";
import { type CliIO, type Command, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, flag, JSON_FLAG, parse, settingFlags } from "./command.ts";
import { type Asker, askerName, drain, handover, undrain } from "./operate.ts";
import { settingsFrom } from "./settings-from.ts";
import { readStatus, renderStatusJson, renderStatusTable } from "./status.ts";

/** Commands that only talk to etcd: its flags, and --config to read them from a file. */
const ETCD_COMMAND_FLAGS = [CONFIG_FLAG, ...settingFlags("etcd."), HELP_FLAG];

/** Where the commands that only talk to etcd find it when no flag says (README, "vipd status"). */
const ETCD_SOURCES = [
  "Each etcd setting comes from the flag, else VIPD_ETCD_*, else etcdctl's ETCDCTL_ENDPOINTS, ETCDCTL_CACERT, ETCDCTL_CERT and",
  `ETCDCTL_KEY, else the file (--config, else this node's ${NODE_CONFIG}); when none names an etcd TLS file, kubeadm's`,
  `etcd client files (${KUBEADM_ETCD_CLIENT.caFile}, ${basename(KUBEADM_ETCD_CLIENT.certFile)}, ${basename(KUBEADM_ETCD_CLIENT.keyFile)}) if this user can read them.`,
].join("\n");

export const STATUS: Command = {
  name: "status",
  synopsis: "status [--json] [--config FILE] [etcd flags]",
  summary: "who holds each VIP and who waits, read from etcd (no agent needed here)",
  flags: [...ETCD_COMMAND_FLAGS, JSON_FLAG],
  notes: `With --config, only that file's VIPs are listed; without, every VIP under the prefix.\n${ETCD_SOURCES}`,
  run: (args, io) => status(args, io),
};

export const DRAIN: Command = {
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
  run: (args, io) => operate(DRAIN, args, io),
};

export const UNDRAIN: Command = {
  name: "undrain",
  synopsis: "undrain NODE [etcd flags]",
  summary: "let a drained NODE stand for its VIPs again",
  flags: ETCD_COMMAND_FLAGS,
  notes: `Exit codes: 0 done (also when NODE was not drained); 1 etcd failed; 2 bad usage.\n${ETCD_SOURCES}`,
  run: (args, io) => operate(UNDRAIN, args, io),
};

export const HANDOVER: Command = {
  name: "handover",
  synopsis: "handover VIP [--to NODE] [--timeout SECONDS] [etcd flags]",
  summary: "move VIP from its holder to the next healthy candidate, or to NODE, the way a graceful stop does",
  flags: [
    flag("to", "string", "the node to take the VIP; it must stand for it and be healthy (default: the next healthy one in line)", "NODE"),
    flag("timeout", "string", "give up after this many seconds (default: 30)", "SECONDS"),
    ...ETCD_COMMAND_FLAGS,
  ],
  notes: `Waits until the new holder answers for the VIP, then prints how long the move took.\nExit codes: 0 done; 1 refused (no healthy target), timed out, or etcd failed; 2 bad usage.\n${ETCD_SOURCES}`,
  run: (args, io) => operate(HANDOVER, args, io),
};

/** Who holds each VIP and who waits, read from etcd; no agent needed on this machine. */
async function status(args: readonly string[], io: CliIO): Promise<number> {
  const r = settingsFrom(STATUS, args, io, { configOptional: true });
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
async function operate(cmd: Command, args: readonly string[], io: CliIO): Promise<number> {
  const name = cmd.name as "drain" | "undrain" | "handover";
  const parsed = parse(cmd, args, io);
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
  const r = settingsFrom(cmd, args, io, { configOptional: true, parsed });
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

