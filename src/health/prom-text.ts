// A strict parser of the Prometheus text exposition format (0.0.4) for tests
// and the lab: it throws, naming the line, on anything Prometheus would
// reject or that a correct exporter never writes. The npm parsers we tried
// were too lenient (garbage lines accepted) or merged every labelled
// histogram series into one, losing labels, _sum and _count. It lives beside
// metrics.ts, whose output it checks: src/'s tests, the lab and the
// benchmarks import it (src/ imports nothing from test/); vipd itself does not.
//
// Checked: metric and label name syntax; label value escapes (\\ \" \n only);
// float values (NaN, ±Inf); HELP/TYPE at most once per family and before its
// samples; families contiguous; sample names allowed by the family's type;
// no duplicate series; histograms with ascending `le`, cumulative counts, a
// `+Inf` bucket equal to `_count`, and a `_sum`.

export type MetricType = "counter" | "gauge" | "histogram" | "summary" | "untyped";

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Family {
  readonly name: string;
  help: string | null;
  type: MetricType;
  readonly samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

class ParseError extends Error {
  constructor(lineNo: number, line: string, why: string) {
    super(`line ${lineNo}: ${why}: ${JSON.stringify(line)}`);
  }
}

function parseValue(text: string): number | null {
  if (text === "NaN") return Number.NaN;
  if (text === "+Inf" || text === "Inf") return Number.POSITIVE_INFINITY;
  if (text === "-Inf") return Number.NEGATIVE_INFINITY;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) return null;
  return Number(text);
}

function unescapeHelp(s: string): string {
  return s.replace(/\\(\\|n)/g, (_, c: string) => (c === "n" ? "\n" : "\\"));
}

/** Parses `name{labels} value [timestamp]`; throws a message (without line number) on error. */
function parseSample(line: string): Sample {
  let i = 0;
  while (i < line.length && line[i] !== "{" && line[i] !== " ") i++;
  const name = line.slice(0, i);
  if (!NAME.test(name)) throw new Error(`bad metric name ${JSON.stringify(name)}`);
  const labels: Record<string, string> = {};
  if (line[i] === "{") {
    i++;
    for (;;) {
      if (line[i] === "}") {
        i++;
        break;
      }
      const eq = line.indexOf("=", i);
      if (eq < 0) throw new Error("label without '='");
      const label = line.slice(i, eq);
      if (!LABEL.test(label)) throw new Error(`bad label name ${JSON.stringify(label)}`);
      if (label in labels) throw new Error(`label ${label} repeated`);
      if (line[eq + 1] !== '"') throw new Error(`label ${label}: value not quoted`);
      let v = "";
      let j = eq + 2;
      for (;; j++) {
        const c = line[j];
        if (c === undefined) throw new Error(`label ${label}: unterminated value`);
        if (c === '"') break;
        if (c === "\\") {
          const n = line[++j];
          if (n === "\\") v += "\\";
          else if (n === '"') v += '"';
          else if (n === "n") v += "\n";
          else throw new Error(`label ${label}: bad escape \\${n ?? ""}`);
        } else v += c;
      }
      labels[label] = v;
      i = j + 1;
      if (line[i] === ",") i++;
      else if (line[i] !== "}") throw new Error(`label ${label}: expected ',' or '}' after the value`);
    }
  }
  if (line[i] !== " ") throw new Error("expected a space before the value");
  const rest = line.slice(i + 1).split(" ");
  if (rest.length > 2 || rest.some((p) => p === "")) throw new Error("expected 'value [timestamp]'");
  const value = parseValue(rest[0]!);
  if (value === null) throw new Error(`bad value ${JSON.stringify(rest[0])}`);
  if (rest[1] !== undefined && !/^-?\d+$/.test(rest[1])) throw new Error(`bad timestamp ${JSON.stringify(rest[1])}`);
  return { name, labels, value };
}

const seriesKey = (s: Sample) => `${s.name}{${Object.keys(s.labels).sort().map((k) => `${k}=${JSON.stringify(s.labels[k])}`).join(",")}}`;

