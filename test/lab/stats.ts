// The failover numbers, computed from what the lab recorded: probe samples
// (what the client saw) and ownership intervals (what the kernels held). Pure
// functions on plain values, so the benchmark's arithmetic is unit-tested.
// Times are lab-clock milliseconds (cluster.ts, labNow).

export type ProbeSample =
  | { t: number; d: number; ok: true; node: string }
  | { t: number; d: number; ok: false; error: string };

/** Half-open [start, end). */
export interface Interval {
  start: number;
  end: number;
}

export const duration = (i: Interval): number => i.end - i.start;
export const total = (xs: readonly Interval[]): number => xs.reduce((a, i) => a + duration(i), 0);

/**
 * Outages seen by the client: each maximal run of failed probes (in order of
 * their start), from the start of its first failure to the moment the next
 * successful probe got its answer (or `end` if none came). The answer time,
 * not the start, ends an outage: a probe sent while nobody held the VIP may
 * wait in the client's ARP queue and succeed only once a new holder announces
 * itself. A single failed probe between quick successes is about one probe
 * interval long.
 */
export function outages(samples: readonly ProbeSample[], end: number): Interval[] {
  const sorted = [...samples].sort((a, b) => a.t - b.t);
  const out: Interval[] = [];
  let start: number | null = null;
  for (const s of sorted) {
    if (!s.ok && start === null) start = s.t;
    else if (s.ok && start !== null) {
      out.push({ start, end: Math.max(start, s.d) });
      start = null;
    }
  }
  if (start !== null) out.push({ start, end: Math.max(end, start) });
  return out;
}

/**
 * Time during which at least two nodes held the VIP, and those stretches. A
 * sweep over the edges of every node's intervals: exact to the recorded edges.
 */
export function overlap(perNode: ReadonlyMap<string, readonly Interval[]> | readonly (readonly Interval[])[]): { total: number; intervals: Interval[] } {
  const lists = perNode instanceof Map ? [...perNode.values()] : (perNode as readonly (readonly Interval[])[]);
  const points: { t: number; delta: number }[] = [];
  for (const list of lists) {
    for (const i of list) {
      if (i.end <= i.start) continue;
      points.push({ t: i.start, delta: +1 }, { t: i.end, delta: -1 });
    }
  }
  // Ends before starts at the same instant: a hand-over at one instant is no overlap.
  points.sort((a, b) => a.t - b.t || a.delta - b.delta);
  const intervals: Interval[] = [];
  let depth = 0;
  let since = 0;
  for (const p of points) {
    const before = depth;
    depth += p.delta;
    if (before < 2 && depth >= 2) since = p.t;
    else if (before >= 2 && depth < 2 && p.t > since) intervals.push({ start: since, end: p.t });
  }
  return { total: total(intervals), intervals };
}

/** First moment after `after` at which a node other than `victim` starts holding the VIP; null if none. */
export function newHolderAt(perNode: ReadonlyMap<string, readonly Interval[]>, victim: string, after: number): { node: string; t: number } | null {
  let best: { node: string; t: number } | null = null;
  for (const [node, list] of perNode) {
    if (node === victim) continue;
    for (const i of list) {
      // A node that already held the VIP when the fault hit is not a new holder.
      if (i.start < after) continue;
      if (!best || i.start < best.t) best = { node, t: i.start };
    }
  }
  return best;
}

/** When the victim's hold that covered `at` ended; null if it still held the VIP at `until`. */
export function releasedAt(list: readonly Interval[], at: number, until: number): number | null {
  const i = list.find((x) => x.start <= at && x.end > at);
  if (!i) return at;
  return i.end >= until ? null : i.end;
}

/**
 * Nodes other than `except` that started holding the VIP in [from, to), in
 * order of their first start there: where the VIP moved.
 */
export function holdersStarting(perNode: ReadonlyMap<string, readonly Interval[]>, except: string, from: number, to: number): string[] {
  const firsts: { node: string; t: number }[] = [];
  for (const [node, list] of perNode) {
    if (node === except) continue;
    const i = list.filter((x) => x.start >= from && x.start < to && x.end > x.start).sort((a, b) => a.start - b.start)[0];
    if (i) firsts.push({ node, t: i.start });
  }
  return firsts.sort((a, b) => a.t - b.t).map((x) => x.node);
}

/** The parts of `a` not covered by `b` (both lists of disjoint intervals). */
export function subtract(a: readonly Interval[], b: readonly Interval[]): Interval[] {
  const cuts = [...b].sort((x, y) => x.start - y.start);
  const out: Interval[] = [];
  for (const i of a) {
    let start = i.start;
    for (const c of cuts) {
      if (c.end <= start || c.start >= i.end) continue;
      if (c.start > start) out.push({ start, end: c.start });
      start = Math.max(start, c.end);
    }
    if (start < i.end) out.push({ start, end: i.end });
  }
  return out;
}

