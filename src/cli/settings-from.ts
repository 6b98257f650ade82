// Flags, environment and file to Settings for every command that needs them,
// through the one validated path `vipd run` takes; the issues printed and
// exit 2 when they do not validate.
import {
  checkReadableFile, configPath, FLAGS, formatIssues, kubeadmEtcdClient, type LoadInput, loadSettings, NODE_CONFIG, nodePath, readConfigFile,
  type Settings, type SkippedDocument,
} from "../config/index.ts";
import { type CliIO, type Command, EXIT_USAGE, parse, type Parsed } from "./command.ts";

/** The commands that only talk to etcd, run from an operator's shell on a node or an admin machine. */
const DAY2_COMMANDS: ReadonlySet<string> = new Set(["status", "drain", "undrain", "handover"]);

/**
 * `vipd status` and `vipd wait` need no VIP of their own: on a machine
 * without a config file they stand this in for the VIP documents, so the
 * flags and environment still go through the one validated path.
 */
const NO_VIPS_DOCUMENT = "apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: 192.0.2.1\nlink: lo\n";
const SETTING_FLAGS = new Set(FLAGS.map((f) => f.name));

export interface Loaded {
  settings: Settings;
  skipped: SkippedDocument[];
  machineConfigs: { index: number; vips: number }[];
  flags: Record<string, string | boolean>;
  fromFile: boolean;
}

export interface From {
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
export function settingsFrom(cmd: Command, args: readonly string[], io: CliIO, opts: From = {}): Loaded | number {
  const name = cmd.name;
  const parsed = opts.parsed ?? parse(cmd, args, io);
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
export function documentNotes(r: Loaded): string[] {
  return [
    ...r.machineConfigs.map((m) => `reading document ${m.index} (Talos machine config) for its VIPs (${m.vips} found); the rest of it is not vipd's`),
    ...r.skipped.map((s) => s.known
      ? `skipping document ${s.index} (${s.kind}): a Talos document, not vipd's`
      : `skipping document ${s.index} (${s.kind}): a kind vipd does not know, in a file with a Talos machine config (a newer Talos's?)`),
  ];
}

