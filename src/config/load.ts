// YAML documents + environment + flags -> one frozen Settings.
// Precedence per field: flags > environment (VIPD_*) > file > defaults; the
// day-2 commands read etcdctl's ETCDCTL_* variables below VIPD_*, and fall
// back to kubeadm's etcd client files below the file (input.etcdClient).
// Pure apart from the injectable checkFile; never throws for bad input.
//
// About 400 lines, kept whole: the layers (file, VIPD_*, ETCDCTL_*, flags)
// and the checks across them (a section's switch, a certificate without its
// key, TLS files with an http:// endpoint) all turn on which layer set a
// value, and the precedence is easiest to check where it is all in view.
// The settings themselves, their schemas and text forms live in table.ts
// and fields.ts.

import * as v from "valibot";
import { parseIp } from "../kernel/ip.ts";
import {
  AGENT,
  LAYER2,
  LINK_ALIAS,
  agentSchema,
  type Documents,
  documentLabel,
  fromValibot,
  layer2Schema,
  locate,
  readDocuments,
  type SkippedDocument,
} from "./documents.ts";
import { MACHINE_CONFIG, machineConfigVips } from "./talos.ts";
import * as f from "./fields.ts";
import { checkReadableFile, type FileProblem } from "./file.ts";
import { type EtcdClientFiles, TEST_ROOT_VARIABLE } from "./node-files.ts";
import { FLAGS, type Flags } from "./flags.ts";
import { type ConfigIssue, issue, printable, render } from "./issue.ts";
import { deepFreeze, type Settings, type VipSettings } from "./settings.ts";
import { type Leaf, LEAVES, OPTIONAL_SECTIONS, sectionSwitch, type TextKind } from "./table.ts";

export interface LoadInput {
  fileText: string;
  /** Names the file in issues about the file as a whole. */
  fileName: string;
  env: Record<string, string | undefined>;
  flags: Flags;
  /** Default node name. */
  hostname: string;
  /** Default log format: pretty on a terminal, json otherwise. */
  isTTY?: boolean;
  /** Why a file a setting names cannot be read now, or null (default: the file system's answer). */
  checkFile?: (path: string) => FileProblem | null;
  /**
   * "warning" for commands that only look: `vipd validate` runs where the
   * agent does not (before kubeadm wrote its certificates, as another user),
   * so a file that does not exist yet or that this user may not read is
   * worth a warning there, and an error only where it is opened.
   */
  unreadableFiles?: "error" | "warning";
  /**
   * "warning" for commands run from an operator's shell, whose environment
   * is not the agent's; an unknown VIPD_ variable in the agent's own is a
   * typo that would silently change nothing, so `run` refuses it.
   */
  unknownVariables?: "error" | "warning";
  /**
   * For the commands that only talk to etcd (status, drain, undrain,
   * handover), run from an operator's shell: read etcdctl's variables
   * (ETCDCTL_ENDPOINTS, _CACERT, _CERT, _KEY) below the VIPD_ ones and above
   * the file, and use `tlsFallback` (kubeadm's files, when readable) when no
   * source names any etcd TLS file and no endpoint is plain http://.
   */
  etcdClient?: { tlsFallback: EtcdClientFiles | null; fallbackSource: string };
}

export type LoadResult =
  | {
      ok: true;
      settings: Settings;
      skipped: SkippedDocument[];
      /** Talos machine configs whose VIPs were taken (the rest of them is not vipd's). */
      machineConfigs: { index: number; vips: number }[];
      /** Problems that the caller asked to be warnings (unreadableFiles, unknownVariables). */
      warnings: ConfigIssue[];
    }
  | { ok: false; issues: ConfigIssue[]; warnings: ConfigIssue[] };

/** A setting of the table, by its path ("etcd.endpoints"). */
const FIELDS: readonly Leaf[] = LEAVES;

/** A validated value and where it came from, so later checks can name the source. */
interface Sourced {
  value: unknown;
  document: string;
  /** Path inside that source: "etcd.caFile" in a document, "" for a variable or flag. */
  path: string;
}
type Layer = Map<string, Sourced>;

function fromText(text: string, kind: TextKind): unknown {
  switch (kind) {
    case "string":
      return text;
    case "list":
      return text.split(",").map((s) => s.trim());
    case "json":
      // Not JSON: leave it as text, so the schema reports what was given.
      try {
        return JSON.parse(text);
      } catch {
        return text;
      }
    case "number":
      // Leave non-numbers as text so the schema reports what was actually given.
      return /^-?[0-9]+(\.[0-9]+)?$/.test(text.trim()) ? Number(text) : text;
    case "boolean":
      return f.parseBoolText(text) ?? text;
  }
}

