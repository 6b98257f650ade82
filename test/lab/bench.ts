// What every vipd benchmark needs: timing a step, summarising samples, and
// recording a result section in BENCHMARKS.md between the markers that own it,
// so several benchmarks can share the file without overwriting each other.

export interface Summary {
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

/** Median, p99 (nearest rank) and mean of samples in milliseconds. */
export function summarize(samples: readonly number[]): Summary {
  if (samples.length === 0) throw new Error("summarize: no samples");
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { rounds: sorted.length, median, p99: rank(0.99), mean: sorted.reduce((s, x) => s + x, 0) / sorted.length };
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
