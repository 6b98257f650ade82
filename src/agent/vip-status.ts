// One VIP as /status shows it: a pure function of what the slot, its
// controller and the election port know at one instant.
import type { VipSettings } from "../config/index.ts";
import type { HoldDecision } from "../vip/decision.ts";
import type { Conflict } from "./conflict.ts";
import type { ElectionFacts } from "./election-port.ts";
import { describeStanding, type Standing } from "./standing.ts";

export interface VipStatus {
  ip: string;
  link: string;
  /** The node first in the queue, null when nobody stands. */
  leader: string | null;
  /** Whether this node has the address on its link now. */
  owner: boolean;
  /** When this node acquired it (ISO 8601), null when it does not hold it. */
  since: string | null;
  role: "holder" | "first" | "waiting" | "out";
  /** In the VIP's queue or holding it, for a reason that still holds (standing.ts). */
  standing: boolean;
  /** What it stands as ("holding", "first in the queue", "waiting behind cp-1"), or `not standing: link enp0s2 missing`. */
  standingReason: string;
  candidacy: string;
  reason: string;
  /** The queue as this node last read it, first in line first. */
  queue: { node: string; host: string | null }[];
  /** A hand-over in progress (`vipd handover`): to whom, asked by whom and when; null: none. */
  handover: { to: string; by: string; at: string } | null;
  /** Machines that are not vipd agents answering for the VIP (their MACs), and since when (ISO 8601); null: none seen. */
  conflict: { macs: string[]; since: string } | null;
}

export interface VipStatusFacts {
  readonly vip: VipSettings;
  readonly election: ElectionFacts;
  /** The controller's: the address is on the link, since when (clock), and its last decision. */
  readonly held: boolean;
  readonly since: number | null;
  readonly decision: HoldDecision | null;
  /** The slot's candidacy, and why it won when it holds. */
  readonly candidacy: string;
  readonly winReason: string;
  readonly conflict: Conflict | null;
  readonly standing: Standing;
  /** The monotonic clock and the wall clock, read together. */
  readonly now: number;
  readonly wallNow: number;
}

export function vipStatus(f: VipStatusFacts): VipStatus {
  const { vip, election: e, held, since, decision: d, conflict, standing, now, wallNow } = f;
  const wall = (at: number) => new Date(wallNow - (now - at)).toISOString();
  return {
    ip: vip.ip,
    link: vip.link,
    leader: e.queue[0]?.node ?? null,
    owner: held,
    since: since === null ? null : wall(since),
    role: held ? "holder" : e.head ? "first" : e.mine !== null ? "waiting" : "out",
    standing: standing.standing,
    standingReason: describeStanding(standing),
    candidacy: f.candidacy,
    reason: d && !d.hold ? d.reason : held ? f.winReason : f.candidacy,
    queue: e.queue.map((c) => ({ node: c.node, host: c.host })),
    handover: e.handover,
    conflict: conflict ? { macs: [...conflict.macs], since: wall(conflict.since) } : null,
  };
}