/** Validates one value against its setting; adds to the layer or to issues. */
function admit(field: Leaf, raw: unknown, document: string, path: string, layer: Layer, issues: ConfigIssue[]): void {
  const schema = field.setting.schema;
  const r = v.safeParse(schema, raw, { abortEarly: false });
  if (!r.success) {
    issues.push(...fromValibot(schema, r.issues, document, path === "" ? [] : [path]));
    return;
  }
  layer.set(field.path, { value: r.output, document, path });
}

function fileLayer(doc: Record<string, unknown>, index: number, issues: ConfigIssue[]): Layer {
  const layer: Layer = new Map();
  for (const field of FIELDS) {
    let value: unknown = doc;
    for (const k of field.path.split(".")) value = (value as Record<string, unknown> | undefined)?.[k];
    if (value !== undefined) admit(field, value, documentLabel(index, AGENT), field.path, layer, issues);
  }
  return layer;
}

function envLayer(env: LoadInput["env"], issues: ConfigIssue[], unknown: ConfigIssue[]): Layer {
  const layer: Layer = new Map();
  // VIPD_RUNTIME_ENV is no setting: `vipd run` restarts itself with it, and an
  // operator sets it empty to skip that restart (runtime-env.ts).
  // VIPD_TEST_ROOT neither: tests point the day-2 commands at a lab node's files (node-files.ts).
  const known = new Set([...FLAGS.flatMap((s) => (s.env ? [s.env] : [])), "VIPD_RUNTIME_ENV", TEST_ROOT_VARIABLE]);
  for (const [name, text] of Object.entries(env)) {
    // An unknown VIPD_ variable is almost always a typo of a known one.
    if (name.startsWith("VIPD_") && !known.has(name) && text !== undefined) {
      unknown.push(issue(`environment ${printable(name)}`, "", "a VIPD_ variable listed by vipd run --help", render(text), 'unknown variable; "vipd run --help" lists the VIPD_ variables'));
    }
  }
  for (const field of FIELDS) {
    const text = env[field.env];
    // Empty counts as unset, as with systemd's "Environment=VIPD_X=".
    if (text !== undefined && text !== "") admit(field, fromText(text, field.setting.text), `environment ${field.env}`, "", layer, issues);
  }
  return layer;
}

/** etcdctl's variables and the settings they stand for. */
export const ETCDCTL_VARIABLES: readonly (readonly [string, string])[] = [
  ["ETCDCTL_ENDPOINTS", "etcd.endpoints"],
  ["ETCDCTL_CACERT", "etcd.caFile"],
  ["ETCDCTL_CERT", "etcd.certFile"],
  ["ETCDCTL_KEY", "etcd.keyFile"],
];

function etcdctlLayer(env: LoadInput["env"], issues: ConfigIssue[]): Layer {
  const layer: Layer = new Map();
  // As etcdctl does: an endpoint without a scheme ("10.0.0.1:2379") speaks
  // TLS when a TLS file is given, plain http otherwise.
  const tls = ["ETCDCTL_CACERT", "ETCDCTL_CERT", "ETCDCTL_KEY", "VIPD_ETCD_CA", "VIPD_ETCD_CERT", "VIPD_ETCD_KEY"].some((name) => env[name]);
  for (const [name, path] of ETCDCTL_VARIABLES) {
    const text = env[name];
    if (text === undefined || text === "") continue;
    const field = FIELDS.find((fd) => fd.path === path)!;
    const raw = path === "etcd.endpoints"
      ? text.split(",").map((e) => e.trim()).map((e) => (e === "" || e.includes("://") ? e : `${tls ? "https" : "http"}://${e}`))
      : text;
    admit(field, raw, `environment ${name}`, "", layer, issues);
  }
  return layer;
}

function flagLayer(flags: Flags, issues: ConfigIssue[]): Layer {
  const layer: Layer = new Map();
  for (const [name, value] of Object.entries(flags)) {
    const spec = FLAGS.find((s) => s.name === name);
    if (!spec) {
      issues.push(issue(`flag --${printable(name)}`, "", "a flag listed by vipd run --help", render(value), 'unknown flag; "vipd run --help" lists them'));
      continue;
    }
    const field = FIELDS.find((fd) => fd.setting.flag === name);
    if (!field) continue; // --config, --help: for the entry point, not settings
    const raw = typeof value === "string" ? fromText(value, field.setting.text) : value;
    admit(field, raw, `flag --${name}`, "", layer, issues);
  }
  return layer;
}