/** Failed probes by error, timeouts left out (they are the outage): refusals, unreachable hosts, HTTP errors. */
export function probeErrors(samples: readonly ProbeSample[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of samples) if (!s.ok && s.error !== "timeout") out[s.error] = (out[s.error] ?? 0) + 1;
  return out;
}

/**
 * Failed probes other than timeouts (refusals, unreachable hosts, HTTP
 * errors), by error, that ran while one node held the VIP throughout: from
 * `toleranceMs` before the probe started to `toleranceMs` after it ended. A
 * move explains none of them — the holder's kernel refused, or the client
 * could not reach a holder that was there. Errors while nobody held the VIP
 * (the client's neighbour entry failing after a second or more without an
 * answer gives EHOSTUNREACH) belong to the outage, which is measured apart.
 */
export function errorsWhileHeld(samples: readonly ProbeSample[], perNode: ReadonlyMap<string, readonly Interval[]>, toleranceMs = 5): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of samples) {
    if (s.ok || s.error === "timeout") continue;
    const held = [...perNode.values()].some((list) => list.some((i) => i.start <= s.t - toleranceMs && i.end >= s.d + toleranceMs));
    if (held) out[s.error] = (out[s.error] ?? 0) + 1;
  }
  return out;
}

/**
 * How closely the client watched [from, to): the probes started in it, and
 * the longest stretch of it in which none started (the window's edges count
 * as starts). An outage is measured only where probes ran: a window with too
 * few would show none.
 */
export function probeCoverage(samples: readonly ProbeSample[], from: number, to: number): { probes: number; longestGapMs: number } {
  const starts = samples.map((s) => s.t).filter((t) => t >= from && t < to).sort((a, b) => a - b);
  let longest = 0;
  let last = from;
  for (const t of [...starts, to]) {
    longest = Math.max(longest, t - last);
    last = t;
  }
  return { probes: starts.length, longestGapMs: longest };
}

/**
 * The one node that answered every probe started in [from, to), if at least
 * `minProbes` did and all succeeded; null otherwise.
 */
export function soleServer(samples: readonly ProbeSample[], from: number, to: number, minProbes: number): string | null {
  const inWindow = samples.filter((s) => s.t >= from && s.t < to);
  if (inWindow.length < minProbes) return null;
  const first = inWindow[0]!;
  if (!first.ok) return null;
  return inWindow.every((s) => s.ok && s.node === first.node) ? first.node : null;
}

/** Probe outcomes (the answering node, or the error) and how often each occurred: for messages. */
export function probeTally(samples: readonly ProbeSample[]): string {
  const n = new Map<string, number>();
  for (const s of samples) {
    const k = s.ok ? `answered by ${s.node}` : s.error;
    n.set(k, (n.get(k) ?? 0) + 1);
  }
  return [...n].map(([k, c]) => `${k} ×${c}`).join(", ") || "no probes";
}

/**
 * Successful probes answered by a node that did not hold the VIP at any time
 * during the probe. Ownership edges are stamped when the monitors' lines
 * arrive (a few ms after the kernel's change), so a probe within
 * `toleranceMs` of a hold is not counted.
 */
export function staleAnswers(samples: readonly ProbeSample[], perNode: ReadonlyMap<string, readonly Interval[]>, toleranceMs = 5): number {
  return staleSamples(samples, perNode, toleranceMs).length;
}

/** The probes staleAnswers counts, in order. */
export function staleSamples(samples: readonly ProbeSample[], perNode: ReadonlyMap<string, readonly Interval[]>, toleranceMs = 5): (ProbeSample & { ok: true })[] {
  const stale: (ProbeSample & { ok: true })[] = [];
  for (const s of samples) {
    if (!s.ok) continue;
    const list = perNode.get(s.node);
    if (!list) continue;
    if (!list.some((i) => i.start <= s.d + toleranceMs && i.end >= s.t - toleranceMs)) stale.push(s);
  }
  return stale;
}

export interface Summary {
  n: number;
  median: number | null;
  p95: number | null;
  max: number | null;
}

/** Quantile by linear interpolation between closest ranks (numpy's default). */
export function quantile(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export function summarize(values: readonly (number | null)[]): Summary {
  const xs = values.filter((v): v is number => v !== null && Number.isFinite(v)).sort((a, b) => a - b);
  return { n: xs.length, median: quantile(xs, 0.5), p95: quantile(xs, 0.95), max: xs.length ? xs[xs.length - 1]! : null };
}

/** 1234.5 → "1.23 s", 12.3 → "12 ms", null → "–". */
export function formatMs(ms: number | null): string {
  if (ms === null) return "–";
  if (ms > 0 && ms < 1) return "<1 ms";
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  return `${Math.round(ms)} ms`;
}
