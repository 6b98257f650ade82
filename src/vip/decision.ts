// The pure heart of ownership: from what vipd knows about one VIP right now,
// decide whether the address may be on the link and until when, and whether
// this node should stand for it at all. No I/O; the slot feeds it facts and
// the controller applies the answer (design.md §8).

/** A VIP's link: absent, administratively or physically down (no carrier), or up. */
export type LinkState = "absent" | "down" | "up";

/** What the agent knows about one VIP at one instant. */
export interface VipFacts {
  readonly now: number;
  /** Our key is first in the VIP's queue (etcd's view, as this agent last read it). */
  readonly head: boolean;
  /**
   * Until when a committed heartbeat proves our key (design.md §3); null when
   * none does. Leadership is a fact from etcd that may be stale; the proof is
   * a fact of our own clock.
   */
  readonly proof: number | null;
  /** Until when another node may still answer for the VIP by its claims (design.md §4); null: nobody. */
  readonly claimedUntil: number | null;
  /** We hold it now (the controller's word). Claims only keep a VIP from being taken, not from being kept. */
  readonly held: boolean;
  readonly link: LinkState;
  /** The kube-apiserver gate (always open when no gate is configured). */
  readonly gateOpen: boolean;
  /** Why this node withdrew from the VIP on its own (e.g. the kernel refuses the address); null: it did not. */
  readonly withdrawn: string | null;
  readonly stopping: boolean;
  /** The VIP left the configuration (a reload): release it and leave its queue for good. */
  readonly removed: boolean;
  /** Why an operator drained this node (`vipd drain`); null: not drained. */
  readonly drained: string | null;
  /** Another machine, not a vipd agent, answers for the address (RFC 5227 probe); null: none seen. */
  readonly conflict: string | null;
  /** A requested hand-over needs this node to step back in the queue (`vipd handover`); null: none. */
  readonly yielding: string | null;
}

/** Short, fixed tokens for metrics labels (vipd_ownership_transitions_total). */
export type ReleaseCode =
  | "shutdown"
  | "removed"
  | "link-down"
  | "gate-closed"
  | "drained"
  | "conflict"
  | "withdrawn"
  | "handover"
  | "fence-expired"
  | "not-elected"
  | "claimed";

export type HoldDecision =
  | { readonly hold: true; readonly deadline: number }
  | { readonly hold: false; readonly reason: string; readonly code: ReleaseCode };

/**
 * Whether the VIP may be on the link. Every condition must hold at once; the
 * first one that fails names the reason, in the order an operator would look
 * for it. Holding needs a proof (design.md I1) and, to acquire, no claim of
 * another node in force (I5).
 */
export function decideHold(f: VipFacts): HoldDecision {
  const out = standDown(f);
  if (out) return { hold: false, ...out };
  if (!f.head) return { hold: false, reason: "not first in the queue", code: "not-elected" };
  if (f.proof === null || f.proof <= f.now) return { hold: false, reason: "no committed heartbeat proves our key (etcd unreachable or slow)", code: "fence-expired" };
  if (!f.held && f.claimedUntil !== null && f.claimedUntil > f.now) {
    return { hold: false, reason: `another node may still answer for it for ${Math.ceil(f.claimedUntil - f.now)} ms (its claim runs out)`, code: "claimed" };
  }
  return { hold: true, deadline: f.proof };
}

/**
 * Whether this node should be in the VIP's queue. A node that could not hold
 * the address must not stand, or it would win and leave the VIP dark while a
 * healthy node waits behind it.
 */
export function decideCandidacy(f: CandidacyFacts): Candidacy {
  const out = standDown(f);
  return out ? { stand: false, ...out } : { stand: true, reason: "ready" };
}

/** Whether to stand; when not, why, and the same code a release for that reason carries. */
export type Candidacy =
  | { readonly stand: true; readonly reason: "ready" }
  | { readonly stand: false; readonly reason: string; readonly code: ReleaseCode };

export type CandidacyFacts = Pick<VipFacts, "link" | "gateOpen" | "stopping" | "withdrawn" | "removed" | "drained" | "conflict" | "yielding">;

/**
 * Why this node must neither hold nor stand for the VIP, whoever else does:
 * the reasons of its own, in the order an operator would look for them.
 * Null: none, it may stand.
 */
function standDown(f: CandidacyFacts): { reason: string; code: ReleaseCode } | null {
  if (f.stopping) return { reason: "shutting down", code: "shutdown" };
  if (f.removed) return { reason: "removed from the configuration", code: "removed" };
  if (f.link === "absent") return { reason: "link is missing", code: "link-down" };
  if (f.link === "down") return { reason: "link is down", code: "link-down" };
  if (!f.gateOpen) return { reason: "kube-apiserver gate closed", code: "gate-closed" };
  if (f.drained !== null) return { reason: f.drained, code: "drained" };
  if (f.conflict !== null) return { reason: f.conflict, code: "conflict" };
  if (f.withdrawn !== null) return { reason: f.withdrawn, code: "withdrawn" };
  if (f.yielding !== null) return { reason: f.yielding, code: "handover" };
  return null;
}
