// vipd's log: consola, readable on a terminal, one JSON object per line
// otherwise (journald, log shippers). Callers pass a message and flat fields;
// ownership changes always carry vip, node and reason.
import { createConsola, type ConsolaInstance, type LogObject } from "consola";

export type LogLevel = "silent" | "error" | "warn" | "info" | "debug" | "trace";
export type Fields = Record<string, string | number | boolean | null | undefined>;

export interface Logger {
  error(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  debug(msg: string, fields?: Fields): void;
}

const LEVELS: Record<LogLevel, number> = { silent: -999, error: 0, warn: 1, info: 3, debug: 4, trace: 5 };

function jsonReporter(write: (line: string) => void) {
  return {
    log(o: LogObject) {
      const [msg, fields] = o.args as [string, Fields | undefined];
      const level = o.type === "fatal" ? "error" : o.type;
      write(`${JSON.stringify({ time: o.date.toISOString(), level, msg, ...(fields ?? {}) })}\n`);
    },
  };
}

function prettyFields(fields?: Fields): string {
  if (!fields) return "";
  const parts = Object.entries(fields)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === "string" && /\s/.test(v) ? JSON.stringify(v) : String(v)}`);
  return parts.length ? `  ${parts.join(" ")}` : "";
}

export function createLogger(opts: { format: "pretty" | "json"; level: LogLevel; write?: (line: string) => void }): Logger {
  const write = opts.write ?? ((line: string) => process.stderr.write(line));
  const c: ConsolaInstance =
    opts.format === "json"
      ? createConsola({ level: LEVELS[opts.level], reporters: [jsonReporter(write)] })
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
export function reconfigurableLogger(opts: Parameters<typeof createLogger>[0]): Logger & { reconfigure(next: Parameters<typeof createLogger>[0]): void } {
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
