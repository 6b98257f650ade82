// From trial results to what a reader gets: one row of statistics per
// implementation × fault, the issue's targets evaluated PASS/MISS, and the
// markdown for BENCHMARKS.md. Pure.
import { etcdDarkBoundMs } from "../../test/lab/bounds.ts";
import { FAULTS, type FaultId, PRE_VOTE_FAULT_IDS } from "../../test/lab/faults.ts";
import type { ImplementationId } from "../../test/lab/implementations.ts";
import { formatMs, summarize, type Summary } from "../../test/lab/stats.ts";
import { releaseFromInPlace, type TrialFailure, type TrialResult } from "../../test/lab/trial.ts";

export interface Row {
  impl: ImplementationId;
  fault: FaultId;
  /** Whether etcd ran with raft pre-vote in these trials. */
  etcdPreVote: boolean;
  /** Trials that ran to the end (failed ones included); trials that could not start are in `failed` only. */
  reps: number;
  outage: Summary;
  recoveryOutage: Summary;
  newHolder: Summary;
  servedByOther: Summary;
  victimReleased: Summary;
  /** Repetitions in which another node never took the VIP during the fault. */
  noNewHolder: number;
  /** Repetitions in which another node took the VIP at any time of the trial. */
  moved: number;
  overlapTotalMs: number;
  overlapMaxMs: number;
  repsWithOverlap: number;
  /** The same for the bare address, fenced or not. */
  addressOverlapTotalMs: number;
  leftBehind: number;
  addressLeftBehind: number;
  staleAnswers: number;
  /** Failed probes other than timeouts (refused, unreachable, HTTP errors), whole trials. */
  probeErrors: number;
  /** Repetitions that ended with one steady holder serving the client. */
  steadyAtEnd: number;
  /** Trials that failed as trials: could not start (no steady holder, placement) or did not recover. */
  failed: number;
  /** The fault's own measurements (e.g. etcd's election), summarised by name. */
  timings: Record<string, Summary>;
}

/** Results saved before etcd's pre-vote was a choice ran with it. */
const preVoteOf = (r: { etcdPreVote?: boolean }) => r.etcdPreVote ?? true;

const sum = (xs: readonly number[]) => xs.reduce((a, x) => a + x, 0);
const count = (m: Record<string, number>) => sum(Object.values(m));

export function aggregate(results: readonly TrialResult[], failures: readonly TrialFailure[] = []): Row[] {
  const groups = new Map<string, { impl: ImplementationId; fault: FaultId; etcdPreVote: boolean; rs: TrialResult[]; fs: TrialFailure[] }>();
  const group = (impl: ImplementationId, fault: FaultId, etcdPreVote: boolean) => {
    const k = `${impl}\u0000${fault}\u0000${etcdPreVote}`;
    if (!groups.has(k)) groups.set(k, { impl, fault, etcdPreVote, rs: [], fs: [] });
    return groups.get(k)!;
  };
  for (const r of results) group(r.impl, r.fault, preVoteOf(r)).rs.push(r);
  for (const f of failures) group(f.impl, f.fault, preVoteOf(f)).fs.push(f);
  return [...groups.values()].map(({ impl, fault, etcdPreVote, rs, fs }) => {
    const names = [...new Set(rs.flatMap((r) => Object.keys(r.timings ?? {})))];
    return {
      impl,
      fault,
      etcdPreVote,
      reps: rs.length,
      outage: summarize(rs.map((r) => r.outageMs)),
      recoveryOutage: summarize(rs.map((r) => r.recoveryOutageMs)),
      newHolder: summarize(rs.map((r) => r.newHolderMs)),
      servedByOther: summarize(rs.map((r) => r.servedByOtherMs)),
      victimReleased: summarize(rs.map((r) => r.victimReleasedMs)),
      noNewHolder: rs.filter((r) => r.newHolderMs === null).length,
      moved: rs.filter((r) => r.moved).length,
      overlapTotalMs: sum(rs.map((r) => r.overlapMs)),
      overlapMaxMs: rs.length ? Math.max(...rs.map((r) => r.overlapMs)) : 0,
      repsWithOverlap: rs.filter((r) => r.overlapMs > 0).length,
      addressOverlapTotalMs: sum(rs.map((r) => r.addressOverlapMs ?? r.overlapMs)),
      leftBehind: rs.filter((r) => r.leftBehind).length,
      addressLeftBehind: rs.filter((r) => r.addressLeftBehind ?? r.leftBehind).length,
      staleAnswers: sum(rs.map((r) => r.staleAnswers)),
      probeErrors: sum(rs.map((r) => count(r.probeErrors ?? {}))),
      steadyAtEnd: rs.filter((r) => r.recovery?.steady ?? true).length,
      failed: fs.length + rs.filter((r) => r.failure).length,
      timings: Object.fromEntries(names.map((n) => [n, summarize(rs.map((r) => r.timings?.[n] ?? null))])),
    };
  });
}

