// `vipd status`: who holds each VIP and who waits, read from etcd alone, so
// it works from any machine that reaches etcd, with no agent running there.
//
// One range read of everything under vipd's prefix (election/keys.ts) gives
// every queue, every agent's record and its latest heartbeat. A queue's
// first entry is the node entitled to the VIP; its heartbeat's claims say
// whether it is answering for it now (it holds the address while its fence,
// link and gate also allow it, and resigns as soon as they do not).
//
// "Since when": etcd 3.4 stores no time with a key. Status reports the
// revision at which the first in line joined the queue next to the store's
// current revision; the agent's own /status gives the local time it won.
import type { Etcd3 } from "etcd3";
import { within } from "../election/connection.ts";
import { prefixEnd } from "../election/keys.ts";
import { formatLayout, layoutOf } from "../election/layout.ts";
import { ClusterView } from "../election/view.ts";
import { parseIp } from "../kernel/ip.ts";

export interface QueueEntry {
  node: string;
  /** The revision at which this candidate joined the queue. */
  createRevision: number;
  key: string;
}

export interface VipStatusRow {
  vip: string;
  /** First in the queue, or null: nobody stands for the VIP. */
  holder: QueueEntry | null;
  /** Nodes whose latest heartbeat claims the VIP: normally exactly the holder. */
  claimedBy: string[];
  /** The rest of the queue, in the order they would take over. */
  waiting: QueueEntry[];
  /** A hand-over in progress (`vipd handover`), or null. */
  handover: { to: string; by: string; at: string } | null;
}

export interface DrainRow {
  node: string;
  /** Who drained it and when, as `vipd drain` recorded it; null when the record is not one vipd wrote. */
  by: string | null;
  at: string | null;
  reason: string | null;
}

export interface AgentRow {
  node: string;
  host: string | null;
  pid: number | null;
  startedAt: string | null;
  holdMs: number | null;
  /** The vipd version the agent runs, from its record; null when the record is not one vipd wrote. */
  version: string | null;
  /**
   * The etcd layout its record says it writes, "MAJOR.MINOR" ("1.0": vipd 0.2,
   * which wrote none); null when unreadable. Agents of one major run side by side.
   */
  layout: string | null;
}

export interface StatusReport {
  /** etcd's revision when the keys were read. */
  revision: number;
  vips: VipStatusRow[];
  agents: AgentRow[];
  /** Drained nodes (`vipd drain`), whether or not an agent runs there. */
  drains: DrainRow[];
}

/** Orders VIPs IPv4 first, then by address bytes; text that is not an address last. */
function compareVips(a: string, b: string): number {
  const [x, y] = [parseIp(a), parseIp(b)];
  if (!x || !y) return x ? -1 : y ? 1 : a.localeCompare(b);
  if (x.family !== y.family) return x.family - y.family;
  for (let i = 0; i < x.bytes.length; i++) if (x.bytes[i] !== y.bytes[i]) return x.bytes[i]! - y.bytes[i]!;
  return 0;
}

/**
 * Reads every queue under `prefix` (e.g. "/vipd/") in one range request.
 * With `vips`, exactly those rows, in that order, and a VIP nobody stands
 * for gets a row with no holder; without, every VIP found, in address order.
 */
export async function readStatus(client: Etcd3, prefix: string, vips?: readonly string[], timeoutMs = 3000): Promise<StatusReport> {
  const key = Buffer.from(prefix);
  const res = await client.kv.range({ key, range_end: prefixEnd(key) }, within(timeoutMs));
  const view = new ClusterView(prefix);
  view.load(res.kvs, res.header.revision, 0);
  const entry = (c: { node: string; createRevision: string; key: string }): QueueEntry => ({ node: c.node, createRevision: Number(c.createRevision), key: c.key });
  const names = vips ? [...vips] : view.vips().sort(compareVips);
  const rows = names.map((vip): VipStatusRow => {
    const [first, ...rest] = view.queue(vip);
    const claimedBy = view.heartbeats().filter((hb) => hb.claims === "all" || hb.claims.has(vip)).map((hb) => hb.node).sort();
    const asked = view.handover(vip)?.request;
    return { vip, holder: first ? entry(first) : null, claimedBy, waiting: rest.map(entry), handover: asked ? { to: asked.to, by: asked.by, at: asked.at } : null };
  });
  const agents = view.agents().map((a): AgentRow => ({
    node: a.node,
    host: a.incarnation?.host ?? null,
    pid: a.incarnation?.pid ?? null,
    startedAt: a.incarnation?.startedAt ?? null,
    holdMs: a.incarnation?.holdMs ?? null,
    version: a.incarnation?.version ?? null,
    layout: a.incarnation ? ((l) => (l ? formatLayout(l) : null))(layoutOf(a.incarnation)) : null,
  })).sort((a, b) => a.node.localeCompare(b.node));
  const drains = view.drains()
    .map((d): DrainRow => ({ node: d.node, by: d.drain?.by ?? null, at: d.drain?.at ?? null, reason: d.drain?.reason ?? null }))
    .sort((a, b) => a.node.localeCompare(b.node));
  return { revision: Number(res.header.revision), vips: rows, agents, drains };
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ");
  return [line(header), ...rows.map(line)];
}

/** The tables `vipd status` prints: one row per VIP, then one per agent. */
export function renderStatusTable(report: StatusReport): string {
  const vipRows = report.vips.map((r) => [
    r.vip,
    r.holder?.node ?? "(none)",
    r.claimedBy.length ? r.claimedBy.join(", ") : "-",
    r.holder ? String(r.holder.createRevision) : "-",
    r.waiting.length ? r.waiting.map((w) => w.node).join(", ") : "-",
  ]);
  const vipsPart = vipRows.length
    ? table(["VIP", "FIRST", "ANSWERING", "JOINED AT REV", "WAITING (IN ORDER)"], vipRows)
    : ["(no VIPs in etcd)"];
  const agentRows = report.agents.map((a) => [
    a.node, a.host ?? "?", a.pid === null ? "?" : String(a.pid), a.holdMs === null ? "?" : `${a.holdMs} ms`, a.version ?? "?", a.layout ?? "?", a.startedAt ?? "?",
  ]);
  const agentsPart = agentRows.length ? ["", ...table(["AGENT", "HOST", "PID", "HOLD", "VERSION", "LAYOUT", "STARTED"], agentRows)] : [];
  // During a rolling upgrade (README, "Upgrading"): say so, so that a half-done one is not forgotten.
  const versions = [...new Set(report.agents.map((a) => a.version).filter((v) => v !== null))].sort();
  const mixed = versions.length > 1 ? [`agents run ${versions.length} versions (${versions.join(", ")}): an upgrade is under way, or was left half done`] : [];
  const handovers = report.vips.filter((r) => r.handover).map((r) => `hand-over of ${r.vip} to ${r.handover!.to} in progress (asked by ${r.handover!.by} at ${r.handover!.at})`);
  const drainRows = report.drains.map((d) => [d.node, d.by ?? "?", d.at ?? "?", d.reason || "-"]);
  const drainsPart = drainRows.length ? ["", ...table(["DRAINED", "BY", "AT", "REASON"], drainRows)] : [];
  return [...vipsPart, ...handovers, ...agentsPart, ...mixed, ...drainsPart, `etcd revision ${report.revision}`].join("\n") + "\n";
}

/** The `--json` form: the report as is, stable field names, one trailing newline. */
export function renderStatusJson(report: StatusReport): string {
  return `${JSON.stringify(report, null, 2)}\n`;
}
