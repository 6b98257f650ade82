// One repetition of one fault against one implementation, measured: bring the
// lab to a steady state (one holder, the client served by it), put etcd's
// raft leader where the fault wants it, apply the fault to the holder, hold,
// recover, watch the recovery, then compute the numbers from the probe
// samples and the ownership intervals. Used by the fault-matrix test, the
// demo and the benchmark alike.
//
// A trial can fail as a trial, apart from any budget: when no single steady
// holder appears within 20 s before the fault (it throws a TrialError saying
// what it saw), when the VIP moves while etcd's leader is placed (a leader
// change moves nothing: design.md §10; it throws, and is never placed again
// for another victim), or within the same 20 s after the recovery's settle
// window (its result says so in `failure`). Whether the holder was already steady at
// the end of the settle window is measured apart (recovery.steady): a slow
// recovery is a number, a wedged one a failure. Nothing here repairs the lab
// behind the caller's back; resetImplementation() is for callers that want
// to go on after a failure, and say so.
import { join } from "node:path";
import { type Lab, type LabNode, labNow } from "./cluster.ts";
import { EtcdKeyWatch } from "./etcd-watch.ts";
import { EtcdWriters } from "./etcd-writer.ts";
import { etcdLeader, type Fault, type FaultId, type LeaderPlacement, placeEtcdLeader } from "./faults.ts";
import type { ImplementationId, VipImplementation } from "./implementations.ts";
import { Prober } from "./prober.ts";
import { OwnershipRecorder } from "./recorder.ts";
import { sleep } from "./sh.ts";
import {
  errorsWhileHeld,
  holdersStarting,
  type Interval,
  newHolderAt,
  outages,
  overlap,
  type ProbeSample,
  probeCoverage,
  probeErrors,
  probeTally,
  releasedAt,
  soleServer,
  staleAnswers,
  staleSamples,
  subtract,
  total,
} from "./stats.ts";

export interface TrialResult {
  impl: ImplementationId;
  fault: FaultId;
  rep: number;
  victim: string;
  /** What the fault did and learnt. */
  detail: string;
  /** How etcd's raft leader was put where the fault wants it, before t0; null when nothing had to move. */
  placement: string | null;
  /**
   * What the client saw from the placement's MoveLeader until the holder was
   * steady again (the VIP did not move, or the trial would have thrown);
   * absent when nothing had to move.
   */
  placementCheck?: PlacementCheck;
  /**
   * A planned move's request, in ms from t0: the signal sent, or the drain or
   * hand-over key committed (seen on the victim's etcd member); null when it
   * was never seen. Absent for faults that are no planned move.
   */
  requestMs?: number | null;
  /** Lab clock of the fault; every other time below is ms relative to it. */
  t0: number;
  /**
   * When the fault was surely in place: its apply() returned. A cut made by
   * a command (nft, ip link) takes effect somewhere between t0 and this, and
   * a heartbeat the victim sends before then may still commit and date its
   * proof; the victim's fence is judged from here (releaseFromInPlace).
   */
  inPlaceMs: number;
  recoverAt: number;
  endAt: number;
  /** Client outage while the fault lasted ([0, recoverAt)), summed. */
  outageMs: number;
  /** Client outage caused by the recovery itself ([recoverAt, endAt)). */
  recoveryOutageMs: number;
  /** First time another node took the VIP (effectively); null if none did during the fault. */
  newHolderMs: number | null;
  newHolder: string | null;
  /** When another node first answered the client; null if none did during the fault. */
  servedByOtherMs: number | null;
  /** When the victim stopped holding the VIP (address gone or fenced off); null if it still held it at recovery. */
  victimReleasedMs: number | null;
  /**
   * When the VIP's address left the victim's link; null if it was still
   * there at recovery. Later than victimReleasedMs while vipd's fence had
   * already cut the victim off: "address still present, but fenced".
   */
  victimAddressGoneMs: number | null;
  /** The victim's program was dead or frozen and still held the VIP (effectively) at recovery. */
  leftBehind: boolean;
  /** The same for the bare address, fenced or not. */
  addressLeftBehind: boolean;
  /**
   * Whether the victim's etcd member was the raft leader when the fault hit
   * (null: no member answered). Losing the leader costs an etcd election, and
   * the new leader renews every lease: failovers are slower by design then.
   */
  victimWasEtcdLeader: boolean | null;
  /** Another node became the effective holder during the trial ([0, endAt)): the VIP moved. */
  moved: boolean;
  /** Those nodes, in the order they took it. */
  movedTo: string[];
  /** Time with two or more effective holders, whole observation. */
  overlapMs: number;
  /** Time with the address on two or more links, fenced or not (what exceeds overlapMs was fenced off). */
  addressOverlapMs: number;
  /** Successful probes answered by a node that held no VIP at the time. */
  staleAnswers: number;
  /**
   * Each of those (the first five), with the answering node's effective and
   * address intervals near it, ms from t0: what a failure must show to be
   * traced, since no per-probe record is kept.
   */
  staleDetail?: string[];
  probes: number;
  /** Failed probes other than timeouts, whole observation, by error. */
  probeErrors: Record<string, number>;
  /** Of those, the ones that ran while one node held the VIP throughout (stats.ts errorsWhileHeld): none is expected. */
  errorsWhileHeld?: Record<string, number>;
  /** How closely the client watched the fault ([0, recoverAt)) and the recovery ([recoverAt, endAt)). */
  coverage?: { during: Coverage; after: Coverage };
  recovery: RecoveryCheck;
  /** What the fault measured, in ms (e.g. "etcd election", "MoveLeader seen by all"). */
  timings: Record<string, number>;
  /** Whether etcd ran with raft pre-vote (absent in results saved before it was a choice: it was on). */
  etcdPreVote?: boolean;
  /**
   * The longest etcd write outage (etcd-writer.ts) on the node that held the
   * VIP: while the fault lasted, on the victim when the VIP should stay and
   * on the new holder otherwise; and after the recovery, on whichever node
   * held it then. Null where no writer ran or no node held it.
   */
  etcdWriteOutage?: { during: NodeOutage | null; after: NodeOutage | null };
  /**
   * Why the trial failed as a trial: still no single steady holder 20 s after
   * the recovery's settle window, or a witness that went blind. Null when it
   * did not. Budgets (recovery.steady among them) are the caller's to judge.
   */
  failure: string | null;
  /** For timelines: ownership per node, client outages and answering nodes, relative to t0. */
  timeline: Timeline;
}

