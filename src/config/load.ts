// YAML documents + environment + flags -> one frozen Settings.
// Precedence per field: flags > environment (VIPD_*) > file > defaults.
// Pure apart from the injectable fileExists check; never throws for bad input.

import * as v from "valibot";
import { parseIp } from "../kernel/ip.ts";
import {
  AGENT,
  LAYER2,
  agentSchema,
  documentLabel,
  fromValibot,
  layer2Schema,
  readDocuments,
} from "./documents.ts";
import * as f from "./fields.ts";
import { isReadableFile } from "./file.ts";
import { FLAGS, type Flags } from "./flags.ts";
import { type ConfigIssue, issue, render } from "./issue.ts";
import { DEFAULTS, type Settings, type VipSettings } from "./settings.ts";

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
  fileExists?: (path: string) => boolean;
}

export type LoadResult =
  | { ok: true; settings: Settings; skipped: { index: number; kind: string }[] }
  | { ok: false; issues: ConfigIssue[] };

type Schema = v.GenericSchema;

/** A setting that may come from the file, the environment or a flag. */
interface Field {
  key: string;
  schema: Schema;
  /** How env/flag text becomes a value before the schema sees it. */
  text: "string" | "number" | "boolean" | "list";
  flag?: string;
}

const FIELDS: readonly Field[] = [
  { key: "nodeName", schema: f.nodeName, text: "string", flag: "node-name" },
  { key: "etcd.endpoints", schema: f.endpoints, text: "list", flag: "etcd-endpoints" },
  { key: "etcd.prefix", schema: f.keyPrefix, text: "string" },
  { key: "etcd.caFile", schema: f.filePath, text: "string", flag: "etcd-ca" },
  { key: "etcd.certFile", schema: f.filePath, text: "string", flag: "etcd-cert" },
  { key: "etcd.keyFile", schema: f.filePath, text: "string", flag: "etcd-key" },
  { key: "election.holdTime", schema: f.holdTime, text: "number", flag: "hold-time" },
  { key: "election.leaseTTL", schema: f.leaseTTL, text: "number", flag: "lease-ttl" },
  { key: "health.listen", schema: f.hostPort, text: "string", flag: "health-listen" },
  { key: "apiServer.url", schema: f.httpUrl, text: "string", flag: "apiserver-url" },
  { key: "apiServer.caFile", schema: f.filePath, text: "string", flag: "apiserver-ca" },
  { key: "apiServer.certFile", schema: f.filePath, text: "string" },
  { key: "apiServer.keyFile", schema: f.filePath, text: "string" },
  { key: "apiServer.insecureSkipVerify", schema: f.bool, text: "boolean", flag: "apiserver-insecure-skip-verify" },
  { key: "apiServer.interval", schema: f.seconds, text: "number" },
  { key: "apiServer.timeout", schema: f.seconds, text: "number" },
  { key: "apiServer.rise", schema: f.count, text: "number" },
  { key: "apiServer.fall", schema: f.count, text: "number" },
  { key: "announce.burst", schema: f.count, text: "number" },
  { key: "announce.burstInterval", schema: f.burstInterval, text: "number" },
  { key: "announce.refresh", schema: f.refresh, text: "number" },
  { key: "log.format", schema: f.logFormat, text: "string", flag: "log-format" },
  { key: "log.level", schema: f.logLevel, text: "string", flag: "log-level" },
];

/** A validated value and where it came from, so later checks can name the source. */
interface Sourced {
  value: unknown;
  document: string;
  /** Path inside that source: "etcd.caFile" in a document, "" for a variable or flag. */
  path: string;
}
type Layer = Map<string, Sourced>;

function fromText(text: string, kind: Field["text"]): unknown {
  switch (kind) {
    case "string":
      return text;
    case "list":
      return text.split(",").map((s) => s.trim());
    case "number":
      // Leave non-numbers as text so the schema reports what was actually given.
      return /^-?[0-9]+(\.[0-9]+)?$/.test(text.trim()) ? Number(text) : text;
    case "boolean":
      if (/^(true|1|yes)$/i.test(text)) return true;
      if (/^(false|0|no)$/i.test(text)) return false;
      return text;
  }
}

/** Validates one value against its field; adds to the layer or to issues. */
function admit(field: Field, raw: unknown, document: string, path: string, layer: Layer, issues: ConfigIssue[]): void {
  const r = v.safeParse(field.schema, raw, { abortEarly: false });
  if (!r.success) {
    issues.push(...fromValibot(field.schema, r.issues, document, path === "" ? [] : [path]));
    return;
  }
  layer.set(field.key, { value: r.output, document, path });
}

