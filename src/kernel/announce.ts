// Telling the segment that a VIP has moved here: gratuitous ARP for IPv4,
// unsolicited Neighbor Advertisements for IPv6, and the probes that ask who
// else answers for an address (RFC 5227 ARP probes, RFC 4862 DAD solicitations). Frames are built by wire/ and sent
// through one packet socket per link.
import { KernelInputError } from "./error.ts";
import { formatMac, parseIp, isUnusableAsVip, type IpAddress } from "./ip.ts";
import type { LinkRef } from "./link-ref.ts";
import { PacketSocket } from "./packet.ts";
import { decodeArp, encodeArp, gratuitousReply, gratuitousRequest, Operation, probe } from "./wire/arp.ts";
import { encodeBpf, neighborAdvertisementFilter } from "./wire/bpf.ts";
import { WireError } from "./wire/error.ts";
import { BROADCAST, decodeEthernet, encodeEthernet, EtherType, PacketType } from "./wire/ethernet.ts";
import {
  ALL_NODES_MAC,
  dadSolicitation,
  decodeNeighborAdvertisement,
  encodeNeighborAdvertisement,
  encodeNeighborSolicitation,
  multicastMac,
  unsolicitedAdvertisement,
} from "./wire/ndp.ts";

export interface BurstOptions {
  /** Announcement rounds; each is 2 frames for IPv4 (request + reply), 1 for IPv6. */
  count: number;
  /** Time between the starts of two rounds. The first round goes out at once. */
  intervalMs: number;
}

/**
 * Three rounds 50 ms apart: a single lost frame (a switch still learning the
 * port, a busy receiver) does not leave a cache pointing at the old owner, and
 * the whole burst is over in 100 ms. Caches that miss all three are fixed by
 * the slower refresh the owner runs while it holds the VIP (README, "How ownership works").
 */
export const DEFAULT_BURST: Readonly<BurstOptions> = Object.freeze({ count: 3, intervalMs: 50 });

export class Announcer {
  private constructor(
    private readonly socket: PacketSocket,
    readonly link: LinkRef,
  ) {}

  /** Opens the packet socket in the calling thread's CURRENT network namespace. */
  static open(link: LinkRef): Announcer {
    checkLink(link, `announcing on ${link.name}`);
    // Send-only: bound with EtherType 0 so the socket queues nothing.
    return new Announcer(PacketSocket.open(link, 0), link);
  }

  /**
   * One announcement round: IPv4 → gratuitous ARP request AND reply (both
   * broadcast); IPv6 → unsolicited NA to all-nodes. Throws KernelInputError
   * for an address that cannot be a VIP and KernelError when sending fails
   * (ENETDOWN while the link is down).
   */
  announceOnce(ip: string): void {
    this.round(vipAddress(ip, this.operation(ip)));
  }

  /**
   * announceOnce `count` times, `intervalMs` apart (defaults: DEFAULT_BURST),
   * the first at once. Resolves with the number of frames sent. An abort stops
   * the burst and rejects with `signal.reason`, as timers and fetch do; a send
   * failure rejects with its KernelError. Input errors reject before anything is sent.
   *
   * `guard`, when given, is asked right before every round; when it says no,
   * the burst ends quietly with what it sent. Timers are not a proof of
   * anything: after a freeze the next round may run before the owner has
   * noticed it lost the address, and an announcement for an address we no
   * longer own would point every neighbour at the wrong node.
   */
  async burst(ip: string, opts: Partial<BurstOptions> & { signal?: AbortSignal; guard?: () => boolean } = {}): Promise<number> {
    const count = opts.count ?? DEFAULT_BURST.count;
    const intervalMs = opts.intervalMs ?? DEFAULT_BURST.intervalMs;
    const operation = this.operation(ip);
    const addr = vipAddress(ip, operation);
    if (!Number.isInteger(count) || count < 1) throw new KernelInputError(operation, `burst count ${count} is not a positive integer`);
    if (!Number.isFinite(intervalMs) || intervalMs < 0) throw new KernelInputError(operation, `burst interval ${intervalMs} ms is not a non-negative number`);
    const signal = opts.signal;
    let sent = 0;
    for (let i = 0; i < count; i++) {
      signal?.throwIfAborted();
      if (i > 0) await abortableSleep(intervalMs, signal);
      if (opts.guard && !opts.guard()) break;
      sent += this.round(addr);
    }
    return sent;
  }

  close(): void {
    this.socket.close();
  }

  private operation(ip: string): string {
    return `announcing ${ip} on ${this.link.name}`;
  }

