// `vipd status`: who holds each VIP and who waits, read from etcd alone, so
// it works from any machine that reaches etcd, with no agent running there.
//
// It reads the election layout VipElection writes: under the election prefix,
// one key per candidate, `<prefix><vip>/<lease hex>` = node name, attached to
// the candidate's lease. One range read gives every VIP; ordering a VIP's keys
// by create revision gives its FIFO queue, whose first entry is the leader.
//
// "Since when": etcd 3.4 stores no time with a key, and the moment a
// candidate became leader (its predecessor's key was deleted) is not kept at
// all once compacted. So status reports the holder's create revision — when
// it joined the queue, in etcd's own logical clock — next to the store's
// current revision, and stores nothing extra. Rather than a wall-clock time
// that could be wrong, the agent's own /status gives the local time it won.
//
// The leader of the election is the node entitled to the VIP; it has the
// address on its link only while its fence and health also allow it, and it
// resigns as soon as they do not.
import type { Etcd3, IKeyValue } from "etcd3";
import { within } from "../election/client.ts";
import { leaseHex } from "../election/lease.ts";
import { parseIp } from "../kernel/ip.ts";

export interface QueueEntry {
  node: string;
  /** Lease ID in hex, as in the key. */
  lease: string;
  /** The revision at which this candidate joined the queue. */
  createRevision: number;
  key: string;
}

export interface VipStatusRow {
  vip: string;
  /** First in the queue, or null: nobody holds the VIP. */
  holder: QueueEntry | null;
  /** The rest of the queue, in the order they would take over. */
  waiting: QueueEntry[];
}

export interface StatusReport {
  /** etcd's revision when the queues were read. */
  revision: number;
  vips: VipStatusRow[];
}

/** Orders VIPs IPv4 first, then by address bytes; text that is not an address last. */
function compareVips(a: string, b: string): number {
  const [x, y] = [parseIp(a), parseIp(b)];
  if (!x || !y) return x ? -1 : y ? 1 : a.localeCompare(b);
  if (x.family !== y.family) return x.family - y.family;
  for (let i = 0; i < x.bytes.length; i++) if (x.bytes[i] !== y.bytes[i]) return x.bytes[i]! - y.bytes[i]!;
  return 0;
}

/** Splits `<prefix><vip>/<lease>` into the VIP and lease; null for any other key. */
function splitKey(prefix: string, key: string): { vip: string; lease: string } | null {
  if (!key.startsWith(prefix)) return null;
  const rest = key.slice(prefix.length).split("/");
  if (rest.length !== 2 || !rest[0] || !/^[0-9a-f]+$/.test(rest[1]!)) return null;
  return { vip: rest[0], lease: rest[1]! };
}

/**
 * Reads every VIP's queue under the election prefix (e.g. "/vipd/vip/") in
 * one range request. With `vips`, exactly those rows, in that order, and a
 * VIP nobody campaigns for gets a row with no holder; without, every VIP
 * found, in address order.
 */
export async function readStatus(client: Etcd3, prefix: string, vips?: readonly string[], timeoutMs = 3000): Promise<StatusReport> {
  const res = await client.getAll().prefix(prefix).options(within(timeoutMs)).exec();
  const queues = new Map<string, { kv: IKeyValue; entry: QueueEntry }[]>();
  for (const kv of res.kvs) {
    const key = kv.key.toString();
    const parts = splitKey(prefix, key);
    if (!parts) continue;
    const entry: QueueEntry = {
      node: kv.value.toString(),
      // The key names the lease it was put with; the attached lease is the truth.
      lease: kv.lease !== "0" ? leaseHex(kv.lease) : parts.lease,
      createRevision: Number(kv.create_revision),
      key,
    };
    const q = queues.get(parts.vip) ?? [];
    q.push({ kv, entry });
    queues.set(parts.vip, q);
  }
  const names = vips ? [...vips] : [...queues.keys()].sort(compareVips);
  const rows = names.map((vip): VipStatusRow => {
    const q = (queues.get(vip) ?? []).sort((a, b) => {
      const d = BigInt(a.kv.create_revision) - BigInt(b.kv.create_revision);
      return d < 0n ? -1 : d > 0n ? 1 : 0;
    });
    const [first, ...rest] = q.map((e) => e.entry);
    return { vip, holder: first ?? null, waiting: rest };
  });
  return { revision: Number(res.header.revision), vips: rows };
}

/** The table `vipd status` prints: aligned columns, one row per VIP. */
export function renderStatusTable(report: StatusReport): string {
  const header = ["VIP", "HOLDER", "LEASE", "JOINED AT REV", "WAITING (IN ORDER)"];
  const rows = report.vips.map((r) => [
    r.vip,
    r.holder?.node ?? "(none)",
    r.holder?.lease ?? "-",
    r.holder ? String(r.holder.createRevision) : "-",
    r.waiting.length ? r.waiting.map((w) => w.node).join(", ") : "-",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ");
  const body = rows.length ? rows.map(line) : ["(no VIPs in etcd)"];
  return [line(header), ...body, `etcd revision ${report.revision}`].join("\n") + "\n";
}

/** The `--json` form: the report as is, stable field names, one trailing newline. */
export function renderStatusJson(report: StatusReport): string {
  return `${JSON.stringify(report, null, 2)}\n`;
}
