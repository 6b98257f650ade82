// Whether vipd writes into journald's stream, and the priority prefix journald
// reads there.
//
// systemd connects a service's stdout and stderr to journald and sets
// JOURNAL_STREAM=<device>:<inode> (decimal) of that connection. journald
// files every line at the unit's default priority (info) unless the line
// starts with "<N>", a syslog priority as sd-daemon.h spells it, which it
// takes off (SyslogLevelPrefix=, on by default). Without the prefix
// `journalctl -p warning` would never show vipd's warnings.
//
// The variable alone does not say the stream is still the journal: a shell
// or hook started by a service inherits JOURNAL_STREAM with its own stderr
// redirected elsewhere, where "<4>" would only be noise. systemd's advice is
// to compare the variable with fstat() of the descriptor one writes to.

/** The identity of an open file, as fstat() reports it. */
export interface StreamId {
  readonly dev: bigint;
  readonly ino: bigint;
}

/** True when `journalStream` (JOURNAL_STREAM's value) names the very stream `fd` is. */
export function isJournalStream(journalStream: string | undefined, fd: StreamId): boolean {
  const m = /^(\d+):(\d+)$/.exec(journalStream ?? "");
  if (!m) return false;
  return BigInt(m[1]!) === fd.dev && BigInt(m[2]!) === fd.ino;
}

/** sd-daemon.h's SD_ERR, SD_WARNING, SD_INFO and SD_DEBUG, for vipd's log levels. */
export const PRIORITY = { error: 3, warn: 4, info: 6, debug: 7 } as const;

export type PriorityLevel = keyof typeof PRIORITY;

/**
 * `text` with every line prefixed by `<N>`: journald reads each line on its
 * own, so a continuation line (a stack, a wrapped message) without one would
 * be filed at info.
 */
export function withPriority(level: PriorityLevel, text: string): string {
  const prefix = `<${PRIORITY[level]}>`;
  const trailing = text.endsWith("\n");
  const lines = (trailing ? text.slice(0, -1) : text).split("\n");
  return `${lines.map((l) => prefix + l).join("\n")}${trailing ? "\n" : ""}`;
}
