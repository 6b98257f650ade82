// vipd at scale: many VIPs (IPv4 and IPv6, half each, one config file per
// node) on a lab of several nodes. Whether every VIP still moves fast,
// whether the agents' event loops keep up meanwhile, and whether what an
// agent costs its etcd member and the kernel grows with the VIP count.
//
//   npm run bench:scale [-- --shapes 3x100,7x100 --seconds 20 --vipd-binary dist/vipd --record]
//   npm run bench:scale -- --compare A/dist/vipd,B/dist/vipd [--rounds 3] [--shapes 3x100]
//
// --compare BINARY,... times only the moves of all the shape's VIPs (no
// idle windows, no 1 and 10): in each round, for each binary in turn, a
// graceful hand-over and a crash, in one lab, so that two builds (before and
// after a change) meet the same machine at the same time; it prints a table
// of every move and records nothing. With SCALE_PCAP_DIR=DIR, each move's
// traffic on the client's link (tcpdump, from 1 s before the signal) and
// every node's vipd log are kept in DIR: what the client sent and when, to
// tell the network's part and the prober's own from vipd's.
//
// Each shape of --shapes (NODESxVIPS, default 3x100: the shape of a real
// control plane) runs on a lab of its own, and gets a table of its own. A
// shape of more than 3 nodes is marked oversubscribed: every node's etcd
// member and agent share this machine's cores, which a real cluster spreads
// over as many machines, so such a shape measures the machine's
// oversubscription as much as vipd.
//
// The lab is the failover benchmark's (etcd member and stand-in API server on
// every node), with the shape's nodes. For 1, 10 and all its VIPs in turn, vipd is
// started on n1 alone until it holds them all, then on the other nodes, and
// after a 6 s settle the idle holder is measured for --seconds twice:
//   1. its etcd member's /metrics (vipd on a node talks only to 127.0.0.1:2379,
//      its own member): gRPC calls started and stream messages received per
//      second, and the member's watch streams and watchers; the same for the
//      busiest standby's member. With all VIPs, also what the lab costs the
//      machine: RSS and CPU of every etcd and vipd process.
//   2. the holder's sendto calls, under `strace -f -yy -e trace=sendto`
//      inside its namespace: calls on netlink sockets, the netlink messages
//      they carry (nlmsghdrs strace decodes), and the others (announcements
//      on packet and ICMPv6 sockets, etcd's TCP). strace slows every traced
//      call, so this window's timing is not used for anything else.
// With all VIPs, `vipd status` is run five times in a standby's namespace.
// Then, at each VIP count, a graceful hand-over (SIGTERM to the holder) and,
// from a fresh start, a crash (SIGKILL of the holder's process tree), each
// timed from the client namespace, where lib/vips-probe-worker.ts probes every
// VIP on :6443 to see which node answers: the time from the signal to the
// first answer from another node, per VIP, whose maximum is when the last VIP
// came back; and what vipd logged meanwhile ("released VIP", "acquired VIP"),
// to tell the agents' part from the network's, and the longest event-loop
// stall any agent logged (lib/stall-lines.ts).
// Needs root; nothing leaves the lab's namespaces.
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { latency, machine, ms, recordSection } from "./lib/bench.ts";
import { describeStallLine, longestStall, type StallLine, stallLines } from "./lib/stall-lines.ts";
import { MAX_VIPS } from "../src/config/fields.ts";
import { vipdBounds } from "../test/lab/bounds.ts";
import { APISERVER_PORT, Lab, type LabNode, labNow, processTree, REPO_ROOT } from "../test/lab/cluster.ts";
import { vipd } from "../test/lab/implementations.ts";
import { type Family, parsePrometheusText } from "../src/health/prom-text.ts";
import { forEachLine, sh, sleep, waitFor } from "../test/lab/sh.ts";