function fileLayer(doc: Record<string, unknown>, index: number, issues: ConfigIssue[]): Layer {
  const layer: Layer = new Map();
  for (const field of FIELDS) {
    let value: unknown = doc;
    for (const k of field.key.split(".")) value = (value as Record<string, unknown> | undefined)?.[k];
    if (value !== undefined) admit(field, value, documentLabel(index, AGENT), field.key, layer, issues);
  }
  return layer;
}

function envLayer(env: LoadInput["env"], issues: ConfigIssue[]): Layer {
  const layer: Layer = new Map();
  const known = new Set(FLAGS.flatMap((s) => (s.env ? [s.env] : [])));
  for (const [name, text] of Object.entries(env)) {
    // An unknown VIPD_ variable is almost always a typo of a known one.
    if (name.startsWith("VIPD_") && !known.has(name) && text !== undefined) {
      issues.push(issue(`environment ${name}`, "", "a VIPD_ variable listed by --help", render(text), "unknown variable; see --help for the VIPD_ variables"));
    }
  }
  for (const field of FIELDS) {
    const spec = FLAGS.find((s) => s.name === field.flag);
    const text = spec?.env ? env[spec.env] : undefined;
    // Empty counts as unset, as with systemd's "Environment=VIPD_X=".
    if (spec?.env && text !== undefined && text !== "") admit(field, fromText(text, field.text), `environment ${spec.env}`, "", layer, issues);
  }
  return layer;
}

