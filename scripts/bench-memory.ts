// What each dependency costs in resident memory once compiled the way vipd
// ships (build.ts's plugins and settings, the runtime settings `vipd run`
// re-executes itself with): one binary per measurement, whose entry imports
// some modules (and touches each one's main export, so a lazy module is
// loaded for real) and then idles. Two series: each module alone over Bun's
// floor (an entry that imports nothing), and the modules added one at a time
// in the order vipd cannot do without them — etcd3 first — ending with
// vipd's own CLI as `vipd run` loads it. Alone, a module also pays for the
// parts of Bun's Node compatibility it is first to load; added, it pays only
// for itself, which is what dropping it would save. RSS and its parts
// (anonymous, file-backed) come from /proc/<pid>/status after the process has
// idled, the median of several interleaved rounds.
//
//   npm run bench:memory [-- --rounds 3] [-- --record]
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { embedEtcdProto, pinModuleDirs } from "../build.ts";
import { QUIET_RUNTIME } from "../src/runtime-env.ts";
import { machine, recordSection } from "./lib/bench.ts";
import { quantile } from "../test/lab/stats.ts";
import { sleep } from "../test/lab/sh.ts";

const ROOT = join(import.meta.dir, "..");
const args = process.argv.slice(2);
const rounds = Number(args[args.indexOf("--rounds") + 1]) || 3;
const record = args.includes("--record");
/** How long each process idles before it is read: past start-up's garbage. */
const SETTLE_MS = 4000;

interface Module {
  readonly name: string;
  readonly specifier: string;
  /** An expression over the module namespace `m` that makes it do its first real work. */
  readonly touch: string;
}

interface Row {
  readonly name: string;
  /** The entry's source; it must keep the process alive. */
  readonly entry: string;
}

const MODULES: readonly Module[] = [
  { name: "etcd3 (with @grpc/grpc-js)", specifier: "etcd3", touch: "new m.Etcd3({ hosts: '127.0.0.1:1' })" },
  { name: "consola", specifier: "consola", touch: "m.createConsola({})" },
  { name: "valibot", specifier: "valibot", touch: "m.object({ a: m.string() })" },
  { name: "yaml", specifier: "yaml", touch: "m.parse('a: 1')" },
  { name: "prom-client", specifier: "prom-client", touch: "new m.Registry()" },
  { name: "vipd's CLI, as `vipd run` loads it", specifier: join(ROOT, "src/cli/commands.ts"), touch: "m" },
];

const IDLE = "setInterval(() => {}, 1 << 30);\n";
const entryOf = (mods: readonly Module[]): string =>
  mods.map((mod, i) => `import * as m${i} from ${JSON.stringify(mod.specifier)};\n(globalThis as any).keep${i} = ((m) => ${mod.touch})(m${i});\n`).join("") + IDLE;

const ROWS: readonly Row[] = [
  { name: "nothing (Bun's floor)", entry: IDLE },
  ...MODULES.slice(0, -1).map((mod) => ({ name: `alone: ${mod.name}`, entry: entryOf([mod]) })),
  ...MODULES.map((mod, i) => ({ name: i === 0 ? `added: ${mod.name}` : `added: + ${mod.name}`, entry: entryOf(MODULES.slice(0, i + 1)) })),
];

async function build(dir: string, row: Row, i: number): Promise<string> {
  const entry = join(ROOT, `.bench-memory-entry-${i}.ts`);
  writeFileSync(entry, row.entry);
  const outfile = join(dir, `row-${i}`);
  try {
    const result = await Bun.build({
      entrypoints: [entry],
      plugins: [embedEtcdProto, pinModuleDirs],
      minify: { syntax: true, whitespace: true },
      sourcemap: "none",
      define: { VIPD_VERSION: '"bench"', VIPD_COMMIT: '"bench"', VIPD_TARGET: '"bench"' },
      compile: { target: process.arch === "arm64" ? "bun-linux-arm64" : "bun-linux-x64", outfile, autoloadDotenv: false, autoloadBunfig: false },
    });
    if (!result.success) throw new Error(`building ${row.name}: ${result.logs.join("\n")}`);
  } finally {
    rmSync(entry, { force: true });
  }
  return outfile;
}

interface Sample {
  rss: number;
  anon: number;
  file: number;
}

async function sample(binary: string): Promise<Sample> {
  const p = Bun.spawn([binary], { env: { ...QUIET_RUNTIME, PATH: "/usr/bin:/bin" }, stdout: "ignore", stderr: "pipe" });
  try {
    await sleep(SETTLE_MS);
    if (p.exitCode !== null) throw new Error(`${binary} exited ${p.exitCode}: ${await new Response(p.stderr).text()}`);
    const status = await Bun.file(`/proc/${p.pid}/status`).text();
    const kib = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN) / 1024;
    return { rss: kib("VmRSS"), anon: kib("RssAnon"), file: kib("RssFile") };
  } finally {
    p.kill("SIGKILL");
    await p.exited;
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "vipd-bench-memory-"));
  try {
    const binaries = [];
    for (const [i, row] of ROWS.entries()) binaries.push(await build(dir, row, i));
    const samples: Sample[][] = ROWS.map(() => []);
    // Interleaved rounds, so drift in the machine spreads over every row.
    for (let r = 0; r < rounds; r++) {
      for (const [i, b] of binaries.entries()) samples[i]!.push(await sample(b));
    }
    const med = (xs: number[]) => quantile([...xs].sort((a, b) => a - b), 0.5)!;
    const floor = med(samples[0]!.map((s) => s.rss));
    const lines = [
      `Command: \`npm run bench:memory -- --rounds ${rounds} --record\` · ${new Date().toISOString().slice(0, 10)} · ${await machine()}`,
      "",
      `Each row is its own binary, compiled as build.ts compiles vipd, whose entry imports the modules named (touching each one's main export) and idles; read after ${SETTLE_MS / 1000} s with \`vipd run\`'s runtime settings, median of ${rounds} interleaved rounds. "Alone" rows import one module: it also pays for the parts of Bun's Node compatibility it is the first to load. "Added" rows import the row above's modules and one more, etcd3 first: "over the row above" is what that module alone costs beside the others, what dropping it would save (differences under about 1 MiB are noise).`,
      "",
      "| imports | RSS | anonymous | file-backed (the binary's own pages) | over the floor | over the row above |",
      "|---|---|---|---|---|---|",
      ...ROWS.map((row, i) => {
        const s = samples[i]!;
        const rss = med(s.map((x) => x.rss));
        const above = row.name.startsWith("added: + ") ? `+${(rss - med(samples[i - 1]!.map((x) => x.rss))).toFixed(1)} MiB` : "—";
        return `| ${row.name} | ${rss.toFixed(1)} MiB | ${med(s.map((x) => x.anon)).toFixed(1)} MiB | ${med(s.map((x) => x.file)).toFixed(1)} MiB | ${i === 0 ? "—" : `+${(rss - floor).toFixed(1)} MiB`} | ${above} |`;
      }),
    ];
    const body = lines.join("\n");
    console.log(body);
    if (record) await recordSection(join(ROOT, "BENCHMARKS.md"), "memory", `## Memory by module\n\n${body}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
