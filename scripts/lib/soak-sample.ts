// What the soak benchmark reads of a long-lived process and of etcd, to tell a
// leak from noise: memory and threads (/proc/PID/status), open descriptors by
// kind with each socket looked up in its namespace's tables (/proc/PID/net/*),
// /healthz round trips, and etcd's own count of watch streams, watchers and
// open gRPC streams. The parsers are pure; the readers are thin.
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import type { LabNode } from "../../test/lab/cluster.ts";
import { sh } from "../../test/lab/sh.ts";

export const ETCD_CLIENT_PORT = 2379;

/** One socket of a /proc/net table: its protocol and, for TCP, ports and state. */
export interface SocketEntry {
  proto: string;
  localPort?: number;
  remotePort?: number;
  /** TCP state as the kernel numbers it (01 established, 0A listen). */
  state?: string;
}

// Column of the inode in each /proc/net table (proc(5)).
const INODE_COLUMN: Record<string, number> = { tcp: 9, tcp6: 9, udp: 9, udp6: 9, raw: 9, raw6: 9, packet: 8, netlink: 9, unix: 6 };

/** Sockets of one /proc/net/<table> by inode. Pure. */
export function parseNetTable(table: string, text: string): Map<string, SocketEntry> {
  const col = INODE_COLUMN[table];
  const out = new Map<string, SocketEntry>();
  if (col === undefined) return out;
  const proto = table.replace(/6$/, "");
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    const inode = f[col];
    if (!inode || inode === "0") continue;
    if (proto === "tcp" || proto === "udp") {
      // "0100007F:094B": address and port in hex.
      const port = (s: string | undefined) => Number.parseInt(s?.split(":").pop() ?? "", 16);
      out.set(inode, { proto, localPort: port(f[1]), remotePort: port(f[2]), state: f[3] });
    } else {
      out.set(inode, { proto });
    }
  }
  return out;
}

/**
 * The kind of one descriptor from its /proc/PID/fd link: a socket by protocol
 * ("tcp→2379" for a connection to etcd, "tcp listen"), or "eventpoll",
 * "eventfd", "timerfd", "pipe", "dev", "file". Pure.
 */
export function fdKind(link: string, sockets: ReadonlyMap<string, SocketEntry>): string {
  const sock = /^socket:\[(\d+)\]$/.exec(link);
  if (sock) {
    const s = sockets.get(sock[1]!);
    if (!s) return "socket (unlisted)";
    if (s.proto !== "tcp") return s.proto;
    if (s.state === "0A") return "tcp listen";
    return `tcp→${s.remotePort}`;
  }
  const anon = /^anon_inode:\[?([a-z_-]+)\]?$/.exec(link);
  if (anon) return anon[1]!;
  if (link.startsWith("pipe:")) return "pipe";
  if (link.startsWith("/dev/")) return "dev";
  return "file";
}

export interface ProcessSample {
  rssKiB: number;
  /** RssAnon: the heaps (JS and native); RSS less the mapped files. */
  anonKiB: number;
  threads: number;
  fds: number;
  /** Descriptors by fdKind. */
  kinds: Record<string, number>;
}

/** A process's memory, threads and descriptors, from /proc. */
export function sampleProcess(pid: number): ProcessSample {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? Number.NaN);
  const sockets = new Map<string, SocketEntry>();
  for (const table of Object.keys(INODE_COLUMN)) {
    try {
      for (const [k, v] of parseNetTable(table, readFileSync(`/proc/${pid}/net/${table}`, "utf8"))) sockets.set(k, v);
    } catch {
      // a table this kernel does not have
    }
  }
  const kinds: Record<string, number> = {};
  let fds = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let link: string;
    try {
      link = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    fds++;
    const k = fdKind(link, sockets);
    kinds[k] = (kinds[k] ?? 0) + 1;
  }
  return { rssKiB: field("VmRSS"), anonKiB: field("RssAnon"), threads: field("Threads"), fds, kinds };
}

/** The sum of every sample of `name` whose labels include `labels`, in a Prometheus text page. Pure. */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name) || (line[name.length] !== " " && line[name.length] !== "{")) continue;
    const m = /^[^{\s]+(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const have = new Map([...(m[1] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1]!, x[2]!]));
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) sum += Number(m[2]);
  }
  return sum;
}

/** What one etcd member says about its clients. */
export interface MemberSample {
  /** etcd_debugging_mvcc_watch_stream_total: open watch streams. */
  watchStreams: number;
  /** etcd_debugging_mvcc_watcher_total: watchers on those streams. */
  watchers: number;
  /** gRPC bidirectional streams started and not yet handled (watches, lease keepalives). */
  openStreams: number;
  /** Established TCP connections to the member's client port (from any namespace). */
  clientConns: number;
}

/** Curl inside a node's namespace; "" when it fails. */
export function curlIn(node: LabNode, args: readonly string[]): Promise<string> {
  return sh(["ip", "netns", "exec", node.host.ns, "curl", "-s", "--max-time", "2", ...args], { allowFail: true });
}

/** Samples the etcd member of `node`, whose process is `pid`. */
export async function sampleMember(node: LabNode, pid: number): Promise<MemberSample> {
  const text = await curlIn(node, [`http://127.0.0.1:${ETCD_CLIENT_PORT}/metrics`]);
  if (!text) throw new Error(`etcd on ${node.name} did not serve /metrics`);
  const bidi = { grpc_type: "bidi_stream" };
  const tcp = [...parseNetTable("tcp", readFileSync(`/proc/${pid}/net/tcp`, "utf8")).values(),
    ...parseNetTable("tcp", readFileSync(`/proc/${pid}/net/tcp6`, "utf8")).values()];
  return {
    watchStreams: metricSum(text, "etcd_debugging_mvcc_watch_stream_total"),
    watchers: metricSum(text, "etcd_debugging_mvcc_watcher_total"),
    openStreams: metricSum(text, "grpc_server_started_total", bidi) - metricSum(text, "grpc_server_handled_total", bidi),
    clientConns: tcp.filter((s) => s.localPort === ETCD_CLIENT_PORT && s.state === "01").length,
  };
}

/**
 * Round trips of `count` GETs of /healthz on one kept-alive connection, in ms:
 * the agent answers from its event loop, so these bound its lag.
 */
export async function healthzRoundTrips(node: LabNode, url: string, count: number): Promise<number[]> {
  // The first request also connects; its time is left out.
  const out = await curlIn(node, ["-o", "/dev/null", "-w", "%{time_total}\\n", ...Array<string>(count + 1).fill(url)]);
  return out.trim().split("\n").slice(1).map((s) => Number(s) * 1000).filter((x) => Number.isFinite(x));
}
