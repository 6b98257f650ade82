// When a silent etcd is worth a new connection (design.md §7). Pure: the
// connection asks with the facts, and does what the answer says.
//
// Silence alone does not mean the connection is broken. A member that is
// frozen (a defragmentation, a stop-the-world pause), electing a leader, or
// rejoining its cluster answers nothing for a while on a perfectly good TCP
// connection, and everything sent to it is answered once it runs again. A
// new connection to the same member helps nothing then, and costs a lot: the
// heartbeats in flight are dropped, the watch and the view are read again
// (which fails until etcd answers, and backs off), and the new connection's
// first answer comes no sooner than the old one's would have. Measured on
// etcd 3.4 with one endpoint, that churn kept a holder dark for up to 1.7 s
// after its member had resumed.
//
// A new connection helps only
// - when there is another endpoint: the calls on the new connection may go
//   to a member that answers (etcd3 picks an endpoint per call);
// - when the TCP connection itself is dead: a peer that vanished without a
//   FIN leaves a half-open connection whose calls hang until TCP gives up,
//   minutes later. The kernel knows: our data goes unacknowledged and is
//   retransmitted (tcp-liveness.ts). A frozen etcd's kernel still
//   acknowledges every byte.
// When the kernel cannot tell (no socket found, /proc unreadable), a hold
// time of silence is taken as the sign: by then no proof is left to lose.
//
// And never twice within one hold time on one endpoint: a new connection to
// the same member needs that long at most to show whether it helped.

export type TcpLiveness = "dead" | "alive" | "unknown";

export interface ReconnectFacts {
  readonly now: number;
  /** How many endpoints the client may choose from. */
  readonly endpoints: number;
  /** When the connection was last replaced; null: never. */
  readonly lastResetAt: number | null;
  readonly holdMs: number;
  /** How long the caller has heard nothing on the connection. */
  readonly silentMs: number;
  /** What the kernel says of our TCP connections to the endpoint (asked only with one endpoint). */
  readonly tcp: () => TcpLiveness;
}

export type ReconnectDecision = { readonly reset: boolean; readonly why: string };

export function decideReconnect(f: ReconnectFacts): ReconnectDecision {
  if (f.endpoints > 1) return { reset: true, why: `another of ${f.endpoints} endpoints may answer` };
  if (f.lastResetAt !== null && f.now - f.lastResetAt < f.holdMs) {
    return { reset: false, why: `reconnected ${Math.round(f.now - f.lastResetAt)} ms ago, within one hold time (${f.holdMs} ms)` };
  }
  const tcp = f.tcp();
  if (tcp === "dead") return { reset: true, why: "the TCP connection is dead (our data is being retransmitted, unacknowledged)" };
  if (tcp === "unknown" && f.silentMs >= f.holdMs) {
    return { reset: true, why: `silent for a hold time (${f.holdMs} ms) and the kernel cannot say whether the TCP connection lives` };
  }
  return {
    reset: false,
    why: tcp === "alive"
      ? "one endpoint, and its TCP connection is alive: a new one would reach the same member, which answers when it can"
      : `one endpoint; waiting up to a hold time (${f.holdMs} ms) of silence before reconnecting`,
  };
}

/**
 * How long a stream or call may go unanswered before the connection is
 * asked whether to move: 1 s, or less for a short hold, so that with several
 * endpoints the move to another member comes within half a hold time.
 */
export function stallAfter(holdMs: number, intervalMs: number): number {
  return Math.max(intervalMs, Math.min(1000, holdMs / 2 - intervalMs));
}
