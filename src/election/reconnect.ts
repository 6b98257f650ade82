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
// With one endpoint a new connection helps only when the TCP connection
// itself is dead: a peer that vanished without a FIN leaves a half-open
// connection whose calls hang until TCP gives up, minutes later. The kernel
// knows: our data goes unacknowledged and is retransmitted (tcp-liveness.ts).
// A frozen etcd's kernel still acknowledges every byte. When the kernel
// cannot tell (no socket found, /proc unreadable), a hold time of silence is
// taken as the sign: by then no proof is left to lose.
//
// With several endpoints, etcd3 picks a member at random for each call and
// for each stream when it opens (its connection pool shuffles the hosts per
// call), and the connection keeps one channel per member. So a silent member
// costs only the calls that went to it, and the streams opened on it (the
// watch, the lease's keepalives), which stay there. A new connection moves
// them only if another member would answer where that one does not, and
// only for good if the new connection leaves the silent member out. Whether
// that is so, silence cannot say: a whole cluster electing a leader, or
// without quorum, is as silent as one frozen member. So every member is
// asked, each on a fresh connection of its own, with a short deadline
// (probeMs, so that the move still comes within half a hold): a
// linearizable read, which a member answers only through a leader with a
// quorum, as it would a heartbeat. Each member then
// - answers: it serves heartbeats now;
// - fails (an error before the deadline: refused, a dead process, "no
//   leader"): calls to it fail as fast, and a failure is an answer to our
//   loops, never a silence;
// - is silent: calls to it hang — frozen, partitioned, or vanished.
// The connection moves (decideMove) when some member answers, and one it is
// using is silent or none it is using answers; the new connection lists
// only the members that answered, so the streams cannot land on the silent
// one again. Nothing answers: the whole cluster is silent, and a new
// connection would only drop what is in flight. Every member answers: the
// silence has ended. A member left out comes back at the next move, when
// every member is asked again.
//
// And never twice within one hold time: a new connection needs that long
// at most to show whether it helped.

export type TcpLiveness = "dead" | "alive" | "unknown";

export interface ReconnectFacts {
  readonly now: number;
  /** How many endpoints are listed. */
  readonly endpoints: number;
  /** When the connection was last replaced; null: never. */
  readonly lastResetAt: number | null;
  readonly holdMs: number;
  /** How long the caller has heard nothing on the connection. */
  readonly silentMs: number;
  /** What the kernel says of our TCP connections to the endpoint (asked only with one endpoint). */
  readonly tcp: () => TcpLiveness;
  /** Several endpoints: whether the members are being asked now, and when they were last asked (null: never). */
  readonly probing?: boolean;
  readonly lastProbeAt?: number | null;
}

/** reset: replace the connection now; probe: ask every member first (several endpoints), then decideMove. */
export type ReconnectDecision = { readonly reset: boolean; readonly probe?: boolean; readonly why: string };

export function decideReconnect(f: ReconnectFacts): ReconnectDecision {
  if (f.lastResetAt !== null && f.now - f.lastResetAt < f.holdMs) {
    return { reset: false, why: `reconnected ${Math.round(f.now - f.lastResetAt)} ms ago, within one hold time (${f.holdMs} ms)` };
  }
  if (f.endpoints > 1) {
    if (f.probing) return { reset: false, why: `asking each of the ${f.endpoints} members whether another answers` };
    const every = probeEvery(f.holdMs);
    if (f.lastProbeAt != null && f.now - f.lastProbeAt < every) {
      return { reset: false, why: `asked the members ${Math.round(f.now - f.lastProbeAt)} ms ago, under ${every} ms` };
    }
    return { reset: false, probe: true, why: `asking each of the ${f.endpoints} members whether another answers` };
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

/** What one member did with a probe: answered it, failed it before the deadline, or let the deadline pass. */
export type ProbeAnswer = "answers" | "fails" | "silent";

export interface ProbedMember {
  readonly endpoint: string;
  readonly answer: ProbeAnswer;
  /** The current connection lists it. */
  readonly inUse: boolean;
}

export type MoveDecision = { readonly reset: false; readonly why: string } | { readonly reset: true; readonly why: string; readonly endpoints: readonly string[] };

/** After every member was asked: whether a new connection, to those that answered, helps. */
export function decideMove(members: readonly ProbedMember[]): MoveDecision {
  const answering = members.filter((m) => m.answer === "answers").map((m) => m.endpoint);
  const silent = members.filter((m) => m.inUse && m.answer === "silent").map((m) => m.endpoint);
  const inUse = members.filter((m) => m.inUse);
  if (answering.length === 0) return { reset: false, why: `no member answers: the whole cluster is silent, a new connection would not help` };
  if (silent.length > 0) {
    return { reset: true, why: `${silent.join(", ")} silent while ${answering.join(", ")} answer`, endpoints: answering };
  }
  if (!inUse.some((m) => m.answer === "answers")) {
    return { reset: true, why: `no member in use answers (${inUse.map((m) => m.endpoint).join(", ")}) while ${answering.join(", ")} do`, endpoints: answering };
  }
  return { reset: false, why: `the members in use answer or fail at once (${inUse.map((m) => `${m.endpoint}: ${m.answer}`).join(", ")}): the calls on them will end` };
}

/**
 * How long each member has to answer a probe: what is left of half a hold
 * after the stall was noticed (stallAfter, at the holder's 250 ms), within
 * 100–500 ms. A round trip on a fresh connection to a live member takes a
 * few ms; a member that takes longer serves heartbeats no better.
 */
export function probeMs(holdMs: number): number {
  return Math.max(100, Math.min(500, holdMs / 2 - stallAfter(holdMs, 250)));
}

/** Members are asked no more often than this while the silence lasts: each time costs one new connection per member. */
export function probeEvery(holdMs: number): number {
  return 2 * probeMs(holdMs);
}

/**
 * How long a stream or call may go unanswered before the connection is
 * asked whether to move: 1 s, or less for a short hold, so that with several
 * endpoints the move to another member, after probeMs asking them, comes
 * within half a hold time.
 */
export function stallAfter(holdMs: number, intervalMs: number): number {
  return Math.max(intervalMs, Math.min(1000, holdMs / 2 - intervalMs));
}
