// Seeded fuzzing of the configuration loader: thousands of mutated documents,
// grown from valid ones, must each load or be refused with issues that say
// what is wrong, one line each. vipd reads its file as root at boot, and an
// operator reads the refusal on a console: a crash or a stack trace there is
// a bug, however odd the file.
//
// The run is reproducible: the seed is in the test names, and a failure
// names the document (#index) and the mutations that made it. Larger runs on
// demand, FUZZ_SCALE times the documents and CLI runs (and the wire rounds of
// src/kernel/wire/fuzz.test.ts):
//
//   FUZZ_SCALE=10 node_modules/.bin/bun test src/config/fuzz.test.ts
//   FUZZ_SEED=12345 node_modules/.bin/bun test src/config/fuzz.test.ts   (another seed)
// Long because the mutators and the checks of each round are one table.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { type ConfigIssue, FLAGS, type Flags, formatIssues, loadSettings, type LoadResult, summarize } from "./index.ts";
import { prng, int, pick, type Rand } from "../seeded.ts";

const scale = Number(process.env.FUZZ_SCALE);
const SCALE = scale > 0 ? scale : 1;
const SEED = (Number(process.env.FUZZ_SEED) >>> 0) || 0xc0f16;
const DOCUMENTS = Math.round(10_000 * SCALE);
/** Each CLI run starts a Bun process (~0.25 s of CPU), so only a sample goes through it. */
const CLI_RUNS = Math.round(24 * SCALE);
const hexSeed = `0x${SEED.toString(16)}`;


// ---- Seeds: one valid document of each kind vipd reads. --------------------

const LAYER2 = `apiVersion: v1alpha1
kind: Layer2VIPConfig
name: 192.168.0.15
link: enp0s2
`;

const LAYER2_V6 = `apiVersion: v1alpha1
kind: Layer2VIPConfig
name: "2001:db8::15"
link: br0.100
`;

/** Every section and every setting of VIPAgentConfig. */
const AGENT = `apiVersion: v1alpha1
kind: VIPAgentConfig
nodeName: cp-2
etcd:
  endpoints: [https://10.0.0.1:2379, "https://[fd00::1]:2379/"]
  caFile: /pki/ca.crt
  certFile: /pki/c.crt
  keyFile: /pki/c.key
  serverName: etcd.example.internal
  prefix: /lab/vipd/
election: { holdTime: 4000, leaseTTL: 5 }
health:
  listen: "[::1]:9000"
apiServer:
  url: https://127.0.0.1:6443/readyz
  caFile: /pki/k.crt
  certFile: /pki/kc.crt
  keyFile: /pki/kc.key
  insecureSkipVerify: false
  interval: 0.5
  timeout: 0.25
  rise: 1
  fall: 2
announce: { burst: 5, burstInterval: 0.05, refresh: 10, probeInterval: 60 }
hooks:
  acquired: [/usr/local/sbin/vip-up, "--table", "100"]
  released: [/usr/local/sbin/vip-down]
  fenced: []
  timeout: 2.5
log: { format: pretty, level: debug }
`;

/** A Talos v1alpha1 machine config whose VIPs sit on an interface and on a VLAN. */
const TALOS = `version: v1alpha1
debug: false
machine:
  type: controlplane
  token: abcdef.0123456789abcdef
  network:
    hostname: cp-1
    interfaces:
      - interface: eth0
        dhcp: true
        vip:
          ip: 192.168.0.15
      - interface: eth1
        vlans:
          - vlanId: 100
            addresses: [10.0.100.2/24]
            vip:
              ip: 10.0.100.15
          - vlanId: 200
      - interface: eth2
        addresses: ["2001:db8::2/64"]
        vip:
          ip: "2001:DB8::16"
cluster:
  controlPlane:
    endpoint: https://192.168.0.15:6443
  clusterName: lab
`;

const HOSTNAME = "apiVersion: v1alpha1\nkind: HostnameConfig\nhostname: cp-1\n";

const SEEDS: readonly string[] = [
  LAYER2,
  `${LAYER2_V6}---\n${AGENT}`,
  TALOS,
  `${TALOS}---\n${AGENT}---\n${HOSTNAME}`,
  `${LAYER2}---\n${LAYER2_V6}---\n${HOSTNAME}`,
];
/** The same seeds as trees, for mutations of structure rather than text. */
const SEED_TREES: readonly unknown[][] = SEEDS.map((text) => parseAllDocuments(text).map((d) => d.toJS()));

// ---- Writing a tree back as YAML. -------------------------------------------

/** A scalar written into the YAML as it is: `.nan`, `0x1f`, `*alias`, a tagged value. */
class Raw {
  constructor(readonly text: string) {}
}
const raw = (text: string) => new Raw(text);
const isMapping = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x) && !(x instanceof Raw);