/** The probes started in a window and the longest stretch of it without one. */
export interface Coverage {
  probes: number;
  longestGapMs: number;
}

/** What the client saw while etcd's leader was placed before a trial. */
export interface PlacementCheck {
  /** ms from the first MoveLeader until the holder was confirmed steady again. */
  ms: number;
  /** Client outage in that time, summed. */
  outageMs: number;
  probes: number;
}

/** What the settle window after recover() showed. */
export interface RecoveryCheck {
  /** Successful probes after recover() answered by a node that held no VIP then. */
  staleAnswers: number;
  /** Failed probes after recover() other than timeouts, by error. */
  probeErrors: Record<string, number>;
  /** Effective holders at the end of the settle window. */
  holders: string[];
  /** Nodes that still had the VIP's address at the end without holding it (fenced off). */
  addressLeftOn: string[];
  /** Exactly one effective holder at the end, held through the last 1.5 s and alone answering the client. */
  steady: boolean;
  /**
   * When not steady at the end: how long after recover() a steady holder was
   * confirmed (waited for up to 20 s more, outside the measured window); null
   * if never, and then the trial failed.
   */
  steadyLaterMs: number | null;
}

export interface Timeline {
  from: number;
  to: number;
  recoverAt: number;
  /** Effective ownership per node. */
  ownership: Record<string, Interval[]>;
  /** The address on the link but fenced off by vipd's nftables fence. */
  fenced?: Record<string, Interval[]>;
  outages: Interval[];
  /** Runs of successful probes answered by the same node. */
  answers: (Interval & { node: string })[];
}

/** An etcd write outage on one node: how long no put committed there, and from when (ms from the fault). */
export interface NodeOutage {
  node: string;
  ms: number;
  at: number;
}

export interface TrialEnv {
  lab: Lab;
  recorder: OwnershipRecorder;
  prober: Prober;
  /** Independent etcd writers on every node; without them no etcd write outage is measured. */
  writers?: EtcdWriters;
  log?: (line: string) => void;
}

/** Which phase of a trial found no steady state. */
export type TrialPhase = "steady" | "placement";

