// From trial results to what a reader gets: one row of statistics per
// implementation × fault, the issue's targets evaluated PASS/MISS, and the
// markdown table for BENCHMARKS.md. Pure.
import { FAULTS, type FaultId } from "./faults.ts";
import type { ImplementationId } from "./implementations.ts";
import { formatMs, summarize, type Summary } from "./stats.ts";
import type { TrialResult } from "./trial.ts";

export interface Row {
  impl: ImplementationId;
  fault: FaultId;
  reps: number;
  outage: Summary;
  recoveryOutage: Summary;
  newHolder: Summary;
  servedByOther: Summary;
  victimReleased: Summary;
  /** Repetitions in which another node never took the VIP during the fault. */
  noNewHolder: number;
  overlapTotalMs: number;
  overlapMaxMs: number;
  repsWithOverlap: number;
  leftBehind: number;
  staleAnswers: number;
}

export function aggregate(results: readonly TrialResult[]): Row[] {
  const groups = new Map<string, TrialResult[]>();
  for (const r of results) {
    const k = `${r.impl}\u0000${r.fault}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  return [...groups.values()].map((rs) => {
    const first = rs[0]!;
    return {
      impl: first.impl,
      fault: first.fault,
      reps: rs.length,
      outage: summarize(rs.map((r) => r.outageMs)),
      recoveryOutage: summarize(rs.map((r) => r.recoveryOutageMs)),
      newHolder: summarize(rs.map((r) => r.newHolderMs)),
      servedByOther: summarize(rs.map((r) => r.servedByOtherMs)),
      victimReleased: summarize(rs.map((r) => r.victimReleasedMs)),
      noNewHolder: rs.filter((r) => r.newHolderMs === null).length,
      overlapTotalMs: rs.reduce((a, r) => a + r.overlapMs, 0),
      overlapMaxMs: Math.max(...rs.map((r) => r.overlapMs)),
      repsWithOverlap: rs.filter((r) => r.overlapMs > 0).length,
      leftBehind: rs.filter((r) => r.leftBehind).length,
      staleAnswers: rs.reduce((a, r) => a + r.staleAnswers, 0),
    };
  });
}

export interface TargetVerdict {
  target: string;
  pass: boolean;
  detail: string;
}

export interface VipdBudget {
  /** Lease TTL in ms. */
  ttlMs: number;
  /** Kernel lifetime bound: the VIP must leave a dead or frozen holder by then. */
  fenceMs: number;
}

/** The issue's targets for vipd, judged against this run's numbers (and keepalived's from the same run). */
export function evaluateTargets(results: readonly TrialResult[], budget: VipdBudget): TargetVerdict[] {
  const rows = aggregate(results);
  const row = (impl: ImplementationId, fault: FaultId) => rows.find((r) => r.impl === impl && r.fault === fault);
  const out: TargetVerdict[] = [];
  const vipdRuns = results.filter((r) => r.impl === "vipd");
  if (vipdRuns.length === 0) return [{ target: "vipd measured", pass: false, detail: "vipd was not part of this run" }];

  const g = row("vipd", "graceful");
  if (g) {
    const m = g.outage.median ?? Infinity;
    out.push({ target: "graceful stop: client outage median < 50 ms", pass: m < 50, detail: `vipd median ${formatMs(m)}` });
    const k = row("keepalived", "graceful");
    if (k) {
      const km = k.outage.median ?? 0;
      out.push({ target: "graceful stop: ≥ 10× shorter than keepalived", pass: m * 10 <= km,
        detail: `vipd ${formatMs(m)} vs keepalived ${formatMs(km)} (${m > 0 ? (km / m).toFixed(1) : "∞"}×)` });
    }
  }
  for (const f of ["link-down", "partition"] as const) {
    const v = row("vipd", f);
    const k = row("keepalived", f);
    if (v && k) {
      const vm = v.outage.median ?? Infinity;
      const km = k.outage.median ?? Infinity;
      out.push({ target: `${f}: client outage no longer than keepalived's`, pass: vm <= km, detail: `median vipd ${formatMs(vm)} vs keepalived ${formatMs(km)}` });
    }
  }
  for (const f of ["crash", "freeze"] as const) {
    const rs = vipdRuns.filter((r) => r.fault === f);
    if (rs.length === 0) continue;
    const fenced = rs.every((r) => r.victimReleasedMs !== null && r.victimReleasedMs <= budget.fenceMs);
    const worstRelease = Math.max(...rs.map((r) => r.victimReleasedMs ?? Infinity));
    out.push({ target: `${f}: VIP leaves the victim by its kernel lifetime (${formatMs(budget.fenceMs)})`, pass: fenced,
      detail: `latest release ${formatMs(Number.isFinite(worstRelease) ? worstRelease : null)}${fenced ? "" : " (or never)"}` });
    const limit = budget.ttlMs + 1000;
    const served = rs.every((r) => r.servedByOtherMs !== null && r.servedByOtherMs <= limit);
    const worstServe = Math.max(...rs.map((r) => r.servedByOtherMs ?? Infinity));
    out.push({ target: `${f}: another node serves within TTL + 1 s (${formatMs(limit)})`, pass: served,
      detail: `slowest ${Number.isFinite(worstServe) ? formatMs(worstServe) : "never"}` });
  }
  const overlapping = vipdRuns.filter((r) => r.overlapMs > 0);
  out.push({ target: "overlap exactly 0 in every fault and repetition", pass: overlapping.length === 0,
    detail: overlapping.length === 0 ? `${vipdRuns.length} repetitions, none overlapped`
      : overlapping.map((r) => `${r.fault} #${r.rep + 1}: ${formatMs(r.overlapMs)}`).join(", ") });
  return out;
}