function flagLayer(flags: Flags, issues: ConfigIssue[]): Layer {
  const layer: Layer = new Map();
  for (const [name, value] of Object.entries(flags)) {
    const spec = FLAGS.find((s) => s.name === name);
    if (!spec) {
      issues.push(issue(`flag --${name}`, "", "a flag listed by --help", render(value), "unknown flag; see --help"));
      continue;
    }
    const field = FIELDS.find((fd) => fd.flag === name);
    if (!field) continue; // --config, --help: for the entry point, not settings
    const raw = typeof value === "string" ? fromText(value, field.text) : value;
    admit(field, raw, `flag --${name}`, "", layer, issues);
  }
  return layer;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

function vipsFrom(docs: { index: number; value: unknown }[], issues: ConfigIssue[]): VipSettings[] {
  const vips: VipSettings[] = [];
  const seen = new Map<string, number>();
  for (const { index, value } of docs) {
    const label = documentLabel(index, LAYER2);
    const r = v.safeParse(layer2Schema, value, { abortEarly: false });
    if (!r.success) {
      issues.push(...fromValibot(layer2Schema, r.issues, label));
      continue;
    }
    const first = seen.get(r.output.name);
    if (first !== undefined) {
      const raw = (value as { name: unknown }).name;
      issues.push(
        issue(label, "name", "an address no other document declares", render(raw), `${r.output.name} is already declared by ${documentLabel(first, LAYER2)}`),
      );
      continue;
    }
    seen.set(r.output.name, index);
    vips.push({ ip: r.output.name, family: parseIp(r.output.name)!.family, link: r.output.link, document: index });
  }
  if (vips.length > f.MAX_VIPS) {
    const label = documentLabel(vips[f.MAX_VIPS]!.document, LAYER2);
    issues.push(issue(label, "", `at most ${f.MAX_VIPS} ${LAYER2} documents`, `${vips.length}`, f.TOO_MANY_VIPS));
  }
  return vips;
}

export function loadSettings(input: LoadInput): LoadResult {
  const fileExists = input.fileExists ?? isReadableFile;
  const docs = readDocuments(input.fileText);
  const issues = [...docs.issues];

  const vips = vipsFrom(docs.layer2, issues);
  if (docs.layer2.length === 0 && docs.issues.length === 0) {
    issues.push(issue(input.fileName, "", `at least one ${LAYER2} document`, "none", `expected at least one ${LAYER2} document (apiVersion, kind, name, link), found none`));
  }

  let file: Layer = new Map();
  let apiServerSection = false;
  for (const [n, { index, value }] of docs.agent.entries()) {
    const label = documentLabel(index, AGENT);
    const r = v.safeParse(agentSchema, value, { abortEarly: false });
    const docIssues = r.success ? [] : fromValibot(agentSchema, r.issues, label);
    // Field by field as well, from the raw values, so a too-short TTL is reported even
    // when something else in the document is wrong; the same shape issue is listed once.
    const fieldIssues: ConfigIssue[] = [];
    const layer = fileLayer(value as Record<string, unknown>, index, fieldIssues);
    const seen = new Set(docIssues.map((i) => i.message));
    issues.push(...docIssues, ...fieldIssues.filter((i) => !seen.has(i.message)));
    if (n > 0) {
      const first = docs.agent[0]!.index;
      issues.push(issue(label, "", `at most one ${AGENT} document`, "another one", `only one ${AGENT} document is allowed, and ${documentLabel(first, AGENT)} is one already`));
    } else {
      file = layer;
      apiServerSection = (value as Record<string, unknown>).apiServer !== undefined;
    }
  }
  const env = envLayer(input.env, issues);
  const flags = flagLayer(input.flags, issues);

  const pick = (key: string): Sourced | undefined => flags.get(key) ?? env.get(key) ?? file.get(key);
  const get = <T>(key: string, fallback: T): T => (pick(key)?.value as T | undefined) ?? fallback;

  let nodeName = get<string | undefined>("nodeName", undefined);
  if (nodeName === undefined) {
    const r = v.safeParse(f.nodeName, input.hostname);
    if (r.success) nodeName = r.output;
    else issues.push(...fromValibot(f.nodeName, r.issues, "hostname (the default nodeName; set nodeName, VIPD_NODE_NAME or --node-name)"));
  }

  checkPair(pick, "etcd", "VIPD_ETCD_CERT or --etcd-cert", "VIPD_ETCD_KEY or --etcd-key", issues);
  checkPair(pick, "apiServer", "", "", issues);
  checkTlsScheme(pick, issues);
  for (const key of ["etcd.caFile", "etcd.certFile", "etcd.keyFile", "apiServer.caFile", "apiServer.certFile", "apiServer.keyFile"]) {
    const s = pick(key);
    if (s && !fileExists(s.value as string)) issues.push(issue(s.document, s.path, "a readable file", render(s.value)));
  }

  const ttl = pick("election.leaseTTL");
  const hold = get("election.holdTime", DEFAULTS.holdTime);
  const short = f.leaseTooShort(get("election.leaseTTL", DEFAULTS.leaseTTL), hold);
  if (short) {
    const s = ttl ?? pick("election.holdTime")!;
    issues.push(issue(s.document, s.path, `a leaseTTL of at least ${Math.ceil((hold + f.LEASE_BEYOND_HOLD_MS) / 1000)} s`, render(s.value), short));
  }

  if (issues.length > 0) return { ok: false, issues };

  const tls = files(pick, "etcd");
  const gate = apiServerSection || FIELDS.some((fd) => fd.key.startsWith("apiServer.") && pick(fd.key));
  const settings: Settings = {
    nodeName: nodeName!,
    vips,
    etcd: {
      endpoints: get("etcd.endpoints", DEFAULTS.endpoints),
      prefix: get("etcd.prefix", DEFAULTS.prefix),
      ...(Object.keys(tls).length > 0 ? { tls } : {}),
    },
    election: { holdTime: hold, leaseTTL: get("election.leaseTTL", DEFAULTS.leaseTTL) },
    health: { listen: { ...get("health.listen", DEFAULTS.listen) } },
    ...(gate
      ? {
          apiServer: {
            url: get("apiServer.url", DEFAULTS.apiServerUrl),
            ...files(pick, "apiServer"),
            insecureSkipVerify: get("apiServer.insecureSkipVerify", false),
            interval: get("apiServer.interval", DEFAULTS.interval),
            timeout: get("apiServer.timeout", DEFAULTS.timeout),
            rise: get("apiServer.rise", DEFAULTS.rise),
            fall: get("apiServer.fall", DEFAULTS.fall),
          },
        }
      : {}),
    announce: {
      burst: get("announce.burst", DEFAULTS.burst),
      burstInterval: get("announce.burstInterval", DEFAULTS.burstInterval),
      refresh: get("announce.refresh", DEFAULTS.refresh),
    },
    log: {
      format: get<"pretty" | "json">("log.format", input.isTTY ? "pretty" : "json"),
      level: get("log.level", DEFAULTS.logLevel),
    },
  };
  return { ok: true, settings: deepFreeze(settings), skipped: docs.skipped };
}

type Pick = (key: string) => Sourced | undefined;

function files(pick: Pick, section: string): { caFile?: string; certFile?: string; keyFile?: string } {
  const out: { caFile?: string; certFile?: string; keyFile?: string } = {};
  for (const k of ["caFile", "certFile", "keyFile"] as const) {
    const s = pick(`${section}.${k}`);
    if (s) out[k] = s.value as string;
  }
  return out;
}

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
