// Whether this node stands for one VIP: in the election (its key in the
// VIP's queue) or holding the address. That is what a node is for; a node
// that is up and talking to etcd but stands for nothing (its VIP's link is
// missing, say) does not do its job, and /healthz, /status and
// `vipd wait --for standing` say so, and why.
import type { Candidacy, LinkState } from "../vip/decision.ts";

export interface StandingFacts {
  /** The VIP's link, by name, and its state. */
  readonly link: string;
  readonly linkState: LinkState;
  /** Whether this node should stand now (decideCandidacy). */
  readonly candidacy: Candidacy;
  readonly sessionReady: boolean;
  /** The address is on the link now. */
  readonly held: boolean;
  /** The nodes ahead of ours in the VIP's queue; null: our key is not in it. */
  readonly ahead: readonly string[] | null;
  /** What the node does meanwhile when it should stand and is not queued yet ("joining the queue"). */
  readonly pending: string;
}

export type Standing =
  | { readonly standing: true; readonly detail: string }
  | {
    readonly standing: false;
    readonly reason: string;
    /**
     * A fault /healthz must report: the link is missing or down, which no
     * one but an operator fixes. The other reasons are reported by /healthz
     * checks of their own (the gate, a withdrawal, a conflict, the etcd
     * session), asked for by an operator (a drain, a hand-over), or pass by
     * themselves (joining, probing, shutting down, removed by a reload).
     */
    readonly fault: boolean;
  };

export function standing(f: StandingFacts): Standing {
  const c = f.candidacy;
  if (!c.stand) {
    if (c.code === "link-down") return { standing: false, reason: `link ${f.link} ${f.linkState === "absent" ? "missing" : "down"}`, fault: true };
    return { standing: false, reason: c.reason, fault: false };
  }
  if (f.held) return { standing: true, detail: "holding" };
  // Without the session the queue as last read may be stale: our key may be gone.
  if (!f.sessionReady) return { standing: false, reason: "etcd session not established", fault: false };
  if (f.ahead === null) return { standing: false, reason: f.pending, fault: false };
  return { standing: true, detail: f.ahead.length ? `waiting behind ${f.ahead.join(", ")}` : "first in the queue" };
}

/** One line for /status: what it stands as, or `not standing: why`. */
export function describeStanding(s: Standing): string {
  return s.standing ? s.detail : `not standing: ${s.reason}`;
}
