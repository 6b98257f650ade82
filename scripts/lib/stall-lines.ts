// The event-loop stalls vipd logged (src/agent/loop-watch.ts), read back from
// its JSON log for a benchmark: when each was seen, how long it was, why.
//
// A line is written when the agent's 1 s timer sees a stall (right after it,
// or up to 10 s later when several are folded into one line, which then
// carries the longest of them and `agoMs`, how long before the line it was
// seen). So a stall is placed by when it was seen: the line's time less
// agoMs, at most one timer tick after it ended.

export interface StallLine {
  node: string;
  /** Wall-clock ms when the agent's timer saw it. */
  seenAt: number;
  ms: number;
  cause: string;
  task: string | null;
  /** How many stalls the line folds in (it names the longest). */
  stalls: number;
}

/** Every stall line in a vipd JSON log. */
export function stallLines(node: string, log: string): StallLine[] {
  const out: StallLine[] = [];
  for (const l of log.split("\n")) {
    if (!l.includes('"msg":"event loop stalled for ')) continue;
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(l.slice(l.indexOf("{")));
    } catch {
      continue;
    }
    const at = Date.parse(String(o.time));
    if (!Number.isFinite(at) || typeof o.stalledMs !== "number") continue;
    out.push({
      node, seenAt: at - (typeof o.agoMs === "number" ? o.agoMs : 0), ms: o.stalledMs, cause: String(o.cause ?? "unknown"),
      task: typeof o.task === "string" ? o.task : null, stalls: typeof o.stalls === "number" ? o.stalls : 1,
    });
  }
  return out;
}

/**
 * The longest stall seen from `from` until one timer tick (1 s) after `to`
 * (wall-clock ms): a stall during [from, to] is seen by then. Null: none
 * over the 100 ms vipd logs.
 */
export function longestStall(lines: readonly StallLine[], from: number, to: number): StallLine | null {
  let best: StallLine | null = null;
  for (const s of lines) {
    if (s.seenAt < from || s.seenAt > to + 1000) continue;
    if (!best || s.ms > best.ms) best = s;
  }
  return best;
}

/** "371 ms (n2, on CPU, 'slots update')", or "none over 100 ms". */
export function describeStallLine(s: StallLine | null): string {
  if (!s) return "none over 100 ms";
  const cause = { cpu: "on CPU", starved: "starved of CPU", stopped: "stopped", unknown: "cause unknown" }[s.cause] ?? s.cause;
  return `${s.ms} ms (${s.node}, ${cause}${s.task ? `, '${s.task}'` : ""})`;
}
