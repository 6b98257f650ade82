// One repetition of one fault against one implementation, measured: bring the
// lab to a steady state (one holder, the client served by it), apply the fault
// to the holder, hold, recover, watch the recovery, then compute the numbers
// from the probe samples and the ownership intervals. Used by the fault-matrix
// test, the demo and the benchmark alike.
import { type Lab, type LabNode, labNow } from "./cluster.ts";
import { etcdLeader, type Fault, type FaultId } from "./faults.ts";
import type { ImplementationId, VipImplementation } from "./implementations.ts";
import { Prober } from "./prober.ts";
import { OwnershipRecorder } from "./recorder.ts";
import { sleep } from "./sh.ts";
import {
  type Interval,
  newHolderAt,
  outages,
  overlap,
  type ProbeSample,
  releasedAt,
  staleAnswers,
  total,
} from "./stats.ts";

export interface TrialResult {
  impl: ImplementationId;
  fault: FaultId;
  rep: number;
  victim: string;
  detail: string;
  /** Lab clock of the fault; every other time below is ms relative to it. */
  t0: number;
  recoverAt: number;
  endAt: number;
  /** Client outage while the fault lasted ([0, recoverAt)), summed. */
  outageMs: number;
  /** Client outage caused by the recovery itself ([recoverAt, endAt)). */
  recoveryOutageMs: number;
  /** First time another node added the VIP; null if none did during the fault. */
  newHolderMs: number | null;
  newHolder: string | null;
  /** When another node first answered the client; null if none did during the fault. */
  servedByOtherMs: number | null;
  /** When the VIP left the victim; null if it was still there at recovery. */
  victimReleasedMs: number | null;
  /** The victim's program was dead or frozen and still held the VIP at recovery. */
  leftBehind: boolean;
  /**
   * Whether the victim's etcd member was the raft leader when the fault hit
   * (null: no member answered). Losing the leader costs an etcd election, and
   * the new leader renews every lease: failovers are slower by design then.
   */
  victimWasEtcdLeader: boolean | null;
  /** Time with two or more holders, whole observation. */
  overlapMs: number;
  /** Successful probes answered by a node that held no VIP at the time. */
  staleAnswers: number;
  probes: number;
  /** For timelines: ownership per node, client outages and answering nodes, relative to t0. */
  timeline: Timeline;
}

export interface Timeline {
  from: number;
  to: number;
  recoverAt: number;
  ownership: Record<string, Interval[]>;
  outages: Interval[];
  /** Runs of successful probes answered by the same node. */
  answers: (Interval & { node: string })[];
}

export interface TrialEnv {
  lab: Lab;
  recorder: OwnershipRecorder;
  prober: Prober;
  log?: (line: string) => void;
}

const PRE_MS = 1000;
const SETTLE_MS = 4000;

/**
 * Waits until exactly one node holds the VIP and the client has been served by
 * it for a whole second. If that does not happen within `timeoutMs`, restarts
 * the implementation everywhere from a clean kernel state once.
 */
export async function steady(env: TrialEnv, impl: VipImplementation, timeoutMs = 20_000): Promise<LabNode> {
  const { lab } = env;
  for (let attempt = 0; ; attempt++) {
    await lab.startVipEverywhere(impl);
    const end = labNow() + timeoutMs;
    while (labNow() < end) {
      const holders = env.recorder.holders();
      if (holders.length === 1) {
        const since = labNow() - 1500;
        const recent = env.prober.between(since, labNow() - 350);
        const ok = recent.length >= 80 && recent.every((s) => s.ok && s.node === holders[0]);
        if (ok) return lab.node(holders[0]!);
      }
      await sleep(100);
    }
    if (attempt > 0) {
      throw new Error(`${impl.id} did not settle on one holder serving the client in ${timeoutMs} ms (holders: ${env.recorder.holders().join(",") || "none"})`);
    }
    env.log?.(`${impl.id}: no steady state; restarting it on every node from a clean state`);
    await lab.stopVipEverywhere("SIGTERM");
    for (const n of lab.nodes) await lab.clearVip(n);
  }
}

export async function runTrial(env: TrialEnv, impl: VipImplementation, fault: Fault, rep: number): Promise<TrialResult> {
  const { lab, recorder, prober } = env;
  const victim = await steady(env, impl);
  // Asked before the fault's clock starts, so it costs the trial nothing.
  const leader = await etcdLeader(lab).catch(() => null);
  const t0 = labNow();
  const applied = await fault.apply(lab, victim);
  env.log?.(`${impl.id} ${fault.id} #${rep + 1}: ${applied.detail}`);
  await sleep(Math.max(0, t0 + fault.holdMs - labNow()));
  const recoverAt = labNow();
  const victimHeldAtRecovery = recorder.isHeld(victim.name);
  await applied.recover();
  await sleep(SETTLE_MS);
  const endAt = labNow();
  const from = t0 - PRE_MS;
  const perNode = recorder.intervals(from, endAt);
  const samples = prober.between(from, endAt);
  const during = samples.filter((s) => s.t >= t0 && s.t < recoverAt);
  const after = samples.filter((s) => s.t >= recoverAt);
  const newHolder = newHolderAt(recorder.intervals(t0, recoverAt), victim.name, t0);
  const served = during.find((s) => s.ok && s.node !== victim.name);
  const released = releasedAt(perNode.get(victim.name) ?? [], t0, recoverAt);
  const rel = (x: number) => x - t0;
  const relI = (i: Interval): Interval => ({ start: rel(i.start), end: rel(i.end) });
  return {
    impl: impl.id,
    fault: fault.id,
    rep,
    victim: victim.name,
    detail: applied.detail,
    t0,
    recoverAt: rel(recoverAt),
    endAt: rel(endAt),
    outageMs: total(outages(during, recoverAt)),
    recoveryOutageMs: total(outages(after, endAt)),
    newHolderMs: newHolder ? rel(newHolder.t) : null,
    newHolder: newHolder?.node ?? null,
    servedByOtherMs: served ? rel(served.d) : null,
    victimReleasedMs: released === null ? null : rel(released),
    leftBehind: fault.victimStops && victimHeldAtRecovery,
    victimWasEtcdLeader: leader === null ? null : leader === victim.name,
    overlapMs: overlap(perNode).total,
    staleAnswers: staleAnswers(samples, perNode),
    probes: samples.length,
    timeline: {
      from: rel(from),
      to: rel(endAt),
      recoverAt: rel(recoverAt),
      ownership: Object.fromEntries([...perNode].map(([n, l]) => [n, l.map(relI)])),
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

/** The recorder and the prober on a running lab; close() stops both. */
export async function startInstruments(lab: Lab, log?: (line: string) => void): Promise<TrialEnv & { close(): Promise<void> }> {
  const recorder = await OwnershipRecorder.start(lab);
  const prober = Prober.start(lab);
  return {
    lab, recorder, prober, ...(log ? { log } : {}),
    close: async () => {
      await prober.stop();
      recorder.close();
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
