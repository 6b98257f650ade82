// The client's per-MAC witness, run inside the client namespace:
//   bun mac-probe-worker.ts LINK CLIENT_IP VIP EVERY_MS NAME=MAC [NAME=MAC ...]
// Every EVERY_MS it asks each named MAC directly, unicast, whether it answers
// for VIP: an ARP request for VIP (from CLIENT_IP) and an ICMP echo request to
// VIP, both framed to that MAC. A MAC that answers either is a kernel that
// answers for the VIP, whatever any ARP cache on the segment says: the
// prober's HTTP requests reach only the MAC the client's cache names, this
// reaches every node at once, so two answering kernels show in one tick.
// Prints one JSON line per tick sent, {"k":k,"t":t}, and one per answer,
// {"k":k,"t":t,"node":NAME,"kind":"arp"|"icmp"}. An ICMP reply carries its
// tick in its sequence number; an ARP reply is counted in the tick last sent
// (replies on a veth segment take well under a millisecond).
// t: epoch ms on the lab clock (performance.timeOrigin + now()).
import { PacketSocket } from "../../src/kernel/packet.ts";
import { parseIp } from "../../src/kernel/ip.ts";
import { Rtnl } from "../../src/kernel/rtnl.ts";
import { decodeArp, encodeArp, Operation } from "../../src/kernel/wire/arp.ts";
import { WireError } from "../../src/kernel/wire/error.ts";
import { decodeEthernet, encodeEthernet, EtherType, PacketType } from "../../src/kernel/wire/ethernet.ts";
import { now } from "./http-probe.ts";

const [linkName, clientIpText, vipText, everyArg, ...targetArgs] = process.argv.slice(2);
if (!linkName || !clientIpText || !vipText || !everyArg || targetArgs.length === 0) {
  console.error("usage: mac-probe-worker.ts LINK CLIENT_IP VIP EVERY_MS NAME=MAC [NAME=MAC ...]");
  process.exit(2);
}
const clientIp = parseIp(clientIpText);
const vip = parseIp(vipText);
if (clientIp?.family !== 4 || vip?.family !== 4) {
  console.error("mac-probe-worker: CLIENT_IP and VIP are IPv4 addresses");
  process.exit(2);
}
const everyMs = Number(everyArg);
const targets = targetArgs.map((arg) => {
  const [name, mac] = arg.split("=");
  const bytes = Uint8Array.from((mac ?? "").split(":").map((h) => Number.parseInt(h, 16)));
  if (!name || bytes.length !== 6 || bytes.some((b) => Number.isNaN(b))) {
    console.error(`mac-probe-worker: ${JSON.stringify(arg)} is not NAME=MAC`);
    process.exit(2);
  }
  return { name, mac: bytes, key: macKey(bytes) };
});

function macKey(mac: Uint8Array): string {
  return [...mac].map((b) => b.toString(16).padStart(2, "0")).join(":");
}

const ETH_P_ALL = 0x0003;
const ICMP_ECHO_REPLY = 0;
const ICMP_ECHO_REQUEST = 8;
const ECHO_ID = process.pid & 0xffff;

/** RFC 1071 one's-complement sum of 16-bit words. */
function checksum(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) sum += (bytes[i]! << 8) + (bytes[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** IPv4 header (20 bytes, no options) and an ICMP echo request with seq. */
function echoRequest(seq: number): Uint8Array {
  const icmp = new Uint8Array(16);
  const iv = new DataView(icmp.buffer);
  iv.setUint8(0, ICMP_ECHO_REQUEST);
  iv.setUint16(4, ECHO_ID);
  iv.setUint16(6, seq);
  iv.setUint16(2, checksum(icmp));
  const ip = new Uint8Array(20 + icmp.length);
  const v = new DataView(ip.buffer);
  v.setUint8(0, 0x45);
  v.setUint16(2, ip.length);
  v.setUint8(8, 64); // TTL
  v.setUint8(9, 1); // ICMP
  ip.set(clientIp!.bytes, 12);
  ip.set(vip!.bytes, 16);
  v.setUint16(10, checksum(ip.subarray(0, 20)));
  ip.set(icmp, 20);
  return ip;
}

const rtnl = Rtnl.open();
const link = await rtnl.link(linkName);
rtnl.close();
const sock = PacketSocket.open(link, ETH_P_ALL);

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);
const print = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);

let tick = -1;
function send(k: number): void {
  for (const t of targets) {
    const arp = encodeArp({ operation: Operation.REQUEST, senderMac: link.mac, senderIp: clientIp!.bytes, targetMac: new Uint8Array(6), targetIp: vip!.bytes });
    sock.send(encodeEthernet({ destination: t.mac, source: link.mac, etherType: EtherType.ARP, payload: arp }), `asking ${t.name} for ${vipText}`);
    sock.send(encodeEthernet({ destination: t.mac, source: link.mac, etherType: EtherType.IPv4, payload: echoRequest(k & 0xffff) }), `pinging ${vipText} at ${t.name}`);
  }
}

/** The answer in a frame, if it is one: which target, which tick, which kind. */
function answer(frame: Uint8Array): { node: string; k: number; kind: "arp" | "icmp" } | null {
  const eth = decodeEthernet(frame);
  if (eth instanceof WireError) return null;
  const from = targets.find((t) => same(t.mac, eth.source));
  if (!from) return null;
  if (eth.etherType === EtherType.ARP) {
    const a = decodeArp(eth.payload);
    if (a instanceof WireError) return null;
    if (a.operation === Operation.REPLY && same(a.senderIp, vip!.bytes) && same(a.targetIp, clientIp!.bytes)) return { node: from.name, k: tick, kind: "arp" };
    return null;
  }
  if (eth.etherType !== EtherType.IPv4) return null;
  const p = eth.payload;
  if (p.length < 28 || p[9] !== 1) return null;
  const ihl = (p[0]! & 0x0f) * 4;
  if (!same(p.subarray(12, 16), vip!.bytes) || !same(p.subarray(16, 20), clientIp!.bytes)) return null;
  const v = new DataView(p.buffer, p.byteOffset + ihl);
  if (v.getUint8(0) !== ICMP_ECHO_REPLY || v.getUint16(4) !== ECHO_ID) return null;
  // The 16-bit sequence names the tick; ticks are far fewer than 65536 per wrap.
  const seq = v.getUint16(6);
  return { node: from.name, k: tick - ((tick - seq) & 0xffff), kind: "icmp" };
}

let stopping = false;
process.on("SIGTERM", () => (stopping = true));
process.on("SIGINT", () => (stopping = true));

let next = now();
while (!stopping) {
  tick++;
  print({ k: tick, t: now() });
  send(tick);
  next += everyMs;
  // Drain the socket until the next tick; a 1 ms pause keeps the tick's edges sharp.
  do {
    for (let f = sock.tryReceive("reading answers"); f; f = sock.tryReceive("reading answers")) {
      if (f.packetType === PacketType.OUTGOING) continue;
      const a = answer(f.frame);
      if (a) print({ ...a, t: now() });
    }
    await Bun.sleep(1);
  } while (now() < next && !stopping);
  if (now() > next + everyMs) next = now();
}
sock.close();
process.exit(0);