function scalar(v: unknown): string {
  if (v instanceof Raw) return v.text;
  if (typeof v === "number") {
    if (Number.isNaN(v)) return ".nan";
    if (!Number.isFinite(v)) return v > 0 ? ".inf" : "-.inf";
    return Object.is(v, -0) ? "-0" : String(v);
  }
  // Plain when it reads back as the same string, double-quoted (JSON is valid YAML) otherwise.
  if (typeof v === "string") return /^[A-Za-z/][A-Za-z0-9./_-]*$/.test(v) && !/^(true|false|null|y|n)$/i.test(v) ? v : JSON.stringify(v);
  return String(v);
}
const key = (k: string) => (/^[A-Za-z_][A-Za-z0-9_]*$/.test(k) ? k : JSON.stringify(k));

function flow(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(flow).join(", ")}]`;
  if (isMapping(v)) return `{${Object.entries(v).map(([k, x]) => `${key(k)}: ${flow(x)}`).join(", ")}}`;
  return scalar(v);
}

/** Block style for mappings and lists, flow style inside list items. */
function block(v: unknown, pad: string): string {
  if (Array.isArray(v) && v.length > 0) return v.map((x) => `${pad}- ${flow(x)}\n`).join("");
  if (isMapping(v) && Object.keys(v).length > 0) {
    return Object.entries(v)
      .map(([k, x]) => {
        const nested = (Array.isArray(x) && x.length > 0) || (isMapping(x) && Object.keys(x).length > 0);
        return nested ? `${pad}${key(k)}:\n${block(x, `${pad}  `)}` : `${pad}${key(k)}: ${flow(x)}\n`;
      })
      .join("");
  }
  return `${pad}${flow(v)}\n`;
}

const emit = (docs: unknown[], rand: Rand) => docs.map((d) => (rand() < 0.25 ? `${flow(d)}\n` : block(d, ""))).join("---\n");

// ---- Odd values. ------------------------------------------------------------

const ODD_VALUES: readonly unknown[] = [
  // numbers out of range, not whole, not finite, or YAML spellings of them
  0, -1, 1, 2, 3, 100, 101, 999, 1000, 30000, 30001, 65535, 65536, 2 ** 31, 2 ** 32, 2 ** 53, -(2 ** 53), 1e21, 1e308, -1e308, 5e-324, -0, 0.5, 0.049, 3600.0001,
  raw(".nan"), raw(".NaN"), raw(".inf"), raw("-.inf"), raw("1e309"), raw("-1e309"), raw("0x10"), raw("0o17"), raw("0b101"), raw("1_000"), raw("+12"),
  raw("-0.0"), raw("99999999999999999999999999999"), raw("1e-400"), raw("NaN"), raw("Infinity"),
  // YAML 1.1 spellings, tags and other scalars that are not what they look like
  raw("~"), raw("null"), raw("yes"), raw("on"), raw("True"), raw("1:20"), raw("2001-12-14"), raw("!!binary aGVsbG8="), raw("!!str 5"),
  raw('!!int "7"'), raw("!!float 1"), raw("!custom x"), raw("!!timestamp 2001-12-14"), raw("!!map {}"), raw("!!set {a, b}"), raw("!!omap [a: 1]"),
  raw("*undefined_alias"), raw("&anchor 5"), raw("''"), raw('""'), raw("'it''s'"), raw("|-"), raw("?"),
  true, false, null, [], {}, [[]], [{}], [null],
  // strings that are wrong for one setting or another, or wrong everywhere
  "", " ", "\t", "true", "10", "1e3", "-0", "v1alpha1", "v1alpha2", "Layer2VIPConfig", "VIPAgentConfig", "HCloudVIPConfig", "EquinixMetalVIPConfig",
  "192.168.0.15", "192.168.0.256", "192.168.00.15", "0x7f.1", "::", "::1", "0.0.0.0", "127.0.0.1", "255.255.255.255", "224.0.0.1", "169.254.1.1",
  "fe80::1", "ff02::1", "::ffff:10.0.0.1", "2001:db8::15/64", "[2001:db8::15]", "2001:db8:::15", "2001:db8::15%eth0",
  "eth0", "eth0.", ".", "..", "a/b", "a:b", "a b", "0123456789abcdef", "ethé", "https://x:2379", "http://10.0.0.1:2379", "https://x:0", "https://x:65536",
  "https://[::1]:2379", "https://[10.0.0.1]:2379", "https://x:2379/path", "ftp://x:21", "x:2379", "[::1]:9000", "[::1]", "localhost:0", "1.2.3:80",
  "/", "relative/path", "/pki/ca.crt", "/etc/passwd", "/dev/null", "/vipd", "vipd/", "/a b/", "pretty", "json", "PRETTY", "trace", "verbose",
  "\0", "a\0b", "line\nbreak", "crlf\r\n", "\r", "\u0085", "\u2028", "\u2029", "\uFEFF", "\uFFFD", "\uD800", "\uDFFF", "\u001b[31mred",
  "🦀", "ünïcödé", "Ω".repeat(64), "%s%n%x", "${HOME}", "$(reboot)", "'; DROP TABLE vips; --", "<<", "*", "&", "[", "{", "#", "- ", ": ",
];

/** Known field names, and a few that only look like them, as keys for unknown fields. */
const NAMES: readonly string[] = [
  "apiVersion", "kind", "name", "link", "nodeName", "etcd", "endpoints", "caFile", "certFile", "keyFile", "serverName", "prefix", "election",
  "holdTime", "leaseTTL", "health", "listen", "apiServer", "url", "insecureSkipVerify", "interval", "timeout", "rise", "fall", "announce", "burst",
  "burstInterval", "refresh", "probeInterval", "hooks", "acquired", "released", "fenced", "log", "format", "level", "version", "machine", "network",
  "interfaces", "interface", "vip", "ip", "vlans", "vlanId", "deviceSelector", "hcloud", "equinixMetal", "cluster",
];
const ODD_KEYS: readonly string[] = [
  "__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "valueOf", "", " ", "a\nb", "new\nline: x", "\0", "tab\there", "\r",
  "\u001b[2J", "\uFEFFkind", "ключ", "🔑", "1", "-1", "1.5", "null", "true", "~", "<<", "a.b", "a[0]", "etcd.endpoints", "k".repeat(300),
];

function oddKey(rand: Rand): string {
  const r = rand();
  if (r < 0.4) return pick(rand, ODD_KEYS);
  const name = pick(rand, NAMES);
  if (r < 0.6) return name.toLowerCase() === name ? name.toUpperCase() : name.toLowerCase(); // wrong case
  if (r < 0.8) return name.slice(0, -1); // a typo
  return `${name}${pick(rand, ["s", "_", "2", " ", "\t", ":"])}`;
}

/** Nested `depth` levels deep, in lists or mappings. */
function nest(depth: number, rand: Rand): unknown {
  let v: unknown = pick(rand, ["bottom", 1, null]);
  const asList = rand() < 0.5;
  for (let i = 0; i < depth; i++) v = asList ? [v] : { a: v };
  return v;
}

function oddValue(rand: Rand): unknown {
  const r = rand();
  if (r < 0.6) return pick(rand, ODD_VALUES);
  if (r < 0.68) return pick(rand, ["x", "9", "/", "é", "\0", "\n", " "]).repeat(1 + int(rand, 70_000)); // huge strings
  if (r < 0.76) return (rand() - 0.5) * 10 ** int(rand, 310); // any magnitude
  if (r < 0.82) return Array.from({ length: int(rand, 200) }, () => pick(rand, ODD_VALUES)); // long lists
  if (r < 0.88) return Object.fromEntries(Array.from({ length: 1 + int(rand, 8) }, () => [oddKey(rand), pick(rand, ODD_VALUES)]));
  if (r < 0.94) return nest(1 + int(rand, 400), rand); // hundreds of levels
  return int(rand, 2 ** 31) - 2 ** 30;
}

// ---- Mutations. -------------------------------------------------------------

/** Every place in a tree a value sits: the container and the key in it. */
function slots(v: unknown, out: { parent: Record<string, unknown> | unknown[]; key: string | number }[] = []) {
  if (Array.isArray(v)) v.forEach((x, i) => (out.push({ parent: v, key: i }), slots(x, out)));
  else if (isMapping(v)) for (const [k, x] of Object.entries(v)) out.push({ parent: v, key: k }), slots(x, out);
  return out;
}

/** Sets a field without JavaScript's setters: "__proto__" must become a key, not a prototype. */
function setField(o: Record<string, unknown> | unknown[], k: string | number, v: unknown): void {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

/** One change to the documents' structure; returns its name for the report. */
function mutateTree(docs: unknown[], rand: Rand): string {
  const places = slots(docs);
  if (places.length === 0) {
    docs.push(oddValue(rand));
    return "new document";
  }
  const { parent, key: k } = pick(rand, places);
  switch (int(rand, 8)) {
    case 0:
    case 1:
    case 2:
      setField(parent, k, oddValue(rand));
      return `value of ${String(k)}`;
    case 3:
      if (Array.isArray(parent)) parent.splice(k as number, 1);
      else delete parent[k as string];
      return `removed ${String(k)}`;
    case 4: {
      const target = isMapping(parent[k as never]) ? (parent[k as never] as Record<string, unknown>) : parent;
      if (Array.isArray(target)) target.push(oddValue(rand));
      else setField(target, oddKey(rand), rand() < 0.5 ? oddValue(rand) : pick(rand, ODD_VALUES));
      return "unknown field";
    }
    case 5:
      if (!Array.isArray(parent)) {
        const value = parent[k as string];
        delete parent[k as string];
        setField(parent, oddKey(rand), value);
      }
      return `renamed ${String(k)}`;
    case 6:
      setField(parent, k, rand() < 0.5 ? [parent[k as never]] : { value: parent[k as never] });
      return `wrapped ${String(k)}`;
    default: {
      // Whole documents: duplicated, dropped, or of another kind.
      const i = int(rand, docs.length);
      const r = rand();
      if (r < 0.3) docs.push(structuredClone(docs[i]));
      else if (r < 0.5 && docs.length > 1) docs.splice(i, 1);
      else if (isMapping(docs[i])) setField(docs[i] as Record<string, unknown>, "kind", pick(rand, ["Layer2VIPConfig", "VIPAgentConfig", "HCloudVIPConfig", "X", "", 7]));
      else docs[i] = oddValue(rand);
      return "documents";
    }
  }
}

/** Bits of YAML syntax, encodings and control characters to drop into the text. */
const TOKENS: readonly string[] = [
  ":", ": ", "-", "- ", "[", "]", "{", "}", ",", "'", '"', "&a ", "*a", "*a ", "!", "!!", "|", ">", "#", "%", "@", "`", "?", "? ", "\\", "<<: ",
  "\n", "\r\n", "\r", "\t", " ", "  ", "\0", "\uFEFF", "\uFFFD", "\uD800", "\u0085", "\u2028", "\x7f", "\x1b", "---", "\n---\n", "\n...\n", "é",
  "&anchor {x: 1}", "<<: *anchor\n", "!!binary ", "!!str ", "!local ", "\n%YAML 1.1\n", "? [a, b]\n: c\n", "|\n  text\n", ">-\n  folded\n",
];

