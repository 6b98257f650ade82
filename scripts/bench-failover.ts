// The failover benchmark: every fault × implementation × repetition in one lab
// and one run, so the numbers compare like with like.
//
//   npm run bench:failover [-- --reps 10 --nodes 3 --impl vipd,keepalived,ucarp --faults graceful,crash@leader,...
//                              --etcd-pre-vote on,off --vipd-binary dist/vipd --out bench-results --no-write
//                              --section planned]
//
// Faults (test/lab/faults.ts): by default every one of FAULT_IDS — graceful;
// crash, freeze, link-down and partition each with etcd's raft leader placed
// on the victim's node (@leader) and off it (@follower); quorum-loss;
// etcd-leader-and-holder; and the etcd faults after which the VIP must not
// move (etcd-leader-elsewhere, etcd-member-freeze[@leader],
// etcd-move-leader-to-holder, etcd-move-leader-off-holder). The unplaced
// crash, freeze, link-down and partition can still be named.
//
// etcd modes (--etcd-pre-vote, default on,off): every fault runs against etcd
// with raft pre-vote (etcd ≥ 3.5, what kubeadm runs); then, in a second lab,
// vipd alone runs the faults where pre-vote matters — the rejoins (link-down
// and partition, etcd's leader on the victim and elsewhere) and the 1.5 s
// freeze of the holder's member as leader — against etcd without it (3.4's
// default, Debian's etcd-server), where a rejoining member deposes the
// leader. Each trial also measures etcd's own write outage on the holder's
// node (an independent writer, a put every 50 ms: test/lab/etcd-writer.ts),
// reported next to vipd's dark time.
//   npm run bench:failover -- --from bench-results/failover-<time>.json   (re-render only)
//
// Writes bench-results/failover-<time>.json (every trial), the table between
// the failover markers in BENCHMARKS.md, and one SVG timeline per fault under
// docs/bench/; with --no-write none of these, and the table goes to stdout.
// With --section NAME the table goes between that section's own markers and
// the timelines are named failover-NAME-<fault>.svg, so a run over
// a few faults (the planned moves next to graceful stop, say) leaves the full
// table alone; then prints the vipd targets as PASS or MISS. A trial that
// finds no steady holder before its fault, or none after recovering, is a
// failed trial: logged, counted in the report and listed there; the lab is
// then reset (the implementation restarted everywhere from a clean kernel)
// so the following trials still measure something, and the log says so.
// Needs root (namespaces); nothing runs outside the lab's namespaces.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, release } from "node:os";
import { join, relative } from "node:path";
import { parseArgs } from "node:util";
import { Lab, REPO_ROOT } from "../test/lab/cluster.ts";
import { type Fault, FAULT_IDS, FAULTS, type FaultId, faultsByName, PRE_VOTE_FAULT_IDS } from "../test/lab/faults.ts";
import { implementationsByName, vipd, vipdAvailable, type VipImplementation } from "../test/lab/implementations.ts";
import { CI_ALLOWANCE, vipdBounds } from "../test/lab/bounds.ts";
import { evaluateTargets, markdownReport, SERVE_P95_TARGET_MS, spliceBetweenMarkers } from "./lib/report.ts";
import { formatMs } from "../test/lab/stats.ts";
import { timelineSvg } from "./lib/timeline-svg.ts";
import {
  resetImplementation,
  runTrial,
  TrialError,
  type TrialEnv,
  type TrialFailure,
  trialFailure,
  type TrialResult,
  withLabInstruments,
} from "../test/lab/trial.ts";

