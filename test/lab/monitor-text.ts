// What `ip` and `nft` print about addresses and vipd's kernel fence, parsed.
// The ownership recorder (recorder.ts) watches every node's kernel through
// these two tools instead of through vipd's own netlink decoder, so that a
// decoder bug cannot blind the agent and its witness together. Pure: text in,
// values out; nothing here throws on odd input (an unknown line is null).
//
// Formats, as printed by iproute2 6.1 and nftables 1.0.6 (fixtures captured
// on the lab machine are in monitor-text.test.ts):
//
//   ip monitor address   (text only: iproute2 6.1 has no JSON monitor)
//     3: eth0    inet 192.0.2.100/32 scope global dynamic eth0
//            valid_lft 5sec preferred_lft 5sec
//     Deleted 3: eth0    inet6 2001:db8::100/128 scope global nodad
//            valid_lft forever preferred_lft forever
//   A lifetime refresh (`ip addr change`, `replace`) prints the add line again.
//
//   nft monitor
//     add table inet vipd
//     add set inet vipd proven4 { type ipv4_addr; flags timeout; }
//     add element inet vipd proven4 { 192.0.2.100 timeout 2s448ms expires 2s448ms }
//     add chain inet vipd input { type filter hook input priority raw; policy accept; }
//     add rule inet vipd input ip daddr @vips4 ip daddr != @proven4 drop
//     add rule inet vipd input handle 6 ip6 daddr @vips6 ip6 daddr != @proven6 drop
//     delete rule inet vipd input handle 6
//     delete element inet vipd proven4 { 192.0.2.100 timeout 2s400ms expires 2s388ms }
//     delete set inet vipd proven4
//     delete chain inet vipd input
//     delete table inet vipd
//     # new generation 9 by process 6528 (nft)
//   One line per element, also when one command added several, and a
//   `# new generation` line after each transaction: everything before it was
//   committed at once (vipd's own batches may add, delete and re-add an
//   element in one transaction; only the end state ever existed). Deleting a
//   table prints `delete set` for its sets but no `delete element`; flushing a
//   set prints `delete element` for each. An element that times out is
//   removed silently: no line at all. Re-adding an element with the same
//   timeout and no `expires` changes nothing in the kernel and prints nothing;
//   an update with a new timeout or an explicit `expires` prints `add element`
//   again. Timeouts are in jiffies (2s450ms comes back as 2s448ms at HZ=250).
//   A rule line is one rule added or deleted, but its text cannot be trusted:
//   a deletion names only a handle, an addition may print the handle of
//   another rule, and a rule added by a later command prints without the set
//   lookups nft did not cache (`meta nfproto ipv4 drop`). So the monitor
//   counts rules per chain; only `nft list table` shows what they say.
//   Deleting or flushing a table or chain prints `delete rule` for each rule.
//   When nft loses track (ENOBUFS, or a set it has not cached, e.g. after
//   `flush table`), it says so: `# ERROR: We lost some netlink events!`,
//   `W: Received event for an unknown set.`

export type AddressFamily = "inet" | "inet6";

/** One address event of `ip monitor address`. */
export interface AddressEvent {
  deleted: boolean;
  ifindex: number;
  /** The link's name (without an `@peer` suffix). */
  link: string;
  family: AddressFamily;
  address: string;
  prefixlen: number | null;
}

// [ADDR] appears when several object types are monitored; "Deleted " marks a removal.
const IP_MONITOR_LINE = /^(?:\[[A-Z]+\]\s*)?(Deleted\s+)?(\d+):\s+([^\s@]+)(?:@\S+)?\s+(inet6?)\s+([0-9A-Fa-f.:]+)(?:\/(\d+))?(?=\s|$)/;

/** The first line of an `ip monitor address` event; null for continuation lines (`valid_lft …`) and anything else. */
export function parseIpMonitorLine(line: string): AddressEvent | null {
  const m = IP_MONITOR_LINE.exec(line);
  if (!m) return null;
  return {
    deleted: m[1] !== undefined,
    ifindex: Number(m[2]),
    link: m[3]!,
    family: m[4] as AddressFamily,
    address: m[5]!.toLowerCase(),
    prefixlen: m[6] === undefined ? null : Number(m[6]),
  };
}