/** The family a sample name belongs to, given the family being read. */
function familyOf(sample: string, current: Family | undefined): string {
  if (current) {
    const suffixes = current.type === "histogram" ? ["_bucket", "_sum", "_count"] : current.type === "summary" ? ["_sum", "_count"] : [];
    if (sample === current.name || suffixes.some((s) => sample === current.name + s)) return current.name;
  }
  return sample;
}

export function parsePrometheusText(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const closed = new Set<string>();
  const seen = new Set<string>();
  const typed = new Set<string>();
  let current: Family | undefined;
  const enter = (name: string, lineNo: number, line: string): Family => {
    if (current?.name === name) return current;
    if (closed.has(name) || families.has(name)) throw new ParseError(lineNo, line, `family ${name} is not contiguous`);
    if (current) closed.add(current.name);
    current = { name, help: null, type: "untyped", samples: [] };
    families.set(name, current);
    return current;
  };
  if (text.length && !text.endsWith("\n")) throw new Error("the exposition must end with a newline");
  const lines = text.split("\n");
  lines.pop();
  lines.forEach((line, idx) => {
    const n = idx + 1;
    if (line.trim() === "") return;
    const meta = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
    if (meta) {
      const [, kind, name, arg = ""] = meta;
      if (!NAME.test(name!)) throw new ParseError(n, line, "bad metric name");
      const f = enter(name!, n, line);
      if (kind === "HELP") {
        if (f.help !== null) throw new ParseError(n, line, "second HELP");
        f.help = unescapeHelp(arg);
      } else {
        if (!TYPES.has(arg)) throw new ParseError(n, line, "unknown type");
        if (f.samples.length || typed.has(name!)) throw new ParseError(n, line, "TYPE after samples or twice");
        typed.add(name!);
        f.type = arg as MetricType;
      }
      return;
    }
    if (line.startsWith("#")) return;
    let s: Sample;
    try {
      s = parseSample(line);
    } catch (e) {
      throw new ParseError(n, line, (e as Error).message);
    }
    const f = enter(familyOf(s.name, current), n, line);
    const key = seriesKey(s);
    if (seen.has(key)) throw new ParseError(n, line, "duplicate series");
    seen.add(key);
    f.samples.push(s);
  });
  for (const f of families.values()) if (f.type === "histogram") checkHistogram(f);
  return families;
}

function checkHistogram(f: Family): void {
  const groups = new Map<string, { buckets: [number, number][]; sum?: number; count?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = seriesKey({ name: "", labels: rest, value: 0 });
    const g = groups.get(key) ?? { buckets: [] };
    groups.set(key, g);
    if (s.name === `${f.name}_bucket`) {
      const bound = le === undefined ? null : parseValue(le);
      if (bound === null) throw new Error(`${f.name}${key}: bucket without a valid le`);
      g.buckets.push([bound, s.value]);
    } else if (s.name === `${f.name}_sum`) g.sum = s.value;
    else if (s.name === `${f.name}_count`) g.count = s.value;
    else throw new Error(`${f.name}: sample ${s.name} not allowed in a histogram`);
  }
  for (const [key, g] of groups) {
    const what = `${f.name}${key}`;
    for (let i = 1; i < g.buckets.length; i++) {
      if (!(g.buckets[i]![0] > g.buckets[i - 1]![0])) throw new Error(`${what}: le not ascending`);
      if (g.buckets[i]![1] < g.buckets[i - 1]![1]) throw new Error(`${what}: bucket counts not cumulative`);
    }
    const inf = g.buckets.at(-1);
    if (!inf || inf[0] !== Number.POSITIVE_INFINITY) throw new Error(`${what}: no +Inf bucket`);
    if (g.count === undefined || g.sum === undefined) throw new Error(`${what}: missing _count or _sum`);
    if (g.count !== inf[1]) throw new Error(`${what}: _count ${g.count} differs from the +Inf bucket ${inf[1]}`);
  }
}

/** The value of one series, or undefined; labels must match exactly. */
export function sampleValue(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number | undefined {
  const want = seriesKey({ name, labels, value: 0 });
  for (const f of families.values()) {
    for (const s of f.samples) if (seriesKey(s) === want) return s.value;
  }
  return undefined;
}