const { values: args } = parseArgs({
  options: {
    shapes: { type: "string", default: "3x100" },
    seconds: { type: "string", default: "20" },
    "vipd-binary": { type: "string" },
    compare: { type: "string" },
    rounds: { type: "string", default: "3" },
    record: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (args.help) {
  console.log(readFileSync(import.meta.path, "utf8").split("\n").filter((l) => l.startsWith("//")).map((l) => l.slice(3)).join("\n"));
  process.exit(0);
}
if (process.getuid?.() !== 0) {
  console.error("bench:scale creates network namespaces and must run as root");
  process.exit(2);
}
/** A lab of `nodes` nodes, each agent configured with `vips` VIPs. */
interface Shape {
  nodes: number;
  vips: number;
}
/** The targets are set for 3 nodes; a bigger lab shares this machine's cores among more members and agents than a real cluster puts on one machine. */
const oversubscribed = (s: Shape) => s.nodes > 3;
const shapes: Shape[] = (args.shapes ?? "").split(",").map((text) => {
  const m = /^(\d+)x(\d+)$/.exec(text.trim());
  const shape = { nodes: Number(m?.[1]), vips: Number(m?.[2]) };
  if (!m || shape.nodes < 2 || shape.nodes > 50 || shape.vips < 1 || shape.vips > MAX_VIPS) {
    fail(`--shapes wants NODESxVIPS[,...], nodes from 2 to 50 and VIPs from 1 to ${MAX_VIPS} (what one agent serves), got ${JSON.stringify(text)}`);
  }
  return shape;
});
const seconds = Number(args.seconds);
if (!Number.isFinite(seconds) || seconds < 5) fail(`--seconds wants a number of at least 5, got ${args.seconds}`);

function fail(message: string): never {
  console.error(message);
  process.exit(2);
}

const log = (s: string) => console.log(`${new Date().toISOString().slice(11, 19)} ${s}`);
const impl = vipd(args["vipd-binary"] ? { binary: args["vipd-binary"] } : {});
const program = impl.command!;
const bounds = vipdBounds(impl.holdMs ?? undefined);

/**
 * The first n VIPs: IPv4 for even i, IPv6 for odd, so any prefix of the list
 * is half each. IPv4 VIPs come from 192.0.2.128–254: above the nodes (.10
 * up) and the lab's own VIP (.100).
 */
const vipList = (n: number) => Array.from({ length: n }, (_, i) => (i % 2 === 0 ? `192.0.2.${128 + i / 2}` : `2001:db8::1:${((i + 1) / 2).toString(16)}`));
/** Each VIP's probe period: 10 ms, longer with many VIPs so the client's requests do not take the cores vipd needs. */
const probeEvery = (vipCount: number) => Math.max(10, Math.ceil(vipCount / 5));

/**
 * The prober's requests are given up after PROBE_TIMEOUT_MS; it may have all
 * of one timeout's in flight (at 100 VIPs 5 every ms, 5000), and Bun allows
 * at most 65535.
 */
const PROBE_TIMEOUT_MS = 1000;
const PROBER_MAX_REQUESTS = 65535;

/** One Layer2VIPConfig document per VIP, in one file. */
function configText(vips: readonly string[], link: string): string {
  return vips.map((v) => `apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: ${v}\nlink: ${link}\n`).join("---\n");
}

function startAgent(lab: Lab, node: LabNode, vips: readonly string[], prog: readonly string[] = program): void {
  const ctx = lab.context(node);
  const config = join(node.dir, "vipd-scale.yaml");
  writeFileSync(config, configText(vips, node.host.link));
  node.vip = ctx.spawn("vipd", [
    ...prog, "run",
    "--config", config,
    "--node-name", node.name,
    "--etcd-endpoints", ctx.etcdEndpoint,
    "--health-listen", "127.0.0.1:8099",
    "--log-format", "json",
    "--apiserver-url", ctx.apiserverUrl,
  ]);
}

/** How many of vips each node's kernel has on its link. */
async function heldCounts(lab: Lab, vips: readonly string[]): Promise<Map<LabNode, number>> {
  const want = new Set(vips);
  const out = new Map<LabNode, number>();
  await Promise.all(lab.nodes.map(async (n) => {
    const addrs = await lab.seg.addresses(n.host);
    out.set(n, addrs.filter((a) => want.has(a.local)).length);
  }));
  return out;
}

/** The node that holds every one of vips while no other holds any. */
async function soleHolder(lab: Lab, vips: readonly string[]): Promise<LabNode | null> {
  const held = await heldCounts(lab, vips);
  const holders = [...held].filter(([, c]) => c > 0);
  return holders.length === 1 && holders[0]![1] === vips.length ? holders[0]![0] : null;
}

/** Stops vipd everywhere and removes what a crashed agent leaves: addresses and the fence. */
async function resetAll(lab: Lab, allVips: readonly string[]): Promise<void> {
  await lab.stopVipEverywhere();
  for (const n of lab.nodes) {
    const addrs = await lab.seg.addresses(n.host);
    for (const a of addrs.filter((x) => allVips.includes(x.local))) {
      // A crashed holder's addresses expire by themselves (vipd gives them a lifetime): one may be gone by now.
      await lab.seg.exec(n.host, ["ip", "addr", "del", `${a.local}/${a.prefixlen}`, "dev", n.host.link], { allowFail: true });
    }
    await lab.clearFence(n);
  }
}

/** vipd on the first node until it holds every VIP, then on the rest; returns the holder. */
async function startAll(lab: Lab, vips: readonly string[], prog: readonly string[] = program): Promise<LabNode> {
  const first = lab.nodes[0]!;
  startAgent(lab, first, vips, prog);
  await waitFor(`${first.name} holding ${vips.length} VIP(s)`, async () => {
    if (!first.vip?.running) throw new Error(first.vip?.logTail() ?? "not started");
    return (await soleHolder(lab, vips)) === first;
  }, 60_000, 100);
  for (const n of lab.nodes.slice(1)) startAgent(lab, n, vips, prog);
  // The standbys' API server gate opens after two probes a second apart; then they queue.
  await sleep(6000);
  const h = await soleHolder(lab, vips);
  if (h !== first) throw new Error(`after starting the standbys ${first.name} no longer holds every VIP alone`);
  return first;
}

// --- etcd's view ---------------------------------------------------------------

interface EtcdCost {
  /** gRPC calls started per second (unary and streams), by method. */
  callsPerS: number;
  byMethod: [string, number][];
  /** Messages received on streams per second (lease keep-alives, watch requests). */
  streamMsgsPerS: number;
  watchStreams: number;
  watchers: number;
}

async function scrape(lab: Lab, node: LabNode): Promise<Map<string, Family>> {
  return parsePrometheusText(await lab.seg.exec(node.host, ["curl", "-sf", "--max-time", "5", "http://127.0.0.1:2379/metrics"]));
}

function sumBy(f: Map<string, Family>, name: string, key: (l: Readonly<Record<string, string>>) => string | null): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of f.get(name)?.samples ?? []) {
    const k = key(s.labels);
    if (k !== null) out.set(k, (out.get(k) ?? 0) + s.value);
  }
  return out;
}

function etcdCost(a: Map<string, Family>, b: Map<string, Family>, s: number): EtcdCost {
  const method = (l: Readonly<Record<string, string>>) => `${l.grpc_service?.replace(/^etcdserverpb\./, "")}/${l.grpc_method}`;
  const started = [a, b].map((f) => sumBy(f, "grpc_server_started_total", method));
  const byMethod = [...started[1]!].map(([m, n]): [string, number] => [m, (n - (started[0]!.get(m) ?? 0)) / s]).filter(([, r]) => r > 0).sort((x, y) => y[1] - x[1]);
  const streamMsgs = [a, b].map((f) => [...sumBy(f, "grpc_server_msg_received_total", (l) => (l.grpc_type === "unary" ? null : "stream")).values()].reduce((x, y) => x + y, 0));
  const gauge = (name: string) => [...sumBy(b, name, () => "").values()].reduce((x, y) => x + y, 0);
  return {
    callsPerS: byMethod.reduce((sum, [, r]) => sum + r, 0),
    byMethod,
    streamMsgsPerS: (streamMsgs[1]! - streamMsgs[0]!) / s,
    watchStreams: gauge("etcd_debugging_mvcc_watch_stream_total"),
    watchers: gauge("etcd_debugging_mvcc_watcher_total"),
  };
}

// --- the machine's view ----------------------------------------------------------

interface ProcUse {
  cpuTicks: number;
  rssKiB: number;
}

function procUse(pids: readonly number[]): ProcUse {
  let cpuTicks = 0;
  let rssKiB = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      cpuTicks += Number(f[11]) + Number(f[12]);
      rssKiB += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
    } catch {
      // gone meanwhile
    }
  }
  return { cpuTicks, rssKiB };
}

