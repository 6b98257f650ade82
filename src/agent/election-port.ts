// The narrow seam between a slot and the election: one read of everything
// the slot needs to know about its VIP's queue, and the three writes it
// makes. The agent wires it to the Session (sessionPort); slot tests pass a
// plain object. Beside it, for the slots as a set, what changed since they
// last looked (sessionNews): which VIPs to decide again for.
import type { Session } from "../election/session.ts";
import { silenceAhead } from "../election/takeover.ts";
import type { Clock } from "../seams.ts";

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
  /**
   * The agent ahead whose silence the takeover waits for longest, and when
   * its silence window ends as the view has it now; its heartbeats move
   * takeoverAt. Absent or null: no takeover to wait for.
   */
  readonly waitsOn?: { readonly node: string; readonly silentAfter: number } | null;
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

/** What the port and the news read of a Session (tests pass one over a plain view). */
export type SessionFacts = Pick<
  Session,
  "view" | "ready" | "registered" | "drained" | "mine" | "isHead" | "proof" | "claimedElsewhereUntil" | "takeoverAt" | "yielding" | "on" | "join" | "release" | "takeover"
>;

/** The port over a Session and its view. */
export function sessionPort(session: SessionFacts, clock: Clock): ElectionPort {
  const { view } = session;
  return {
    read(vip) {
      const asked = view.handover(vip)?.request;
      const mine = session.mine(vip);
      const ahead = mine && session.ready ? silenceAhead(view, mine, vip, clock()) : null;
      return {
        registered: session.registered,
        ready: session.ready,
        queue: view.queue(vip).map((c) => ({ node: c.node, host: view.agent(c.node)?.incarnation?.host ?? null, heardAt: view.heartbeat(c.node)?.receivedAt ?? null })),
        mine: session.mine(vip)?.createRevision ?? null,
        head: session.isHead(vip),
        proof: session.proof(vip),
        claimedUntil: session.claimedElsewhereUntil(vip),
        takeoverAt: session.takeoverAt(vip),
        waitsOn: ahead && { node: ahead.node, silentAfter: ahead.silentAfter },
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

/** What changed in the election since the slots last looked. */
export interface ElectionNews {
  /** Every VIP's facts may have: the session's state, a full read of the view, an agent record, a drain. */
  readonly all: boolean;
  /** The VIPs whose queue, hand-over request or claims changed. */
  readonly vips: ReadonlySet<string>;
  /** A heartbeat of ours committed (or lost keys): the proofs of the VIPs we head moved. */
  readonly proofs: boolean;
}

/**
 * The news over a Session: the view's changes (view.ts takeChanges), the
 * session's own state compared with the last look, and whether a heartbeat
 * of ours committed since. A heartbeat of another agent that claims what it
 * did is no news at all: the slots behind it wait on its silence instead
 * (silence-watch.ts). One reader: each call takes what changed.
 */
export function sessionNews(session: SessionFacts): () => ElectionNews {
  let proofs = false;
  let ready: boolean | null = null;
  let registered: boolean | null = null;
  let drained: string | null = null;
  session.on("heartbeat", ({ result }) => {
    if (result !== "failed") proofs = true;
  });
  // Reused: the slots read it before they ask again.
  const news = { all: false, vips: new Set<string>() as ReadonlySet<string>, proofs: false };
  return () => {
    const v = session.view.takeChanges();
    const now = { ready: session.ready, registered: session.registered, drained: session.drained };
    news.all = v.all || now.ready !== ready || now.registered !== registered || now.drained !== drained;
    news.vips = v.vips;
    news.proofs = proofs;
    proofs = false;
    ({ ready, registered, drained } = now);
    return news;
  };
}