export interface TargetVerdict {
  target: string;
  pass: boolean;
  detail: string;
}

/** What vipd is judged against: its bounds (bounds.ts) and the issue's failover target. */
export interface VipdBudget {
  /** The holder stops answering by then after the fault (its proof deadline, plus the witness's allowance). */
  releaseMs: number;
  /** "Another node serves" target for crash, freeze, link down and partition, judged on the p95 (issue 8: 2.8 s). */
  serveP95Ms: number;
  /** vipd's hold time in the run, for the bound on dark time after an etcd write outage (bounds.ts etcdDarkBoundMs). */
  holdMs?: number;
}

/**
 * vipd's dark time where etcd's own write outage decides it, with that
 * outage: after a rejoin (link-down, partition undone) on the node holding
 * the VIP then; during the holder's member freeze on the holder. Null for
 * other faults, or when no writer measured it.
 */
export function darkAgainstEtcd(r: TrialResult): { dark: number; etcdMs: number; node: string } | null {
  const base = baseOf(r.fault);
  if (base === "link-down" || base === "partition") {
    const a = r.etcdWriteOutage?.after;
    return a ? { dark: r.recoveryOutageMs, etcdMs: a.ms, node: a.node } : null;
  }
  if (base === "etcd-member-freeze") {
    const d = r.etcdWriteOutage?.during;
    return d ? { dark: r.outageMs, etcdMs: d.ms, node: d.node } : null;
  }
  return null;
}

/** Issue 8's target: another node serves within 2.8 s (p95), wherever etcd's raft leader was. */
export const SERVE_P95_TARGET_MS = 2800;

const baseOf = (f: FaultId): FaultId => FAULTS[f]?.base ?? f;
const repetitions = (n: number) => `${n} repetition${n === 1 ? "" : "s"}`;

