// The config file: a multi-document YAML stream. Our two kinds are validated
// strictly (unknown fields are typos, and typos must not pass silently);
// Talos's kinds, as a whole Talos machine config holds them, are skipped by
// name, and any other kind is an error (kinds.ts).

import * as v from "valibot";
import { type Document as YamlDocument, isCollection, isMap, isPair, isScalar, isSeq, LineCounter, parseAllDocuments } from "yaml";
import * as f from "./fields.ts";
import { type ConfigIssue, escapeControls, issue, joinPath, printable, render } from "./issue.ts";
import { type Entries, TABLE } from "./table.ts";
import { nearestKind, TALOS_KINDS } from "./kinds.ts";
import { cloudVipProblem, isCloudVipKind, isMachineConfig } from "./talos.ts";

export const LAYER2 = "Layer2VIPConfig";
export const AGENT = "VIPAgentConfig";

/** Exactly Talos's Layer2VIPConfig document. */
export const layer2Schema = v.strictObject(
  { apiVersion: f.apiVersion, kind: v.literal(LAYER2), name: f.vipAddress, link: f.linkName },
  f.MAPPING,
);

/** The table's entries as optional fields; a section is a strict object (unknown fields are typos). */
function fieldsOf(entries: Entries): Record<string, v.GenericSchema> {
  return Object.fromEntries(
    Object.entries(entries).map(([name, node]) => [
      name,
      v.optional(node.kind === "setting" ? node.schema : v.strictObject(fieldsOf(node.entries), f.MAPPING)),
    ]),
  );
}

/** vipd's own document: every setting of the table, all optional. */
export const agentSchema = v.strictObject({ apiVersion: f.apiVersion, kind: v.literal(AGENT), ...fieldsOf(TABLE) }, f.MAPPING);

export type Layer2Doc = v.InferOutput<typeof layer2Schema>;

export interface Documents {
  layer2: { index: number; value: unknown }[];
  agent: { index: number; value: unknown }[];
  /** Talos v1alpha1 machine configs: their VIPs are read, the rest is not vipd's. */
  machine: { index: number; value: Record<string, unknown> }[];
  /** Documents vipd does not read: Talos's kinds (known), and in a Talos machine config file any other kind. */
  skipped: SkippedDocument[];
  /** The names Talos LinkAliasConfig documents give links ("net0", "net%d"), which vipd cannot resolve. */
  linkAliases: { index: number; name: string }[];
  issues: ConfigIssue[];
  /** The line of a field of document `index` ("etcd.endpoints[1]"), for issues. */
  lineOf: (index: number, path: string) => number | undefined;
}

export interface SkippedDocument {
  index: number;
  kind: string;
  /** One of Talos's kinds; false: a kind vipd does not know, in a file with a Talos machine config. */
  known: boolean;
}

/**
 * Deeper than any configuration needs (a Talos machine config is about ten
 * levels). The limit bounds the work: the yaml library resolves an alias by
 * walking the document with a copy of the path at each level, so one alias in
 * a document nested a few thousand levels deep takes seconds to minutes, and
 * deeper still its parser runs out of stack.
 */
const MAX_NESTING = 256;

/** Whether lists and mappings nest deeper than `limit`; walked without recursion, which depth could overflow. */
function nestedDeeperThan(root: unknown, limit: number): boolean {
  const stack: [unknown, number][] = [[root, 0]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (isPair(node)) stack.push([node.key, depth], [node.value, depth]);
    else if (isCollection(node)) {
      if (depth >= limit) return true;
      for (const item of node.items) stack.push([item, depth + 1]);
    }
  }
  return false;
}

export function documentLabel(index: number, kind?: string): string {
  return kind === undefined ? `document ${index}` : `document ${index} (${kind})`;
}

