// The arithmetic of "never two owners" (design.md §3 and §5), with the clock
// injected: pure functions, no I/O.
//
// Holder. A heartbeat sent at local time s that etcd commits, with a guard
// that required this run's election key for a VIP to exist, proves that no
// other node can take that key's place before s + hold measured on any
// candidate's clock (the candidate waits a whole hold after it *received* a
// later-or-equal heartbeat, and the guard makes any takeover final). The
// holder stops answering for the VIP at
//
//     deadline = s + hold − MARGIN_MS
//
// Candidate. It may take over from the agents ahead of it in the queue once,
// for each, its own clock has run for
//
//     window = hold × (1 + DRIFT) + MARGIN_MS
//
// since it received that agent's latest heartbeat, and the takeover
// transaction compares those heartbeats' revisions unchanged.
//
// DRIFT bounds how much faster one monotonic clock may run than another's
// over a hold (NTP slews at most 500 ppm; we allow 1000). MARGIN_MS covers
// the kernel's timer granularity for nftables element timeouts (a jiffy, at
// most 10 ms at HZ=100) and leaves the rest as headroom; it appears on both
// sides, so holder and candidate are 2 × MARGIN_MS + DRIFT × hold apart.

import { MIN_HOLD_MS } from "../config/fields.ts";

export const MARGIN_MS = 50;
export const DRIFT = 0.001;

/**
 * How often a holder writes its heartbeat: an agent that heads a queue,
 * claims a VIP or is taking one over (design.md §3: 4 etcd writes per second).
 * Its proof, and so how long an etcd stall it rides out, runs from the send
 * of its latest committed heartbeat.
 */
export const HEARTBEAT_INTERVAL_MS = 250;
/**
 * The slowest a standby's heartbeat goes: the default hold's half. Beyond it
 * the writes saved are few, and what is checked when a heartbeat leaves or
 * commits (a stalled watch, design.md §7) would be learnt later still.
 */
export const STANDBY_INTERVAL_MAX_MS = 1250;
/** While heartbeats fail, the next is sent this soon, so a proof resumes right after etcd elects a leader. */
export const HEARTBEAT_RETRY_MS = 100;
/** Extra wait per queue rank beyond the first, so that the next in line normally takes over alone. */
export const TAKEOVER_STAGGER_MS = 250;

export const DEFAULT_HOLD_MS = 2500;
/**
 * Without nftables the only kernel fence is the address lifetime: whole
 * seconds, removed up to a second late, so a refresh needs 2 s of proof
 * left; a hold under 3 s would drop the VIP at the first late heartbeat.
 */
export const LIFETIME_FENCE_MIN_HOLD_MS = 3000;
/** How late the kernel may remove an address whose lifetime ran out. */
export const KERNEL_LIFETIME_SLACK_MS = 1000;

/**
 * How often an agent that heads no queue, claims nothing and is taking
 * nothing over writes its heartbeat (design.md §3): half its hold, at most
 * STANDBY_INTERVAL_MAX_MS, never faster than a holder. Its heartbeats only
 * keep it from being judged silent by the agents behind it, who wait a whole
 * window from receipt: at H/2 etcd may hold one back about H/2 + m before
 * they do, and a standby judged silent moves nothing while the holder speaks.
 */
export function standbyInterval(holdMs: number): number {
  return Math.max(HEARTBEAT_INTERVAL_MS, Math.min(STANDBY_INTERVAL_MAX_MS, Math.floor(holdMs / 2)));
}

/** The holder's side: until when a committed heartbeat sent at sentAt proves its guarded keys. */
export function proofDeadline(sentAt: number, holdMs: number): number {
  return sentAt + holdMs - MARGIN_MS;
}

/** The candidate's side: how long after receiving an agent's heartbeat it must have heard nothing newer. */
export function silenceWindow(holdMs: number): number {
  return holdMs * (1 + DRIFT) + MARGIN_MS;
}

/**
 * How the kernel is kept from answering for a VIP after the deadline:
 * - "nftables": vipd's table drops the VIP's traffic once its set element
 *   times out (millisecond precision). The address lifetime is only a coarse
 *   backstop that removes the address a second or two after the deadline.
 * - "lifetime": no nftables; the address lifetime is the fence itself.
 */
export type FenceMode = "nftables" | "lifetime";

/**
 * Whole seconds of address lifetime for a VIP proven until `deadline`, or
 * null: the VIP may not be (re)added at all now.
 */
export function addressLifetime(mode: FenceMode, deadline: number | null, now: number): number | null {
  if (deadline === null || !(deadline > now)) return null;
  if (mode === "nftables") return Math.ceil((deadline - now) / 1000) + 1;
  const s = Math.floor((deadline - now - KERNEL_LIFETIME_SLACK_MS) / 1000);
  return s >= 1 ? s : null;
}

/** The least hold time a fence mode can keep (design.md §5). */
export function minimumHold(mode: FenceMode): number {
  return mode === "nftables" ? MIN_HOLD_MS : LIFETIME_FENCE_MIN_HOLD_MS;
}
