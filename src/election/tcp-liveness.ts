// Whether this process's TCP connections to an etcd endpoint are alive, as
// the kernel sees them (reconnect.ts says why it matters).
//
// /proc/self/net/tcp and tcp6 list every TCP socket of the process's network
// namespace, one line each (Linux net/ipv4/tcp_ipv4.c get_tcp4_sock):
//
//   sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
//
// - addresses are hex, each 32-bit word in host byte order (little-endian
//   here), ports big-endian hex: 0100007F:0953 is 127.0.0.1:2387;
// - st 01 is ESTABLISHED;
// - tr 1 means the retransmit timer runs: data we sent is unacknowledged;
//   retrnsmt counts the retransmission timeouts that fired without an ACK.
//
// A peer whose process is frozen still has a running kernel that
// acknowledges every byte, so its connection shows no retransmits. A peer
// that vanished (power, a cable, a dropped route) acknowledges nothing: the
// retransmit timer fires again and again. The sockets are ours when their
// inode is one of /proc/self/fd's.
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { isIP } from "node:net";
import type { TcpLiveness } from "./reconnect.ts";

export interface TcpSocketLine {
  readonly remoteHost: string;
  readonly remotePort: number;
  readonly established: boolean;
  /** The retransmit timer runs and fired at least once without an ACK. */
  readonly retransmitting: boolean;
  readonly inode: string;
}

const ESTABLISHED = 0x01;
const TIMER_RETRANSMIT = 1;

/** A /proc/net/tcp{,6} address ("0100007F:0953") as host and port; null if malformed. */
export function decodeProcAddress(hex: string): { host: string; port: number } | null {
  const m = /^([0-9A-Fa-f]{8}|[0-9A-Fa-f]{32}):([0-9A-Fa-f]{4})$/.exec(hex);
  if (!m) return null;
  const addr = m[1]!;
  const port = Number.parseInt(m[2]!, 16);
  // Each 32-bit word is in host byte order: reverse its bytes.
  const bytes: number[] = [];
  for (let w = 0; w < addr.length; w += 8) {
    for (let b = 6; b >= 0; b -= 2) bytes.push(Number.parseInt(addr.slice(w + b, w + b + 2), 16));
  }
  if (bytes.length === 4) return { host: bytes.join("."), port };
  // An IPv4 client on an IPv6 socket shows as ::ffff:a.b.c.d.
  if (bytes.slice(0, 10).every((x) => x === 0) && bytes[10] === 0xff && bytes[11] === 0xff) return { host: bytes.slice(12).join("."), port };
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return { host: new URL(`http://[${groups.join(":")}]`).hostname.slice(1, -1), port };
}

/** The socket lines of one /proc/net/tcp{,6} text; the header and malformed lines are skipped. */
export function parseProcTcp(text: string): TcpSocketLine[] {
  const out: TcpSocketLine[] = [];
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const remote = decodeProcAddress(f[2]!);
    const [tr] = (f[5] ?? "").split(":");
    if (!remote || tr === undefined) continue;
    out.push({
      remoteHost: remote.host,
      remotePort: remote.port,
      established: Number.parseInt(f[3]!, 16) === ESTABLISHED,
      retransmitting: Number.parseInt(tr, 16) === TIMER_RETRANSMIT && Number.parseInt(f[6]!, 16) >= 1,
      inode: f[9]!,
    });
  }
  return out;
}

/**
 * Judges our established connections to host:port (any host when it is a
 * name, which only the resolver knows): dead when one retransmits, alive
 * when some exist and none does, unknown when none is found.
 */
export function judgeTcp(sockets: readonly TcpSocketLine[], ours: ReadonlySet<string>, host: string, port: number): TcpLiveness {
  const byIp = isIP(host) !== 0;
  const mine = sockets.filter((s) => s.established && ours.has(s.inode) && s.remotePort === port && (!byIp || s.remoteHost === host));
  if (mine.length === 0) return "unknown";
  return mine.some((s) => s.retransmitting) ? "dead" : "alive";
}

/** Inodes of this process's sockets ("socket:[123]" links under /proc/self/fd). */
function ownSocketInodes(): Set<string> {
  const out = new Set<string>();
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (m) out.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

/** "http://127.0.0.1:2379" → host and port (2379 when absent). */
export function endpointAddress(endpoint: string): { host: string; port: number } {
  const url = new URL(/^[a-z]+:\/\//i.test(endpoint) ? endpoint : `http://${endpoint}`);
  const host = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
  return { host, port: url.port ? Number(url.port) : 2379 };
}

/** What the kernel says of this process's connections to the endpoint now; unknown when /proc cannot tell. */
export function tcpLiveness(endpoint: string): TcpLiveness {
  try {
    const { host, port } = endpointAddress(endpoint);
    const sockets = ["/proc/self/net/tcp", "/proc/self/net/tcp6"].flatMap((f) => {
      try {
        return parseProcTcp(readFileSync(f, "utf8"));
      } catch {
        return [];
      }
    });
    return judgeTcp(sockets, ownSocketInodes(), host, port);
  } catch {
    return "unknown";
  }
}
