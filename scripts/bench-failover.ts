// The failover benchmark: every fault × implementation × repetition in one lab
// and one run, so the numbers compare like with like.
//
//   npm run bench:failover [-- --reps 10 --impl vipd,keepalived,ucarp --faults graceful,crash,...
//                              --vipd-binary dist/vipd --out bench-results --no-write]
//   npm run bench:failover -- --from bench-results/failover-<time>.json   (re-render only)
//
// Writes bench-results/failover-<time>.json (every trial), the table between
// the failover markers in BENCHMARKS.md, and one SVG timeline per fault under
// docs/bench/; then prints the vipd targets from issue 4 as PASS or MISS.
// Needs root (namespaces); nothing runs outside the lab's namespaces.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, release } from "node:os";
import { join, relative } from "node:path";
import { parseArgs } from "node:util";
import { Lab, REPO_ROOT } from "../test/lab/cluster.ts";
import { type Fault, FAULT_IDS, type FaultId, faultsByName } from "../test/lab/faults.ts";
import { implementationsByName, vipd, vipdAvailable, type VipImplementation } from "../test/lab/implementations.ts";
import { evaluateTargets, markdownReport, spliceBetweenMarkers } from "../test/lab/report.ts";
import { formatMs } from "../test/lab/stats.ts";
import { timelineSvg } from "../test/lab/timeline-svg.ts";
import { runTrial, type TrialResult, withLabInstruments } from "../test/lab/trial.ts";