function memTotalMiB(): number {
  return Number(/MemTotal:\s+(\d+)/.exec(readFileSync("/proc/meminfo", "utf8"))?.[1] ?? 0) / 1024;
}

const TICK = 100; // USER_HZ: /proc's CPU times are in these

interface LabCost {
  etcdRssMiB: number;
  vipdRssMiB: number;
  etcdCpu: number;
  vipdCpu: number;
  holderCpu: number;
}

// --- the kernel's view -------------------------------------------------------------

interface Sends {
  netlinkCallsPerS: number;
  netlinkMsgsPerS: number;
  /** Netlink messages per second by protocol and type ("ROUTE RTM_NEWADDR"). */
  byType: [string, number][];
  /** sendto on other sockets, by kind (PACKET, RAW (ICMPv6), TCP). */
  otherPerS: [string, number][];
}

/** Counts the holder's sendto calls for s seconds with strace inside its namespace. */
async function traceSends(lab: Lab, node: LabNode, s: number): Promise<Sends> {
  const out = join(node.dir, `strace-${Date.now()}.txt`);
  const p = lab.spawnIn(node.host.ns, join(node.dir, "strace.log"), `strace-${node.name}`, [
    "timeout", "-s", "INT", String(s), "strace", "-f", "-yy", "-s", "65536", "-e", "trace=sendto", "-o", out, "-p", String(node.vip!.pid),
  ]);
  await p.exited;
  const lines = readFileSync(out, "utf8").split("\n").filter((l) => /\bsendto\(\d+</.test(l));
  let netlinkCalls = 0;
  let netlinkMsgs = 0;
  const types = new Map<string, number>();
  const other = new Map<string, number>();
  const perS = (m: Map<string, number>) => [...m].map(([k, n]): [string, number] => [k, n / s]).sort((a, b) => b[1] - a[1]);
  for (const l of lines) {
    // strace names what sock_diag tells it; the announcement sockets come out unnamed.
    const kind = /sendto\(\d+<([A-Z0-9]+)/.exec(l)?.[1] ?? "unnamed";
    if (kind !== "NETLINK") {
      other.set(kind, (other.get(kind) ?? 0) + 1);
      continue;
    }
    netlinkCalls++;
    const protocol = /<NETLINK:\[([A-Z_]+)/.exec(l)?.[1] ?? "?";
    // strace decodes the whole buffer; padding after the last message shows as one of length 0.
    for (const m of l.matchAll(/nlmsg_len=[1-9]\d*, nlmsg_type=([^,}]+)/g)) {
      netlinkMsgs++;
      const key = `${protocol} ${m[1]}`;
      types.set(key, (types.get(key) ?? 0) + 1);
    }
  }
  return { netlinkCallsPerS: netlinkCalls / s, netlinkMsgsPerS: netlinkMsgs / s, byType: perS(types), otherPerS: perS(other) };
}

// --- the client's view ---------------------------------------------------------------

interface Move {
  /** ms from the signal to each VIP's first answer from another node, sorted. */
  perVip: number[];
  /** VIPs no other node answered for within the timeout. */
  missing: string[];
  newHolders: string[];
  /** From vipd's own logs, ms from the signal: when the old holder said it released VIPs, and the new ones acquired them (first, last). */
  released: [number, number] | null;
  acquired: [number, number] | null;
  /** Wall-clock ms of the signal, and of the last VIP's first answer from another node (or the give-up). */
  from: number;
  to: number;
  /** The longest stall any agent logged from the signal until the last VIP moved; set once every agent stopped (its last line is written as it stops). */
  stall?: StallLine | null;
}

/** ms after t0 of every log line of vipd on node with this message (the log's clock has ms resolution). */
function logged(node: LabNode, msg: string, t0: number): number[] {
  const out: number[] = [];
  for (const l of readFileSync(join(node.dir, "vipd.log"), "utf8").split("\n")) {
    if (!l.includes(`"msg":"${msg}"`)) continue;
    const t = Date.parse(/"time":"([^"]+)"/.exec(l)?.[1] ?? "");
    if (t >= t0 - 1) out.push(t - t0);
  }
  return out;
}

const span = (xs: number[]): [number, number] | null => (xs.length ? [Math.min(...xs), Math.max(...xs)] : null);

/** Signals the holder's vipd with sig (tree: every process) and times, per VIP, the first answer from another node. */
async function timeMove(lab: Lab, vips: readonly string[], holder: LabNode, kill: () => void): Promise<Move> {
  const { proc, stdout } = lab.spawnClient("vips-prober", [
    // Bun's fetch keeps at most 256 requests in flight (BUN_CONFIG_MAX_HTTP_REQUESTS)
    // and queues the rest. Once the old holder stops answering, 100 VIPs'
    // requests every few ms reach 256 hanging ones within tens of ms, and no
    // request leaves until those time out a second later: the client would
    // see the new holder late by that queue, not by vipd (a packet capture
    // showed no SYN from the client between 100 and 1000 ms after SIGTERM).
    "env", `BUN_CONFIG_MAX_HTTP_REQUESTS=${PROBER_MAX_REQUESTS}`,
    process.execPath, join(import.meta.dir, "lib", "vips-probe-worker.ts"), String(APISERVER_PORT), String(probeEvery(vips.length)), String(PROBE_TIMEOUT_MS), holder.name, ...vips,
  ]);
  const answers: { vip: string; d: number; ok: boolean; node?: string }[] = [];
  const reading = forEachLine(stdout, (line) => {
    if (line.trim()) answers.push(JSON.parse(line));
  });
  try {
    await waitFor(`every VIP answered by ${holder.name}`, () => {
      const seen = new Set(answers.filter((a) => a.ok && a.node === holder.name).map((a) => a.vip));
      return seen.size === vips.length;
    }, 20_000, 50);
    const pcapDir = process.env.SCALE_PCAP_DIR;
    let cap: ReturnType<Lab["spawnClient"]> | null = null;
    const capFile = pcapDir ? join(pcapDir, `move-${Date.now()}.pcap`) : "";
    if (pcapDir) {
      cap = lab.spawnClient("tcpdump", ["tcpdump", "-i", lab.client.link, "-w", capFile, "-n", "-s", "128", "-U"]);
      await sleep(1000);
    }
    const t0 = labNow();
    if (pcapDir) console.log(`PCAP ${capFile} t0=${t0} holder=${holder.name}`);
    kill();
    const moved = () => new Map(answers.filter((a) => a.d >= t0 && a.ok && a.node !== holder.name).reverse().map((a) => [a.vip, a] as const));
    try {
      await waitFor("every VIP answered by another node", () => moved().size === vips.length, 20_000, 20);
    } catch {
      // reported as missing
    }
    const m = moved();
    if (cap) await cap.proc.stop("SIGINT", 2000);
    const newHolders = [...new Set([...m.values()].map((a) => a.node!))].sort();
    const perVip = [...m.values()].map((a) => a.d - t0);
    return {
      from: t0,
      to: m.size === vips.length ? Math.max(...perVip) + t0 : labNow(),
      perVip: [...m.values()].map((a) => a.d - t0).sort((a, b) => a - b),
      missing: vips.filter((v) => !m.has(v)),
      newHolders,
      released: span(logged(holder, "released VIP", t0)),
      acquired: span(newHolders.flatMap((n) => logged(lab.node(n), "acquired VIP", t0))),
    };
  } finally {
    await proc.stop("SIGTERM", 2000);
    await reading;
  }
}

function describeMove(m: Move): string {
  const range = (r: [number, number] | null) => (r ? `${ms(r[0])}–${ms(r[1])} ms` : "none logged");
  return `last VIP served after ${ms(m.perVip.at(-1) ?? NaN)} ms, new holder(s) ${m.newHolders.join(", ")}${m.missing.length ? `, ${m.missing.length} never moved` : ""}; ` +
    `old holder logged "released VIP" ${range(m.released)}, new holder(s) "acquired VIP" ${range(m.acquired)}` +
    (m.stall !== undefined ? `; longest event-loop stall logged meanwhile ${describeStallLine(m.stall)}` : "");
}

/** Every agent of the lab stopped: the longest stall any of them logged during the move. */
function stallDuring(lab: Lab, m: Move): void {
  const lines = lab.nodes.flatMap((n) => stallLines(n.name, readFileSync(join(n.dir, "vipd.log"), "utf8")));
  m.stall = longestStall(lines, m.from, m.to);
}

// --- the run -------------------------------------------------------------------------

interface Idle {
  k: number;
  holder: EtcdCost;
  standby: EtcdCost;
  sends: Sends;
}

/** What one shape's run found. */
interface ShapeRun {
  shape: Shape;
  idle: Idle[];
  labCost: LabCost | null;
  statusRuns: number[];
  statusRows: number;
  /** Moves of all VIPs, by VIP count. */
  moves: { k: number; graceful: Move; crash: Move }[];
  errorLines: string[];
}

async function runShape(shape: Shape): Promise<ShapeRun> {
  const { nodes: nodeCount, vips: vipCount } = shape;
  const allVips = vipList(vipCount);
  const counts = [...new Set([1, 10, vipCount].filter((k) => k <= vipCount))].sort((a, b) => a - b);
  const run: ShapeRun = { shape, idle: [], labCost: null, statusRuns: [], statusRows: 0, moves: [], errorLines: [] };
  const lab = await Lab.start({ nodes: nodeCount, onStep: (s) => log(s) });
  try {
    for (const k of counts) {
      const vips = allVips.slice(0, k);
      await resetAll(lab, allVips);
      log(`${nodeCount}x${vipCount}, ${k} VIP(s): starting vipd on ${lab.nodes[0]!.name}, then on the other ${nodeCount - 1}`);
      const holder = await startAll(lab, vips);
      const standbys = lab.nodes.filter((n) => n !== holder);

      const before = await Promise.all(lab.nodes.map((n) => scrape(lab, n)));
      const pids = {
        etcd: lab.nodes.map((n) => lab.etcdCluster.pid(n.name)),
        vipd: lab.nodes.flatMap((n) => processTree(n.vip!.pid)),
        holder: processTree(holder.vip!.pid),
      };
      const use0 = [procUse(pids.etcd), procUse(pids.vipd), procUse(pids.holder)];
      const t0 = performance.now();
      await sleep(seconds * 1000);
      const use1 = [procUse(pids.etcd), procUse(pids.vipd), procUse(pids.holder)];
      const s = (performance.now() - t0) / 1000;
      const after = await Promise.all(lab.nodes.map((n) => scrape(lab, n)));
      const costs = lab.nodes.map((_, i) => etcdCost(before[i]!, after[i]!, s));
      const standbyCost = standbys.map((n) => costs[lab.nodes.indexOf(n)]!).sort((a, b) => b.callsPerS - a.callsPerS)[0]!;
      const holderCost = costs[lab.nodes.indexOf(holder)]!;
      const cpu = (i: number) => ((use1[i]!.cpuTicks - use0[i]!.cpuTicks) / TICK / s) * 100;
      if (k === vipCount) {
        const c = { etcdRssMiB: use1[0]!.rssKiB / 1024, vipdRssMiB: use1[1]!.rssKiB / 1024, etcdCpu: cpu(0), vipdCpu: cpu(1), holderCpu: cpu(2) };
        run.labCost = c;
        log(`lab: etcd RSS ${c.etcdRssMiB.toFixed(0)} MiB CPU ${c.etcdCpu.toFixed(1)} %, vipd RSS ${c.vipdRssMiB.toFixed(0)} MiB CPU ${c.vipdCpu.toFixed(1)} % (holder ${c.holderCpu.toFixed(1)} %)`);
      }
      log(`${k} VIP(s): holder's member ${holderCost.callsPerS.toFixed(2)} calls/s (${holderCost.byMethod.map(([m, r]) => `${m} ${r.toFixed(2)}`).join(", ")}), ${holderCost.streamMsgsPerS.toFixed(2)} stream msgs/s, ${holderCost.watchStreams} watch streams, ${holderCost.watchers} watchers; busiest standby's ${standbyCost.callsPerS.toFixed(2)} calls/s, ${standbyCost.streamMsgsPerS.toFixed(2)} stream msgs/s, ${standbyCost.watchStreams}/${standbyCost.watchers}`);

      log(`${k} VIP(s): tracing ${holder.name}'s sendto calls for ${seconds} s`);
      const sends = await traceSends(lab, holder, seconds);
      log(`${k} VIP(s): netlink ${sends.netlinkCallsPerS.toFixed(2)} sendto/s carrying ${sends.netlinkMsgsPerS.toFixed(2)} messages/s (${sends.byType.map(([t, r]) => `${t} ${r.toFixed(2)}`).join(", ")}); other sendto/s: ${sends.otherPerS.map(([kind, r]) => `${kind} ${r.toFixed(2)}`).join(", ")}`);
      run.idle.push({ k, holder: holderCost, standby: standbyCost, sends });

      if (k === vipCount) {
        const standby = standbys[0]!;
        for (let i = 0; i < 5; i++) {
          const start = performance.now();
          const out = await lab.seg.exec(standby.host, [...program, "status", "--etcd-endpoints", "http://127.0.0.1:2379"]);
          run.statusRuns.push(performance.now() - start);
          run.statusRows = vips.filter((v) => out.includes(v)).length;
        }
        log(`vipd status: ${run.statusRuns.map(ms).join(", ")} ms; it names ${run.statusRows} of ${k} VIPs`);
      }

      log(`${k} VIP(s): graceful hand-over, SIGTERM to ${holder.name}'s vipd`);
      const graceful = await timeMove(lab, vips, holder, () => holder.vip!.signal("SIGTERM"));
      // Every agent stopped has written its last stall line (one folded into a later line is written as it stops).
      await resetAll(lab, allVips);
      stallDuring(lab, graceful);
      log(`${k} VIP(s): graceful: ${describeMove(graceful)}`);

      // Afresh, so one node holds every VIP again (the hand-over may have split them).
      const next = await startAll(lab, vips);
      log(`${k} VIP(s): crash, SIGKILL to ${next.name}'s vipd tree`);
      const crash = await timeMove(lab, vips, next, () => next.vip!.signalTree("SIGKILL"));
      await resetAll(lab, allVips);
      stallDuring(lab, crash);
      log(`${k} VIP(s): crash: ${describeMove(crash)}`);
      run.moves.push({ k, graceful, crash });
    }
    for (const n of lab.nodes) {
      for (const f of readdirSync(n.dir).filter((x) => x.startsWith("vipd") && x.endsWith(".log"))) {
        for (const l of readFileSync(join(n.dir, f), "utf8").split("\n")) {
          if (/"level":"(error|warn)"/.test(l)) run.errorLines.push(`${n.name}: ${l}`);
        }
      }
    }
  } finally {
    await lab.destroy();
  }
  return run;
}

/** "n1 released VIP (reason)" → count, most frequent first; stalls by cause and task, their figures left out. */
function byMessage(lines: readonly string[]): [string, number][] {
  const counts = new Map<string, number>();
  for (const l of lines) {
    const node = l.slice(0, l.indexOf(":"));
    const msg = /"msg":"([^"]{0,80})/.exec(l)?.[1] ?? "?";
    const stall = msg.startsWith("event loop stalled for ");
    const reason = stall ? [/"cause":"([^"]+)"/.exec(l)?.[1], /"task":"([^"]+)"/.exec(l)?.[1]].filter(Boolean).join(", ") : /"reason":"([^"]{0,80})/.exec(l)?.[1];
    const key = `${node} "${stall ? "event loop stalled" : msg}"${reason ? ` (${reason})` : ""}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].sort((a, b) => b[1] - a[1]);
}

// --- the report ------------------------------------------------------------------------

const f2 = (x: number) => x.toFixed(2);
const crashLimit = bounds.serveMs + 100;
const STALL_TARGET_MS = 100;
const moveRow = (k: number, what: string, m: Move, target: string, limit: number) => {
  const lat = m.perVip.length ? latency(m.perVip) : null;
  const last = m.missing.length ? Infinity : m.perVip.at(-1)!;
  const stallOk = !m.stall || m.stall.ms <= STALL_TARGET_MS;
  return `| ${k} | ${what} | ${m.missing.length ? `${m.missing.length} VIP(s) never moved` : `${ms(last)} ms`} | ${lat ? `${ms(lat.median)} ms` : "–"} | ${m.newHolders.join(", ")} | ${target} | ${last < limit ? "PASS" : "MISS"} | ${describeStallLine(m.stall ?? null)} | ${stallOk ? "PASS" : "MISS"} |`;
};

function shapeTitle(shape: Shape): string {
  const title = `${shape.nodes} nodes × ${shape.vips} VIPs`;
  return oversubscribed(shape) ? `${title}: oversubscribed on ${navigator.hardwareConcurrency} cores` : title;
}

function shapeBody(r: ShapeRun): string {
  const { nodes: nodeCount, vips: vipCount } = r.shape;
  const allVips = vipList(vipCount);
  return [
    `### ${shapeTitle(r.shape)}`,
    "",
    ...(oversubscribed(r.shape)
      ? [`**Oversubscribed**: ${nodeCount} etcd members and ${nodeCount} agents share this machine's ${navigator.hardwareConcurrency} cores, where a real cluster gives each node a machine of its own. This shape measures how vipd fares on a starved machine; the targets are for 3 nodes.`, ""]
      : []),
    `${nodeCount} nodes, each with an etcd member and a stand-in API server; ${vipCount} VIPs (${allVips.filter((v) => !v.includes(":")).length} IPv4, ${allVips.filter((v) => v.includes(":")).length} IPv6) on eth0 in one config file per node. vipd on n1 first until it holds every VIP, then on the others.`,
    "",
    `**Moving every VIP at once**, seen from the client namespace: per VIP a new connection to :6443 every ${probeEvery(vipCount)} ms, whether or not earlier ones finished, until another node answers; per VIP the time from the signal to the arrival of the first answer from another node. One move of each kind per VIP count. The longest stall is the longest event-loop stall any agent logged (each logs those over 100 ms, with their cause) from the signal until the last VIP answered, as the agent's 1 s timer saw it by one tick after.`,
    "",
    "| VIPs | fault | last VIP served | median VIP | new holder(s) | target | | longest loop stall | ≤ 100 ms |",
    "|---|---|---|---|---|---|---|---|---|",
    ...r.moves.flatMap(({ k, graceful, crash }) => [
      moveRow(k, "graceful (SIGTERM to the holder)", graceful, "< 200 ms", 200),
      moveRow(k, "crash (SIGKILL of the holder's tree)", crash, `< serve bound ${ms(bounds.serveMs)} + 100 = ${ms(crashLimit)} ms`, crashLimit),
    ]),
    "",
    "From vipd's own logs (their clock has ms resolution), ms after the signal:",
    "",
    ...r.moves.flatMap(({ k, graceful, crash }) => [`- ${k} VIP(s), graceful: ${describeMove(graceful)}`, `- ${k} VIP(s), crash: ${describeMove(crash)}`]),
    "",
    `**etcd cost of one agent, idle**, from its own member's /metrics over ${seconds} s: gRPC calls started per second (unary calls and new streams), messages received on streams per second (lease keep-alives, watch requests), and the member's watch streams and watchers at the end. Standby: the standby whose member saw the most calls.`,
    "",
    "| VIPs | holder: calls/s | of which | stream msgs/s | watch streams / watchers | standby: calls/s | stream msgs/s | watch streams / watchers |",
    "|---|---|---|---|---|---|---|---|",
    ...r.idle.map((x) => `| ${x.k} | ${f2(x.holder.callsPerS)} | ${x.holder.byMethod.map(([m, v]) => `${m} ${f2(v)}`).join(", ")} | ${f2(x.holder.streamMsgsPerS)} | ${x.holder.watchStreams} / ${x.holder.watchers} | ${f2(x.standby.callsPerS)} | ${f2(x.standby.streamMsgsPerS)} | ${x.standby.watchStreams} / ${x.standby.watchers} |`),
    "",
    `**Kernel cost of the holder, idle**: \`strace -f -yy -e trace=sendto\` attached to the holder's vipd for ${seconds} s inside its namespace (vipd sends with sendto only); calls on netlink sockets, the netlink messages in them (each nlmsghdr strace decodes), and sendto on other sockets (-yy names each socket: TCP = etcd and the gate's probes; the announcement sockets, ARP and neighbour advertisements, come out unnamed).`,
    "",
    "| VIPs | netlink sendto/s | netlink messages/s | of which, by protocol and type | other sendto/s |",
    "|---|---|---|---|---|",
    ...r.idle.map((x) => `| ${x.k} | ${f2(x.sends.netlinkCallsPerS)} | ${f2(x.sends.netlinkMsgsPerS)} | ${x.sends.byType.map(([t, v]) => `${t} ${f2(v)}`).join(", ")} | ${x.sends.otherPerS.map(([kind, v]) => `${kind} ${f2(v)}`).join(", ") || "0"} |`),
    "",
    r.statusRuns.length
      ? `**\`vipd status\`** with ${vipCount} VIPs, in a standby's namespace against its member, wall time including the program's start: median ${ms(latency(r.statusRuns).median)} ms of ${r.statusRuns.length} runs (${r.statusRuns.map(ms).join(", ")} ms); it listed ${r.statusRows} of ${vipCount} VIPs.`
      : "",
    "",
    r.labCost
      ? `**What the lab costs this machine**, idle with ${vipCount} VIPs over ${seconds} s: ${nodeCount} etcd members ${r.labCost.etcdRssMiB.toFixed(0)} MiB RSS, ${r.labCost.etcdCpu.toFixed(1)} % of one core; ${nodeCount} vipd agents ${r.labCost.vipdRssMiB.toFixed(0)} MiB RSS, ${r.labCost.vipdCpu.toFixed(1)} % of one core, of which the holder ${r.labCost.holderCpu.toFixed(1)} % (the machine: ${navigator.hardwareConcurrency} cores, ${memTotalMiB().toFixed(0)} MiB of memory).`
      : "",
    "",
    r.errorLines.length
      ? `vipd logged ${r.errorLines.length} warning or error line(s) in the run, by node and message: ${byMessage(r.errorLines).map(([m, n]) => `${n} × ${m}`).join("; ")}.`
      : "vipd logged no warnings or errors in the run.",
  ].join("\n");
}