/** Random bytes decoded as UTF-8, as a file with broken bytes reads: replacement characters and all. */
const brokenUtf8 = (rand: Rand) => new TextDecoder().decode(Uint8Array.from({ length: 1 + int(rand, 12) }, () => 0x80 + int(rand, 128)));

/** One change to the text; returns its name for the report. */
function mutateText(text: string, rand: Rand): [string, string] {
  const at = int(rand, text.length + 1);
  const lines = text.split("\n");
  const line = int(rand, lines.length);
  switch (int(rand, 13)) {
    case 0:
    case 1:
      return [text.slice(0, at) + pick(rand, TOKENS) + text.slice(at), "token"];
    case 2:
      return [text.slice(0, at) + text.slice(at + 1 + int(rand, 20)), "deletion"];
    case 3:
      // A line twice is a duplicate key, in a mapping.
      lines.splice(line, 0, lines[line]!);
      return [lines.join("\n"), "duplicate line"];
    case 4: {
      const other = int(rand, lines.length);
      [lines[line], lines[other]] = [lines[other]!, lines[line]!];
      return [lines.join("\n"), "swapped lines"];
    }
    case 5:
      lines[line] = rand() < 0.5 ? pick(rand, [" ", "   ", "\t"]) + lines[line] : lines[line]!.replace(/^ {1,2}/, "");
      return [lines.join("\n"), "indentation"];
    case 6:
      return [text.slice(0, at), "truncated"];
    case 7:
      return [rand() < 0.5 ? text.replaceAll("\n", "\r\n") : text.replace(/^( +)/gm, (s) => "\t".repeat(s.length / 2)), "line ends or tabs"];
    case 8:
      return [rand() < 0.5 ? `\uFEFF${text}` : `${text}\0${text.slice(at)}`, "BOM or NUL"];
    case 9:
      return [text.slice(0, at) + brokenUtf8(rand) + text.slice(at), "broken UTF-8"];
    case 10:
      return [text.slice(0, at) + String.fromCharCode(int(rand, 0x10000)) + text.slice(at), "any character"];
    case 11:
      lines.splice(line, 0, pick(rand, ["---", "...", "--- !!map", "--- |", "%YAML 1.2\n---", "%TAG ! tag:example.com,2000:\n---", "--- &d"]));
      return [lines.join("\n"), "documents"];
    default:
      // Anchor a value and use it somewhere else, before or after.
      lines[line] = lines[line]!.replace(/: (\S)/, ": &x $1");
      lines.splice(int(rand, lines.length + 1), 0, pick(rand, ["x: *x", "- *x", "  dup: *x", "<<: *x", "*x : y"]));
      return [lines.join("\n"), "anchor and alias"];
  }
}