/**
 * Every VIP, from Layer2VIPConfig documents and Talos machine configs, in
 * document order; a VIP declared twice (in any two places) is an error that
 * names both.
 */
function vipsFrom(docs: Documents, issues: ConfigIssue[]): VipSettings[] {
  const found: { index: number; label: string; path: string; ip: string; link: string; linkPath: string; raw: unknown }[] = [];
  for (const { index, value } of docs.layer2) {
    const label = documentLabel(index, LAYER2);
    const r = v.safeParse(layer2Schema, value, { abortEarly: false });
    if (!r.success) issues.push(...fromValibot(layer2Schema, r.issues, label));
    else found.push({ index, label, path: "name", ip: r.output.name, link: r.output.link, linkPath: "link", raw: (value as { name: unknown }).name });
  }
  for (const { index, value } of docs.machine) {
    const label = documentLabel(index, MACHINE_CONFIG);
    const r = machineConfigVips(value, label);
    issues.push(...r.issues);
    for (const vip of r.vips) found.push({ index, label, path: vip.path, ip: vip.ip, link: vip.link, linkPath: vip.path, raw: vip.ip });
  }
  found.sort((a, b) => a.index - b.index);
  const vips: VipSettings[] = [];
  const seen = new Map<string, (typeof found)[number]>();
  for (const x of found) {
    const alias = docs.linkAliases.find((a) => aliasNames(a.name, x.link));
    if (alias) {
      issues.push(issue(x.label, x.linkPath, "the link's kernel name", render(x.link),
        `link ${render(x.link)} is a Talos link alias (${documentLabel(alias.index, LINK_ALIAS)}): Talos picks the link it names with a selector vipd cannot evaluate; name the link as the kernel does ("talosctl get links" or "ip link" shows it, e.g. enp0s2)`));
      continue;
    }
    const first = seen.get(x.ip);
    if (first) {
      const where = first.path === "name" ? first.label : `${first.label} at ${first.path}`;
      issues.push(issue(x.label, x.path, "an address no other document declares", render(x.raw), `${x.ip} is already declared by ${where}`));
      continue;
    }
    seen.set(x.ip, x);
    vips.push({ ip: x.ip, family: parseIp(x.ip)!.family, link: x.link, document: x.index });
  }
  if (vips.length > f.MAX_VIPS) {
    const x = seen.get(vips[f.MAX_VIPS]!.ip)!;
    issues.push(issue(x.label, "", `at most ${f.MAX_VIPS} VIPs`, `${vips.length}`, f.TOO_MANY_VIPS));
  }
  return vips;
}

/** Whether a LinkAliasConfig's name ("mgmt", or "net%d" for net0, net1, ...) gives a link the name `link`. */
function aliasNames(alias: string, link: string): boolean {
  const [before, after, ...more] = alias.split("%d");
  if (after === undefined || more.length > 0) return alias === link;
  return link.length > before!.length + after.length && link.startsWith(before!) && link.endsWith(after) &&
    /^[0-9]+$/.test(link.slice(before!.length, link.length - after.length));
}

