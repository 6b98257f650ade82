// The soak: thousands of hand-overs and hundreds of etcd reconnects against
// three long-lived agents, to find what a week of planned moves and flaky
// etcd links would leak.
//
//   npm run bench:soak [-- --handovers 2000 --reconnects 200 --sample-every 250
//                          --warmup 200 --drain-every 100 --vipd-binary dist/vipd --record --keep-logs]
//
// One 3-node lab (the failover benchmark's); vipd starts once on every node
// and runs to the end. An operator in the client's namespace moves the VIP
// over and over with the code of `vipd handover` (operator.ts: one process
// for the whole run, since starting the CLI takes longer than the move), each
// move counted once another node holds the VIP in its kernel; every
// --drain-every moves it also drains the holder and undrains it. Meanwhile,
// spread evenly over the moves, one agent at a time has its TCP connections
// to its etcd member black-holed for 1.5 s (nftables drops port 2379 both
// ways in its node, silently: a peer that vanished without a FIN). The agent
// hears no heartbeat answer, finds its connection dead (its data goes
// unacknowledged), replaces it, and counts it in vipd_etcd_reconnects_total;
// each one must show there within 10 s. (A frozen member no longer does:
// its connection is alive, and vipd keeps it.)
//
// After --warmup moves (and their share of reconnects), so lazy allocation
// does not count as growth, and then every --sample-every moves, with both
// loops paused and 2 s to settle: each agent's RSS and RssAnon, threads, open
// descriptors by kind (sockets looked up in its namespace's tables), /healthz
// round trips (20 on one connection: the event loop's lag), and each etcd
// member's watch streams, watchers, open gRPC streams and client connections,
// the cluster's leases and keys under /vipd/. vipd exports no heap or event
// loop metrics, so RssAnon and /healthz stand in for them.
//
// Verdict: descriptors, sockets, threads, streams, watchers, connections,
// leases and keys must end exactly where they started; threads must not
// reach, in the second half of the samples, above the first half's highest;
// the mean RSS and RssAnon of the second half must not exceed the first
// half's by more than its standard deviation (1 MiB at least). Exits 1 when one does not hold or a reconnect did not show. Then
// counts the agents' warn and error log lines by message. Needs root.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { latency, machine, ms, recordSection } from "./lib/bench.ts";
import { Lab, type LabNode, REPO_ROOT } from "../test/lab/cluster.ts";
import { etcdLeader, etcdRange } from "../test/lab/etcd-admin.ts";
import { vipd } from "../test/lab/implementations.ts";
import { Operator } from "./lib/operator.ts";
import { sh, waitFor } from "../test/lab/sh.ts";
import { curlIn, healthzRoundTrips, metricSum, type MemberSample, type ProcessSample, sampleMember, sampleProcess } from "./lib/soak-sample.ts";

