// What this agent has heard of every other agent's heartbeats (design.md
// §3, §4): when the latest arrived *here*, on this agent's clock, under
// which hold time it is judged, and what it claims — and so until when each
// agent may still be answering for a VIP, and when it has been silent long
// enough to be taken over.
//
// Pure: the cluster view (view.ts) feeds it heartbeats as they arrive,
// deletions, takeovers and re-reads, with the local time of each; nothing
// here reads a clock or etcd. It tells the view which VIPs' claims changed
// (onClaims), so that a heartbeat that claims what the last one did is news
// to no VIP: it only moves its sender's silence deadline (design.md §8).
import { MAX_HOLD_MS } from "../config/fields.ts";
import type { HeartbeatValue } from "./keys.ts";
import { silenceWindow } from "./proof.ts";

export interface HeartbeatRecord {
  readonly node: string;
  /** Run and order of the heartbeat whose claims are in force (the highest seq of the latest run). */
  readonly run: string | null;
  readonly seq: number;
  /** VIPs claimed; "all" when the value could not be read. */
  readonly claims: ReadonlySet<string> | "all";
  /** The key's mod revision as last seen; "0" once the key was deleted. */
  readonly modRevision: string;
  /** Local clock when the latest heartbeat (by revision) arrived. */
  readonly receivedAt: number;
  /**
   * The hold time its run published, as the view knew it when the heartbeat
   * arrived (the longest allowed when unknown): the heartbeat's silence window
   * and claims are judged by it, also after the record is gone (invariant I8).
   */
  readonly holdMs: number;
}

/** An agent's record as the view knows it: its run and the hold time it published. */
export interface RunRecord {
  readonly run: string;
  readonly holdMs: number;
}

/** Told of each VIP whose claims changed; null: claims of "all" came or went, every VIP may be concerned. */
export type ClaimsChanged = (vip: string | null) => void;

export class HeartbeatBook {
  readonly #beats = new Map<string, HeartbeatRecord>();
  readonly #changed: ClaimsChanged;

  constructor(onClaims: ClaimsChanged = () => {}) {
    this.#changed = onClaims;
  }

  get(node: string): HeartbeatRecord | undefined {
    return this.#beats.get(node);
  }

  all(): HeartbeatRecord[] {
    return [...this.#beats.values()];
  }

  /**
   * A heartbeat key was put at `modRevision`. `value` is null when it is not
   * one vipd wrote: it still counts as a sign of life, claiming every VIP.
   * `record` is the node's agent record in the view now.
   */
  heard(node: string, modRevision: string, value: HeartbeatValue | null, record: RunRecord | null | undefined, receivedAt: number): void {
    const had = this.#beats.get(node);
    // The same claims as the last heartbeat (the usual case): its set is
    // kept, and no VIP hears of it; nothing is allocated per VIP.
    let claims: HeartbeatRecord["claims"] = !value ? "all" : had && sameClaims(had.claims, value.claims) ? had.claims : new Set(value.claims);
    let run = value?.run ?? null;
    let seq = value?.seq ?? 0;
    // Within one run, a heartbeat that committed late (sent before a newer
    // one) must not speak last: its claims may be out of date.
    if (value && had && had.run === value.run && value.seq < had.seq) {
      claims = had.claims;
      run = had.run;
      seq = had.seq;
    }
    // Every write of a heartbeat is guarded by its run's record (or made with
    // it), so the record in the view is that run's; anything else is unknown.
    const holdMs = record && run !== null && record.run === run ? record.holdMs : MAX_HOLD_MS;
    this.#beats.set(node, { node, run, seq, claims, modRevision, receivedAt, holdMs });
    // A claim judged by another hold time ends at another moment: news too.
    if (!had) this.#claimsCame(claims);
    else if (had.holdMs !== holdMs) {
      this.#claimsCame(had.claims);
      this.#claimsCame(claims);
    } else this.#claimsDiffer(had.claims, claims);
  }

  /** Every VIP in `claims` is news. */
  #claimsCame(claims: HeartbeatRecord["claims"]): void {
    if (claims === "all") return this.#changed(null);
    for (const v of claims) this.#changed(v);
  }