// ---- Whole documents that attack the parser. --------------------------------

/** "Billion laughs": each level lists the one below `width` times, width^depth strings in all if expanded. */
function aliasBomb(depth: number, width: number, at: "unknown field" | "setting" | "root"): string {
  const levels = [`a0: &a0 [${Array(width).fill('"lol"').join(", ")}]`];
  for (let i = 1; i <= depth; i++) levels.push(`a${i}: &a${i} [${Array(width).fill(`*a${i - 1}`).join(", ")}]`);
  const bombs = `bombs:\n${levels.map((l) => `  ${l}`).join("\n")}\n`;
  if (at === "root") return `${LAYER2}---\n${bombs.replace(/^bombs:\n/, "").replace(/^ {2}/gm, "")}`;
  if (at === "unknown field") return `${LAYER2}${bombs}`;
  return `${LAYER2}---\napiVersion: v1alpha1\nkind: VIPAgentConfig\n${bombs}hooks:\n  acquired: *a${depth}\netcd:\n  endpoints: *a${depth}\n`;
}

function deepDocument(rand: Rand): string {
  // Around the loader's limit (MAX_NESTING), well past it, and past where the parser runs out of stack.
  const depth = pick(rand, [100 + int(rand, 300), 1000 + int(rand, 4000), 20_000]);
  switch (int(rand, 5)) {
    case 0:
      return `${LAYER2}deep: ${"[".repeat(depth)}${"]".repeat(depth)}\n`;
    case 1:
      return `${LAYER2}deep: ${"{a: ".repeat(depth)}1${"}".repeat(depth)}\n`;
    case 2:
      // Block style: one more level of indentation per line.
      return `${LAYER2}${Array.from({ length: Math.min(depth, 400) }, (_, i) => `${" ".repeat(i)}k${i}:`).join("\n")} end\n`;
    case 3:
      // An alias makes the yaml library walk the whole tree, copying the path at every level.
      return `${LAYER2}a: &a 1\nb: *a\ndeep: ${"[".repeat(depth)}*a${"]".repeat(depth)}\n`;
    default:
      // Unbalanced: opened and never closed.
      return `${LAYER2}deep: ${"[".repeat(depth)}\n`;
  }
}