const { values: args } = parseArgs({
  options: {
    handovers: { type: "string", default: "2000" },
    reconnects: { type: "string", default: "200" },
    "sample-every": { type: "string", default: "250" },
    warmup: { type: "string", default: "200" },
    "drain-every": { type: "string", default: "100" },
    "vipd-binary": { type: "string" },
    record: { type: "boolean", default: false },
    "keep-logs": { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (args.help) {
  console.log(readFileSync(import.meta.path, "utf8").split("\n").filter((l) => l.startsWith("//")).map((l) => l.slice(3)).join("\n"));
  process.exit(0);
}
if (process.getuid?.() !== 0) {
  console.error("bench:soak creates network namespaces and must run as root");
  process.exit(2);
}
const count = (name: keyof typeof args, min: number): number => {
  const n = Number(args[name]);
  if (!Number.isInteger(n) || n < min) {
    console.error(`--${name} wants an integer of at least ${min}, got ${args[name]}`);
    process.exit(2);
  }
  return n;
};
const HANDOVERS = count("handovers", 1);
const RECONNECTS = count("reconnects", 0);
const SAMPLE_EVERY = count("sample-every", 1);
const WARMUP = count("warmup", 0);
const DRAIN_EVERY = count("drain-every", 0);
const BLACKHOLE_MS = 1500;
const SETTLE_MS = 2000;
const HEALTHZ = "http://127.0.0.1:8099/healthz";
const METRICS = "http://127.0.0.1:8099/metrics";
const PREFIX = "/vipd/";

const log = (s: string) => console.log(`${new Date().toISOString().slice(11, 19)} ${s}`);

interface AgentSample extends ProcessSample {
  healthzMs: number[];
  reconnects: number;
  handoversOut: number;
}

interface Checkpoint {
  handovers: number;
  reconnects: number;
  atS: number;
  agents: AgentSample[];
  members: MemberSample[];
  leases: number;
  keys: number;
  /** Request → kernel, ms, of the moves since the previous checkpoint. */
  moveMs: number[];
}

const lab = await Lab.start({ onStep: (s) => log(s), keepLogs: args["keep-logs"] ?? false });
const nodes = lab.nodes;
const operator = Operator.start(lab, PREFIX);
const checkpoints: Checkpoint[] = [];
const problems: string[] = [];
const logLines = new Map<string, number>();
let leader: LabNode;
let handovers = 0;
let drains = 0;
let failedMoves = 0;
let doubleHolders = 0;
let caused = 0;
let confirmed = 0;
let moveMs: number[] = [];
const t0 = performance.now();

async function agentMetrics(n: LabNode): Promise<string> {
  const text = await curlIn(n, [METRICS]);
  if (!text) throw new Error(`vipd on ${n.name} did not serve /metrics`);
  return text;
}

async function sample(): Promise<Checkpoint> {
  const agents: AgentSample[] = [];
  for (const n of nodes) {
    const pid = n.vip!.pid;
    const text = await agentMetrics(n);
    agents.push({
      ...sampleProcess(pid),
      healthzMs: await healthzRoundTrips(n, HEALTHZ, 20),
      reconnects: metricSum(text, "vipd_etcd_reconnects_total"),
      handoversOut: metricSum(text, "vipd_handovers_total", { direction: "out" }),
    });
  }
  const members = await Promise.all(nodes.map((n) => sampleMember(n, lab.etcdCluster.pid(n.name))));
  const leaseList = await curlIn(leader, ["-X", "POST", "-d", "{}", "http://127.0.0.1:2379/v3/lease/leases"]);
  const leases = (JSON.parse(leaseList || "{}") as { leases?: unknown[] }).leases?.length ?? Number.NaN;
  const keys = (await etcdRange(lab, leader.name, PREFIX)).length;
  const cp = { handovers, reconnects: confirmed, atS: (performance.now() - t0) / 1000, agents, members, leases, keys, moveMs };
  moveMs = [];
  return cp;
}

const holderNow = async (): Promise<LabNode | null> => {
  const h = await lab.holders();
  if (h.length > 1) doubleHolders++;
  return h.length === 1 ? h[0]! : null;
};

/** Waits until one node other than `from` holds the VIP in its kernel. */
const movedFrom = (from: LabNode) => waitFor(`the VIP to leave ${from.name}`, async () => {
  const h = await holderNow();
  return h && h !== from ? h : null;
}, 15_000, 5);

const endpoint = () => `http://${leader.host.ip4}:2379`;

/** One `vipd handover`, retried until it moves the VIP. */
async function handOver(): Promise<void> {
  for (;;) {
    const from = await waitFor("one holder", holderNow, 15_000, 5);
    const start = performance.now();
    const a = await operator.request({ op: "handover", endpoint: endpoint() });
    if (a.outcome === "done") {
      await movedFrom(from);
      moveMs.push(performance.now() - start);
      handovers++;
      return;
    }
    failedMoves++;
    log(`handover ${a.outcome}: ${a.err.join("; ")}`);
    await Bun.sleep(500);
  }
}

/** Drains the holder until the VIP has moved, then undrains it. */
async function drainAndUndrain(): Promise<void> {
  const from = await waitFor("one holder", holderNow, 15_000, 5);
  const d = await operator.request({ op: "drain", node: from.name, endpoint: endpoint() });
  if (d.outcome !== "done") problems.push(`drain ${from.name}: ${d.outcome}: ${d.err.join("; ")}`);
  else await movedFrom(from);
  const u = await operator.request({ op: "undrain", node: from.name, endpoint: endpoint() });
  if (u.outcome !== "done") problems.push(`undrain ${from.name}: ${u.outcome}: ${u.err.join("; ")}`);
  drains++;
}

/**
 * Black-holes the agent's etcd connections on one node for BLACKHOLE_MS and
 * waits until that agent counts a reconnect. The other nodes take turns;
 * raft, on port 2380, is untouched.
 */
async function reconnectOnce(): Promise<void> {
  // Not the node whose member the soak itself reads and moves VIPs through.
  const others = nodes.filter((n) => n !== leader);
  const victim = others[caused % others.length]!;
  const reconnects = async () => metricSum(await agentMetrics(victim), "vipd_etcd_reconnects_total");
  const before = await reconnects();
  caused++;
  const nft = (script: string) => sh(["ip", "netns", "exec", victim.host.ns, "nft", script]);
  await nft(`table inet vipd_soak_blackhole { chain out { type filter hook output priority -10; tcp dport 2379 drop; tcp sport 2379 drop; } }`);
  try {
    await Bun.sleep(BLACKHOLE_MS);
  } finally {
    await nft("delete table inet vipd_soak_blackhole");
  }
  try {
    await waitFor(`a reconnect on ${victim.name}`, async () => (await reconnects()) > before, 10_000, 50);
    confirmed++;
  } catch (e) {
    problems.push(`black hole #${caused} on ${victim.name}: ${e instanceof Error ? e.message : e}`);
  }
}

let reconnectChain: Promise<void> = Promise.resolve();
let scheduled = 0;
/** Queues the reconnects due after `done` of `total` moves, so they run beside the moves. */
function reconnectsDue(done: number, total: number, want: number): void {
  const due = Math.floor((done * want) / total);
  while (scheduled < due) {
    scheduled++;
    reconnectChain = reconnectChain.then(reconnectOnce);
  }
}

/** `n` moves (and their drains) with `want` reconnects beside them, then a checkpoint every SAMPLE_EVERY. */
async function phase(n: number, want: number, checkpoint: boolean): Promise<void> {
  scheduled = 0;
  for (let i = 1; i <= n; i++) {
    await handOver();
    if (DRAIN_EVERY > 0 && handovers % DRAIN_EVERY === 0) await drainAndUndrain();
    reconnectsDue(i, n, want);
    if (checkpoint && (i % SAMPLE_EVERY === 0 || i === n)) {
      await reconnectChain;
      await Bun.sleep(SETTLE_MS);
      const cp = await sample();
      checkpoints.push(cp);
      log(row(cp));
    } else if (i % 50 === 0) {
      log(`${handovers} hand-overs, ${drains} drains, ${confirmed}/${caused} reconnects`);
    }
  }
  await reconnectChain;
}

const mib = (kib: number) => (kib / 1024).toFixed(1);
const per = (cp: Checkpoint, f: (a: AgentSample) => number | string) => cp.agents.map(f).join(" / ");
const sum = (xs: readonly MemberSample[], f: (m: MemberSample) => number) => xs.reduce((s, m) => s + f(m), 0);
const sockets = (a: ProcessSample) => Object.entries(a.kinds).filter(([k]) => /^(tcp|udp|raw|packet|netlink|unix|socket)/.test(k)).reduce((s, [, v]) => s + v, 0);
const mean = (xs: readonly number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
const median = (xs: number[]) => (xs.length ? latency(xs).median : Number.NaN);

function row(cp: Checkpoint): string {
  const moves = cp.moveMs.length ? latency(cp.moveMs) : null;
  return [
    cp.handovers, cp.reconnects, cp.atS.toFixed(0),
    per(cp, (a) => mib(a.rssKiB)), per(cp, (a) => mib(a.anonKiB)), per(cp, (a) => a.fds), per(cp, sockets), per(cp, (a) => a.threads),
    per(cp, (a) => `${ms(median(a.healthzMs))} (${ms(Math.max(...a.healthzMs))})`),
    `${sum(cp.members, (m) => m.watchStreams)} / ${sum(cp.members, (m) => m.watchers)}`,
    sum(cp.members, (m) => m.openStreams), sum(cp.members, (m) => m.clientConns), cp.leases, cp.keys,
    moves ? `${ms(moves.median)} / ${ms(moves.p99)}` : "–",
  ].join(" | ");
}

/** Least-squares slope of f against the hand-over count, as MiB per 1,000 hand-overs. */
function trend(cps: readonly Checkpoint[], f: (c: Checkpoint) => number): string {
  if (cps.length < 2) return "–";
  const xs = cps.map((c) => c.handovers);
  const ys = cps.map(f);
  const mx = xs.reduce((s, x) => s + x, 0) / xs.length;
  const my = ys.reduce((s, y) => s + y, 0) / ys.length;
  const sxy = xs.reduce((s, x, i) => s + (x - mx) * (ys[i]! - my), 0);
  const sxx = xs.reduce((s, x) => s + (x - mx) ** 2, 0);
  const slope = sxx ? (sxy / sxx) * 1000 : 0;
  return `${slope >= 0 ? "+" : ""}${mib(slope)} MiB per 1,000 hand-overs`;
}

/** Descriptor kinds that differ between two samples: "tcp→2379 1→2". */
function kindDiff(a: ProcessSample, b: ProcessSample): string[] {
  const keys = new Set([...Object.keys(a.kinds), ...Object.keys(b.kinds)]);
  return [...keys].filter((k) => (a.kinds[k] ?? 0) !== (b.kinds[k] ?? 0)).map((k) => `${k} ${a.kinds[k] ?? 0}→${b.kinds[k] ?? 0}`);
}

/** Growth from the first checkpoint to the last, and whether each figure held. */
function verdict(): { lines: string[]; ok: boolean } {
  const first = checkpoints[0]!;
  const last = checkpoints.at(-1)!;
  const lines: string[] = [];
  let ok = true;
  // Fewer at the end is no better: a watch or a connection the agent lost.
  const flat = (what: string, a: number, b: number) => {
    ok &&= a === b;
    lines.push(`${a === b ? "flat" : b < a ? "LESS" : "GREW"}  ${what}: ${a} → ${b}`);
  };
  nodes.forEach((n, i) => {
    const a = first.agents[i]!;
    const b = last.agents[i]!;
    flat(`${n.name} open descriptors`, a.fds, b.fds);
    lines.push(`info  ${n.name} descriptors at the start: ${Object.entries(a.kinds).map(([k, v]) => `${k} ${v}`).join(", ")}`);
    const diff = kindDiff(a, b);
    if (diff.length) lines.push(`      ${n.name} by kind: ${diff.join(", ")}`);
    flat(`${n.name} sockets`, sockets(a), sockets(b));
    // Threads come and go with Bun's pools: the second half of the samples
    // must not reach above the first half's highest. Memory rises and falls
    // by several MiB with the garbage collector (the first full run put single
    // samples 10 MiB above their neighbours), so single peaks say nothing: the
    // second half's mean must not exceed the first half's by more than the
    // first half's standard deviation (1 MiB at least). A leak lifts the mean.
    const half = Math.max(1, Math.ceil(checkpoints.length / 2));
    const series = (f: (s: AgentSample) => number) =>
      [checkpoints.slice(0, half).map((c) => f(c.agents[i]!)), checkpoints.slice(half).map((c) => f(c.agents[i]!))] as const;
    const [early, late] = series((s) => s.threads);
    const held = !(Math.max(...late) > Math.max(...early));
    ok &&= held;
    lines.push(`${held ? "ok  " : "GREW"}  ${n.name} threads: ${a.threads} → ${b.threads}; first half ${Math.min(...early)}–${Math.max(...early)}, second half peak ${Math.max(...late)}`);
    for (const [what, f] of [["RSS", (s: AgentSample) => s.rssKiB], ["RssAnon", (s: AgentSample) => s.anonKiB]] as const) {
      const [x, y] = series(f);
      const mx = mean(x);
      const sd = Math.sqrt(mean(x.map((v) => (v - mx) ** 2)));
      const growth = mean(y) - mx;
      const held = !(growth > Math.max(1024, sd));
      ok &&= held;
      lines.push(`${held ? "ok  " : "GREW"}  ${n.name} ${what}: ${mib(f(a))} → ${mib(f(b))} MiB; mean ${mib(mx)} (sd ${mib(sd)}) in the first half, ${mib(mean(y))} in the second (${growth >= 0 ? "+" : ""}${mib(growth)})`);
    }
    const rest = checkpoints.slice(half);
    lines.push(`info  ${n.name} RSS trend over the second half: ${trend(rest, (c) => c.agents[i]!.rssKiB)}, RssAnon ${trend(rest, (c) => c.agents[i]!.anonKiB)}`);
    const lag = [median(a.healthzMs), median(b.healthzMs)];
    lines.push(`info  ${n.name} /healthz median: ${ms(lag[0]!)} → ${ms(lag[1]!)} ms`);
  });
  flat("etcd watch streams (all members)", sum(first.members, (m) => m.watchStreams), sum(last.members, (m) => m.watchStreams));
  flat("etcd watchers (all members)", sum(first.members, (m) => m.watchers), sum(last.members, (m) => m.watchers));
  flat("etcd open gRPC streams (all members)", sum(first.members, (m) => m.openStreams), sum(last.members, (m) => m.openStreams));
  flat("etcd client connections (all members)", sum(first.members, (m) => m.clientConns), sum(last.members, (m) => m.clientConns));
  flat("etcd leases", first.leases, last.leases);
  flat(`keys under ${PREFIX}`, first.keys, last.keys);
  return { lines, ok };
}

/** warn and error lines of every agent's log, by message (digits folded, so alike lines count as one). */
function countLogLines(): void {
  for (const n of nodes) {
    let text = "";
    try {
      text = readFileSync(join(n.dir, "vipd.log"), "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n")) {
      if (!line.trim()) continue;
      let rec: { level?: string; msg?: string; reason?: string; error?: string };
      try {
        rec = JSON.parse(line);
      } catch {
        rec = { level: "unparsed", msg: line.slice(0, 100) };
      }
      if (rec.level === "info" || rec.level === "debug") continue;
      const key = `${rec.level}: ${rec.msg}${rec.reason ? ` (${rec.reason})` : ""}${rec.error ? ` (${rec.error})` : ""}`.replace(/\d+/g, "N");
      logLines.set(key, (logLines.get(key) ?? 0) + 1);
    }
  }
}

let reconnectsSeen = 0;
let handoversCounted = 0;
let startedAt = 0;
try {
  await lab.startVipEverywhere(vipd(args["vipd-binary"] ? { binary: args["vipd-binary"] } : {}));
  await waitFor("one holder", holderNow, 30_000);
  leader = lab.node(await etcdLeader(lab));
  const pids = nodes.map((n) => `${n.name} ${n.vip!.pid}`).join(", ");
  log(`vipd runs (${pids}); warm-up: ${WARMUP} hand-overs, ${Math.round((WARMUP * RECONNECTS) / HANDOVERS)} reconnects`);
  await phase(WARMUP, Math.round((WARMUP * RECONNECTS) / HANDOVERS), false);
  await Bun.sleep(SETTLE_MS);
  const base = { handovers, drains, caused, confirmed };
  handovers = drains = caused = confirmed = 0;
  const first = await sample();
  checkpoints.push(first);
  startedAt = performance.now();
  log(`soak: ${HANDOVERS} hand-overs, ${RECONNECTS} reconnects; after warm-up (${base.handovers} hand-overs, ${base.drains} drains, ${base.confirmed}/${base.caused} reconnects):`);
  log(row(first));
  await phase(HANDOVERS, RECONNECTS, true);
  const last = checkpoints.at(-1)!;
  reconnectsSeen = last.agents.reduce((s, a) => s + a.reconnects, 0) - first.agents.reduce((s, a) => s + a.reconnects, 0);
  handoversCounted = last.agents.reduce((s, a) => s + a.handoversOut, 0) - first.agents.reduce((s, a) => s + a.handoversOut, 0);
  countLogLines();
} finally {
  await operator.stop();
  await lab.destroy();
  if (args["keep-logs"]) log(`logs kept in ${lab.dir}`);
}

const minutes = (performance.now() - startedAt) / 60_000;
const { lines, ok } = verdict();
if (confirmed < caused) problems.push(`${caused - confirmed} of ${caused} etcd freezes showed no reconnect`);
if (doubleHolders) problems.push(`two nodes held the VIP at once in ${doubleHolders} kernel checks`);
const allOk = ok && problems.length === 0;
const cmd = `npm run bench:soak${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`;
const text = [
  `Command: \`${cmd}\` · ${new Date().toISOString().slice(0, 10)} · ${await machine()} · vipd ${args["vipd-binary"] ? "binary" : "from source"}`,
  "",
  `After a warm-up of ${WARMUP} hand-overs, in ${minutes.toFixed(1)} min: ${handovers} hand-overs (\`vipd handover\`'s code; ` +
    `the agents' vipd_handovers_total{direction="out"} rose by ${handoversCounted}), ${drains} drains and undrains, ${failedMoves} hand-over request(s) not done and retried; ` +
    `${caused} black holes of ${BLACKHOLE_MS / 1000} s between an agent and its etcd member, each followed by a reconnect in ${confirmed} cases ` +
    `(vipd_etcd_reconnects_total rose by ${reconnectsSeen} over the three agents); two holders at once in ${doubleHolders} kernel checks.`,
  "",
  "Per agent n1 / n2 / n3; etcd figures summed over the three members; each row 2 s after both loops paused.",
  "",
  "| hand-overs | reconnects | s | RSS MiB | RssAnon MiB | fds | sockets | threads | /healthz ms median (max of 20) | etcd watch streams / watchers | open gRPC streams | etcd client conns | leases | keys | move ms median / p99 |",
  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  ...checkpoints.map((cp) => `| ${row(cp)} |`),
  "",
  `Verdict: ${allOk ? "no growth beyond noise, nothing leaked" : "FAILED"}.`,
  "",
  "```",
  ...lines,
  ...problems.map((p) => `PROBLEM  ${p}`),
  "```",
  "",
  "Warn and error lines in the agents' logs (whole run, warm-up included; digits as N):",
  "",
  "```",
  ...[...logLines].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${String(v).padStart(6)}  ${k}`),
  "```",
].join("\n");
console.log(`\n${text}\n`);
if (args.record) {
  await recordSection(join(REPO_ROOT, "BENCHMARKS.md"), "soak", `## Long runs (soak)\n\n${text}`);
  log("recorded in BENCHMARKS.md");
}
process.exit(allOk ? 0 : 1);