/** The trial could not bring the lab to the state its fault needs; the message says what it saw. */
export class TrialError extends Error {
  constructor(readonly phase: TrialPhase, message: string) {
    super(message);
    this.name = "TrialError";
  }
}

/** A trial that threw a TrialError, for reports. */
export interface TrialFailure {
  impl: ImplementationId;
  fault: FaultId;
  rep: number;
  /** As in TrialResult. */
  etcdPreVote?: boolean;
  phase: TrialPhase;
  message: string;
}

export function trialFailure(e: TrialError, impl: ImplementationId, fault: FaultId, rep: number): TrialFailure {
  return { impl, fault, rep, phase: e.phase, message: e.message };
}

const PRE_MS = 1000;
/** How long after recover() the trial watches the recovery. */
export const SETTLE_MS = 4000;
/** Steady: one holder through this window, and the client's probes in it all answered by that holder… */
const STEADY_WINDOW_MS = 1500;
/** …except the last probes, which may still be waiting for their answer (probe timeout 300 ms). */
const PROBES_PENDING_MS = 350;
const STEADY_MIN_PROBES = 80;
const STEADY_TIMEOUT_MS = 20_000;
/** How long after a planned move's command exited its key's commit may still be on its way through the watch. */
const REQUEST_SEEN_MS = 2000;

/** The node that held the VIP alone through [from, to] and alone answered the probes in it; null if none. */
function steadyHolder(env: TrialEnv, from: number, to: number): string | null {
  const holders = env.recorder.holders();
  if (holders.length !== 1) return null;
  const h = holders[0]!;
  for (const [node, list] of env.recorder.intervals(from, to)) {
    const covered = total(list);
    if (node === h ? covered < to - from : covered > 0) return null;
  }
  const probesTo = to - PROBES_PENDING_MS;
  return soleServer(env.prober.between(from, probesTo), from, probesTo, STEADY_MIN_PROBES) === h ? h : null;
}

/** What the lab looks like now, for a failure message. */
export function describeLab(env: TrialEnv, impl: VipImplementation): string {
  const { lab, recorder, prober } = env;
  const now = labNow();
  const procs = lab.nodes.map((n) => `${n.name} ${n.vip === null ? "not started" : n.vip.running ? "running" : "exited"}`);
  const problems = recorder.problems.length ? `; witness problems: ${recorder.problems.join(" | ")}` : "";
  return `holders: ${recorder.holders().join(", ") || "none"}; address on: ${recorder.addressHolders().join(", ") || "none"}; ` +
    `last 2 s of probes: ${probeTally(prober.between(now - 2000, now))}; ${impl.id}: ${procs.join(", ")}${problems}`;
}

export interface SteadyOptions {
  timeoutMs?: number;
  /** Count only what happened after this lab time (e.g. after etcd's leader was moved). */
  since?: number;
}

/**
 * Waits until exactly one node has held the VIP for 1.5 s, the client served
 * by it alone, and returns that node. Starts the implementation on nodes
 * where it was never started (or was stopped by the lab); one that exited by
 * itself is a failure, as is no steady holder within the timeout: both throw
 * a TrialError that says what was seen.
 */
export async function steady(env: TrialEnv, impl: VipImplementation, opts: SteadyOptions = {}): Promise<LabNode> {
  const { lab } = env;
  const exited = lab.nodes.filter((n) => n.vip !== null && !n.vip.running);
  if (exited.length) {
    throw new TrialError("steady", `${impl.id} exited by itself on ${exited.map((n) => `${n.name}:\n${n.vip!.logTail(10)}`).join("\n")}`);
  }
  await lab.startVipEverywhere(impl);
  const timeoutMs = opts.timeoutMs ?? STEADY_TIMEOUT_MS;
  const end = labNow() + timeoutMs;
  for (;;) {
    const now = labNow();
    if (now - STEADY_WINDOW_MS >= (opts.since ?? -Infinity)) {
      const h = steadyHolder(env, now - STEADY_WINDOW_MS, now);
      if (h) return lab.node(h);
    }
    if (now > end) throw new TrialError("steady", `${impl.id} did not settle on one holder serving the client in ${timeoutMs} ms (${describeLab(env, impl)})`);
    await sleep(100);
  }
}

/**
 * Restarts the implementation on every node from a clean kernel (no VIP on
 * any link, no fence table). Never called by a trial: for callers going on
 * after a failed one, who log that they did.
 */