const { values: args } = parseArgs({
  options: {
    reps: { type: "string", default: "10" },
    /** Control-plane nodes in the lab; the recorded sections use the default 3. */
    nodes: { type: "string", default: "3" },
    impl: { type: "string", default: "vipd,keepalived,ucarp" },
    faults: { type: "string", default: FAULT_IDS.join(",") },
    /** etcd with raft pre-vote (on), without (off), or both, each in its own lab. */
    "etcd-pre-vote": { type: "string", default: "on,off" },
    "vipd-binary": { type: "string" },
    out: { type: "string", default: "bench-results" },
    "no-write": { type: "boolean", default: false },
    /** Write to this section of BENCHMARKS.md (and its own timelines) instead of the full table. */
    section: { type: "string" },
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
const nodes = Number(args.nodes);
if (!Number.isInteger(nodes) || nodes < 3) {
  console.error(`--nodes wants an integer of at least 3, got ${args.nodes}`);
  process.exit(2);
}
const SECTIONS: Record<string, string> = { planned: "Planned moves: drain and hand-over next to graceful stop" };
const section = args.section === undefined ? undefined : { name: args.section, heading: SECTIONS[args.section] ?? "" };
if (section && !section.heading) {
  console.error(`--section wants one of ${Object.keys(SECTIONS).join(", ")}, got ${args.section}`);
  process.exit(2);
}
const preVoteModes = [...new Set(args["etcd-pre-vote"]!.split(",").map((x) => x.trim()).filter(Boolean))];
if (preVoteModes.length === 0 || preVoteModes.some((m) => m !== "on" && m !== "off")) {
  console.error(`--etcd-pre-vote wants on, off or on,off, got ${args["etcd-pre-vote"]}`);
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

/** One line per trial for the log. */
function describe(r: TrialResult): string {
  const timings = Object.entries(r.timings).map(([k, v]) => `${k} ${formatMs(v)}`);
  return [
    `outage ${formatMs(r.outageMs)}`,
    FAULTS[r.fault].vipStays
      ? `VIP moved: ${r.moved ? paint(c.red, `yes, to ${r.movedTo.join(", ")}`) : "no"}`
      : `new holder ${r.newHolder ? `${r.newHolder} at ${formatMs(r.newHolderMs)}` : "none"}`,
    `after the fault ${formatMs(r.recoveryOutageMs)}`,
    `overlap ${r.overlapMs > 0 ? paint(c.red, formatMs(r.overlapMs)) : "0"}`,
    ...(r.leftBehind ? [paint(c.red, "VIP left behind")] : []),
    ...(r.addressOverlapMs > r.overlapMs ? [`address overlap (fenced) ${formatMs(r.addressOverlapMs)}`] : []),
    ...(r.victimWasEtcdLeader !== null ? [`etcd leader ${r.victimWasEtcdLeader ? "on the victim" : "elsewhere"}`] : []),
    ...timings,
    ...(r.recovery.steady || r.failure ? [] : [paint(c.red, `not steady at the end of the recovery (steady ${formatMs(r.recovery.steadyLaterMs)} after it)`)]),
    ...(r.failure ? [paint(c.red, `FAILED: ${r.failure}`)] : []),
  ].join(", ");
}

/** After a failed trial: restart the implementation everywhere from a clean kernel, and say so. */
async function reset(env: TrialEnv, impl: VipImplementation, why: string): Promise<void> {
  log(paint(c.red, `resetting ${impl.id} on every node (clean kernel) after ${why}`));
  await resetImplementation(env, impl);
}

/** One etcd mode's lab: with pre-vote every implementation and fault; without, vipd and the faults pre-vote matters for. */
interface Mode {
  preVote: boolean;
  impls: VipImplementation[];
  faults: Fault[];
}

const modes: Mode[] = preVoteModes.map((m) => m === "on"
  ? { preVote: true, impls, faults }
  : { preVote: false, impls: impls.filter((i) => i.id === "vipd"), faults: faults.filter((f) => PRE_VOTE_FAULT_IDS.includes(f.id)) })
  .filter((m) => m.impls.length > 0 && m.faults.length > 0);

const trialsOf = (m: Mode) => m.impls.reduce((n, impl) => n + m.faults.filter((f) => !f.appliesTo || f.appliesTo(impl)).length * reps, 0);

/** Every trial: mode by mode (one lab each), implementation by implementation, fault by fault. */
async function runAll(): Promise<{ results: TrialResult[]; failures: TrialFailure[] }> {
  const totalTrials = modes.reduce((n, m) => n + trialsOf(m), 0);
  for (const m of modes) {
    log(`${paint(c.bold, "failover benchmark")}, etcd ${m.preVote ? "with" : "without"} pre-vote: ${m.impls.map((i) => i.id).join(", ")} × ${m.faults.map((f) => f.id).join(", ")} × ${reps} reps = ${trialsOf(m)} trials`);
  }
  for (const s of skipped) log(paint(c.red, `skipped: ${s}`));
  const results: TrialResult[] = [];
  const failures: TrialFailure[] = [];
  for (const m of modes) await runMode(m, totalTrials, results, failures);
  return { results, failures };
}

async function runMode(mode: Mode, totalTrials: number, results: TrialResult[], failures: TrialFailure[]): Promise<void> {
  const { impls, faults } = mode;
  const lab = await Lab.start({ nodes, onStep: (s) => log(s), etcd: { preVote: mode.preVote } });
  try {
    await withLabInstruments(lab, async (env) => {
      for (const impl of impls) {
        log(`${paint(c.bold, impl.id)}: ${impl.description}`);
        await lab.stopVipEverywhere();
        for (const n of lab.nodes) {
          await lab.clearVip(n);
          await lab.clearFence(n);
        }
        for (const fault of faults) {
          if (fault.appliesTo && !fault.appliesTo(impl)) {
            log(`${impl.id} ${fault.id}: does not apply (${fault.title})`);
            continue;
          }
          for (let rep = 0; rep < reps; rep++) {
            const at = `[${results.length + failures.length + 1}/${totalTrials}] ${impl.id} ${fault.id} #${rep + 1}`;
            let r: TrialResult;
            try {
              r = await runTrial(env, impl, fault, rep);
            } catch (e) {
              if (!(e instanceof TrialError)) throw e;
              failures.push({ ...trialFailure(e, impl.id, fault.id, rep), etcdPreVote: mode.preVote });
              log(`${at}: ${paint(c.red, `FAILED before the fault (${e.phase}): ${e.message}`)}`);
              await reset(env, impl, `${fault.id} #${rep + 1}`);
              continue;
            }
            results.push(r);
            log(`${at} on ${r.victim}${r.placement ? ` (${r.placement})` : ""}${mode.preVote ? "" : ", etcd without pre-vote"}: ${describe(r)}`);
            // Wedged, not only slow: the next trial would only find the same.
            if (r.failure && r.recovery.steadyLaterMs === null) await reset(env, impl, `${fault.id} #${rep + 1}`);
          }
        }
        await lab.stopVipEverywhere();
      }
    }, log);
  } finally {
    await lab.destroy();
  }
}

interface SavedRun {
  meta: { command: string; date: string; machine: string; implementations: Record<string, string> };
  results: TrialResult[];
  failures?: TrialFailure[];
}

let results: TrialResult[];
let failures: TrialFailure[] = [];
let command = `npm run bench:failover -- ${process.argv.slice(2).join(" ")}`.trim().replace(/ --$/, "");
let date = new Date().toISOString();
let ranOn = machine;
if (args.from) {
  const saved = JSON.parse(readFileSync(args.from, "utf8")) as SavedRun;
  results = saved.results;
  failures = saved.failures ?? [];
  ({ command, date, machine: ranOn } = saved.meta);
  impls = impls.filter((i) => results.some((r) => r.impl === i.id));
  faults = faults.filter((f) => results.some((r) => r.fault === f.id));
  log(`re-rendering ${results.length} trials from ${args.from}`);
} else {
  ({ results, failures } = await runAll());
}

const bounds = vipdBounds(vipd(vipdOpts).holdMs ?? undefined);
const verdicts = results.some((r) => r.impl === "vipd")
  ? evaluateTargets(results, { releaseMs: bounds.releaseMs + CI_ALLOWANCE.releaseMs, serveP95Ms: SERVE_P95_TARGET_MS, holdMs: bounds.holdMs }, failures)
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
  if (!args.from) writeFileSync(jsonPath, JSON.stringify({ meta, skipped, verdicts, results, failures }, null, 1));
  const svgDir = join(REPO_ROOT, "docs", "bench");
  mkdirSync(svgDir, { recursive: true });
  const svgLinks: Partial<Record<FaultId, string>> = {};
  for (const fault of faults) {
    // The first repetition of each implementation: a typical run, not a chosen one.
    const panels = impls.flatMap((impl) => {
      const r = results.find((x) => x.impl === impl.id && x.fault === fault.id && x.rep === 0);
      return r ? [{
        title: impl.id,
        subtitle: `victim ${r.victim}; client outage ${formatMs(r.outageMs)}; new holder ${r.newHolder ?? "none"}${r.newHolderMs !== null ? ` at ${formatMs(r.newHolderMs)}` : ""}; ` +
          `VIP moved: ${r.moved ? "yes" : "no"}; overlap ${formatMs(r.overlapMs)}${r.failure ? "; FAILED" : ""}`,
        timeline: r.timeline,
      }] : [];
    });
    if (panels.length === 0) continue;
    // "crash@leader" → failover-crash-leader.svg: no "@" in links.
    const file = join(svgDir, `failover-${section ? `${section.name}-` : ""}${fault.id.replace("@", "-")}.svg`);
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
  writeFileSync(mdPath, spliceBetweenMarkers(doc, markdownReport(results, meta, verdicts, svgLinks, failures), section));
  log(`wrote ${relative(REPO_ROOT, jsonPath)}, BENCHMARKS.md and ${Object.keys(svgLinks).length} timelines under docs/bench/`);
}

if (args["no-write"]) console.log(`\n${markdownReport(results, meta, verdicts, {}, failures)}`);

const failedTrials = failures.length + results.filter((r) => r.failure).length;
if (failedTrials) {
  console.log(`\n${paint(c.red, `${failedTrials} failed trial(s)`)}`);
  for (const f of failures) console.log(`  ${f.impl} ${f.fault} #${f.rep + 1}: could not start (${f.phase}): ${f.message}`);
  for (const r of results.filter((x) => x.failure)) console.log(`  ${r.impl} ${r.fault} #${r.rep + 1}: ${r.failure}`);
}
console.log(`\n${paint(c.bold, "vipd targets")}`);
for (const v of verdicts) console.log(`  ${v.pass ? paint(c.green, "PASS") : paint(c.red, "MISS")}  ${v.target} — ${v.detail}`);
process.exit(0);
