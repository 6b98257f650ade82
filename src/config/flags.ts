// Command-line flags as data: specs that parse argv, name each flag's
// environment variable and print --help. The settings' flags come from the
// table of settings (table.ts). Only the entry point reads process.argv;
// this takes the words after the command.

import { formatHostPort, type HostPort, parseBoolText } from "./fields.ts";
import { type ConfigIssue, issue } from "./issue.ts";
import { LEAVES, type Leaf } from "./table.ts";

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

/** --config: for the entry point, not a setting. */
export const CONFIG_FLAG: FlagSpec = Object.freeze({ name: "config", type: "string", value: "FILE", env: "VIPD_CONFIG", help: "configuration file: multi-document YAML" });
export const HELP_FLAG: FlagSpec = Object.freeze({ name: "help", type: "boolean", help: "show this help" });

/** A setting's default as a person writes it on a command line. */
function shown(value: unknown): string {
  if (Array.isArray(value)) return value.join(",");
  if (value && typeof value === "object" && "host" in value && "port" in value) {
    return formatHostPort(value as HostPort);
  }
  return String(value);
}

/** The flag of one setting of the table, with its default in the help. */
export function settingFlag(leaf: Leaf): FlagSpec {
  const s = leaf.setting;
  const suffix = s.default === undefined || s.help.includes("(default") ? "" : ` (default: ${shown(s.default)})`;
  return Object.freeze({
    name: s.flag,
    type: s.text === "boolean" ? "boolean" : "string",
    ...(s.text === "boolean" ? {} : { value: s.value }),
    env: leaf.env,
    help: `${s.help}${suffix}`,
  });
}

/** Every flag `vipd run` takes: the config file, every setting, and help. */
export const FLAGS: readonly FlagSpec[] = Object.freeze([CONFIG_FLAG, ...LEAVES.map(settingFlag), HELP_FLAG]);

export type Flags = Record<string, string | boolean>;

export type ParsedFlags = { ok: true; flags: Flags; positionals: string[] } | { ok: false; issues: ConfigIssue[] };

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
      const value = inline === undefined ? true : parseBoolText(inline);
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
