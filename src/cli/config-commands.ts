// The commands that need neither etcd nor an agent: check a configuration
// file, print an example one, print the version.
import { CONFIG_FLAG, FLAGS, formatIssues, HELP_FLAG, summarize } from "../config/index.ts";
import { configExample } from "../config/example.ts";
import { describeError } from "../log.ts";
import { type CliIO, type Command, EXIT_OK, EXIT_USAGE, parse, withHelp } from "./command.ts";
import { preflight } from "./preflight.ts";
import { documentNotes, settingsFrom } from "./settings-from.ts";
import { versionLine } from "../version.ts";

export const VALIDATE: Command = {
  name: "validate",
  synopsis: "validate FILE|- [flags]",
  summary: "check a config file: exit 0 and a summary, or 2 and every problem",
  flags: FLAGS.filter((f) => f !== CONFIG_FLAG),
  notes: [
    'FILE "-" reads the configuration from standard input. The flags and VIPD_ variables are checked with it, as "vipd run" would take them.',
    "Warnings, on stderr with exit 0: a TLS file that does not exist yet or that this user may not read (kubeadm writes its",
    "certificates later; vipd's own user may read what yours may not), and an unknown VIPD_ variable (this shell's",
    'environment is not the agent\'s). "vipd run" refuses both.',
    "Then, about this machine: a VIP's link that is not in this network namespace, a hook program that cannot run.",
  ].join("\n"),
  run: (args, io) => validate(args, io),
};

export const CONFIG_EXAMPLE: Command = {
  name: "config example",
  synopsis: "config example",
  summary: "print a commented configuration file with every setting and its default",
  flags: [HELP_FLAG],
  run: (args, io) => withHelp(CONFIG_EXAMPLE, args, io, () => {
    io.out(configExample());
    return EXIT_OK;
  }),
};

export const VERSION_COMMAND: Command = {
  name: "version",
  synopsis: "version",
  summary: "print the version, commit, Bun version and target",
  flags: [HELP_FLAG],
  run: (args, io) => withHelp(VERSION_COMMAND, args, io, () => {
    io.out(`${versionLine()}\n`);
    return EXIT_OK;
  }),
};

/** What `vipd validate -` calls standard input in its problems ("(stdin):12: document 0 ..."). */
const STDIN_NAME = "(stdin)";

async function validate(args: readonly string[], io: CliIO): Promise<number> {
  const parsed = parse(VALIDATE, args, io);
  if (typeof parsed === "number") return parsed;
  const [file, ...more] = parsed.positionals;
  if (!file || more.length) {
    io.err('vipd validate: give the one configuration file to check, e.g. "vipd validate /etc/vipd/vipd.yaml", or "-" for standard input\n');
    return EXIT_USAGE;
  }
  let text: string | undefined;
  if (file === "-") {
    try {
      text = io.readStdin ? await io.readStdin() : "";
    } catch (err) {
      io.err(`vipd validate: reading standard input: ${describeError(err)}\n`);
      return EXIT_USAGE;
    }
  }
  const r = settingsFrom(VALIDATE, args, io, { file: file === "-" ? STDIN_NAME : file, parsed, ...(text === undefined ? {} : { text }) });
  if (typeof r === "number") return r;
  const machine = await preflight(r.settings, io.links);
  if (machine.length > 0) io.err(`${formatIssues(machine, "machine")}\n`);
  for (const line of documentNotes(r)) io.out(`${line}\n`);
  io.out(`${summarize(r.settings)}\n`);
  return EXIT_OK;
}
