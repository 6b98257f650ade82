// Leaf schemas shared by the YAML documents, the environment and the flags, so
// a value is judged the same way wherever it comes from. Each schema's message
// is the "expected" half of an issue, written for a person.

import * as v from "valibot";
import { isUnusableAsVip, parseIp } from "../kernel/ip.ts";
import { LOG_FORMATS, LOG_LEVELS } from "../log.ts";

export const MAPPING = "a mapping of fields";

export const apiVersion = v.literal("v1alpha1", '"v1alpha1"');

// Linux dev_valid_name(): 1..IFNAMSIZ-1 bytes, not "." or "..", no '/', ':' or whitespace.
const LINK = "a link name: 1 to 15 bytes, no '/', ':' or whitespace, not \".\" or \"..\"";
export function isLinkName(s: string): boolean {
  const bytes = new TextEncoder().encode(s).length;
  return bytes >= 1 && bytes <= 15 && s !== "." && s !== ".." && !/[\s/:\0]/.test(s);
}
export const linkName = v.pipe(v.string(LINK), v.check(isLinkName, LINK));

const IP = "an IPv4 or IPv6 address";
const USABLE = "an address a host may own (not unspecified, loopback, multicast, broadcast or link-local)";
/** "192.168.0.10/24": an address with a prefix length, as `ip address add` takes it. */
const WITH_PREFIX = /^(.*)\/[0-9]{1,3}$/;
/** ::ffff:10.0.0.5, which stands for the IPv4 address 10.0.0.5 in an IPv6 socket's API and is no address of its own. */
function mappedIpv4(s: string): string | null {
  const ip = parseIp(s);
  if (ip?.family !== 6 || !ip.bytes.slice(0, 10).every((b) => b === 0) || ip.bytes[10] !== 0xff || ip.bytes[11] !== 0xff) return null;
  return Array.from(ip.bytes.slice(12)).join(".");
}
/** A VIP, stored in canonical text form so that duplicates compare equal. Each check passes what an earlier one refuses, so one problem is one issue. */
export const vipAddress = v.pipe(
  v.string(IP),
  v.check((s) => !WITH_PREFIX.test(s), (i) =>
    `an address without a prefix length (vipd adds each VIP as a /32 or /128 of its own): drop the "/${String(i.input).split("/").pop()}" and write ${JSON.stringify(String(i.input).replace(WITH_PREFIX, "$1"))}`),
  v.check((s) => WITH_PREFIX.test(s) || parseIp(s) !== null, IP),
  v.check((s) => mappedIpv4(s) === null, (i) =>
    `an IPv4 or IPv6 address, not an IPv4-mapped IPv6 one (it stands for the IPv4 address, which no link can hold as IPv6): write ${mappedIpv4(String(i.input))}`),
  v.check((s) => { const ip = parseIp(s); return ip === null || mappedIpv4(s) !== null || !isUnusableAsVip(ip); }, USABLE),
  v.transform((s) => parseIp(s)!.text),
);

const NODE = "a node name: letters, digits, '.', '-' or '_', starting and ending with a letter or digit, at most 253 characters";
/**
 * A node name: what the configuration accepts, the day-2 commands take and
 * etcd's keys are parsed by. A name with '/' would split a key; one that
 * starts or ends with punctuation reads as a typo in a listing.
 */
export const NODE_NAME = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$/;
export const nodeName = v.pipe(v.string(NODE), v.regex(NODE_NAME, NODE));

const ENDPOINT = "an http:// or https:// URL with a host and a port and no path";
/** "https://host:2379" (trailing "/" dropped, scheme lower-cased), or null. */
export function parseEndpoint(s: string): string | null {
  const m = /^(https?):\/\/(\[[^\]]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})\/?$/i.exec(s);
  if (!m) return null;
  const host = m[2]!;
  if (host.startsWith("[") && parseIp(host.slice(1, -1))?.family !== 6) return null;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return null;
  return `${m[1]!.toLowerCase()}://${host}:${port}`;
}
export const endpoint = v.pipe(
  v.string(ENDPOINT),
  v.check((s) => parseEndpoint(s) !== null, ENDPOINT),
  v.transform((s) => parseEndpoint(s)!),
);
export const endpoints = v.pipe(v.array(endpoint, "a list of etcd URLs"), v.minLength(1, "at least one etcd URL"));