export async function resetImplementation(env: TrialEnv, impl: VipImplementation): Promise<void> {
  const { lab } = env;
  await lab.stopVipEverywhere("SIGTERM");
  for (const n of lab.nodes) {
    await lab.clearVip(n);
    await lab.clearFence(n);
  }
  await lab.startVipEverywhere(impl);
}

/**
 * Moves etcd's raft leader onto the holder's node or off it, and waits for a
 * steady holder again. A leader change moves nothing and costs the client
 * nothing (design.md §10): should the VIP move meanwhile, that throws, with
 * what the client saw; the outage is the caller's to judge.
 */
async function placeLeader(env: TrialEnv, impl: VipImplementation, where: LeaderPlacement, victim: LabNode): Promise<{ placement: string | null; check?: PlacementCheck }> {
  const from = labNow();
  const move = await placeEtcdLeader(env.lab, where, victim).catch((e) => {
    throw new TrialError("placement", `putting etcd's raft leader ${where === "victim" ? "on" : "off"} ${victim.name}: ${e instanceof Error ? e.message : String(e)}`);
  });
  if (!move) return { placement: null };
  const done = [...move.notTaken, `MoveLeader ${move.from} → ${move.to}, seen by all members after ${Math.round(move.visibleMs)} ms`].join("; ");
  const holder = await steady(env, impl, { since: labNow() }).catch((e) => {
    throw e instanceof TrialError ? new TrialError("placement", `after ${done}: ${e.message}`) : e;
  });
  const to = labNow();
  const samples = env.prober.between(from, to);
  const check: PlacementCheck = { ms: to - from, outageMs: total(outages(samples, to)), probes: samples.length };
  // Also a VIP that moved and came back: any other node holding it meanwhile.
  const moved = holdersStarting(env.recorder.intervals(from, to), victim.name, from, to);
  if (holder !== victim || moved.length > 0) {
    throw new TrialError("placement", `the VIP moved from ${victim.name} to ${moved.join(", ") || holder.name} while etcd's leader was placed (${done}); ` +
      `a leader change moves nothing (design.md §10); client outage ${Math.round(check.outageMs)} ms in ${Math.round(check.ms)} ms`);
  }
  return { placement: done, check };
}