/** --compare: the moves of all VIPs, each binary in turn, round after round, in one lab. */
async function compareMoves(shape: Shape, binaries: readonly string[], rounds: number): Promise<void> {
  const vips = vipList(shape.vips);
  const lab = await Lab.start({ nodes: shape.nodes, onStep: (s) => log(s) });
  const rows: string[] = [];
  try {
    for (let round = 1; round <= rounds; round++) {
      for (const binary of binaries) {
        for (const fault of ["graceful", "crash"] as const) {
          await resetAll(lab, vips);
          const holder = await startAll(lab, vips, [binary]);
          const m = await timeMove(lab, vips, holder, () => (fault === "graceful" ? holder.vip!.signal("SIGTERM") : holder.vip!.signalTree("SIGKILL")));
          await resetAll(lab, vips);
          stallDuring(lab, m);
          if (process.env.SCALE_PCAP_DIR) for (const n of lab.nodes) writeFileSync(join(process.env.SCALE_PCAP_DIR, `${Math.round(m.from)}-${n.name}.log`), readFileSync(join(n.dir, "vipd.log")));
          const lat = m.perVip.length ? latency(m.perVip) : null;
          const row = `| ${round} | ${binary} | ${fault} | ${m.missing.length ? `${m.missing.length} never moved` : `${ms(m.perVip.at(-1)!)} ms`} | ${lat ? `${ms(lat.median)} ms` : "–"} | ${m.released ? `${ms(m.released[0])}–${ms(m.released[1])}` : "–"} | ${m.acquired ? `${ms(m.acquired[0])}–${ms(m.acquired[1])}` : "–"} | ${describeStallLine(m.stall ?? null)} |`;
          log(row);
          rows.push(row);
        }
      }
    }
  } finally {
    await lab.destroy();
  }
  console.log(`\n${shape.nodes} nodes × ${shape.vips} VIPs, ms after the signal\n\n| round | binary | fault | last VIP served | median VIP | "released VIP" | "acquired VIP" | longest loop stall |\n|---|---|---|---|---|---|---|---|\n${rows.join("\n")}\n`);
}