function specialDocument(rand: Rand): [string, string] {
  switch (int(rand, 6)) {
    case 0: {
      const depth = 3 + int(rand, 8);
      return [aliasBomb(depth, 2 + int(rand, 9), pick(rand, ["unknown field", "setting", "root"] as const)), `alias bomb depth ${depth}`];
    }
    case 1:
      return [deepDocument(rand), "deep nesting"];
    case 2:
      return [new TextDecoder().decode(Uint8Array.from({ length: int(rand, 400) }, () => int(rand, 256))), "random bytes"];
    case 3: {
      // Many documents: more VIPs than one agent serves, or the same one many times.
      const n = 1 + int(rand, 160);
      const same = rand() < 0.3;
      return [Array.from({ length: n }, (_, i) => LAYER2.replace("192.168.0.15", same ? "10.1.0.1" : `10.1.${i >> 8}.${(i & 0xff) + 1}`)).join("---\n"), `${n} documents`];
    }
    case 4:
      return [Array.from({ length: 1 + int(rand, 50) }, () => pick(rand, TOKENS)).join(""), "tokens only"];
    default:
      return [pick(rand, ["", "\n", "---", "---\n---\n", "...", "~", "null", "[]", "{}", "0", "\uFEFF", "\0", "# only a comment\n", "- a\n- b\n"]), "almost empty"];
  }
}

interface Case {
  text: string;
  /** Settings from elsewhere, which the same checks judge: sometimes odd as well. */
  env: Record<string, string>;
  flags: Flags;
  /** The mutations that made it, to read in a failure report. */
  how: string;
}

/** Odd VIPD_* variables and flags, known and unknown, as text (what a shell or a unit file gives). */
function oddOverrides(rand: Rand): { env: Record<string, string>; flags: Flags } {
  const env: Record<string, string> = {};
  const flags: Flags = {};
  const text = () => {
    const v = oddValue(rand);
    return typeof v === "string" ? v : v instanceof Raw ? v.text : JSON.stringify(v) ?? "";
  };
  for (let n = 1 + int(rand, 3); n > 0; n--) {
    const spec = pick(rand, FLAGS);
    const name = rand() < 0.8 ? spec.name : oddKey(rand);
    if (rand() < 0.5) env[rand() < 0.8 && spec.env ? spec.env : `VIPD_${name.toUpperCase()}`] = text();
    else flags[name] = spec.type === "boolean" && rand() < 0.5 ? rand() < 0.5 : text();
  }
  return { env, flags };
}

/** The documents of one run, the same for the same seed. */
function* mutatedDocuments(seed: number, count: number): Generator<Case> {
  const rand = prng(seed);
  for (let i = 0; i < count; i++) {
    const from = int(rand, SEEDS.length);
    const how: string[] = [`seed document ${from}`];
    let text: string;
    const r = rand();
    if (r < 0.05) {
      const [t, what] = specialDocument(rand);
      text = t;
      how.push(what);
    } else if (r < 0.55) {
      const docs = structuredClone(SEED_TREES[from]!);
      for (let n = 1 + int(rand, 3); n > 0; n--) how.push(mutateTree(docs, rand));
      text = emit(docs, rand);
    } else {
      text = SEEDS[from]!;
    }
    // Most documents also get their text broken, a few places at a time.
    if (r >= 0.55 || rand() < 0.3) {
      for (let n = 1 + int(rand, 3); n > 0; n--) {
        const [t, what] = mutateText(text, rand);
        text = t;
        how.push(what);
      }
    }
    // Some also get odd variables and flags; the CLI runs below use none.
    const { env, flags } = rand() < 0.1 ? (how.push("variables and flags"), oddOverrides(rand)) : { env: {}, flags: {} };
    yield { text, env, flags, how: how.join(", ") };
  }
}

// ---- The checks. ------------------------------------------------------------

function load(fileText: string, env: Record<string, string> = {}, flags: Flags = {}): LoadResult {
  return loadSettings({ fileText, fileName: "vipd.yaml", env, flags, hostname: "cp-1", checkFile: () => null });
}