/** Splits the YAML stream and sorts documents by kind; does not validate our kinds yet. */
export function readDocuments(text: string): Documents {
  const out: Documents = { layer2: [], agent: [], machine: [], skipped: [], linkAliases: [], issues: [], lineOf: () => undefined };
  const lineCounter = new LineCounter();
  // logLevel "error": the yaml library would print its warnings (a key that is
  // a list, stringified) straight to stderr, outside vipd's own report and log.
  const parsed = parseAllDocuments(text, { logLevel: "error", lineCounter });
  const yamlDocs = Array.isArray(parsed) ? parsed : [];
  out.lineOf = (index, path) => lineIn(yamlDocs[index], path, lineCounter);
  const mappings: { index: number; fields: Record<string, unknown> }[] = [];
  for (const [index, doc] of yamlDocs.entries()) {
    if (doc.errors.length > 0) {
      for (const err of doc.errors) {
        const [at] = err.linePos ?? [];
        // The first line, without the library's excerpt of the source; it may still quote the source's control characters.
        const what = escapeControls(err.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, ""));
        const where = at ? ` at line ${at.line}, column ${at.col}` : "";
        out.issues.push({ ...issue(documentLabel(index), "", "valid YAML", JSON.stringify(what), `YAML syntax error${where}: ${what}`), ...(at ? { line: at.line } : {}) });
      }
      continue;
    }
    if (nestedDeeperThan(doc.contents, MAX_NESTING)) {
      out.issues.push(issue(documentLabel(index), "", `at most ${MAX_NESTING} levels of nesting`, "more",
        `lists and mappings nested more than ${MAX_NESTING} levels deep; no configuration needs that many`));
      continue;
    }
    let value: unknown;
    try {
      value = doc.toJS();
    } catch (e) {
      const what = escapeControls(e instanceof Error ? e.message : String(e));
      out.issues.push(issue(documentLabel(index), "", "valid YAML", JSON.stringify(what), `YAML error: ${what}`));
      continue;
    }
    if (value === null || value === undefined) continue; // empty document, e.g. a trailing "---"
    if (typeof value !== "object" || Array.isArray(value)) {
      out.issues.push(issue(documentLabel(index), "", "a mapping with apiVersion and kind", render(value)));
      continue;
    }
    mappings.push({ index, fields: value as Record<string, unknown> });
  }
  // A file with a Talos machine config is Talos's: it may hold kinds newer
  // than vipd's list of Talos's, which Talos itself checks.
  const talosFile = mappings.some(({ fields }) => isMachineConfig(fields));
  for (const { index, fields } of mappings) {
    const kind = fields.kind;
    const label = documentLabel(index, typeof kind === "string" && kind !== "" ? printable(kind) : undefined);
    if (kind === LAYER2) out.layer2.push({ index, value: fields });
    else if (kind === AGENT) out.agent.push({ index, value: fields });
    else if (isMachineConfig(fields)) out.machine.push({ index, value: fields });
    else if (typeof kind === "string" && isCloudVipKind(kind)) {
      const what = `a VIP announced through a cloud API (${printable(kind)})`;
      out.issues.push(issue(label, "", "a Layer2VIPConfig", what, cloudVipProblem(what)));
    } else if (typeof kind === "string" && TALOS_KINDS.has(kind)) {
      out.skipped.push({ index, kind, known: true });
      if (kind === LINK_ALIAS && typeof fields.name === "string") out.linkAliases.push({ index, name: fields.name });
    }
    else if (typeof kind === "string" && kind !== "") {
      const meant = nearestKind(kind, KNOWN_KINDS);
      if (meant !== null) out.issues.push(misspelledKind(label, kind, meant));
      else if (/VIPConfig$/i.test(kind)) {
        const what = `a VIP document of a kind vipd does not know (${printable(kind)})`;
        out.issues.push(issue(label, "kind", `"${LAYER2}"`, render(kind), `${what}: vipd serves ${LAYER2} documents only; write this VIP as one, or leave it to Talos`));
      } else if (talosFile) out.skipped.push({ index, kind: printable(kind), known: false });
      else out.issues.push(issue(label, "kind", WANTED_KINDS, render(kind), `unknown kind ${render(kind)}: ${KINDS_READ}; fix the kind, or remove the document`));
    } else if (talosFile) out.skipped.push({ index, kind: "untyped", known: false });
    else out.issues.push(issue(label, "kind", WANTED_KINDS, render(kind), `${kind === undefined ? "no kind" : `kind ${render(kind)}`}: ${KINDS_READ}; give the document its kind, or remove it`));
  }
  return out;
}

/** Talos's document that names a link by a selector Talos evaluates (a CEL expression over its link status). */
export const LINK_ALIAS = "LinkAliasConfig";

