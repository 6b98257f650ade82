// Command-line flags as data: one table that parses argv, names each flag's
// environment variable and prints --help. Only the entry point reads
// process.argv; this takes the words after the subcommand.

import { type ConfigIssue, issue } from "./issue.ts";

export interface FlagSpec {
  /** Without the leading "--". */
  readonly name: string;
  readonly type: "string" | "boolean";
  /** Placeholder for the value in help, e.g. "SECONDS". */
  readonly value?: string;
  /** VIPD_* variable with the same meaning; absent for --help. */
  readonly env?: string;
  readonly help: string;
}

const env = (name: string) => `VIPD_${name.toUpperCase().replaceAll("-", "_")}`;
const str = (name: string, value: string, help: string): FlagSpec => ({ name, type: "string", value, env: env(name), help });
const yes = (name: string, help: string): FlagSpec => ({ name, type: "boolean", env: env(name), help });

const TABLE: FlagSpec[] = [
  str("config", "FILE", "configuration file: multi-document YAML"),
  str("node-name", "N", "this node's name in elections (default: hostname)"),
  str("etcd-endpoints", "URL,URL", "etcd endpoints (default: https://127.0.0.1:2379)"),
  str("etcd-ca", "FILE", "CA bundle to verify etcd"),
  str("etcd-cert", "FILE", "client certificate for etcd (needs --etcd-key)"),
  str("etcd-key", "FILE", "client key for etcd (needs --etcd-cert)"),
  str("hold-time", "MS", "how long a committed heartbeat proves ownership, 1000 to 30000 ms (default: 2500)"),
  str("lease-ttl", "SECONDS", "TTL of the lease that removes a vanished agent's keys, 3 to 300 (default: 10)"),
  str("health-listen", "HOST:PORT", "address of /healthz, /status, /metrics (default: 127.0.0.1:8099)"),
  str("apiserver-url", "URL", "hold VIPs only while this kube-apiserver readiness URL answers 200"),
  str("apiserver-ca", "FILE", "CA bundle to verify the kube-apiserver"),
  yes("apiserver-insecure-skip-verify", "do not verify the kube-apiserver's certificate"),
  str("log-format", "pretty|json", "log format (default: pretty on a terminal, else json)"),
  str("log-level", "LEVEL", "silent, error, warn, info, debug or trace (default: info)"),
  { name: "help", type: "boolean", help: "show this help" },
];
export const FLAGS: readonly FlagSpec[] = Object.freeze(TABLE.map((f) => Object.freeze(f)));

export type Flags = Record<string, string | boolean>;

export type ParsedFlags = { ok: true; flags: Flags; positionals: string[] } | { ok: false; issues: ConfigIssue[] };

function parseBool(text: string): boolean | null {
  if (/^(true|1|yes)$/i.test(text)) return true;
  if (/^(false|0|no)$/i.test(text)) return false;
  return null;
}

/**
 * Parses "--name value", "--name=value", boolean "--name" (or "--name=false"),
 * "-h" and "--" (everything after it is positional). A later flag overrides an
 * earlier one, so drop-ins can append overrides.
 */
export function parseFlags(argv: readonly string[], spec: readonly FlagSpec[] = FLAGS): ParsedFlags {
  const flags: Flags = {};
  const positionals: string[] = [];
  const issues: ConfigIssue[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg === "-h") {
      flags.help = true;
      continue;
    }
    if (!arg.startsWith("-") || arg === "-") {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const name = arg.startsWith("--") ? arg.slice(2, eq < 0 ? undefined : eq) : arg;
    const inline = eq < 0 ? undefined : arg.slice(eq + 1);
    const def = arg.startsWith("--") ? spec.find((s) => s.name === name) : undefined;
    if (!def) {
      issues.push(issue(`flag ${arg.slice(0, eq < 0 ? undefined : eq)}`, "", "a flag listed by --help", JSON.stringify(arg), "unknown flag; see --help"));
      continue;
    }
    const label = `flag --${def.name}`;
    if (def.type === "boolean") {
      const value = inline === undefined ? true : parseBool(inline);
      if (value === null) issues.push(issue(label, "", "true or false", JSON.stringify(inline)));
      else flags[def.name] = value;
      continue;
    }
    if (inline !== undefined) {
      flags[def.name] = inline;
      continue;
    }
    const next = argv[i + 1];
    if (next === undefined || next.startsWith("--")) {
      issues.push(issue(label, "", `a value (--${def.name} ${def.value ?? "VALUE"})`, "nothing"));
      continue;
    }
    flags[def.name] = next;
    i++;
  }
  return issues.length > 0 ? { ok: false, issues } : { ok: true, flags, positionals };
}

/** The flag table as help text, one flag a line with its environment variable. */
export function flagHelp(spec: readonly FlagSpec[] = FLAGS): string {
  const left = spec.map((s) => `--${s.name}${s.type === "string" ? ` ${s.value ?? "VALUE"}` : ""}`);
  const width = Math.max(...left.map((l) => l.length)) + 2;
  return spec.map((s, i) => `  ${left[i]!.padEnd(width)}${s.help}${s.env ? ` [${s.env}]` : ""}`).join("\n");
}