/** The addresses in `ip -j addr show [dev LINK]` output; [] for anything unreadable. */
export function addressesFromIpJson(text: string): { link: string; family: AddressFamily; address: string; prefixlen: number }[] {
  let v: unknown;
  try {
    v = JSON.parse(text.trim() || "[]");
  } catch {
    return [];
  }
  if (!Array.isArray(v)) return [];
  const out: { link: string; family: AddressFamily; address: string; prefixlen: number }[] = [];
  for (const l of v as { ifname?: unknown; addr_info?: unknown }[]) {
    if (typeof l !== "object" || l === null || !Array.isArray(l.addr_info)) continue;
    for (const a of l.addr_info as { family?: unknown; local?: unknown; prefixlen?: unknown }[]) {
      if ((a.family === "inet" || a.family === "inet6") && typeof a.local === "string") {
        out.push({ link: String(l.ifname ?? ""), family: a.family, address: a.local.toLowerCase(), prefixlen: Number(a.prefixlen ?? 0) });
      }
    }
  }
  return out;
}

/** An element of an nftables set as nft prints it. */
export interface NftElement {
  /** The key as printed (an address for vipd's sets). */
  value: string;
  /** The element's timeout and the time left until it expires, in ms; null when the element has none. */
  timeoutMs: number | null;
  expiresMs: number | null;
}

export type NftEvent =
  | { op: "add" | "delete"; kind: "table"; family: string; table: string }
  /** A chain; `hook` is what a base chain hooks (input, output, ingress…), null for a regular chain or a deletion. */
  | { op: "add" | "delete"; kind: "chain"; family: string; table: string; chain: string; hook: string | null }
  /** One rule added to or deleted from a chain (what it says is not parsed: see above). */
  | { op: "add" | "delete"; kind: "rule"; family: string; table: string; chain: string }
  | { op: "add" | "delete"; kind: "set"; family: string; table: string; set: string }
  | { op: "add" | "delete"; kind: "element"; family: string; table: string; set: string; elements: NftElement[] }
  /** The end of a transaction: the lines since the previous one were committed together. */
  | { kind: "generation" }
  /** nft says it missed events or could not make sense of one: the state must be read again. */
  | { kind: "lost"; text: string };

const NFT_OBJECT_LINE = /^(add|delete) (table|set|element) (\S+) (\S+)(?: (\S+))?(?: \{(.*)\})?\s*$/;
const NFT_CHAIN_LINE = /^(add|delete) chain (\S+) (\S+) (\S+)(?: \{(.*)\})?\s*$/;
const NFT_RULE_LINE = /^(add|delete) rule (\S+) (\S+) (\S+)(?:\s|$)/;

/** What a base chain's `type filter hook input priority raw; …` hooks; null when it says no hook. */
export function chainHook(spec: string): string | null {
  return /(?:^|[\s;])hook (\w+)/.exec(spec)?.[1] ?? null;
}

