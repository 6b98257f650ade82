// Hostile local clients on vipd's health port: does /healthz still answer
// promptly, and does the agent keep its heartbeats (and so its fence) while
// they go on?
//
//   npm run bench:http [-- --seconds 15 --vipd-binary dist/vipd --record]
//
// One lab node (its own namespace and etcd member) runs vipd holding one VIP.
// Each phase runs one attack from scripts/http-load.ts for SECONDS, with a
// separate prober timing GET /healthz on a new connection every 20 ms:
// - baseline: no attack;
// - slowloris: 1000 connections that send a request line and then one header
//   line a second, never finishing, reopened when vipd closes them;
// - connections: 5000 connections that say nothing, reopened likewise;
// - big-headers: 8 clients sending requests with a 1 MiB header back to back;
// - methods: 32 clients sending POST, PUT, DELETE, PATCH and OPTIONS (half
//   with a 4 KiB body) back to back;
// - unknown-paths: 32 clients requesting paths vipd does not serve;
// - metrics: a /metrics scrape every 10 ms.
// Per phase it records what the attack got back, the prober's latencies and
// failures, heartbeats that failed and ownership changes (from vipd's
// /metrics, read before and after), and vipd's peak open descriptors and
// RSS (/proc, sampled every 200 ms). Needs root; nothing leaves the lab.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { labBenchArgs, machine, recordSection } from "./lib/bench.ts";
import { REPO_ROOT } from "../test/lab/cluster.ts";
import { parsePrometheusText, sampleValue } from "../src/health/prom-text.ts";
import { sh, waitFor } from "../test/lab/sh.ts";
import { SmallLab } from "../test/lab/small-lab.ts";
import { quantile } from "../test/lab/stats.ts";

const args = labBenchArgs({ script: import.meta.path, name: "bench:http", defaultSeconds: 15, minSeconds: 2 });
const { seconds } = args;

const VIP = "192.0.2.190";
const PORT = 18190;
const URL_ = `http://127.0.0.1:${PORT}`;
const PHASES = ["baseline", "slowloris", "connections", "big-headers", "methods", "unknown-paths", "metrics"] as const;
type Phase = (typeof PHASES)[number];

interface Row {
  phase: Phase;
  attack: { requests: number; statuses: Record<string, number>; connections: number; closedByServer: number } | null;
  probes: number;
  failures: number;
  p50: number | null;
  p99: number | null;
  max: number | null;
  heartbeatsFailed: number;
  transitions: number;
  held: boolean;
  peakFds: number;
  peakRssMiB: number;
}

const log = (s: string) => console.log(`${new Date().toISOString().slice(11, 19)} ${s}`);