export const filePath = v.pipe(v.string("a file path"), v.nonEmpty("a file path"));

const DNS_NAME = "a DNS name: labels of letters, digits and '-', separated by '.'";
const isDnsName = (s: string) => s.length <= 253 && s.split(".").every((l) => /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l));
/** A name a TLS certificate may carry as a DNS SAN. */
export const serverName = v.pipe(v.string(DNS_NAME), v.check(isDnsName, DNS_NAME));

const TLS_NAME = `${DNS_NAME}, or an IP address`;
/** A DNS SAN or an IP SAN (canonical text): what the API server gate may check a certificate for. */
export const tlsName = v.pipe(
  v.string(TLS_NAME),
  v.check((s) => parseIp(s) !== null || isDnsName(s), TLS_NAME),
  v.transform((s) => parseIp(s)?.text ?? s),
);

const PREFIX = 'a key prefix that starts and ends with "/" and has no whitespace';
export const keyPrefix = v.pipe(
  v.string(PREFIX),
  v.check((s) => s.startsWith("/") && s.endsWith("/") && !/\s/.test(s), PREFIX),
);

export const TTL_MIN = 3;
export const TTL_MAX = 300;
const TTL = `a whole number of seconds from ${TTL_MIN} to ${TTL_MAX}`;
/** The cleanup lease (design.md §3); its minimum against the hold time is checked apart (leaseTooShort). */
export const leaseTTL = v.pipe(v.number(TTL), v.check((n) => wholeIn(n, TTL_MIN, TTL_MAX), TTL));

/**
 * The hold times the configuration accepts (election.holdTime). Every
 * agent's hold lies within them, which the election relies on: a candidate
 * that cannot read another agent's hold waits out the longest
 * (election/view.ts), and nftables can fence the shortest (election/proof.ts
 * minimumHold).
 */
export const MIN_HOLD_MS = 1000;
export const MAX_HOLD_MS = 30_000;
const HOLD = `a whole number of milliseconds from ${MIN_HOLD_MS} to ${MAX_HOLD_MS}`;
export const holdTime = v.pipe(v.number(HOLD), v.check((n) => wholeIn(n, MIN_HOLD_MS, MAX_HOLD_MS), HOLD));

/** One check for "whole and in range", so a value wrong both ways is reported once. */
function wholeIn(n: number, min: number, max: number): boolean {
  return Number.isInteger(n) && n >= min && n <= max;
}

/** The most VIPs one agent serves (design.md §3): a heartbeat guards every VIP key the agent heads. */
export const MAX_VIPS = 100;
export const TOO_MANY_VIPS =
  `one agent serves at most ${MAX_VIPS} VIPs: each heartbeat is one etcd transaction that guards the key of every VIP ` +
  "the agent holds, and etcd allows 128 operations in a transaction (--max-txn-ops)";

/** A keepalive every TTL/6 (at least 500 ms at TTL 3) leaves the lease this much beyond a hold. */
export const LEASE_BEYOND_HOLD_MS = 500;

/**
 * Why a lease TTL is too short for a hold time, or null. The lease only
 * cleans up after a vanished agent, but it must outlast any etcd stall the
 * heartbeats survive: otherwise etcd deletes the keys of an agent that still
 * holds its VIPs, and every VIP moves.
 */
export function leaseTooShort(ttlS: number, holdMs: number): string | null {
  if (ttlS * 1000 >= holdMs + LEASE_BEYOND_HOLD_MS) return null;
  const least = Math.ceil((holdMs + LEASE_BEYOND_HOLD_MS) / 1000);
  return (
    `leaseTTL ${ttlS} s is shorter than holdTime ${holdMs} ms plus ${LEASE_BEYOND_HOLD_MS} ms: etcd would delete this agent's keys ` +
    `during an etcd stall that its heartbeats survive, and every VIP would move. Use a leaseTTL of at least ${least} s`
  );
}