/** The issue's targets for vipd, judged against this run's numbers (and keepalived's from the same run). */
export function evaluateTargets(results: readonly TrialResult[], budget: VipdBudget, failures: readonly TrialFailure[] = []): TargetVerdict[] {
  const rows = aggregate(results);
  // Every target but the etcd ones below is judged with pre-vote, as etcd ≥ 3.5 runs.
  const row = (impl: ImplementationId, fault: FaultId) => rows.find((r) => r.impl === impl && r.fault === fault && r.etcdPreVote);
  const out: TargetVerdict[] = [];
  const vipdAll = results.filter((r) => r.impl === "vipd");
  const vipdRuns = vipdAll.filter(preVoteOf);
  if (vipdAll.length === 0) return [{ target: "vipd measured", pass: false, detail: "vipd was not part of this run" }];
  failures = failures.filter(preVoteOf);

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
  // Issue 10: planned moves cost what a graceful stop costs.
  for (const f of ["drain", "handover"] as const) {
    const r = row("vipd", f);
    if (!r) continue;
    const m = r.outage.median ?? Infinity;
    out.push({ target: `${f}: client outage median < 50 ms`, pass: m < 50, detail: `vipd median ${formatMs(m)}` });
  }
  // Each placed variant of link-down and partition against keepalived's same variant.
  for (const v of rows.filter((r) => r.impl === "vipd" && (baseOf(r.fault) === "link-down" || baseOf(r.fault) === "partition"))) {
    const k = row("keepalived", v.fault);
    if (!k) continue;
    const vm = v.outage.median ?? Infinity;
    const km = k.outage.median ?? Infinity;
    out.push({ target: `${v.fault}: client outage no longer than keepalived's`, pass: vm <= km, detail: `median vipd ${formatMs(vm)} vs keepalived ${formatMs(km)}` });
  }
  const moving = ["crash", "freeze", "link-down", "partition"] as const;
  for (const placement of ["@leader", "@follower"] as const) {
    const rs = vipdRuns.filter((r) => (moving as readonly string[]).includes(baseOf(r.fault)) && r.fault.endsWith(placement));
    if (rs.length === 0) continue;
    const where = placement === "@leader" ? "raft leader on the holder's node" : "raft leader elsewhere";
    const served = summarize(rs.map((r) => r.servedByOtherMs));
    const never = rs.filter((r) => r.servedByOtherMs === null);
    const p95 = served.p95 ?? Infinity;
    out.push({ target: `crash, freeze, link down, partition (${where}): another node serves, p95 ≤ ${formatMs(budget.serveP95Ms)}`,
      pass: never.length === 0 && p95 <= budget.serveP95Ms,
      detail: `p95 ${formatMs(served.p95)} over ${repetitions(rs.length)}, median ${formatMs(served.median)}` +
        (never.length ? `; never served: ${never.map((r) => `${r.fault} #${r.rep + 1}`).join(", ")}` : "") });
  }
  const released = vipdRuns.filter((r) => (moving as readonly string[]).includes(baseOf(r.fault)));
  if (released.length) {
    // From the fault in place (trial.ts releaseFromInPlace): a heartbeat sent
    // while the cut was being put in place may still date the victim's proof.
    const fenced = released.every((r) => releaseFromInPlace(r) !== null && releaseFromInPlace(r)! <= budget.releaseMs);
    const worst = Math.max(...released.map((r) => releaseFromInPlace(r) ?? Infinity));
    out.push({ target: `the victim stops answering by its proof deadline (${formatMs(budget.releaseMs)} from the fault in place)`, pass: fenced,
      detail: `latest ${formatMs(Number.isFinite(worst) ? worst : null)}${fenced ? "" : " (or never)"}` });
  }
  const overlapping = vipdRuns.filter((r) => r.overlapMs > 0);
  out.push({ target: "overlap exactly 0 in every fault and repetition", pass: overlapping.length === 0,
    detail: overlapping.length === 0 ? `${repetitions(vipdRuns.length)}, none overlapped`
      : overlapping.map((r) => `${r.fault} #${r.rep + 1}: ${formatMs(r.overlapMs)}`).join(", ") });
  const stays = vipdRuns.filter((r) => FAULTS[r.fault]?.vipStays);
  if (stays.length) {
    const moved = stays.filter((r) => r.moved);
    out.push({ target: "etcd alone disturbed (leader killed elsewhere, member frozen, MoveLeader), or a clone of the holder's name: the VIP never moves", pass: moved.length === 0,
      detail: moved.length === 0 ? `${repetitions(stays.length)}, none moved` : moved.map((r) => `${r.fault} #${r.rep + 1}: to ${r.movedTo.join(", ")}`).join(", ") });
    const dark = stays.filter((r) => r.outageMs > 0);
    out.push({ target: "the same: client outage 0 ms", pass: dark.length === 0,
      detail: dark.length === 0 ? `${repetitions(stays.length)}, no outage` : dark.map((r) => `${r.fault} #${r.rep + 1}: ${formatMs(r.outageMs)}`).join(", ") });
  }
  const leftBehind = vipdRuns.filter((r) => r.leftBehind);
  out.push({ target: "VIP left behind exactly 0 in every fault and repetition", pass: leftBehind.length === 0,
    detail: leftBehind.length === 0 ? `${repetitions(vipdRuns.length)}, none left behind` : leftBehind.map((r) => `${r.fault} #${r.rep + 1}`).join(", ") });
  const failed = [
    ...vipdRuns.filter((r) => r.failure || !(r.recovery?.steady ?? true))
      .map((r) => `${r.fault} #${r.rep + 1}${r.failure ? "" : ` (steady only ${r.recovery.steadyLaterMs === null ? "never" : formatMs(r.recovery.steadyLaterMs)} after recovery)`}`),
    ...failures.filter((f) => f.impl === "vipd").map((f) => `${f.fault} #${f.rep + 1} (${f.phase})`),
  ];
  out.push({ target: "every trial starts steady and recovers to one steady holder within its settle window", pass: failed.length === 0,
    detail: failed.length === 0 ? `${repetitions(vipdRuns.length)}, all steady` : `not: ${failed.join(", ")}` });
  out.push(...etcdTargets(vipdAll, budget.holdMs));
  return out;
}

/** Issue 16: riding out etcd's own write outages, with and without pre-vote. */
function etcdTargets(vipdRuns: readonly TrialResult[], holdMs: number | undefined): TargetVerdict[] {
  const out: TargetVerdict[] = [];
  const ride = vipdRuns.filter((r) => PRE_VOTE_FAULT_IDS.includes(r.fault)).map((r) => ({ r, d: darkAgainstEtcd(r) }));
  const label = ({ r, d }: (typeof ride)[number]) => `${r.fault} #${r.rep + 1}: dark ${formatMs(d!.dark)}, etcd took no write on ${d!.node} for ${formatMs(d!.etcdMs)}`;
  const without = ride.filter((x) => !preVoteOf(x.r) && x.d);
  if (without.length) {
    const over = without.filter(({ d }) => d!.dark > etcdDarkBoundMs(d!.etcdMs, holdMs));
    out.push({ target: "etcd without pre-vote: dark time on rejoin and on a 1.5 s leader freeze ≤ max(0, U − (H − m − 250 ms)) + 100 ms, U = etcd's write outage (bounds.ts etcdDarkBoundMs)", pass: over.length === 0,
      detail: over.length === 0
        ? `${repetitions(without.length)}, within; worst: ${label(without.reduce((a, b) => (b.d!.dark - etcdDarkBoundMs(b.d!.etcdMs, holdMs) > a.d!.dark - etcdDarkBoundMs(a.d!.etcdMs, holdMs) ? b : a)))}`
        : over.map((x) => `${label(x)} (bound ${formatMs(etcdDarkBoundMs(x.d!.etcdMs, holdMs))})`).join("; ") });
  }
  const withPv = ride.filter((x) => preVoteOf(x.r) && x.d);
  if (withPv.length) {
    const dark = withPv.filter(({ d }) => d!.dark > 0);
    out.push({ target: "etcd with pre-vote: dark time on rejoin and on a 1.5 s leader freeze 0 ms", pass: dark.length === 0,
      detail: dark.length === 0 ? `${repetitions(withPv.length)}, none dark` : dark.map(label).join("; ") });
  }
  return out;
}

const cell = (s: Summary) => `${formatMs(s.median)} / ${formatMs(s.p95)} / ${formatMs(s.max)}`;
/** "0/5", with the fenced-off address in brackets when it differs. */
const fencedCell = (effective: number, address: number, of: number) => `${effective}/${of}${address > effective ? ` (address, fenced: ${address}/${of})` : ""}`;
const overlapCell = (r: Row) => `${formatMs(r.overlapTotalMs)} (${formatMs(r.overlapMaxMs)})${r.addressOverlapTotalMs > r.overlapTotalMs ? `; address, fenced: ${formatMs(r.addressOverlapTotalMs)}` : ""}`;
const failedCell = (r: Row) => (r.failed ? `**${r.failed}**` : "0");
const implCell = (r: Row) => (r.etcdPreVote ? r.impl : `${r.impl}, etcd without pre-vote`);
const timingsCell = (r: Row) => Object.entries(r.timings).map(([k, s]) => `${k} ${formatMs(s.median)}`).join(", ") || "–";

export interface RunMeta {
  command: string;
  date: string;
  machine: string;
  implementations: Record<string, string>;
}

/** The markdown that goes between the BENCHMARKS.md markers. */
export function markdownReport(results: readonly TrialResult[], meta: RunMeta, verdicts: readonly TargetVerdict[],
  svgLinks: Partial<Record<FaultId, string>>, failures: readonly TrialFailure[] = []): string {
  const rows = aggregate(results, failures);
  const lines: string[] = [
    `Command: \`${meta.command}\` — ${meta.date}`,
    "",
    `Machine: ${meta.machine}`,
    "",
    ...Object.entries(meta.implementations).map(([id, d]) => `- **${id}**: ${d}`),
    "",
    "Client outage = time the client (a probe to http://VIP:6443/ every 10 ms, 300 ms timeout, new connection each) got no answer while the fault lasted. " +
      "A node *holds* the VIP when the address is on its link and vipd's nftables fence (table inet vipd, where present) lets its traffic pass; " +
      "\"address, fenced\" counts the bare address where the fence had cut it off. " +
      "New holder = when another node took the VIP; served = first answer from another node; outage after the fault = while the fault was undone and for 4 s after. " +
      "Overlap = time two or more nodes held the VIP, whole trial including recovery. " +
      "Left behind = the victim's program was dead or frozen and still held the VIP when the fault ended. " +
      "Stale answers = successful probes from a node that held no VIP then. " +
      "One holder at the end = exactly one node held the VIP through the last 1.5 s of the recovery and alone answered the client; " +
      "failed trials = no such steady holder within 20 s before the fault, or within 20 s after the recovery (listed below). " +
      "Ownership is witnessed by `ip monitor address` and `nft monitor` in each node namespace, independent of vipd's code, " +
      "with fence expiries computed from the elements' timeouts: edges are late by the monitors' latency, a few ms. " +
      "Placed faults move etcd's raft leader (MoveLeader) onto the victim's node (`@leader`) or off it (`@follower`) before the fault's clock starts. " +
      "etcd runs with raft pre-vote (as etcd ≥ 3.5 does) unless a row says \"etcd without pre-vote\" (3.4's default). " +
      "etcd write outage = the longest time an independent client on that node (a put every 50 ms through its member) got no write committed: on the holder while the fault lasted, and (\"after\") on the node holding the VIP when the fault was undone. " +
      "Faults and how each is applied: test/lab/faults.ts.",
    "",
  ];
  const faults = [...new Set(rows.map((r) => r.fault))];
  for (const f of faults) {
    const fault = FAULTS[f];
    lines.push(`### ${fault?.title ?? f}`, "");
    if (svgLinks[f]) lines.push(`![timeline: ${f}](${svgLinks[f]})`, "");
    if (fault?.vipStays) {
      lines.push("The VIP must stay on its holder: a move or any outage is a regression.", "",
        "| implementation | reps | **VIP moved** | **client outage** median / max | outage after the fault (median / max) | overlap total (max per rep) | stale answers | probe errors | one holder at the end | etcd (median) | failed trials |",
        "|---|---|---|---|---|---|---|---|---|---|---|");
      for (const r of rows.filter((x) => x.fault === f)) {
        lines.push(`| ${implCell(r)} | ${r.reps} | ${r.moved ? `**${r.moved}/${r.reps}**` : `0/${r.reps}`} | ${formatMs(r.outage.median)} / ${formatMs(r.outage.max)} | ${formatMs(r.recoveryOutage.median)} / ${formatMs(r.recoveryOutage.max)} | ${overlapCell(r)} | ${r.staleAnswers} | ${r.probeErrors} | ${r.steadyAtEnd}/${r.reps} | ${timingsCell(r)} | ${failedCell(r)} |`);
      }
    } else {
      lines.push("| implementation | reps | client outage median / p95 / max | new holder (median) | served by another node (median) | outage after the fault (median / max) | overlap total (max per rep) | reps with overlap | VIP left behind | stale answers | one holder at the end | etcd (median) | failed trials |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
      for (const r of rows.filter((x) => x.fault === f)) {
        lines.push(`| ${implCell(r)} | ${r.reps} | ${cell(r.outage)} | ${r.noNewHolder === r.reps ? "none" : formatMs(r.newHolder.median)}${r.noNewHolder && r.noNewHolder < r.reps ? ` (none in ${r.noNewHolder})` : ""} | ${r.servedByOther.n ? formatMs(r.servedByOther.median) : "none"} | ${formatMs(r.recoveryOutage.median)} / ${formatMs(r.recoveryOutage.max)} | ${overlapCell(r)} | ${r.repsWithOverlap}/${r.reps} | ${fencedCell(r.leftBehind, r.addressLeftBehind, r.reps)} | ${r.staleAnswers} | ${r.steadyAtEnd}/${r.reps} | ${timingsCell(r)} | ${failedCell(r)} |`);
      }
    }
    lines.push("");
  }
  const failedTrials = [
    ...failures.map((f) => `- ${f.impl} ${f.fault} #${f.rep + 1}: could not start (${f.phase}): ${clip(f.message)}`),
    ...results.filter((r) => r.failure).map((r) => `- ${r.impl} ${r.fault} #${r.rep + 1} on ${r.victim}: ${clip(r.failure!)}`),
  ];
  if (failedTrials.length) lines.push("### Failed trials", "", ...failedTrials, "");
  if (verdicts.length) {
    lines.push("### vipd targets (issues 4, 8 and 10)", "");
    for (const v of verdicts) lines.push(`- **${v.pass ? "PASS" : "MISS"}** ${v.target} — ${v.detail}`);
    lines.push("");
  }
  return lines.join("\n");
}

/** One line of at most 400 characters, for a table or a list. */
const clip = (s: string) => {
  const one = s.replace(/\s+/g, " ").trim();
  return one.length > 400 ? `${one.slice(0, 399)}…` : one;
};

export const BEGIN = "<!-- failover:begin -->";
export const END = "<!-- failover:end -->";

/**
 * Replaces what lies between a section's markers (or appends the section).
 * The default section is the full failover table; a named one (e.g.
 * "planned", from `bench:failover --section planned`) is another table with
 * its own markers, so a run over a few faults does not replace the full one.
 */
export function spliceBetweenMarkers(doc: string, body: string, section?: { name: string; heading: string }): string {
  const begin = section ? `<!-- failover-${section.name}:begin -->` : BEGIN;
  const end = section ? `<!-- failover-${section.name}:end -->` : END;
  const b = doc.indexOf(begin);
  const e = doc.indexOf(end);
  if (b >= 0 && e > b) return `${doc.slice(0, b + begin.length)}\n${body}\n${doc.slice(e)}`;
  return `${doc.trimEnd()}\n\n## ${section?.heading ?? "Failover"}\n\n${begin}\n${body}\n${end}\n`;
}