  /** Sends one round; returns the number of frames sent. */
  private round(ip: IpAddress): number {
    const operation = this.operation(ip.text);
    const mac = this.link.mac;
    if (ip.family === 4) {
      // Request first: it is the form RFC 5227 §3 recommends and the one
      // Linux and most stacks act on; the reply serves those that only take replies.
      for (const arp of [gratuitousRequest(mac, ip.bytes), gratuitousReply(mac, ip.bytes)]) {
        this.socket.send(encodeEthernet({ destination: BROADCAST, source: mac, etherType: EtherType.ARP, payload: encodeArp(arp) }), operation);
      }
      return 2;
    }
    const na = encodeNeighborAdvertisement(unsolicitedAdvertisement(mac, ip.bytes));
    this.socket.send(encodeEthernet({ destination: ALL_NODES_MAC, source: mac, etherType: EtherType.IPv6, payload: na }), operation);
    return 1;
  }
}

export interface ProbeOptions {
  /** How long to listen for answers, ms (default 500). */
  timeoutMs?: number;
  /** Probes sent, spread over the first half of the wait (default 3). */
  probes?: number;
}

/**
 * Which MACs other than our own answer for `ip` on `link`: arpProbe for
 * IPv4, ndpProbe for IPv6. [] when nobody does.
 */
export function probeAddress(link: LinkRef, ip: string, opts: ProbeOptions = {}): Promise<string[]> {
  return parseIp(ip)?.family === 6 ? ndpProbe(link, ip, opts) : arpProbe(link, ip, opts);
}

/**
 * RFC 5227 probe: which MACs answer ARP for `ip` on `link` within `timeoutMs`
 * (default 500). `probes` (default 3) requests are spread evenly over the first
 * half of the wait, so a lost probe or reply does not hide an owner. RFC 5227's
 * own timing (1–2 s between probes) is for DHCP-style configuration; a VIP
 * takeover cannot wait that long. An answer is any ARP packet whose sender IP
 * is `ip` from a MAC other than our own — a reply to us, or the owner's own
 * announcement. [] when nobody answers.
 *
 * vipd's own fence (nft-fence.ts) lets both directions through: a packet
 * socket's frames pass no arp hook on the way out, and its output chain
 * drops only ARP whose *sender* IP is a VIP anyway (a probe's is 0.0.0.0);
 * its input chain drops only ARP *requests* for a VIP (so that a fenced node
 * never answers one), and answers are replies or announcements from the
 * owner, which reach our packet socket beside arp_rcv, not through it.
 *
 * The socket is opened synchronously, before the first await, in the calling
 * thread's current network namespace.
 */
export async function arpProbe(link: LinkRef, ip: string, opts: ProbeOptions = {}): Promise<string[]> {
  const operation = `probing ${ip} on ${link.name}`;
  checkLink(link, operation);
  const addr = vipAddress(ip, operation);
  if (addr.family !== 4) throw new KernelInputError(operation, "ARP probes IPv4 addresses only");
  const timing = probeTiming(opts, operation);
  const frame = encodeEthernet({
    destination: BROADCAST,
    source: link.mac,
    etherType: EtherType.ARP,
    payload: encodeArp(probe(link.mac, addr.bytes)),
  });
  // No filter: ARP is little traffic, even on a busy link.
  return listen(link, EtherType.ARP, null, frame, (got) => arpAnswerFor(got, addr.bytes), timing, operation);
}

/**
 * The IPv6 counterpart of arpProbe: Duplicate Address Detection's Neighbor
 * Solicitation (RFC 4862 §5.4.2: from ::, to the VIP's solicited-node group,
 * no source link-layer address), and which MACs send a Neighbor
 * Advertisement for `ip` meanwhile — an owner's answer, which goes to all
 * nodes because nobody can answer ::, or its own announcement. The MAC is
 * the advertisement's Target Link-Layer Address, else its Ethernet source.
 * Same timing and result as arpProbe.
 *
 * vipd's own fence lets both directions through: a packet socket's frames
 * pass no inet hook, and its output chain drops only IPv6 *from* a VIP and
 * advertisements *for* one anyway (the probe comes from :: and solicits);
 * its input chain drops IPv6 *to* a VIP and solicitations for one, and the
 * answer is an advertisement to ff02::1, which our packet socket takes
 * before the IPv6 stack. Another agent's probe is dropped by every node not
 * proven for the VIP, as it must be, and answered by the proven holder.
 *
 * The socket is opened synchronously, before the first await, in the calling
 * thread's current network namespace.
 */