/** vipd's kinds first: a tie between one of them and a Talos kind names vipd's. */
const KNOWN_KINDS: readonly string[] = [LAYER2, AGENT, ...[...TALOS_KINDS].filter((k) => k !== LAYER2)];
const WANTED_KINDS = `${LAYER2}, ${AGENT} or a kind of Talos's`;
const KINDS_READ = `vipd reads ${LAYER2} and ${AGENT} documents and skips Talos's own kinds (and, in a file with a Talos machine config, any other kind)`;

/** A kind close to a known one: an error that names the one meant, never a skipped document. */
function misspelledKind(label: string, kind: string, meant: string): ConfigIssue {
  const caseOnly = kind.toLowerCase() === meant.toLowerCase() ? " (kinds are case-sensitive)" : "";
  const whose = meant === LAYER2 || meant === AGENT ? "" : isCloudVipKind(meant) ? ", a cloud VIP of Talos's that vipd cannot serve" : ", a Talos kind vipd skips";
  return issue(label, "kind", `"${meant}"`, render(kind), `unknown kind ${render(kind)}: did you mean "${meant}"${whose}?${caseOnly}`);
}

/** Splits "etcd.endpoints[1]" (joinPath's form) back into keys. */
function splitPath(path: string): (string | number)[] {
  const keys: (string | number)[] = [];
  for (const m of path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) keys.push(m[2] !== undefined ? Number(m[2]) : m[1]!);
  return keys;
}

/**
 * The line of the field at `path` in a document: of its key in a mapping, of
 * the item in a list; as far as the path exists (an unknown field is found,
 * a missing one is the line of the mapping it is missing from).
 */
function lineIn(doc: YamlDocument | undefined, path: string, lines: LineCounter): number | undefined {
  let node: unknown = doc?.contents;
  let at = (node as { range?: [number, number, number] } | null)?.range?.[0];
  for (const key of splitPath(path)) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(key));
      if (!pair) break;
      at = (pair.key as { range?: [number, number, number] }).range?.[0] ?? at;
      node = pair.value;
    } else if (isSeq(node) && typeof key === "number" && node.items[key] !== undefined) {
      node = node.items[key];
      at = (node as { range?: [number, number, number] }).range?.[0] ?? at;
    } else break;
  }
  return at === undefined ? undefined : lines.linePos(at).line;
}

/**
 * Each issue about a document of the file, with the file's name and the line
 * of the field it is about ("vipd.yaml:12"); formatIssues puts them first.
 */
export function locate(issues: readonly ConfigIssue[], docs: Documents, file: string): ConfigIssue[] {
  return issues.map((i) => {
    const m = /^document (\d+)\b/.exec(i.document);
    if (!m) return i;
    const line = i.line ?? docs.lineOf(Number(m[1]), i.path);
    return line === undefined ? { ...i, file } : { ...i, file, line };
  });
}

type AnySchema = v.GenericSchema | v.GenericSchemaAsync;

/** Field names an object schema accepts at the given path, to list next to an unknown field. */
function knownFields(schema: AnySchema, keys: readonly (string | number)[]): string[] {
  let s: unknown = schema;
  for (const k of keys) {
    while (s && typeof s === "object" && "wrapped" in s) s = (s as { wrapped: unknown }).wrapped;
    const entries = (s as { entries?: Record<string, unknown> }).entries;
    if (!entries) return [];
    s = entries[String(k)];
  }
  while (s && typeof s === "object" && "wrapped" in s) s = (s as { wrapped: unknown }).wrapped;
  const entries = (s as { entries?: Record<string, unknown> } | undefined)?.entries;
  return entries ? Object.keys(entries) : [];
}

/** Turns valibot issues into ours, with "document"/"path" prefixed by the caller's base. */
export function fromValibot(
  schema: AnySchema,
  issues: readonly v.BaseIssue<unknown>[],
  document: string,
  basePath: readonly (string | number)[] = [],
): ConfigIssue[] {
  return issues.map((i) => {
    const keys = (i.path ?? []).map((p) => p.key as string | number);
    const path = joinPath([...basePath, ...keys]);
    if (i.type === "strict_object" && i.expected === "never") {
      // An unknown key: valibot puts the key itself in input.
      const known = knownFields(schema, keys.slice(0, -1));
      return issue(document, path, `one of the fields ${known.join(", ")}`, "an unknown field", `unknown field; known fields here: ${known.join(", ")}`);
    }
    if (i.type === "strict_object" && i.received === "undefined") {
      return issue(document, path, "a value", "nothing", "required field is missing");
    }
    return issue(document, path, i.message, render(i.input));
  });
}