  /** The VIPs claimed by one and not the other are news. */
  #claimsDiffer(was: HeartbeatRecord["claims"], now: HeartbeatRecord["claims"]): void {
    if (was === now) return;
    if (was === "all" || now === "all") return this.#changed(null);
    for (const v of was) if (!now.has(v)) this.#changed(v);
    for (const v of now) if (!was.has(v)) this.#changed(v);
  }

  /** The heartbeat key was deleted: its last claims stay in force until they run out, since its run may still be answering for them (design.md §4). */
  deleted(node: string): void {
    const had = this.#beats.get(node);
    if (had) this.#beats.set(node, { ...had, modRevision: "0" });
  }

  /**
   * Another node's heartbeat and the deletion of this node's key in one
   * revision: only a takeover writes that (QueueWriter.takeover), and it
   * compared this node's heartbeat unchanged for a whole window, so every
   * proof this node held for the VIP has ended (design.md §3). Its claim on
   * the VIP covers nothing any more; a heartbeat that claims it again counts
   * again.
   */
  tookOver(vip: string, node: string): void {
    const hb = this.#beats.get(node);
    if (!hb || hb.claims === "all" || !hb.claims.has(vip)) return;
    this.#beats.set(node, { ...hb, claims: new Set([...hb.claims].filter((v) => v !== vip)) });
    this.#changed(vip);
  }

  /**
   * After a full re-read at `receivedAt` that found heartbeat keys for the
   * nodes in `read`: a run that could still write heartbeats when the view
   * was last current (its heartbeat key, or its record in `known`, was in
   * the view) and has none in the read may have written some this view never
   * received (the watch was down), then lost the key. Each claimed what it
   * claimed; all committed before the read. So the run counts as heard now,
   * claiming every VIP (design.md §4, §9 (c)).
   */
  reread(read: ReadonlySet<string>, known: ReadonlyMap<string, RunRecord | null>, receivedAt: number): void {
    for (const node of new Set([...this.#beats.keys(), ...known.keys()])) {
      const hb = this.#beats.get(node);
      const record = known.get(node);
      const couldWrite = (hb !== undefined && hb.modRevision !== "0") || known.has(node);
      if (read.has(node) || !couldWrite) continue;
      const holds = [hb?.holdMs, record?.holdMs].filter((h) => h !== undefined);
      const holdMs = holds.length > 0 ? Math.max(...holds) : MAX_HOLD_MS;
      this.#beats.set(node, { node, run: hb?.run ?? record?.run ?? null, seq: hb?.seq ?? 0, claims: "all", modRevision: "0", receivedAt, holdMs });
      this.#changed(null);
    }
  }

  /**
   * When the last sign of life from `node`, as this agent knows it, stops
   * counting: its latest heartbeat's arrival plus its silence window. With no
   * heartbeat ever heard, the earliest moment one could have been (`since`,
   * e.g. when its key was first seen) stands in, with `holdMs`.
   */
  silentAfter(node: string, since: number, holdMs: number): number {
    return this.heardUntil(node) ?? since + silenceWindow(holdMs);
  }

  /** When the latest heartbeat heard from `node` stops counting as a sign of life; null: none heard (or forgotten). */
  heardUntil(node: string): number | null {
    const hb = this.#beats.get(node);
    return hb ? hb.receivedAt + silenceWindow(hb.holdMs) : null;
  }

  /** Until when a node other than `except` may still be answering for `vip` by its own heartbeats' claims (design.md §4); null when none may. */
  claimedUntil(vip: string, except: string, now: number): number | null {
    let until: number | null = null;
    for (const hb of this.#beats.values()) {
      if (hb.node === except) continue;
      if (hb.claims !== "all" && !hb.claims.has(vip)) continue;
      const end = hb.receivedAt + silenceWindow(hb.holdMs);
      if (end > now && (until === null || end > until)) until = end;
    }
    return until;
  }

  /**
   * Forgets deleted heartbeats whose claims and silence window have run out:
   * they can no longer matter, and a node name that comes and goes must not
   * stay in the view.
   */
  prune(now: number): void {
    for (const [node, hb] of this.#beats) {
      if (hb.modRevision !== "0" || hb.receivedAt + silenceWindow(hb.holdMs) > now) continue;
      this.#beats.delete(node);
      // Its silence is now judged from its keys' first sighting (silentAfter): news to whoever waits on it.
      this.#changed(null);
    }
  }
}

/** Whether a heartbeat's claims are exactly the set in force. */
function sameClaims(had: HeartbeatRecord["claims"], claims: readonly string[]): boolean {
  if (had === "all" || had.size !== claims.length) return false;
  for (const v of claims) if (!had.has(v)) return false;
  return true;
}
