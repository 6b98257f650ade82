// What every vipd benchmark needs: timing a step, summarising samples, and
// recording a result section in BENCHMARKS.md between the markers that own it,
// so several benchmarks can share the file without overwriting each other.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { quantile } from "../../test/lab/stats.ts";

/** Latency of one operation over a series of rounds, in milliseconds. */
export interface Latency {
  rounds: number;
  median: number;
  p99: number;
  mean: number;
}

/** Runs fn and returns how long it took, in milliseconds. */
export async function timed(fn: () => unknown): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

/** Median, p99 and mean of samples in milliseconds, with stats.ts's quantiles. */
export function latency(samples: readonly number[]): Latency {
  if (samples.length === 0) throw new Error("latency: no samples");
  const sorted = [...samples].sort((a, b) => a - b);
  const mean = sorted.reduce((s, x) => s + x, 0) / sorted.length;
  return { rounds: sorted.length, median: quantile(sorted, 0.5)!, p99: quantile(sorted, 0.99)!, mean };
}

/** A millisecond figure with three significant digits at most, for tables. */
export function ms(x: number): string {
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(x >= 1 ? 2 : 3);
}

/** "nproc N, Linux R": the machine line every benchmark records. */
export async function machine(): Promise<string> {
  const nproc = navigator.hardwareConcurrency;
  const release = (await Bun.file("/proc/sys/kernel/osrelease").text()).trim();
  return `nproc ${nproc}, Linux ${release}`;
}

const HEADER = `# vipd benchmarks

Each section is written by the script it names, between its own markers; rerun
the command shown to refresh it. Numbers are from one run on the machine stated.
`;

/**
 * Replaces the text between `<!-- name:begin -->` and `<!-- name:end -->` in
 * file with body, appending the section (and creating the file) if absent.
 * Reads the file right before writing, so other sections stay as they are now.
 */
export async function recordSection(file: string, name: string, body: string): Promise<void> {
  const begin = `<!-- ${name}:begin -->`;
  const end = `<!-- ${name}:end -->`;
  const f = Bun.file(file);
  const text = (await f.exists()) ? await f.text() : HEADER;
  const section = `${begin}\n${body.trim()}\n${end}`;
  const i = text.indexOf(begin);
  const j = text.indexOf(end);
  let out: string;
  if (i >= 0 && j > i) out = text.slice(0, i) + section + text.slice(j + end.length);
  else if (i >= 0 || j >= 0) throw new Error(`${file}: the ${name} markers are unbalanced; fix them by hand`);
  else out = `${text.trimEnd()}\n\n${section}\n`;
  await Bun.write(file, out);
}

/**
 * The command line of a lab benchmark that runs vipd for a while:
 * `--seconds N --vipd-binary PATH --record`, and `--help` printing the
 * script's own header comment. Exits 2 on bad input or when not root.
 */
export function labBenchArgs(o: { script: string; name: string; defaultSeconds: number; minSeconds: number }): { seconds: number; vipdBinary?: string; record: boolean } {
  const { values: args } = parseArgs({
    options: {
      seconds: { type: "string", default: String(o.defaultSeconds) },
      "vipd-binary": { type: "string" },
      record: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (args.help) {
    console.log(readFileSync(o.script, "utf8").split("\n").filter((l) => l.startsWith("//")).map((l) => l.slice(3)).join("\n"));
    process.exit(0);
  }
  if (process.getuid?.() !== 0) {
    console.error(`${o.name} creates network namespaces and must run as root`);
    process.exit(2);
  }
  const seconds = Number(args.seconds);
  if (!Number.isFinite(seconds) || seconds < o.minSeconds) {
    console.error(`--seconds wants a number of at least ${o.minSeconds}, got ${args.seconds}`);
    process.exit(2);
  }
  return { seconds, vipdBinary: args["vipd-binary"], record: args.record ?? false };
}