export interface HostPort {
  host: string;
  port: number;
}
const LISTEN = "HOST:PORT with a port from 1 to 65535, an IPv6 host in brackets ([::1]:8099)";
export function parseHostPort(s: string): HostPort | null {
  const m = /^\[([^\]]+)\]:([0-9]{1,5})$/.exec(s) ?? /^([A-Za-z0-9.-]+):([0-9]{1,5})$/.exec(s);
  if (!m) return null;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return null;
  const bracketed = s.startsWith("[");
  const ip = parseIp(m[1]!);
  if (bracketed) return ip?.family === 6 ? { host: ip.text, port } : null;
  if (ip) return { host: ip.text, port };
  // Not an IP: a host name, but not something that merely looks like a broken IPv4.
  if (/^[0-9.]+$/.test(m[1]!)) return null;
  return { host: m[1]!, port };
}
/** "127.0.0.1:8099", "[::1]:8099": an IPv6 host in brackets, as parseHostPort reads it back. */
export function formatHostPort(hp: HostPort): string {
  return hp.host.includes(":") ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}
export const hostPort = v.pipe(
  v.string(LISTEN),
  v.check((s) => parseHostPort(s) !== null, LISTEN),
  v.transform((s) => parseHostPort(s)!),
);

const URL_TEXT = "an http:// or https:// URL with a host";
function isHttpUrl(s: string): boolean {
  if (!URL.canParse(s)) return false;
  const u = new URL(s);
  return (u.protocol === "http:" || u.protocol === "https:") && u.hostname !== "";
}
export const httpUrl = v.pipe(v.string(URL_TEXT), v.check(isHttpUrl, URL_TEXT));

export const bool = v.boolean("true or false");
/** A boolean written as text (a flag's "=value", a variable): true/1/yes or false/0/no, any case; null for anything else. */
export function parseBoolText(text: string): boolean | null {
  if (/^(true|1|yes)$/i.test(text)) return true;
  if (/^(false|0|no)$/i.test(text)) return false;
  return null;
}

const SECONDS = "a number of seconds greater than 0 and at most 3600";
export const seconds = v.pipe(v.number(SECONDS), v.check((n) => Number.isFinite(n) && n > 0 && n <= 3600, SECONDS));

const COUNT = "a whole number from 1 to 100";
export const count = v.pipe(v.number(COUNT), v.integer(COUNT), v.minValue(1, COUNT), v.maxValue(100, COUNT));

const GAP = "a number of seconds from 0 to 10";
export const burstInterval = v.pipe(v.number(GAP), v.check((n) => Number.isFinite(n) && n >= 0 && n <= 10, GAP));

const REFRESH = "a number of seconds from 0 (off) to 3600";
export const refresh = v.pipe(v.number(REFRESH), v.check((n) => Number.isFinite(n) && n >= 0 && n <= 3600, REFRESH));

const PROBE_INTERVAL = "a number of seconds: 0 (no conflict detection) or from 1 to 3600";
/** At least 1 s: a probe listens for half a second, and a node would otherwise do nothing else. */
export const probeInterval = v.pipe(v.number(PROBE_INTERVAL), v.check((n) => n === 0 || (Number.isFinite(n) && n >= 1 && n <= 3600), PROBE_INTERVAL));

const ARGV =
  'an argv list: strings, the program\'s absolute path first, e.g. [/usr/local/sbin/vip-up, --quiet] ' +
  '(in a flag or variable, a JSON array: ["/usr/local/sbin/vip-up","--quiet"]); [] for none';
const ARGUMENT = "an argument as text, without NUL bytes (quote numbers and booleans in YAML)";
const PROGRAM = "the program's absolute path (vipd runs no shell and searches no PATH)";
/**
 * A hook's command line, run as it is: no shell splits or expands it, so a
 * single string is refused rather than guessed at. [] means no hook, so a
 * flag or variable can turn off a hook the file sets.
 */
export const argv = v.pipe(
  v.array(v.pipe(v.string(ARGUMENT), v.check((s) => !s.includes("\0"), ARGUMENT)), ARGV),
  v.checkItems((s, i) => i > 0 || s.startsWith("/"), PROGRAM),
);

const HOOK_TIMEOUT = "a number of seconds greater than 0 and at most 300";
export const hookTimeout = v.pipe(v.number(HOOK_TIMEOUT), v.check((n) => Number.isFinite(n) && n > 0 && n <= 300, HOOK_TIMEOUT));

const oneOf = (names: readonly string[]) => `one of ${names.map((n) => `"${n}"`).join(", ")}`;
export const logFormat = v.picklist(LOG_FORMATS, oneOf(LOG_FORMATS));

export const logLevel = v.picklist(LOG_LEVELS, oneOf(LOG_LEVELS));