if (args.compare) {
  const rounds = Number(args.rounds);
  if (!Number.isInteger(rounds) || rounds < 1) fail(`--rounds wants a whole number of at least 1, got ${args.rounds}`);
  await compareMoves(shapes[0]!, args.compare.split(","), rounds);
  process.exit(0);
}

const commit = (await sh(["git", "-C", REPO_ROOT, "log", "-1", "--format=%h (%s)"])).trim() +
  ((await sh(["git", "-C", REPO_ROOT, "status", "--porcelain", "--", "src"])).trim() ? " with uncommitted changes under src/" : "");
const started = performance.now();
const runs: ShapeRun[] = [];
for (const shape of shapes) {
  const t = performance.now();
  runs.push(await runShape(shape));
  log(`${shape.nodes}x${shape.vips} done in ${((performance.now() - t) / 60_000).toFixed(1)} min`);
}
log(`all shapes done in ${((performance.now() - started) / 60_000).toFixed(1)} min`);

const cmd = `npm run bench:scale${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`;
const body = [
  `Command: \`${cmd}\` · ${new Date().toISOString().slice(0, 10)} · ${await machine()} · vipd ${args["vipd-binary"] ? "binary" : "from source"} at ${commit}`,
  "",
  ...runs.map((r) => `${shapeBody(r)}\n`),
].join("\n");
console.log(`\n${body}\n`);
for (const r of runs) for (const l of r.errorLines.slice(0, 20)) console.log(l.slice(0, 300));
if (args.record) {
  // "Scale: 3 nodes × 100 VIPs; 7 × 100, oversubscribed on 2 cores"
  const heading = shapes.map((s, i) => `${s.nodes}${i === 0 ? " nodes" : ""} × ${s.vips}${i === 0 ? " VIPs" : ""}${oversubscribed(s) ? `, oversubscribed on ${navigator.hardwareConcurrency} cores` : ""}`).join("; ");
  await recordSection(join(REPO_ROOT, "BENCHMARKS.md"), "scale", `## Scale: ${heading}\n\n${body}`);
  log("recorded in BENCHMARKS.md");
}
process.exit(0);
