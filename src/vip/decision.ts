// The pure heart of ownership: from what vipd knows about one VIP right now,
// decide whether the address may be on the link, for how long, and whether
// this node should be a candidate at all. No I/O; the agent feeds it facts
// and applies the answer.

/** What the agent knows about one VIP at one instant. */
export interface VipFacts {
  /** etcd says our key is first in this VIP's election queue. */
  readonly leader: boolean;
  /**
   * Whole seconds the kernel may keep the address before the lease could have
   * expired at etcd (see election/fence.ts); null when that cannot be proven.
   */
  readonly fenceLifetime: number | null;
  /** The VIP's link: absent, administratively or physically down, or up. */
  readonly link: "absent" | "down" | "up";
  /** The kube-apiserver gate (always open when no gate is configured). */
  readonly gateOpen: boolean;
  readonly stopping: boolean;
}

/** Short, fixed tokens for metrics labels (vipd_ownership_transitions_total). */
export type ReleaseCode = "shutdown" | "link-down" | "gate-closed" | "fence-expired" | "not-elected";

export type HoldDecision =
  | { readonly hold: true; readonly lifetime: number }
  | { readonly hold: false; readonly reason: string; readonly code: ReleaseCode };

/**
 * Whether the VIP may be on the link. Every condition must hold at once; the
 * first one that fails names the reason, in the order an operator would look
 * for it. The lease proof is checked even for a leader: leadership is a fact
 * from etcd that may be stale, while the fence is a fact of our own clock.
 */
export function decideHold(f: VipFacts): HoldDecision {
  if (f.stopping) return { hold: false, reason: "shutting down", code: "shutdown" };
  if (f.link === "absent") return { hold: false, reason: "link is missing", code: "link-down" };
  if (f.link === "down") return { hold: false, reason: "link is down", code: "link-down" };
  if (!f.gateOpen) return { hold: false, reason: "kube-apiserver gate closed", code: "gate-closed" };
  if (f.fenceLifetime === null || f.fenceLifetime < 1) {
    return { hold: false, reason: "lease not proven (keepalive deadline passed)", code: "fence-expired" };
  }
  if (!f.leader) return { hold: false, reason: "not the elected holder", code: "not-elected" };
  return { hold: true, lifetime: f.fenceLifetime };
}

/**
 * Whether this node should be in the VIP's election queue. A node that could
 * not hold the address must not stand, or it would win and leave the VIP dark
 * while a healthy node waits behind it.
 */
export function decideCandidacy(f: Pick<VipFacts, "link" | "gateOpen" | "stopping">): { stand: boolean; reason: string } {
  if (f.stopping) return { stand: false, reason: "shutting down" };
  if (f.link !== "up") return { stand: false, reason: f.link === "absent" ? "link is missing" : "link is down" };
  if (!f.gateOpen) return { stand: false, reason: "kube-apiserver gate closed" };
  return { stand: true, reason: "ready" };
}
