// The narrow seam between a slot and the election: one read of everything
// the slot needs to know about its VIP's queue, and the three writes it
// makes. The agent wires it to the Session (sessionPort); slot tests pass a
// plain object.
import type { Session } from "../election/session.ts";

/** One VIP's election, as this agent's view shows it now. */
export interface ElectionFacts {
  /** Registered with etcd (lease and agent record): a release can be sent. */
  readonly registered: boolean;
  /** Registered and the view current: joins and takeovers may go. */
  readonly ready: boolean;
  /** The queue, first first; host from the agent's record, heardAt when its last heartbeat arrived (local clock). */
  readonly queue: readonly { readonly node: string; readonly host: string | null; readonly heardAt: number | null }[];
  /** The create revision of our key in the queue; null: the view has none. */
  readonly mine: string | null;
  /** Our key is first. */
  readonly head: boolean;
  /** Until when a committed heartbeat proves our key (design.md §3); null: none does. */
  readonly proof: number | null;
  /** Until when another node may still answer for the VIP by its claims (§4); null: nobody. */
  readonly claimedUntil: number | null;
  /** When we may take the queue over from the agents ahead (§3); null: not queued behind anyone. */
  readonly takeoverAt: number | null;
  /** Why an operator drained this node; null: not drained. */
  readonly drained: string | null;
  /** Why our key must step back for a hand-over; null: it stays. */
  readonly yielding: string | null;
  /** The hand-over asked for this VIP, if any (`vipd handover`). */
  readonly handover: { readonly to: string; readonly by: string; readonly at: string } | null;
}

export interface ElectionPort {
  read(vip: string): ElectionFacts;
  /** The MACs the agents published: their answers to a conflict probe are no stranger's. */
  agentMacs(): ReadonlySet<string>;
  /** Resolves once the session is registered and its view read. */
  whenReady(): Promise<void>;
  /** Joins the VIP's queue at the back. */
  join(vip: string): Promise<void>;
  /** Leaves the VIP's queue, with a heartbeat that no longer claims it; the kernel must have let go first (I4). */
  release(vip: string): Promise<void>;
  /** Takes the queue over from the silent agents ahead (I3); took: false when someone spoke meanwhile. */
  takeover(vip: string): Promise<{ took: boolean; from: string[] }>;
}

/** The port over a Session and its view. */
export function sessionPort(session: Session): ElectionPort {
  const { view } = session;
  return {
    read(vip) {
      const asked = view.handover(vip)?.request;
      return {
        registered: session.registered,
        ready: session.ready,
        queue: view.queue(vip).map((c) => ({ node: c.node, host: view.agent(c.node)?.incarnation?.host ?? null, heardAt: view.heartbeat(c.node)?.receivedAt ?? null })),
        mine: session.mine(vip)?.createRevision ?? null,
        head: session.isHead(vip),
        proof: session.proof(vip),
        claimedUntil: session.claimedElsewhereUntil(vip),
        takeoverAt: session.takeoverAt(vip),
        drained: session.drained,
        yielding: session.yielding(vip),
        handover: asked ? { to: asked.to, by: asked.by, at: asked.at } : null,
      };
    },
    agentMacs: () => view.agentMacs(),
    whenReady() {
      if (session.ready) return Promise.resolve();
      return new Promise((resolve) => {
        const off = session.on("changed", () => {
          if (!session.ready) return;
          off();
          resolve();
        });
      });
    },
    join: (vip) => session.join(vip),
    release: (vip) => session.release([vip]),
    takeover: (vip) => session.takeover(vip),
  };
}