const lab = await SmallLab.start(["n1"]);
const rows: Row[] = [];
try {
  const n1 = lab.host("n1");
  const file = lab.vipConfig("http.yaml", VIP);
  const run = ["run", "--config", file, "--node-name", "n1", "--etcd-endpoints", "http://127.0.0.1:2379", "--health-listen", `127.0.0.1:${PORT}`, "--log-level", "warn"];
  const vipd = args.vipdBinary
    ? lab.spawn(n1, [args.vipdBinary, ...run])
    : lab.spawn(n1, [process.execPath, join(REPO_ROOT, "src", "main.ts"), ...run]);
  await waitFor("vipd holding the VIP", () => lab.seg.has(n1, VIP), 20_000);
  // `ip netns exec` execs the program: this is vipd's own PID.
  const pid = vipd.pid;

  const metrics = async () => parsePrometheusText(await sh(["ip", "netns", "exec", n1.ns, "curl", "-sf", "--max-time", "2", `${URL_}/metrics`]));
  const counters = async () => {
    const m = await metrics();
    const transitions = (m.get("vipd_ownership_transitions_total")?.samples ?? []).reduce((s, x) => s + x.value, 0);
    return { failed: sampleValue(m, "vipd_heartbeats_total", { result: "failed" }) ?? 0, transitions, held: sampleValue(m, "vipd_vip_held", { vip: VIP, link: "eth0" }) === 1 };
  };
  const load = (role: string, kind?: string) =>
    lab.spawn(n1, [process.execPath, join(REPO_ROOT, "scripts", "http-load.ts"), role, URL_, String(seconds), ...(kind ? [kind] : [])]);

  for (const phase of PHASES) {
    const before = await counters();
    let peakFds = 0;
    let peakRss = 0;
    const sampler = setInterval(() => {
      try {
        peakFds = Math.max(peakFds, readdirSync(`/proc/${pid}/fd`).length);
        const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
        if (rss) peakRss = Math.max(peakRss, Number(rss[1]) / 1024);
      } catch {
        // vipd gone: the row says so through its counters
      }
    }, 200);
    const prober = load("probe");
    const attacker = phase === "baseline" ? null : load("attack", phase);
    const [probeOut, attackOut] = await Promise.all([new Response(prober.stdout).text(), attacker ? new Response(attacker.stdout).text() : Promise.resolve("")]);
    clearInterval(sampler);
    const probe = JSON.parse(probeOut) as { latencies: number[]; failures: number };
    // Let connections the attack left settle before reading the counters.
    await Bun.sleep(500);
    const after = await counters();
    const sorted = [...probe.latencies].sort((a, b) => a - b);
    const row: Row = {
      phase,
      attack: attackOut ? JSON.parse(attackOut) : null,
      probes: sorted.length + probe.failures,
      failures: probe.failures,
      p50: quantile(sorted, 0.5),
      p99: quantile(sorted, 0.99),
      max: sorted.at(-1) ?? null,
      heartbeatsFailed: after.failed - before.failed,
      transitions: after.transitions - before.transitions,
      held: after.held,
      peakFds,
      peakRssMiB: peakRss,
    };
    rows.push(row);
    log(`${phase}: /healthz p50 ${f(row.p50)} p99 ${f(row.p99)} max ${f(row.max)} ms, ${row.failures}/${row.probes} failed; attack ${describe(row)}; heartbeats failed ${row.heartbeatsFailed}, ownership changes ${row.transitions}, held ${row.held}; peak fds ${peakFds}, RSS ${peakRss.toFixed(0)} MiB`);
  }
} finally {
  await lab.close();
}

function f(x: number | null): string {
  return x === null ? "—" : x >= 10 ? x.toFixed(0) : x.toFixed(1);
}

function describe(r: Row): string {
  if (!r.attack) return "none";
  const statuses = Object.entries(r.attack.statuses).sort((a, b) => b[1] - a[1]).map(([s, n]) => `${n} × ${s}`).join(", ");
  const conns = r.attack.connections ? `${r.attack.connections} connections held, ${r.attack.closedByServer} closed by vipd` : "";
  return [statuses && `${r.attack.requests} requests (${statuses})`, conns].filter(Boolean).join("; ");
}

const table = [
  `Command: \`npm run bench:http${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}\` · ${new Date().toISOString().slice(0, 10)} · ${await machine()} · vipd ${args.vipdBinary ? "binary" : "from source"}`,
  "",
  `Each phase lasts ${seconds} s. /healthz is probed on a new connection every 20 ms from a separate process (1 s timeout = a failure).`,
  "",
  "| attack | what the attacker got | /healthz p50 / p99 / max | probe failures | heartbeats failed | ownership changes | VIP held after | vipd peak fds / RSS |",
  "|---|---|---|---|---|---|---|---|",
  ...rows.map((r) => `| ${r.phase} | ${describe(r)} | ${f(r.p50)} / ${f(r.p99)} / ${f(r.max)} ms | ${r.failures} of ${r.probes} | ${r.heartbeatsFailed} | ${r.transitions} | ${r.held ? "yes" : "**no**"} | ${r.peakFds} / ${r.peakRssMiB.toFixed(0)} MiB |`),
].join("\n");

console.log(`\n${table}\n`);
if (args.record) {
  await recordSection(join(REPO_ROOT, "BENCHMARKS.md"), "http", `## Hostile clients on the health port\n\n${table}`);
  log("recorded in BENCHMARKS.md");
}
const bad = rows.filter((r) => r.heartbeatsFailed > 0 || r.transitions > 0 || !r.held || (r.max ?? Infinity) > 100 || r.failures > 0);
console.log(bad.length ? `MISS: ${bad.map((r) => r.phase).join(", ")} (a heartbeat failed, the VIP moved, or /healthz took over 100 ms or failed)` : "PASS: /healthz within 100 ms and no heartbeat missed under every attack");
process.exit(0);