/** What is wrong with one issue, or null: one line, naming its source, then saying why. */
function badIssue(i: ConfigIssue): string | null {
  const m = i.message;
  if (typeof m !== "string" || m.trim() === "") return "empty message";
  if (/[\n\r]/.test(m)) return "message spans lines";
  if (/[\p{Cc}\p{Zl}\p{Zp}]/u.test(m)) return "message holds a control character";
  if (m.includes("    at ")) return "message holds a stack trace";
  if (!m.startsWith(`${i.document}: `) || m.slice(i.document.length + 2).trim() === "") return "message does not name its source and then the problem";
  return null;
}

/** A failure's input, short enough to read and exact enough to reproduce. */
const preview = (text: string) => JSON.stringify(text.length > 300 ? `${text.slice(0, 300)}…(${text.length} chars)` : text);

interface Outcome extends Case {
  index: number;
  ok: boolean;
}

const outcomes: Outcome[] = [];

describe(`configuration fuzz (seed ${hexSeed}, FUZZ_SCALE=${SCALE})`, () => {
  test("every seed document is valid, so mutations start from something vipd accepts", () => {
    for (const text of SEEDS) {
      const r = load(text);
      if (!r.ok) throw new Error(formatIssues(r.issues));
      // The emitter writes the seeds back as they were read.
      expect(load(emit(structuredClone(parseAllDocuments(text).map((d) => d.toJS())), prng(1))).ok).toBe(true);
    }
  });

  test(`${DOCUMENTS} mutated documents: loadSettings returns, and every issue is one line that says why (seed ${hexSeed})`, () => {
    const failures: string[] = [];
    let slowest = { ms: 0, index: -1 };
    let issues = 0;
    const started = performance.now();
    let index = 0;
    for (const c of mutatedDocuments(SEED, DOCUMENTS)) {
      const t0 = performance.now();
      let r: LoadResult;
      try {
        r = load(c.text, c.env, c.flags);
        // Accepted: `vipd validate` prints this, so it must not throw either.
        if (r.ok && (summarize(r.settings) === "" || r.settings.vips.length === 0)) failures.push(`#${index} (${c.how}) accepted without VIPs: ${preview(c.text)}`);
      } catch (e) {
        failures.push(`#${index} (${c.how}) threw ${e instanceof Error ? e.stack : String(e)}: ${preview(c.text)}`);
        index++;
        continue;
      }
      const ms = performance.now() - t0;
      if (ms > slowest.ms) slowest = { ms, index };
      if (!r.ok) {
        issues += r.issues.length;
        if (r.issues.length === 0) failures.push(`#${index} (${c.how}) refused without an issue: ${preview(c.text)}`);
        for (const i of r.issues) {
          const bad = badIssue(i);
          if (bad) failures.push(`#${index} (${c.how}) ${bad}: ${JSON.stringify(i.message)} from ${preview(c.text)}`);
        }
        // The whole report: a header line, then exactly one line per issue.
        if (formatIssues(r.issues).split("\n").length !== r.issues.length + 1) failures.push(`#${index} (${c.how}) report is not one line per issue`);
      }
      outcomes.push({ ...c, index, ok: r.ok });
      index++;
    }
    const accepted = outcomes.filter((o) => o.ok).length;
    console.log(
      `config fuzz: seed ${hexSeed}, ${index} documents, ${accepted} accepted, ${index - accepted} rejected (${issues} issues), ` +
        `${failures.length} failures, ${((performance.now() - started) / 1000).toFixed(1)} s, slowest load ${slowest.ms.toFixed(0)} ms (#${slowest.index})`,
    );
    expect(failures.slice(0, 10)).toEqual([]);
    // A load that takes seconds is a hang in waiting (an alias bomb expanded, a parser gone quadratic).
    expect(slowest.ms).toBeLessThan(2000);
  }, 600_000);

  test("a billion laughs is refused at once, without expanding it", () => {
    // 10 levels of 10: 10^10 strings if the aliases were expanded.
    const text = aliasBomb(10, 10, "setting");
    const heapBefore = process.memoryUsage().heapUsed;
    const t0 = performance.now();
    const r = load(text);
    const ms = performance.now() - t0;
    const grewMiB = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.issues.map((i) => i.message)).toEqual(["document 1: YAML error: Excessive alias count indicates a resource exhaustion attack"]);
    expect(ms).toBeLessThan(1000);
    expect(grewMiB).toBeLessThan(64);
  });
});

// ---- Bugs this fuzzer found, kept as plain cases. ----------------------------

