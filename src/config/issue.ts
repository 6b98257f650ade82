// One shape for every configuration problem, whatever its source (a YAML
// document, an environment variable, a flag), and one way to word it, so that
// `vipd validate` prints a list a person can work through top to bottom.

export interface ConfigIssue {
  /** Where the value came from: "document 2 (Layer2VIPConfig)", "environment VIPD_LEASE_TTL", "flag --lease-ttl". */
  document: string;
  /** Field path inside that source, e.g. "etcd.endpoints[1]"; "" for the source as a whole. */
  path: string;
  expected: string;
  received: string;
  message: string;
  /** The configuration file the document is in, for issues about a document. */
  file?: string;
  /** The line in that file of the field (or of the document), where known. */
  line?: number;
}

/**
 * Builds an issue. The message is always "<document>: <path>: <detail>", where
 * detail is "expected X, received Y" unless a sentence explaining *why* reads
 * better (a lease too short to fence, a duplicate VIP).
 */
export function issue(document: string, path: string, expected: string, received: string, detail?: string): ConfigIssue {
  const where = path === "" ? document : `${document}: ${path}`;
  return { document, path, expected, received, message: `${where}: ${detail ?? `expected ${expected}, received ${received}`}` };
}

/** Short rendering of a received value: strings quoted, containers summarised. */
export function render(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (typeof value === "string") {
    const short = value.length > 60 ? `${value.slice(0, 57)}...` : value;
    // JSON escapes C0 controls but not DEL, C1 or U+2028/9, which some terminals and viewers also break lines at.
    return escapeControls(JSON.stringify(short));
  }
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") return String(value);
  if (Array.isArray(value)) return `a list of ${value.length}`;
  if (typeof value === "object") return "a mapping";
  return typeof value;
}

/** Line breaks and other control characters as \u escapes, so that what is left prints as one line. */
export function escapeControls(text: string): string {
  return text.replace(/[\p{Cc}\p{Zl}\p{Zp}]/gu, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/**
 * Text from the file (a key, a kind) as it may appear in a message: as it is,
 * or quoted with escapes when it holds a line break or another control
 * character, so that every issue stays one line and a key cannot pass for
 * more lines of the report.
 */
export function printable(text: string): string {
  return /[\p{Cc}\p{Zl}\p{Zp}]/u.test(text) ? escapeControls(JSON.stringify(text)) : text;
}

/** Joins field keys into "a.b[2].c". */
export function joinPath(keys: readonly (string | number)[]): string {
  let out = "";
  for (const k of keys) out += typeof k === "number" ? `[${k}]` : out === "" ? printable(k) : `.${printable(k)}`;
  return out;
}

const HEADINGS = {
  problem: (n: number) => `${n} configuration ${n === 1 ? "problem" : "problems"}`,
  warning: (n: number) => `${n} configuration ${n === 1 ? "warning" : "warnings"}`,
  machine: (n: number) => `${n} ${n === 1 ? "warning" : "warnings"} about this machine`,
};

/** The issues as a list under a heading ("2 configuration problems:"), one a line. */
export function formatIssues(issues: readonly ConfigIssue[], what: keyof typeof HEADINGS = "problem"): string {
  return [`${HEADINGS[what](issues.length)}:`, ...issues.map((i) => `  - ${where(i)}${i.message}`)].join("\n");
}

/** "vipd.yaml:12: " for an issue about a document of a file, as compilers name a place. */
function where(i: ConfigIssue): string {
  if (i.file === undefined) return "";
  return i.line === undefined ? `${printable(i.file)}: ` : `${printable(i.file)}:${i.line}: `;
}