export async function runTrial(env: TrialEnv, impl: VipImplementation, fault: Fault, rep: number): Promise<TrialResult> {
  const { lab, recorder, prober } = env;
  const problemsBefore = recorder.problems.length;
  const overrunsBefore = recorder.overruns;
  const victim = await steady(env, impl);
  let placement: string | null = null;
  let placementCheck: PlacementCheck | undefined;
  if (fault.etcdLeader) ({ placement, check: placementCheck } = await placeLeader(env, impl, fault.etcdLeader, victim));
  // Asked before the fault's clock starts, so it costs the trial nothing.
  const leader = await etcdLeader(lab).catch(() => null);
  const requestKey = fault.requestKey?.(lab, victim) ?? null;
  const watch = requestKey === null ? null : await EtcdKeyWatch.start(
    (name, argv, opts) => lab.spawnIn(victim.host.ns, join(lab.dir, `${name}-${victim.name}.log`), `${name}-${victim.name}`, argv, opts), requestKey);
  const t0 = labNow();
  const applied = await fault.apply(lab, victim).catch(async (e) => {
    await watch?.stop();
    throw e;
  });
  const inPlaceAt = labNow();
  env.log?.(`${impl.id} ${fault.id} #${rep + 1}: ${applied.detail}`);
  let requestAt = applied.requestAt ?? null;
  const requestNotes: string[] = [];
  if (watch && requestKey !== null) {
    const put = await watch.first(requestKey, "PUT", REQUEST_SEEN_MS, t0);
    await watch.stop();
    requestAt = put?.t ?? null;
    if (!put) requestNotes.push(`${requestKey} was not seen committed on ${victim.name}'s etcd member within ${REQUEST_SEEN_MS} ms of the command's exit${watch.problems.length ? ` (${watch.problems.join("; ")})` : ""}`);
  }
  const planned = requestKey !== null || applied.requestAt !== undefined;
  await sleep(Math.max(0, t0 + fault.holdMs - labNow()));
  const recoverAt = labNow();
  const victimHeldAtRecovery = recorder.isHeld(victim.name);
  const victimAddressAtRecovery = recorder.hasAddress(victim.name);
  await applied.recover();
  await sleep(SETTLE_MS);
  const endAt = labNow();

  const holdersAtEnd = recorder.holders();
  const addressAtEnd = recorder.addressHolders();
  const steadyAtEnd = steadyHolder(env, endAt - STEADY_WINDOW_MS, endAt) !== null;
  const failures: string[] = [];
  let steadyLaterMs: number | null = null;
  if (!steadyAtEnd) {
    const seen = describeLab(env, impl);
    // Measured outside the trial's window: is it wedged, or only slow?
    try {
      await steady(env, impl);
      steadyLaterMs = labNow() - recoverAt;
    } catch {
      steadyLaterMs = null;
    }
    if (steadyLaterMs === null) {
      failures.push(`no single steady holder after recovery: none at the end of the ${SETTLE_MS} ms settle window (${seen}), nor ${STEADY_TIMEOUT_MS} ms later (${describeLab(env, impl)})`);
    }
  }
  // Who held the VIP when the fault was undone: the one whose etcd counts after it.
  const heldAtRecovery = recorder.intervals(recoverAt - 1, recoverAt);
  const holderAtRecovery = [...heldAtRecovery].find(([, l]) => l.length > 0)?.[0] ?? null;
  const newProblems = recorder.problems.slice(problemsBefore);
  if (newProblems.length) failures.push(`the ownership witness failed: ${newProblems.join(" | ")}`);

  const from = t0 - PRE_MS;
  const perNode = recorder.intervals(from, endAt);
  const addressPerNode = recorder.addressIntervals(from, endAt);
  const samples = prober.between(from, endAt);
  const during = samples.filter((s) => s.t >= t0 && s.t < recoverAt);
  const after = samples.filter((s) => s.t >= recoverAt);
  const newHolder = newHolderAt(recorder.intervals(t0, recoverAt), victim.name, t0);
  const served = during.find((s) => s.ok && s.node !== victim.name);
  const released = releasedAt(perNode.get(victim.name) ?? [], t0, recoverAt);
  const addressGone = releasedAt(addressPerNode.get(victim.name) ?? [], t0, recoverAt);
  const movedTo = holdersStarting(perNode, victim.name, t0, endAt);
  const overruns = recorder.overruns - overrunsBefore;
  const outageOn = (node: string | null, a: number, b: number): NodeOutage | null => {
    if (!env.writers || node === null) return null;
    const o = env.writers.outage(node, a, b);
    return { node, ms: o.ms, at: o.at - t0 };
  };
  const etcdWriteOutage = {
    during: outageOn(fault.vipStays ? victim.name : newHolder?.node ?? null, t0, recoverAt),
    after: outageOn(holderAtRecovery, recoverAt, endAt),
  };
  const rel = (x: number) => x - t0;
  const relI = (i: Interval): Interval => ({ start: rel(i.start), end: rel(i.end) });
  const relAll = (m: ReadonlyMap<string, readonly Interval[]>) => Object.fromEntries([...m].map(([n, l]) => [n, l.map(relI)]));
  return {
    impl: impl.id,
    fault: fault.id,
    rep,
    victim: victim.name,
    detail: [applied.detail, ...(applied.notes ?? []), ...requestNotes, ...(overruns ? [`${overruns} monitor overrun(s), state re-read`] : [])].join("; "),
    placement,
    ...(placementCheck ? { placementCheck } : {}),
    ...(planned ? { requestMs: requestAt === null ? null : rel(requestAt) } : {}),
    t0,
    inPlaceMs: rel(inPlaceAt),
    recoverAt: rel(recoverAt),
    endAt: rel(endAt),
    outageMs: total(outages(during, recoverAt)),
    recoveryOutageMs: total(outages(after, endAt)),
    newHolderMs: newHolder ? rel(newHolder.t) : null,
    newHolder: newHolder?.node ?? null,
    servedByOtherMs: served ? rel(served.d) : null,
    victimReleasedMs: released === null ? null : rel(released),
    victimAddressGoneMs: addressGone === null ? null : rel(addressGone),
    leftBehind: fault.victimStops && victimHeldAtRecovery,
    addressLeftBehind: fault.victimStops && victimAddressAtRecovery,
    victimWasEtcdLeader: leader === null ? null : leader === victim.name,
    moved: movedTo.length > 0,
    movedTo,
    overlapMs: overlap(perNode).total,
    addressOverlapMs: overlap(addressPerNode).total,
    staleAnswers: staleAnswers(samples, perNode),
    staleDetail: staleSamples(samples, perNode).slice(0, 5).map((p) => {
      const near = (list: readonly Interval[] | undefined) =>
        (list ?? []).filter((i) => i.end >= p.t - 1000 && i.start <= p.d + 1000).map((i) => `[${Math.round(rel(i.start))}, ${Math.round(rel(i.end))})`).join(" ") || "none";
      return `${p.node} answered a probe sent at ${Math.round(rel(p.t))} ms, answered at ${Math.round(rel(p.d))} ms; ` +
        `its effective holds within 1 s: ${near(perNode.get(p.node))}; its address within 1 s: ${near(addressPerNode.get(p.node))}`;
    }),
    probes: samples.length,
    probeErrors: probeErrors(samples),
    errorsWhileHeld: errorsWhileHeld(samples, perNode),
    coverage: { during: probeCoverage(samples, t0, recoverAt), after: probeCoverage(samples, recoverAt, endAt) },
    recovery: {
      staleAnswers: staleAnswers(after, perNode),
      probeErrors: probeErrors(after),
      holders: holdersAtEnd,
      addressLeftOn: addressAtEnd.filter((n) => !holdersAtEnd.includes(n)),
      steady: steadyAtEnd,
      steadyLaterMs,
    },
    timings: {
      ...applied.timings,
      ...(etcdWriteOutage.during ? { [`etcd write outage on ${etcdWriteOutage.during.node}`]: etcdWriteOutage.during.ms } : {}),
      ...(etcdWriteOutage.after ? { [`etcd write outage after, on ${etcdWriteOutage.after.node}`]: etcdWriteOutage.after.ms } : {}),
    },
    etcdPreVote: lab.etcdPreVote,
    etcdWriteOutage,
    failure: failures.length ? failures.join("; ") : null,
    timeline: {
      from: rel(from),
      to: rel(endAt),
      recoverAt: rel(recoverAt),
      ownership: relAll(perNode),
      fenced: relAll(new Map([...addressPerNode].map(([n, l]) => [n, subtract(l, perNode.get(n) ?? [])]))),
      outages: outages(samples, endAt).map(relI),
      answers: answerRuns(samples).map((r) => ({ ...relI(r), node: r.node })),
    },
  };
}