describe("found by fuzzing", () => {
  const messages = (text: string, env: Record<string, string> = {}, flags: Flags = {}) => {
    const r = load(text, env, flags);
    return r.ok ? [] : r.issues.map((i) => i.message);
  };
  const UNKNOWN = "unknown field; known fields here: apiVersion, kind, name, link";

  test("a key with a line break is quoted, so it cannot add lines (or a fake stack trace) to the report", () => {
    expect(messages(`${LAYER2}"x\\n    at Object.<anonymous> (/src/main.ts:1:1)": 1\n`)).toEqual([
      `document 0 (Layer2VIPConfig): "x\\n    at Object.<anonymous> (/src/main.ts:1:1)": ${UNKNOWN}`,
    ]);
    expect(messages(`${LAYER2}"\\r": 1\n`)).toEqual([`document 0 (Layer2VIPConfig): "\\r": ${UNKNOWN}`]);
    expect(messages(`${LAYER2}"esc\\e[2J": 1\n`)).toEqual([`document 0 (Layer2VIPConfig): "esc\\u001b[2J": ${UNKNOWN}`]);
  });

  test("a cloud VIP kind with a line break is quoted", () => {
    const [m] = messages(`apiVersion: v1alpha1\nkind: "x\\nHCloudVIPConfig"\n`);
    expect(m).toBe('document 0 ("x\\nHCloudVIPConfig"): kind: unknown kind "x\\nHCloudVIPConfig": did you mean "HCloudVIPConfig", a cloud VIP of Talos\'s that vipd cannot serve?');
  });

  test("unknown variable and flag names with control characters are quoted", () => {
    expect(messages(LAYER2, { "VIPD_X\n": "1" }, { "a\tb": "1" })).toEqual([
      'environment "VIPD_X\\n": unknown variable; "vipd run --help" lists the VIPD_ variables',
      'flag --"a\\tb": unknown flag; "vipd run --help" lists them',
    ]);
  });

  test("a syntax error quoting the source escapes its control characters", () => {
    expect(messages("a: |@x\r\x1b[2Jb\n")).toEqual([
      "document 0: YAML syntax error at line 1, column 5: Block scalar header includes extra characters: |@x",
      "document 0: YAML syntax error at line 1, column 7: Not a YAML token: \\u000d\\u001b[2Jb",
    ]);
  });

  test("line separators that JSON leaves alone (U+2028, NEL) are escaped in received values", () => {
    expect(messages(LAYER2.replace("enp0s2", '"en\\u2028p\\x85"'))).toEqual([
      `document 0 (Layer2VIPConfig): link: expected a link name: 1 to 15 bytes, no '/', ':' or whitespace, not "." or "..", received "en\\u2028p\\u0085"`,
    ]);
  });

  test("one alias in a document nested thousands of levels deep is refused in milliseconds, not minutes", () => {
    // Before the nesting limit: 2 s at 2000 levels, 11 s at 4000 (a 20 kB file), and worse than quadratic beyond.
    const t0 = performance.now();
    expect(messages(`${LAYER2}x: *x\ndeep: ${"{a: ".repeat(2000)}1${"}".repeat(2000)}\n`)).toEqual([
      "document 0: lists and mappings nested more than 256 levels deep; no configuration needs that many",
    ]);
    expect(performance.now() - t0).toBeLessThan(1000);
    // The limit leaves room: 255 levels load.
    expect(messages(`${LAYER2}deep: ${"[".repeat(254)}${"]".repeat(254)}\n`)).toEqual([`document 0 (Layer2VIPConfig): deep: ${UNKNOWN}`]);
  });
});

// ---- The real CLI, on a sample of the same documents. -----------------------

/** Documents a parser is most likely to choke on, written as bytes: invalid UTF-8 reaches the file reader as it is. */
const NASTY_FILES: readonly { name: string; bytes: Uint8Array }[] = [
  { name: "billion laughs", bytes: new TextEncoder().encode(aliasBomb(10, 10, "setting")) },
  { name: "2000 nested lists", bytes: new TextEncoder().encode(`${LAYER2}deep: ${"[".repeat(2000)}${"]".repeat(2000)}\n`) },
  { name: "invalid UTF-8 in a value", bytes: Uint8Array.from([...new TextEncoder().encode(LAYER2.replace("enp0s2", "enp")), 0xff, 0xc0, 0x80, 0x0a]) },
  { name: "UTF-16 with a BOM", bytes: Uint8Array.from([0xff, 0xfe, ...[...LAYER2].flatMap((c) => [c.charCodeAt(0), 0])]) },
  { name: "CRLF, BOM and NUL", bytes: new TextEncoder().encode(`\uFEFF${LAYER2.replaceAll("\n", "\r\n")}\0`) },
  { name: "an unknown field with a line break in its name", bytes: new TextEncoder().encode(`${LAYER2}"x\\n    at Object.<anonymous> (/src/main.ts:1:1)": 1\n`) },
  { name: "a cloud VIP kind with a line break", bytes: new TextEncoder().encode(`${LAYER2}---\napiVersion: v1alpha1\nkind: "x\\nHCloudVIPConfig"\n`) },
  { name: "a list as a key (the yaml library warns about it)", bytes: new TextEncoder().encode(`${LAYER2}? [a, b]\n: c\n`) },
  { name: "one alias and 2000 levels", bytes: new TextEncoder().encode(`${LAYER2}x: *x\ndeep: ${"{a: ".repeat(2000)}1${"}".repeat(2000)}\n`) },
  { name: "control characters quoted from the source in a syntax error", bytes: new TextEncoder().encode(`${LAYER2}a: |@x\r\x1b[2Jb\n`) },
];