export async function ndpProbe(link: LinkRef, ip: string, opts: ProbeOptions = {}): Promise<string[]> {
  const operation = `probing ${ip} on ${link.name}`;
  checkLink(link, operation);
  const addr = vipAddress(ip, operation);
  if (addr.family !== 6) throw new KernelInputError(operation, "Neighbor Discovery probes IPv6 addresses only");
  const timing = probeTiming(opts, operation);
  const ns = dadSolicitation(addr.bytes);
  const frame = encodeEthernet({
    destination: multicastMac(ns.destination),
    source: link.mac,
    etherType: EtherType.IPv6,
    payload: encodeNeighborSolicitation(ns),
  });
  return listen(link, EtherType.IPv6, NA_FILTER, frame, (got) => ndpAnswerFor(got, addr.bytes), timing, operation);
}

function probeTiming(opts: ProbeOptions, operation: string): { timeoutMs: number; probes: number } {
  const timeoutMs = opts.timeoutMs ?? 500;
  const probes = opts.probes ?? 3;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new KernelInputError(operation, `timeout ${timeoutMs} ms is not positive`);
  if (!Number.isInteger(probes) || probes < 1) throw new KernelInputError(operation, `probe count ${probes} is not a positive integer`);
  return { timeoutMs, probes };
}

/**
 * Sends `frame` `probes` times over the first half of `timeoutMs` and
 * collects, until the end, the MACs `answer` finds in received frames, our
 * own left out. Receiving polls (PacketSocket.receive), so the event loop
 * keeps running while a probe waits.
 */
async function listen(
  link: LinkRef,
  etherType: number,
  filter: Uint8Array | null,
  frame: Uint8Array,
  answer: (frame: Uint8Array) => string | null,
  timing: { timeoutMs: number; probes: number },
  operation: string,
): Promise<string[]> {
  const socket = PacketSocket.open(link, etherType, filter ?? undefined);
  try {
    const start = performance.now();
    const deadline = start + timing.timeoutMs;
    const spacing = timing.timeoutMs / 2 / timing.probes;
    const own = formatMac(link.mac);
    const owners = new Set<string>();
    let sent = 0;
    while (performance.now() < deadline) {
      if (sent < timing.probes && performance.now() >= start + sent * spacing) {
        socket.send(frame, operation);
        sent++;
      }
      const next = sent < timing.probes ? Math.min(deadline, start + sent * spacing) : deadline;
      const got = await socket.receive(operation, next);
      if (!got || got.packetType === PacketType.OUTGOING) continue;
      const sender = answer(got.frame);
      if (sender && sender !== own) owners.add(sender);
    }
    return [...owners].sort();
  } finally {
    socket.close();
  }
}

/** The sender MAC of an ARP frame claiming `ip`, or null for anything else. */
function arpAnswerFor(frame: Uint8Array, ip: Uint8Array): string | null {
  // Malformed frames from the wire are someone else's bug, not a probe failure.
  const eth = decodeEthernet(frame);
  if (eth instanceof WireError || eth.etherType !== EtherType.ARP) return null;
  const arp = decodeArp(eth.payload);
  if (arp instanceof WireError) return null;
  if (arp.operation !== Operation.REQUEST && arp.operation !== Operation.REPLY) return null;
  return arp.senderIp.every((b, i) => b === ip[i]) ? formatMac(arp.senderMac) : null;
}

/** The kernel hands an IPv6 probe's socket Neighbor Advertisements only, not the link's whole IPv6 traffic. */
const NA_FILTER = encodeBpf(neighborAdvertisementFilter());

/** The MAC of a Neighbor Advertisement for `ip`, or null for anything else. */
function ndpAnswerFor(frame: Uint8Array, ip: Uint8Array): string | null {
  const eth = decodeEthernet(frame);
  if (eth instanceof WireError || eth.etherType !== EtherType.IPv6) return null;
  const na = decodeNeighborAdvertisement(eth.payload);
  if (na instanceof WireError || !na.target.every((b, i) => b === ip[i])) return null;
  return formatMac(na.targetMac ?? eth.source);
}

function vipAddress(text: string, operation: string): IpAddress {
  const ip = parseIp(text);
  if (!ip) throw new KernelInputError(operation, `${JSON.stringify(text)} is not an IPv4 or IPv6 address`);
  if (isUnusableAsVip(ip)) throw new KernelInputError(operation, `${ip.text} is multicast, loopback, link-local or unspecified, never a VIP`);
  return ip;
}

function checkLink(link: LinkRef, operation: string): void {
  if (link.mac.length !== 6) throw new KernelInputError(operation, `link ${link.name} has a ${link.mac.length}-byte hardware address, not Ethernet's 6`);
  if (!Number.isInteger(link.index) || link.index <= 0) throw new KernelInputError(operation, `link ${link.name} has no valid index (${link.index})`);
}

function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

