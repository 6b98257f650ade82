// What every command shares: the process as the CLI sees it (CliIO), exit
// codes, the shape of a command as data, and parsing its flags with --help
// and usage errors answered the one way.
import { type FlagSpec, flagHelp, formatIssues, LEAVES, parseFlags, settingFlag } from "../config/index.ts";
import type { LinkCheck } from "./preflight.ts";
import { BUILD } from "../version.ts";

export const VERSION = BUILD.version;

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export interface CliIO {
  readonly argv: readonly string[];
  readonly env: Record<string, string | undefined>;
  readonly hostname: string;
  readonly isTTY: boolean;
  /** stderr is journald's stream: log lines carry their priority. Absent: false. */
  readonly journal?: boolean;
  out(text: string): void;
  err(text: string): void;
  /** Resolves with the signal's name when the process is asked to stop. */
  readonly stopRequested: Promise<string>;
  /** Yields each time the process is asked to reload (SIGHUP); absent: never. */
  readonly reloadRequested?: AsyncIterable<string>;
  /** All of standard input, for `vipd validate -`; absent: there is none. */
  readonly readStdin?: () => Promise<string>;
  /** Looks up this network namespace's links, for `vipd validate`'s warnings; absent: links are not checked. */
  readonly links?: LinkCheck;
  /** The running kernel's release (uname -r); tests pass one to play another kernel. */
  readonly kernelRelease?: () => string;
}

export interface Command {
  /** As typed after `vipd`: "run", "config example". */
  readonly name: string;
  /** The usage line, after "vipd ". */
  readonly synopsis: string;
  readonly summary: string;
  readonly flags: readonly FlagSpec[];
  /** Lines after the flags in `--help`. */
  readonly notes?: string;
  run(args: readonly string[], io: CliIO): number | Promise<number>;
}

export const flag = (name: string, type: "string" | "boolean", help: string, value?: string): FlagSpec =>
  Object.freeze({ name, type, help, ...(value ? { value } : {}) });

export const settingFlags = (prefix: string) => LEAVES.filter((l) => l.path.startsWith(prefix)).map(settingFlag);
export const JSON_FLAG = flag("json", "boolean", "print JSON");

/** `vipd <command> --help`. */
export function commandHelp(c: Command): string {
  return `vipd ${c.synopsis}

${c.summary}.

Flags:
${flagHelp(c.flags)}
${c.notes ? `\n${c.notes}\n` : ""}`;
}

export interface Parsed {
  flags: Record<string, string | boolean>;
  positionals: string[];
}

/** Parses a command's flags, answers --help, and reports bad usage with exit 2. */
export function parse(cmd: Command, args: readonly string[], io: CliIO): Parsed | number {
  const name = cmd.name;
  const parsed = parseFlags(args, cmd.flags);
  if (!parsed.ok) {
    io.err(`${formatIssues(parsed.issues)}\n\nRun "vipd ${name} --help" for usage.\n`);
    return EXIT_USAGE;
  }
  if (parsed.flags.help) {
    io.out(commandHelp(cmd));
    return EXIT_OK;
  }
  return parsed;
}

/** A command that takes no argument: its flags parsed, --help answered, then fn. */
export function withHelp(cmd: Command, args: readonly string[], io: CliIO, fn: () => number): number {
  const name = cmd.name;
  const p = parse(cmd, args, io);
  if (typeof p === "number") return p;
  if (p.positionals.length) {
    io.err(`vipd ${name}: unexpected ${JSON.stringify(p.positionals[0])}\n\nRun "vipd ${name} --help" for usage.\n`);
    return EXIT_USAGE;
  }
  return fn();
}