export function loadSettings(input: LoadInput): LoadResult {
  const checkFile = input.checkFile ?? checkReadableFile;
  const docs = readDocuments(input.fileText);
  const issues = [...docs.issues];
  const warnings: ConfigIssue[] = [];

  const vips = vipsFrom(docs, issues);
  if (vips.length === 0 && issues.length === 0) {
    issues.push(issue(input.fileName, "", `at least one ${LAYER2} document`, "none",
      `expected at least one ${LAYER2} document (apiVersion, kind, name, link), or a Talos machine config with a VIP, found none`));
  }

  let file: Layer = new Map();
  /** Optional sections the document names, so that one named without its switch is an error. */
  let sectionsNamed = new Set<string>();
  for (const [n, { index, value }] of docs.agent.entries()) {
    const label = documentLabel(index, AGENT);
    const r = v.safeParse(agentSchema, value, { abortEarly: false });
    const docIssues = r.success ? [] : fromValibot(agentSchema, r.issues, label);
    // Field by field as well, from the raw values, so a bad value is reported even
    // when something else in the document is wrong; the same issue is listed once.
    const fieldIssues: ConfigIssue[] = [];
    const layer = fileLayer(value as Record<string, unknown>, index, fieldIssues);
    const seen = new Set(docIssues.map((i) => i.message));
    issues.push(...docIssues, ...fieldIssues.filter((i) => !seen.has(i.message)));
    if (n > 0) {
      const first = docs.agent[0]!.index;
      issues.push(issue(label, "", `at most one ${AGENT} document`, "another one", `only one ${AGENT} document is allowed, and ${documentLabel(first, AGENT)} is one already`));
    } else {
      file = layer;
      sectionsNamed = new Set(OPTIONAL_SECTIONS.filter((name) => (value as Record<string, unknown>)[name] !== undefined));
    }
  }
  const unknownVariables: ConfigIssue[] = [];
  const env = envLayer(input.env, issues, unknownVariables);
  (input.unknownVariables === "warning" ? warnings : issues).push(...unknownVariables);
  const flags = flagLayer(input.flags, issues);

  const etcdctl: Layer = input.etcdClient ? etcdctlLayer(input.env, issues) : new Map();
  const fallback: Layer = new Map();
  const pick = (key: string): Sourced | undefined => flags.get(key) ?? env.get(key) ?? etcdctl.get(key) ?? file.get(key) ?? fallback.get(key);
  const tlsFallback = input.etcdClient?.tlsFallback;
  if (tlsFallback) {
    // All three or none: never a client certificate of kubeadm's beside a CA
    // of the operator's, and never TLS files with an http:// endpoint.
    const endpoints = (pick("etcd.endpoints")?.value as string[] | undefined) ?? (FIELDS.find((fd) => fd.path === "etcd.endpoints")!.setting.default as string[]);
    const named = ["caFile", "certFile", "keyFile"].some((k) => pick(`etcd.${k}`));
    if (!named && !endpoints.some((e) => e.startsWith("http://"))) {
      for (const [k, value] of Object.entries(tlsFallback)) fallback.set(`etcd.${k}`, { value, document: input.etcdClient!.fallbackSource, path: "" });
    }
  }

  // What nothing set: the table's default, or a fallback from the machine.
  const fallbacks: Record<"hostname" | "terminal", () => unknown> = {
    hostname: () => {
      const r = v.safeParse(f.nodeName, input.hostname);
      if (r.success) return r.output;
      issues.push(...fromValibot(f.nodeName, r.issues, "hostname (the default nodeName; set nodeName, VIPD_NODE_NAME or --node-name)"));
      return undefined;
    },
    terminal: () => (input.isTTY ? "pretty" : "json"),
  };
  const values = new Map<string, unknown>();
  for (const leaf of FIELDS) {
    const s = leaf.setting;
    const value = pick(leaf.path)?.value ?? s.default ?? (s.fallback ? fallbacks[s.fallback]() : undefined);
    if (value !== undefined) values.set(leaf.path, value);
  }

  checkPair(pick, "etcd", "VIPD_ETCD_CERT or --etcd-cert", "VIPD_ETCD_KEY or --etcd-key", issues);
  checkPair(pick, "apiServer", "VIPD_APISERVER_CERT or --apiserver-cert", "VIPD_APISERVER_KEY or --apiserver-key", issues);
  checkTlsScheme(pick, issues);
  for (const leaf of FIELDS) {
    const s = leaf.setting.file ? pick(leaf.path) : undefined;
    const why = s ? checkFile(s.value as string) : null;
    if (!s || !why) continue;
    const mayAppear = why.code === "ENOENT" || why.code === "EACCES" || why.code === "EPERM";
    const found = issue(s.document, s.path, "a readable file", render(s.value), `expected a readable file, received ${render(s.value)}: ${why.text}`);
    if (mayAppear && input.unreadableFiles === "warning") warnings.push({ ...found, message: `${found.message}; vipd run will refuse it until vipd's user can read it` });
    else issues.push(found);
  }
  checkSwitches(pick, sectionsNamed, docs.agent[0]?.index, issues);

  const hold = values.get("election.holdTime") as number;
  const short = f.leaseTooShort(values.get("election.leaseTTL") as number, hold);
  if (short) {
    const s = pick("election.leaseTTL") ?? pick("election.holdTime")!;
    issues.push(issue(s.document, s.path, `a leaseTTL of at least ${Math.ceil((hold + f.LEASE_BEYOND_HOLD_MS) / 1000)} s`, render(s.value), short));
  }

  /** Located, and the file's in the order of its lines (a list to work through top to bottom), then the rest as found. */
  const placed = (list: ConfigIssue[]) =>
    locate(list, docs, input.fileName)
      .map((i, n) => ({ i, n }))
      .sort((a, b) => (a.i.line ?? Infinity) - (b.i.line ?? Infinity) || a.n - b.n)
      .map(({ i }) => i);
  if (issues.length > 0) return { ok: false, issues: placed(issues), warnings: placed(warnings) };

  // An optional section exists when its switch is set (checkSwitches refused its other settings without it).
  const present = (section: string) => pick(sectionSwitch(section)) !== undefined;
  const tree: Record<string, unknown> = { vips };
  for (const [path, value] of values) {
    const [section, name] = path.includes(".") ? (path.split(".") as [string, string]) : [null, path];
    if (section === null) tree[name] = value;
    else if (!OPTIONAL_SECTIONS.includes(section) || present(section)) {
      const into = (tree[section] ??= {}) as Record<string, unknown>;
      into[name] = value;
    }
  }
  const machineConfigs = docs.machine.map(({ index }) => ({ index, vips: vips.filter((x) => x.document === index).length }));
  return { ok: true, settings: deepFreeze(tree as unknown as Settings), skipped: docs.skipped, machineConfigs, warnings: placed(warnings) };
}

