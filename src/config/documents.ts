// The config file: a multi-document YAML stream. Our two kinds are validated
// strictly (unknown fields are typos, and typos must not pass silently); any
// other document, such as a whole Talos machine config, is skipped by name.

import * as v from "valibot";
import { isCollection, isPair, parseAllDocuments } from "yaml";
import * as f from "./fields.ts";
import { type ConfigIssue, escapeControls, issue, joinPath, printable, render } from "./issue.ts";
import { type Entries, TABLE } from "./table.ts";
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
  skipped: { index: number; kind: string }[];
  issues: ConfigIssue[];
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
  const out: Documents = { layer2: [], agent: [], machine: [], skipped: [], issues: [] };
  // logLevel "error": the yaml library would print its warnings (a key that is
  // a list, stringified) straight to stderr, outside vipd's own report and log.
  for (const [index, doc] of parseAllDocuments(text, { logLevel: "error" }).entries()) {
    if (doc.errors.length > 0) {
      for (const err of doc.errors) {
        const [at] = err.linePos ?? [];
        // The first line, without the library's excerpt of the source; it may still quote the source's control characters.
        const what = escapeControls(err.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, ""));
        const where = at ? ` at line ${at.line}, column ${at.col}` : "";
        out.issues.push(issue(documentLabel(index), "", "valid YAML", JSON.stringify(what), `YAML syntax error${where}: ${what}`));
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
    const fields = value as Record<string, unknown>;
    const kind = fields.kind;
    if (kind === LAYER2) out.layer2.push({ index, value });
    else if (kind === AGENT) out.agent.push({ index, value });
    else if (typeof kind === "string" && isCloudVipKind(kind)) {
      const what = `a VIP announced through a cloud API (${printable(kind)})`;
      out.issues.push(issue(documentLabel(index, printable(kind)), "", "a Layer2VIPConfig", what, cloudVipProblem(what)));
    } else if (isMachineConfig(fields)) out.machine.push({ index, value: fields });
    else out.skipped.push({ index, kind: typeof kind === "string" && kind !== "" ? printable(kind) : "untyped" });
  }
  return out;
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
