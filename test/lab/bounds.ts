// The bounds vipd is held to in the lab, derived from its design (docs/design.md
// §10) and from the constants the agent itself uses (src/election/proof.ts), so
// that changing a constant moves the budgets with it. Each CI budget is the
// design bound plus a stated allowance for noise on a shared 2-core machine;
// the benchmark's targets are the numbers, judged on medians and p95s.
import { DEFAULT_HOLD_MS, HEARTBEAT_INTERVAL_MS, HEARTBEAT_RETRY_MS, MARGIN_MS, silenceWindow, TAKEOVER_STAGGER_MS } from "../../src/election/proof.ts";

export interface VipdBounds {
  readonly holdMs: number;
  /**
   * A dead, frozen or cut-off holder stops answering by its proof deadline:
   * at most hold − margin after its last committed heartbeat, sent before the
   * fault (§3, §5).
   */
  readonly releaseMs: number;
  /**
   * Another node answers after it has heard nothing for the silence window
   * from the holder's last heartbeat, received before the fault, plus one
   * takeover transaction, the address and the first announcement (§3, §10) —
   * wherever etcd's raft leader was: with pre-vote the survivors elect a new
   * one within two election timeouts (2 s), before the window runs out.
   */
  readonly serveMs: number;
  /**
   * The same when the node next in line is silent too, so that the one after
   * it takes over, one rank stagger later (TAKEOVER_STAGGER_MS, §3): etcd's
   * leader and the holder killed at once, the leader's member the only
   * endpoint of the next in line's agent. This is the "one heartbeat
   * interval" of design.md §10's failover bound (the stagger is as long as
   * one): the window + the stagger + a takeover, ≈ 2.8 s. Measured in the
   * lab: 2833 ms from the fault ("took over from n2, n1: no heartbeat for
   * 2833 ms"), against 2386–2598 ms where the next in line took over.
   */
  readonly serveBehindSilentMs: number;
  /**
   * Planned moves (graceful stop, drain, hand-over), counted from the moment
   * the request took effect (the signal sent; the drain or hand-over key
   * committed): one watch event and one heartbeat round trip (§10, "tens of
   * ms"), each of the holder's kernel letting go, another node holding it, and
   * the client's first answer from that node, and the client's outage.
   */
  readonly gracefulMs: number;
  /**
   * The longest etcd write outage on the holder's node that moves nothing
   * and costs the client nothing: its last proof, from a heartbeat sent up to
   * one interval before the outage, runs hold − margin (§7, §10).
   */
  readonly rideOutMs: number;
}

/** What takes the takeover transaction, adding the address and announcing it: a few ms in the lab. */
const TAKEOVER_WORK_MS = 30;

export function vipdBounds(holdMs = DEFAULT_HOLD_MS): VipdBounds {
  return {
    holdMs,
    releaseMs: holdMs - MARGIN_MS,
    serveMs: silenceWindow(holdMs) + TAKEOVER_WORK_MS,
    serveBehindSilentMs: silenceWindow(holdMs) + TAKEOVER_STAGGER_MS + TAKEOVER_WORK_MS,
    gracefulMs: 50,
    rideOutMs: holdMs - MARGIN_MS - HEARTBEAT_INTERVAL_MS,
  };
}

/**
 * CI allowances: timers fire late and processes are descheduled on a busy
 * 2-core machine, and the witness stamps edges a few ms late (its monitors'
 * latency, and a jiffy of the kernel's own timer granularity).
 */
export const CI_ALLOWANCE = {
  /** On release: the witness (≤ 10 ms), a jiffy (4 ms), scheduling. */
  releaseMs: 100,
  /**
   * On serving (serveMs and serveBehindSilentMs alike): the candidate's
   * timers, the client's probe interval (10 ms) and its ARP. No more than one
   * heartbeat interval, as issue 17 asks.
   */
  serveMs: HEARTBEAT_INTERVAL_MS,
  /** On a planned move: one scheduling hiccup on each side. */
  gracefulMs: 200,
  /**
   * Dark time after a rejoin, over the etcd bound: the witness, the client's
   * probe interval and ARP once the fence opens again, scheduling on both sides.
   */
  etcdDarkMs: 100,
} as const;

/**
 * The longest the client may lose the VIP when etcd itself took no write for
 * `outageMs` on the holder's node (measured: etcd-writer.ts). The holder's
 * last proof runs hold − margin from the send of its last heartbeat that
 * committed before the outage, which may have left up to one heartbeat
 * interval before it; once etcd takes writes again its next heartbeat
 * commits within a retry (100 ms) — no reconnect, no backoff in between
 * (design.md §7):
 *
 *     max(0, U − (H − m − interval)) + retry
 *
 * Issue 16 asked for max(0, U − (H − m)) + 100 ms. That leaves out the
 * interval, which no holder can shed without writing more often: the lab
 * measured 472 ms dark for U = 2.66 s (bound 313 ms by that formula, 560 ms
 * by this one).
 */
export function etcdDarkBoundMs(outageMs: number, holdMs = DEFAULT_HOLD_MS): number {
  return Math.max(0, outageMs - (holdMs - MARGIN_MS - HEARTBEAT_INTERVAL_MS)) + HEARTBEAT_RETRY_MS;
}

/**
 * The client outage allowed when the VIP must stay: none while etcd's write
 * outage on the holder's node stayed within the ride-out (its proof never
 * lapsed: design.md §10, "no move and no outage"), etcdDarkBoundMs beyond it.
 */
export function stayDarkBoundMs(outageMs: number, holdMs = DEFAULT_HOLD_MS): number {
  return outageMs <= vipdBounds(holdMs).rideOutMs ? 0 : etcdDarkBoundMs(outageMs, holdMs);
}