/** Runs of consecutive successful probes answered by the same node. */
export function answerRuns(samples: readonly ProbeSample[]): (Interval & { node: string })[] {
  const out: (Interval & { node: string })[] = [];
  let cur: (Interval & { node: string }) | null = null;
  for (const s of [...samples].sort((a, b) => a.t - b.t)) {
    if (s.ok && cur && cur.node === s.node) cur.end = s.d;
    else {
      if (cur) out.push(cur);
      cur = s.ok ? { start: s.t, end: s.d, node: s.node } : null;
    }
  }
  if (cur) out.push(cur);
  return out;
}

/** The recorder, the prober and the etcd writers on a running lab; close() stops them. */
export async function startInstruments(lab: Lab, log?: (line: string) => void): Promise<TrialEnv & { close(): Promise<void> }> {
  const recorder = await OwnershipRecorder.start(lab);
  const prober = Prober.start(lab);
  const writers = EtcdWriters.start(lab);
  return {
    lab, recorder, prober, writers, ...(log ? { log } : {}),
    close: async () => {
      await writers.stop();
      await prober.stop();
      await recorder.close();
    },
  };
}

/** Runs fn with the recorder and prober on the lab, and stops them afterwards. */
export async function withLabInstruments<T>(lab: Lab, fn: (env: TrialEnv) => Promise<T>, log?: (line: string) => void): Promise<T> {
  const env = await startInstruments(lab, log);
  try {
    return await fn(env);
  } finally {
    await env.close();
  }
}

/**
 * How long after the fault was in place the victim stopped holding the VIP:
 * what its proof deadline bounds (the last heartbeat that could commit was
 * sent by then). Null when it never let go.
 */
export function releaseFromInPlace(r: Pick<TrialResult, "victimReleasedMs" | "inPlaceMs">): number | null {
  // Results saved before inPlaceMs was recorded are judged from t0, as then.
  return r.victimReleasedMs === null ? null : r.victimReleasedMs - (r.inPlaceMs ?? 0);
}