const cell = (s: Summary) => `${formatMs(s.median)} / ${formatMs(s.p95)} / ${formatMs(s.max)}`;

export interface RunMeta {
  command: string;
  date: string;
  machine: string;
  implementations: Record<string, string>;
}

/** The markdown that goes between the BENCHMARKS.md markers. */
export function markdownReport(results: readonly TrialResult[], meta: RunMeta, verdicts: readonly TargetVerdict[], svgLinks: Partial<Record<FaultId, string>>): string {
  const rows = aggregate(results);
  const lines: string[] = [
    `Command: \`${meta.command}\` — ${meta.date}`,
    "",
    `Machine: ${meta.machine}`,
    "",
    ...Object.entries(meta.implementations).map(([id, d]) => `- **${id}**: ${d}`),
    "",
    "Client outage = time the client (a probe to http://VIP:6443/ every 10 ms, 300 ms timeout, new connection each) got no answer while the fault lasted. " +
      "New holder = when another node's kernel got the VIP; served = first answer from another node; outage after the fault = while the fault was undone and for 4 s after. " +
      "Overlap = time two or more nodes' kernels held the VIP (netlink events), whole trial including recovery. " +
      "Left behind = the victim's program was dead or frozen and the VIP was still on its link when the fault ended. " +
      "Stale answers = successful probes from a node that held no VIP then. Ownership edges are stamped by polling netlink every 2 ms in each node namespace: " +
      "overlaps and gaps are resolved to a few ms. Faults and how each is applied: test/lab/faults.ts.",
    "",
  ];
  const faults = [...new Set(rows.map((r) => r.fault))];
  for (const f of faults) {
    lines.push(`### ${FAULTS[f].title}`, "");
    if (svgLinks[f]) lines.push(`![timeline: ${f}](${svgLinks[f]})`, "");
    lines.push("| implementation | reps | client outage median / p95 / max | new holder (median) | served by another node (median) | outage after the fault (median / max) | overlap total (max per rep) | reps with overlap | VIP left behind | stale answers |",
      "|---|---|---|---|---|---|---|---|---|---|");
    for (const r of rows.filter((x) => x.fault === f)) {
      lines.push(`| ${r.impl} | ${r.reps} | ${cell(r.outage)} | ${r.noNewHolder === r.reps ? "none" : formatMs(r.newHolder.median)}${r.noNewHolder && r.noNewHolder < r.reps ? ` (none in ${r.noNewHolder})` : ""} | ${r.servedByOther.n ? formatMs(r.servedByOther.median) : "none"} | ${formatMs(r.recoveryOutage.median)} / ${formatMs(r.recoveryOutage.max)} | ${formatMs(r.overlapTotalMs)} (${formatMs(r.overlapMaxMs)}) | ${r.repsWithOverlap}/${r.reps} | ${r.leftBehind}/${r.reps} | ${r.staleAnswers} |`);
    }
    lines.push("");
  }
  if (verdicts.length) {
    lines.push("### vipd targets (from issue 4)", "");
    for (const v of verdicts) lines.push(`- **${v.pass ? "PASS" : "MISS"}** ${v.target} — ${v.detail}`);
    lines.push("");
  }
  return lines.join("\n");
}

export const BEGIN = "<!-- failover:begin -->";
export const END = "<!-- failover:end -->";

/** Replaces what lies between the markers (or appends a section with them). */
export function spliceBetweenMarkers(doc: string, body: string): string {
  const b = doc.indexOf(BEGIN);
  const e = doc.indexOf(END);
  if (b >= 0 && e > b) return `${doc.slice(0, b + BEGIN.length)}\n${body}\n${doc.slice(e)}`;
  return `${doc.trimEnd()}\n\n## Failover\n\n${BEGIN}\n${body}\n${END}\n`;
}