describe(`the real CLI, \`vipd validate FILE\` (seed ${hexSeed})`, () => {
  // Made when the test runs: a filtered-out test would never clean it up.
  let dir = "";
  afterAll(() => dir && rmSync(dir, { recursive: true, force: true }));
  const main = join(import.meta.dir, "..", "main.ts");
  // No VIPD_* variable from the caller's environment may change the verdict.
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/" };

  async function validate(file: string): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
    const t0 = performance.now();
    const proc = Bun.spawn([process.execPath, main, "validate", file], { env, stdout: "pipe", stderr: "pipe" });
    const timer = setTimeout(() => proc.kill("SIGKILL"), 20_000);
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    clearTimeout(timer);
    return { code, stdout, stderr, ms: performance.now() - t0 };
  }

  test(`${CLI_RUNS} mutated files and ${NASTY_FILES.length} nasty ones: exit 0 or 2, the same verdict and issues as in-process, never a stack trace`, async () => {
    // The documents of the test above (made again when it was filtered out), a
    // third of them from those it accepted, each part spread evenly over the run.
    const docs = outcomes.length > 0 ? outcomes : [...mutatedDocuments(SEED, DOCUMENTS)].map((c, index) => ({ ...c, index, ok: load(c.text, c.env, c.flags).ok }));
    const spread = (xs: Outcome[], n: number) => xs.filter((_, i) => i % Math.max(1, Math.floor(xs.length / n)) === 0).slice(0, n);
    const accepted = Math.round(CLI_RUNS / 3);
    const sample = [
      ...[...spread(docs.filter((o) => o.ok), accepted), ...spread(docs.filter((o) => !o.ok), CLI_RUNS - accepted)].map((o) => ({
        name: `#${o.index} (${o.how})`,
        bytes: new TextEncoder().encode(o.text),
      })),
      ...NASTY_FILES,
    ];
    expect(sample.length).toBeGreaterThanOrEqual(Math.min(CLI_RUNS, DOCUMENTS));
    dir = mkdtempSync(join(tmpdir(), "vipd-fuzz-"));
    const failures: string[] = [];
    const exits = { 0: 0, 2: 0 };
    let slowest = 0;
    const started = performance.now();
    const check = async ({ name, bytes }: { name: string; bytes: Uint8Array }, n: number) => {
      const file = join(dir, `${n}.yaml`);
      writeFileSync(file, bytes);
      // What the CLI will see, once it has read the file as UTF-8, judged in-process as validate judges it.
      const expected = loadSettings({
        fileText: Buffer.from(bytes).toString("utf8"), fileName: file, env: {}, flags: {}, hostname: hostname(), unreadableFiles: "warning", unknownVariables: "warning",
      });
      const warned = expected.warnings.length > 0 ? `${formatIssues(expected.warnings, "warning")}\n` : "";
      const r = await validate(file);
      slowest = Math.max(slowest, r.ms);
      const say = (what: string) => failures.push(`${name}: ${what} (exit ${r.code}); stderr ${JSON.stringify(r.stderr.slice(0, 600))}; file ${preview(Buffer.from(bytes).toString("utf8"))}`);
      if (r.code !== 0 && r.code !== 2) return say("exit code is neither 0 nor 2");
      exits[r.code]++;
      if (/^\s+at /m.test(r.stderr) || r.stderr.includes("internal error")) return say("stack trace on stderr");
      if (r.code !== (expected.ok ? 0 : 2)) return say(`in-process verdict was ${expected.ok ? "valid" : "invalid"}`);
      if (r.code === 0 && !r.stdout.includes("VIP")) return say("valid, but no summary printed");
      // Where the parser runs out of stack depends on how deep the caller already is: the CLI and this test differ.
      const stackBound = !expected.ok && expected.issues.some((i) => i.message.includes("Maximum call stack size exceeded"));
      if (r.code === 2 && stackBound && !/^(\d+ configuration warnings?:\n( {2}- .*\n)+)?\d+ configuration problems?:\n( {2}- .*\n)+$/.test(r.stderr)) return say("stderr is not a list of issues");
      if (r.code === 2 && !expected.ok && !stackBound && r.stderr !== `${warned}${formatIssues(expected.issues)}\n`) return say("stderr is not the list of issues");
      // After the file's warnings, validate's about this machine (the files' links and hooks are not here).
      if (r.code === 0 && !(r.stderr.startsWith(warned) && /^(\d+ warnings? about this machine:\n( {2}- .*\n)+)?$/.test(r.stderr.slice(warned.length)))) {
        return say("stderr is not the list of warnings");
      }
    };
    // A few at a time: each run is a whole Bun process.
    const parallel = 4;
    for (let i = 0; i < sample.length; i += parallel) await Promise.all(sample.slice(i, i + parallel).map((s, j) => check(s, i + j)));
    console.log(
      `config fuzz via the CLI: ${sample.length} files, ${exits[0]} exit 0 (valid), ${exits[2]} exit 2 (refused), ${failures.length} failures, ` +
        `${((performance.now() - started) / 1000).toFixed(1)} s, slowest run ${slowest.toFixed(0)} ms`,
    );
    expect(failures.slice(0, 5)).toEqual([]);
  }, 300_000);
});