/**
 * An optional section is on only when its switch is set: the gate only with
 * apiServer.url. Any other of its settings without the switch would be
 * silently unused, or (as vipd 0.2 did) silently turn the gate on with a
 * URL nobody chose: both are errors that name the fix.
 */
function checkSwitches(pick: Pick, named: ReadonlySet<string>, agentIndex: number | undefined, issues: ConfigIssue[]): void {
  for (const section of OPTIONAL_SECTIONS) {
    const on = sectionSwitch(section);
    if (pick(on)) continue;
    const flag = FIELDS.find((fd) => fd.path === on)!;
    const fix = `set ${on} (${flag.env} or --${flag.setting.flag})${flag.setting.example ? `, e.g. ${flag.setting.example}` : ""}, to turn it on`;
    const what = section === "apiServer" ? "the kube-apiserver gate" : `the ${section} section`;
    const given = FIELDS.filter((fd) => fd.path.startsWith(`${section}.`) && pick(fd.path));
    for (const fd of given) {
      const s = pick(fd.path)!;
      issues.push(issue(s.document, s.path, `${on} as well`, `${fd.path} without ${on}`, `${what} is off without ${on}: ${fix}, or remove this setting`));
    }
    if (given.length === 0 && named.has(section) && agentIndex !== undefined) {
      issues.push(issue(documentLabel(agentIndex, AGENT), section, `${on} in it`, "a section without it", `${what} is off without ${on}: ${fix}, or remove the section`));
    }
  }
}

type Pick = (key: string) => Sourced | undefined;

/** A client certificate is useless without its key and the reverse; say which half is missing. */
function checkPair(pick: Pick, section: string, certVia: string, keyVia: string, issues: ConfigIssue[]): void {
  const cert = pick(`${section}.certFile`);
  const key = pick(`${section}.keyFile`);
  if (cert && !key) {
    const via = keyVia ? `, ${keyVia}` : "";
    issues.push(issue(cert.document, cert.path, `${section}.keyFile${via} as well`, "a certificate without a key", `a client certificate needs its key: set ${section}.keyFile${via} as well`));
  }
  if (key && !cert) {
    const via = certVia ? `, ${certVia}` : "";
    issues.push(issue(key.document, key.path, `${section}.certFile${via} as well`, "a key without a certificate", `a client key needs its certificate: set ${section}.certFile${via} as well`));
  }
}

/** TLS files with a plain-http endpoint mean the files would be silently unused. */
function checkTlsScheme(pick: Pick, issues: ConfigIssue[]): void {
  const source = pick("etcd.endpoints");
  if (!source || !["caFile", "certFile", "keyFile"].some((k) => pick(`etcd.${k}`))) return;
  for (const [i, url] of (source.value as string[]).entries()) {
    if (url.startsWith("http://")) {
      issues.push(issue(source.document, `${source.path}[${i}]`, "an https:// URL, because etcd TLS files are set", render(url)));
    }
  }
}
