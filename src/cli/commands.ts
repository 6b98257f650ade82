// The commands as data: each names its flags, its one-line summary and its
// function from arguments to an exit code (one file per group: the agent's
// own, etcd's day-2 ones, the configuration's). `vipd --help` and
// `vipd <command> --help` are printed from this table. Only main.ts touches
// process.argv, signals and process.exit; everything here gets them through
// CliIO, so the whole CLI runs in tests.
import { RELOAD, RUN, WAIT } from "./agent-commands.ts";
import { type CliIO, type Command, EXIT_OK, EXIT_USAGE } from "./command.ts";
import { CONFIG_EXAMPLE, VALIDATE, VERSION_COMMAND } from "./config-commands.ts";
import { DRAIN, HANDOVER, STATUS, UNDRAIN } from "./etcd-commands.ts";

export { type CliIO, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, VERSION } from "./command.ts";

const COMMANDS: readonly Command[] = [RUN, VALIDATE, STATUS, DRAIN, UNDRAIN, HANDOVER, WAIT, RELOAD, CONFIG_EXAMPLE, VERSION_COMMAND];

/** `vipd --help`: every command, and how to learn its flags. */
export function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length)) + 2;
  return `vipd — floating virtual IP agent for highly available control planes

Usage: vipd <command> [flags]

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(width)}${c.summary}`).join("\n")}

"vipd <command> --help" lists a command's flags ("vipd run --help": every setting);
each setting is also read from the environment variable shown there (VIPD_...),
and from the configuration file.

Exit codes: 0 clean stop, 2 bad usage or configuration, 1 anything else.
`;
}

export async function runCli(io: CliIO): Promise<number> {
  const [first, second, ...rest] = io.argv;
  if (first === undefined) {
    io.err(usage());
    return EXIT_USAGE;
  }
  if (first === "help" || first === "--help" || first === "-h") {
    io.out(usage());
    return EXIT_OK;
  }
  if (first === "--version") return commandNamed("version")!.run([], io);
  const two = second === undefined ? undefined : commandNamed(`${first} ${second}`);
  if (two) return two.run(rest, io);
  const one = commandNamed(first);
  if (one) return one.run(io.argv.slice(1), io);
  const hint = first === "config" ? `: did you mean "vipd config example"?` : "";
  io.err(`vipd: unknown command "${[first, ...(first === "config" && second ? [second] : [])].join(" ")}"${hint}\n\n${usage()}`);
  return EXIT_USAGE;
}

function commandNamed(name: string): Command | undefined {
  return COMMANDS.find((c) => c.name === name);
}

