// vipd's log: consola, readable on a terminal, one JSON object per line
// otherwise (journald, log shippers). Callers pass a message and flat fields;
// ownership changes always carry vip, node and reason. Into journald's
// stream each line carries its priority (journal-stream.ts).
import { createConsola, type ConsolaInstance, type ConsolaReporter, type LogObject } from "consola";
import { type PriorityLevel, withPriority } from "./journal-stream.ts";

/** The levels the configuration accepts (log.level), quietest first. */
export const LOG_LEVELS = ["silent", "error", "warn", "info", "debug", "trace"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
/** pretty: consola's own, for a terminal; json: one object per line. */
export const LOG_FORMATS = ["pretty", "json"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];
export type Fields = Record<string, string | number | boolean | null | undefined>;

export interface Logger {
  error(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  debug(msg: string, fields?: Fields): void;
}

const LEVELS: Record<LogLevel, number> = { silent: -999, error: 0, warn: 1, info: 3, debug: 4, trace: 5 };

/** The journald priority of a consola log type (vipd itself logs error, warn, info and debug). */
function priorityOf(type: LogObject["type"]): PriorityLevel {
  if (type === "fatal" || type === "error") return "error";
  if (type === "warn") return "warn";
  if (type === "debug" || type === "trace" || type === "verbose") return "debug";
  return "info";
}

function jsonReporter(write: (line: string) => void, priorities: boolean): ConsolaReporter {
  return {
    log(o: LogObject) {
      const [msg, fields] = o.args as [string, Fields | undefined];
      const level = o.type === "fatal" ? "error" : o.type;
      const line = `${JSON.stringify({ time: o.date.toISOString(), level, msg, ...(fields ?? {}) })}\n`;
      write(priorities ? withPriority(priorityOf(o.type), line) : line);
    },
  };
}

/**
 * consola's own readable format, written through `write` with each line's
 * priority: its reporter writes to the streams it is given, so they get the
 * level of the entry the reporter is writing at that moment.
 */
function prettyWithPriorities(level: number, write: (line: string) => void): ConsolaInstance {
  let current: PriorityLevel = "info";
  const stream = { write: (text: string) => (write(withPriority(current, text)), true) } as unknown as NodeJS.WriteStream;
  // No colours: the journal stores the escape codes as they are.
  const c = createConsola({ level, formatOptions: { date: true, colors: false }, stdout: stream, stderr: stream });
  const inner = c.options.reporters;
  c.setReporters([{
    log(o, ctx) {
      current = priorityOf(o.type);
      for (const r of inner) r.log(o, ctx);
    },
  }]);
  return c;
}

function prettyFields(fields?: Fields): string {
  if (!fields) return "";
  const parts = Object.entries(fields)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === "string" && /\s/.test(v) ? JSON.stringify(v) : String(v)}`);
  return parts.length ? `  ${parts.join(" ")}` : "";
}

export interface LoggerOptions {
  format: LogFormat;
  level: LogLevel;
  write?: (line: string) => void;
  /** Prefix every line with its journald priority, `<4>` for a warning (journal-stream.ts). */
  priorities?: boolean;
}

export function createLogger(opts: LoggerOptions): Logger {
  const write = opts.write ?? ((line: string) => process.stderr.write(line));
  const c: ConsolaInstance =
    opts.format === "json"
      ? createConsola({ level: LEVELS[opts.level], reporters: [jsonReporter(write, opts.priorities ?? false)] })
      : opts.priorities
        ? prettyWithPriorities(LEVELS[opts.level], write)
        : createConsola({ level: LEVELS[opts.level], formatOptions: { date: true, colors: true } });
  const at =
    (kind: "error" | "warn" | "info" | "debug") =>
    (msg: string, fields?: Fields): void => {
      if (opts.format === "json") c[kind](msg, fields);
      else c[kind](`${msg}${prettyFields(fields)}`);
    };
  return { error: at("error"), warn: at("warn"), info: at("info"), debug: at("debug") };
}

/**
 * A logger whose format and level a reload may change: everything that holds
 * it keeps the one object, and each line goes out as configured at that moment.
 */
export function reconfigurableLogger(opts: LoggerOptions): Logger & { reconfigure(next: LoggerOptions): void } {
  let current = createLogger(opts);
  return {
    error: (msg, fields) => current.error(msg, fields),
    warn: (msg, fields) => current.warn(msg, fields),
    info: (msg, fields) => current.info(msg, fields),
    debug: (msg, fields) => current.debug(msg, fields),
    reconfigure: (next) => {
      current = createLogger(next);
    },
  };
}

/** Renders any thrown value as one sentence: our errors already are sentences. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