/** One line of `nft monitor` (text); null for anything it does not know. */
export function parseNftMonitorLine(line: string): NftEvent | null {
  if (/^# new generation \d+/.test(line)) return { kind: "generation" };
  if (line.startsWith("# ERROR") || /^W: .*(unknown set|Unable to cache|lost)/i.test(line)) return { kind: "lost", text: line };
  const chain = NFT_CHAIN_LINE.exec(line);
  if (chain) {
    const op = chain[1] as "add" | "delete";
    return { op, kind: "chain", family: chain[2]!, table: chain[3]!, chain: chain[4]!, hook: op === "add" && chain[5] !== undefined ? chainHook(chain[5]) : null };
  }
  const rule = NFT_RULE_LINE.exec(line);
  if (rule) return { op: rule[1] as "add" | "delete", kind: "rule", family: rule[2]!, table: rule[3]!, chain: rule[4]! };
  const m = NFT_OBJECT_LINE.exec(line);
  if (!m) return null;
  const op = m[1] as "add" | "delete";
  const [family, table, set, body] = [m[3]!, m[4]!, m[5], m[6]];
  switch (m[2]) {
    case "table":
      return set === undefined && body === undefined ? { op, kind: "table", family, table } : null;
    case "set":
      return set === undefined ? null : { op, kind: "set", family, table, set };
    default:
      return set === undefined || body === undefined ? null : { op, kind: "element", family, table, set, elements: parseNftElements(body) };
  }
}

/** nft's durations: `2s448ms`, `1m2s`, `1d2h`, `996ms`; null if not one. */
export function parseNftDuration(text: string): number | null {
  const m = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$/.exec(text);
  if (!m || text === "") return null;
  const [d, h, min, s, ms] = m.slice(1).map((x) => Number(x ?? 0)) as [number, number, number, number, number];
  return (((d * 24 + h) * 60 + min) * 60 + s) * 1000 + ms;
}

/** The elements between the braces of an element line or an `elements = { … }` listing. */
export function parseNftElements(body: string): NftElement[] {
  const out: NftElement[] = [];
  for (const part of splitOutsideQuotes(body, ",")) {
    const words = splitOutsideQuotes(part, " ").filter(Boolean);
    if (words.length === 0) continue;
    const after = (k: string) => {
      const i = words.indexOf(k);
      return i >= 0 && i + 1 < words.length ? parseNftDuration(words[i + 1]!) : null;
    };
    out.push({ value: words[0]!.toLowerCase(), timeoutMs: after("timeout"), expiresMs: after("expires") });
  }
  return out;
}

function splitOutsideQuotes(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  for (const ch of s) {
    if (ch === '"') quoted = !quoted;
    if (!quoted && (ch === sep || (sep === " " && /\s/.test(ch)))) {
      out.push(cur.trim());
      cur = "";
    } else cur += ch;
  }
  out.push(cur.trim());
  return out.filter((x) => x !== "");
}

/** A set of `nft list table` output. */
export interface NftSetListing {
  name: string;
  elements: NftElement[];
}

/** A chain of `nft list table` output: what it hooks (null: a regular chain) and its rules, one line each. */
export interface NftChainListing {
  name: string;
  hook: string | null;
  rules: string[];
}

/** The chains of one table in `nft list table FAMILY NAME` output (text). */
export function parseNftChainListing(text: string): NftChainListing[] {
  const chains: NftChainListing[] = [];
  let current: NftChainListing | null = null;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const start = /^chain (\S+) \{$/.exec(line);
    if (start) {
      current = { name: start[1]!, hook: null, rules: [] };
      chains.push(current);
      continue;
    }
    if (!current) continue;
    if (line === "}") current = null;
    else if (/^type \S+ hook /.test(line)) current.hook = chainHook(line);
    else if (line !== "" && !/^(policy|comment|devices) /.test(line)) current.rules.push(line);
  }
  return chains;
}

/**
 * The sets of one table in `nft list table FAMILY NAME` output (text). Not the
 * JSON form: nft 1.0.6's `-j` prints `timeout` and `expires` in whole seconds,
 * truncated (1s988ms becomes 1), too coarse to date a fence's expiry.
 */
export function parseNftTableListing(text: string): NftSetListing[] {
  const sets: NftSetListing[] = [];
  let current: NftSetListing | null = null;
  let collecting: string | null = null;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (collecting !== null) {
      collecting += ` ${line}`;
      if (line.includes("}")) {
        current?.elements.push(...parseNftElements(collecting.slice(0, collecting.lastIndexOf("}"))));
        collecting = null;
      }
      continue;
    }
    const set = /^set (\S+) \{$/.exec(line);
    if (set) {
      current = { name: set[1]!, elements: [] };
      sets.push(current);
      continue;
    }
    if (/^(chain|map|flowtable|counter|quota|ct|limit|synproxy|secmark) /.test(line)) {
      current = null;
      continue;
    }
    const elems = /^elements = \{(.*)$/.exec(line);
    if (elems && current) {
      const rest = elems[1]!;
      if (rest.includes("}")) current.elements.push(...parseNftElements(rest.slice(0, rest.lastIndexOf("}"))));
      else collecting = rest;
    }
  }
  return sets;
}