const { values: args } = parseArgs({
  options: {
    reps: { type: "string", default: "10" },
    impl: { type: "string", default: "vipd,keepalived,ucarp" },
    faults: { type: "string", default: FAULT_IDS.join(",") },
    "vipd-binary": { type: "string" },
    out: { type: "string", default: "bench-results" },
    "no-write": { type: "boolean", default: false },
    /** Re-render BENCHMARKS.md and the timelines from a saved result file instead of running. */
    from: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});

if (args.help) {
  console.log(readFileSync(import.meta.path, "utf8").split("\n").filter((l) => l.startsWith("//")).map((l) => l.slice(3)).join("\n"));
  process.exit(0);
}
if (process.getuid?.() !== 0) {
  console.error("bench:failover creates network namespaces and must run as root");
  process.exit(2);
}

const reps = Number(args.reps);
if (!Number.isInteger(reps) || reps < 1) {
  console.error(`--reps wants a positive integer, got ${args.reps}`);
  process.exit(2);
}
const vipdOpts = args["vipd-binary"] ? { binary: args["vipd-binary"] } : {};
let impls: VipImplementation[];
let faults: Fault[];
try {
  impls = implementationsByName(args.impl!, vipdOpts);
  faults = faultsByName(args.faults!);
} catch (e) {
  console.error(String(e instanceof Error ? e.message : e));
  process.exit(2);
}
const skipped: string[] = [];
if (impls.some((i) => i.id === "vipd") && !vipdAvailable(vipdOpts.binary)) {
  skipped.push("vipd (its entry point is not in this checkout yet)");
  impls = impls.filter((i) => i.id !== "vipd");
}

const c = { dim: "\x1b[2m", red: "\x1b[31m", green: "\x1b[32m", bold: "\x1b[1m", reset: "\x1b[0m" };
const tty = process.stdout.isTTY;
const paint = (code: string, s: string) => (tty ? `${code}${s}${c.reset}` : s);
const log = (s: string) => console.log(`${paint(c.dim, new Date().toISOString().slice(11, 19))} ${s}`);

const machine = `${cpus().length} CPUs (${cpus()[0]?.model ?? "unknown"}), Linux ${release()}`;

/** Every trial, in one lab: implementation by implementation, fault by fault. */
async function runAll(): Promise<TrialResult[]> {
  const totalTrials = impls.length * faults.length * reps;
  log(`${paint(c.bold, "failover benchmark")}: ${impls.map((i) => i.id).join(", ")} × ${faults.map((f) => f.id).join(", ")} × ${reps} reps = ${totalTrials} trials`);
  for (const s of skipped) log(paint(c.red, `skipped: ${s}`));
  const results: TrialResult[] = [];
  const lab = await Lab.start({ onStep: (s) => log(s) });
  try {
    await withLabInstruments(lab, async (env) => {
      for (const impl of impls) {
        log(`${paint(c.bold, impl.id)}: ${impl.description}`);
        await lab.stopVipEverywhere();
        for (const n of lab.nodes) await lab.clearVip(n);
        for (const fault of faults) {
          for (let rep = 0; rep < reps; rep++) {
            const r = await runTrial(env, impl, fault, rep);
            results.push(r);
            log(`[${results.length}/${totalTrials}] ${impl.id} ${fault.id} #${rep + 1} on ${r.victim}: outage ${formatMs(r.outageMs)}, ` +
              `new holder ${r.newHolder ? `${r.newHolder} at ${formatMs(r.newHolderMs)}` : "none"}, ` +
              `after the fault ${formatMs(r.recoveryOutageMs)}, overlap ${r.overlapMs > 0 ? paint(c.red, formatMs(r.overlapMs)) : "0"}${r.leftBehind ? paint(c.red, ", VIP left behind") : ""}`);
          }
        }
        await lab.stopVipEverywhere();
      }
    }, log);
  } finally {
    await lab.destroy();
  }
  return results;
}

interface SavedRun {
  meta: { command: string; date: string; machine: string; implementations: Record<string, string> };
  results: TrialResult[];
}

let results: TrialResult[];
let command = `npm run bench:failover -- ${process.argv.slice(2).join(" ")}`.trim().replace(/ --$/, "");
let date = new Date().toISOString();
let ranOn = machine;
if (args.from) {
  const saved = JSON.parse(readFileSync(args.from, "utf8")) as SavedRun;
  results = saved.results;
  ({ command, date, machine: ranOn } = saved.meta);
  impls = impls.filter((i) => results.some((r) => r.impl === i.id));
  faults = faults.filter((f) => results.some((r) => r.fault === f.id));
  log(`re-rendering ${results.length} trials from ${args.from}`);
} else {
  results = await runAll();
}

const vipdImpl = vipd(vipdOpts);
const verdicts = results.some((r) => r.impl === "vipd")
  ? evaluateTargets(results, { ttlMs: vipdImpl.leaseTtlMs!, fenceMs: vipdImpl.fenceMs! })
  : [{ target: "vipd measured", pass: false, detail: skipped.join("; ") || "vipd was not part of this run" }];

const meta = {
  command,
  date,
  machine: ranOn,
  implementations: Object.fromEntries(impls.map((i) => [i.id, i.description])),
};

if (!args["no-write"]) {
  const outDir = join(REPO_ROOT, args.out!);
  mkdirSync(outDir, { recursive: true });
  const jsonPath = args.from ?? join(outDir, `failover-${meta.date.replace(/[:.]/g, "-")}.json`);
  if (!args.from) writeFileSync(jsonPath, JSON.stringify({ meta, skipped, verdicts, results }, null, 1));
  const svgDir = join(REPO_ROOT, "docs", "bench");
  mkdirSync(svgDir, { recursive: true });
  const svgLinks: Partial<Record<FaultId, string>> = {};
  for (const fault of faults) {
    // The first repetition of each implementation: a typical run, not a chosen one.
    const panels = impls.flatMap((impl) => {
      const r = results.find((x) => x.impl === impl.id && x.fault === fault.id && x.rep === 0);
      return r ? [{
        title: impl.id,
        subtitle: `victim ${r.victim}; client outage ${formatMs(r.outageMs)}; new holder ${r.newHolder ?? "none"}${r.newHolderMs !== null ? ` at ${formatMs(r.newHolderMs)}` : ""}; overlap ${formatMs(r.overlapMs)}`,
        timeline: r.timeline,
      }] : [];
    });
    if (panels.length === 0) continue;
    const file = join(svgDir, `failover-${fault.id}.svg`);
    writeFileSync(file, timelineSvg(`${fault.title}: ownership per node and what the client saw (ms from the fault)`, panels));
    svgLinks[fault.id] = relative(REPO_ROOT, file);
  }
  const mdPath = join(REPO_ROOT, "BENCHMARKS.md");
  let doc = "# Benchmarks\n";
  try {
    doc = readFileSync(mdPath, "utf8");
  } catch {
    // first run: start the file
  }
  writeFileSync(mdPath, spliceBetweenMarkers(doc, markdownReport(results, meta, verdicts, svgLinks)));
  log(`wrote ${relative(REPO_ROOT, jsonPath)}, BENCHMARKS.md and ${Object.keys(svgLinks).length} timelines under docs/bench/`);
}

console.log(`\n${paint(c.bold, "vipd targets (issue 4)")}`);
for (const v of verdicts) console.log(`  ${v.pass ? paint(c.green, "PASS") : paint(c.red, "MISS")}  ${v.target} — ${v.detail}`);
process.exit(0);
