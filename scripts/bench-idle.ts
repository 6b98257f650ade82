// What an idle cluster costs its nodes: wakeups (context switches of every
// thread), CPU and memory of the node holding one VIP and of each standby,
// and what the agents cost etcd, for vipd and keepalived in the same lab and
// the same run.
//
//   npm run bench:idle [-- --seconds 60 --vipd-binary dist/vipd --record]
//
// The lab is the failover benchmark's: three nodes, etcd on each, a stand-in
// API server. Each implementation runs on every node; once one node holds the
// VIP and 5 s have passed, every node's process tree (keepalived forks a VRRP
// child and its health-check scripts) is read from /proc at the start and the
// end of the window: voluntary and involuntary context switches of every
// thread, user and system CPU time, and RSS. Per thread name for vipd, so
// what is left shows where it comes from. etcd: the proposals the cluster
// committed over the window (the holder's member's
// etcd_server_proposals_committed_total; every write vipd sends is one) and
// each member's CPU. Needs root; nothing leaves the lab.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { labBenchArgs, machine, recordSection } from "./lib/bench.ts";
import { Lab, type LabNode, processTree, REPO_ROOT } from "../test/lab/cluster.ts";
import { parsePrometheusText, sampleValue } from "../src/health/prom-text.ts";
import { keepalived, vipd, type VipImplementation } from "../test/lab/implementations.ts";
import { waitFor } from "../test/lab/sh.ts";

const args = labBenchArgs({ script: import.meta.path, name: "bench:idle", defaultSeconds: 60, minSeconds: 5 });
const { seconds } = args;
const TICK = 100; // USER_HZ: /proc's CPU times are in these

interface Snapshot {
  /** Context switches per thread ("pid/tid"), with the thread's name. */
  switches: Map<string, { name: string; n: number }>;
  cpuTicks: number;
  rssKiB: number;
}

function snapshot(root: number): Snapshot {
  const switches = new Map<string, { name: string; n: number }>();
  let cpuTicks = 0;
  let rssKiB = 0;
  for (const pid of processTree(root)) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      // utime, stime, cutime, cstime: fields 14–17, here 11–14. Children
      // that exited (health-check scripts) count through cutime/cstime.
      cpuTicks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
      rssKiB += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
      for (const t of readdirSync(`/proc/${pid}/task`)) {
        const st = readFileSync(`/proc/${pid}/task/${t}/status`, "utf8");
        const name = /^Name:\s+(.*)$/m.exec(st)?.[1] ?? "?";
        const n = Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(st)?.[1] ?? 0) + Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(st)?.[1] ?? 0);
        switches.set(`${pid}/${t}`, { name, n });
      }
    } catch {
      // gone meanwhile
    }
  }
  return { switches, cpuTicks, rssKiB };
}

interface Row {
  impl: string;
  /** "holder" or "standby", with the node's name. */
  role: string;
  wakeupsPerS: number;
  byThread: [string, number][];
  cpuPercent: number;
  rssMiB: number;
  processes: number;
}

interface EtcdRow {
  impl: string;
  proposalsPerS: number;
  /** CPU of each member, holder's first. */
  cpu: { node: string; percent: number }[];
}

/** What one process tree did between two snapshots over s seconds. */
function usage(a: Snapshot, b: Snapshot, s: number): Omit<Row, "impl" | "role" | "processes"> {
  // Per thread alive at the end (one that started meanwhile counts from 0;
  // one that ended meanwhile is lost: the scripts keepalived forks).
  const perName = new Map<string, number>();
  for (const [id, { name, n }] of b.switches) perName.set(name, (perName.get(name) ?? 0) + (n - (a.switches.get(id)?.n ?? 0)) / s);
  const byThread = [...perName].sort((x, y) => y[1] - x[1]);
  return {
    wakeupsPerS: byThread.reduce((sum, [, n]) => sum + n, 0),
    byThread,
    cpuPercent: ((b.cpuTicks - a.cpuTicks) / TICK / s) * 100,
    rssMiB: b.rssKiB / 1024,
  };
}

const log = (s: string) => console.log(`${new Date().toISOString().slice(11, 19)} ${s}`);
const impls: VipImplementation[] = [vipd(args.vipdBinary ? { binary: args.vipdBinary } : {}), keepalived()];
const rows: Row[] = [];
const etcdRows: EtcdRow[] = [];
const lab = await Lab.start({ onStep: (s) => log(s) });
/** Proposals the cluster has committed, as the node's member counts them. */
async function committed(node: LabNode): Promise<number> {
  const text = await lab.seg.exec(node.host, ["curl", "-sf", "--max-time", "5", "http://127.0.0.1:2379/metrics"]);
  const n = sampleValue(parsePrometheusText(text), "etcd_server_proposals_committed_total");
  if (n === undefined) throw new Error(`etcd on ${node.name}: no etcd_server_proposals_committed_total in /metrics`);
  return n;
}
try {
  for (const impl of impls) {
    await lab.startVipEverywhere(impl);
    const holder = await waitFor(`${impl.id}: one holder`, async () => {
      const h = await lab.holders();
      return h.length === 1 ? h[0]! : null;
    }, 30_000);
    await Bun.sleep(5000);
    // The holder first, then the standbys in the lab's order.
    const nodes = [holder, ...lab.nodes.filter((n) => n !== holder)];
    const pids = nodes.map((n) => n.vip!.pid);
    const etcdPids = nodes.map((n) => lab.etcdCluster.pid(n.name));
    log(`${impl.id}: ${holder.name} holds the VIP; measuring ${nodes.map((n, i) => `${n.name} (pid ${pids[i]})`).join(", ")} and their children for ${seconds} s`);
    const c0 = await committed(holder);
    const a = pids.map(snapshot);
    const e0 = etcdPids.map(snapshot);
    const t0 = performance.now();
    await Bun.sleep(seconds * 1000);
    const b = pids.map(snapshot);
    const e1 = etcdPids.map(snapshot);
    const s = (performance.now() - t0) / 1000;
    const c1 = await committed(holder);
    nodes.forEach((n, i) => {
      const row: Row = { impl: impl.id, role: `${i === 0 ? "holder" : "standby"} (${n.name})`, ...usage(a[i]!, b[i]!, s), processes: processTree(pids[i]!).length };
      rows.push(row);
      log(`${impl.id} ${row.role}: ${row.wakeupsPerS.toFixed(1)} wakeups/s (${row.byThread.map(([t, w]) => `${t} ${w.toFixed(1)}`).join(", ")}), CPU ${row.cpuPercent.toFixed(2)} %, RSS ${row.rssMiB.toFixed(0)} MiB in ${row.processes} process(es)`);
    });
    const etcdRow: EtcdRow = {
      impl: impl.id,
      proposalsPerS: (c1 - c0) / s,
      cpu: nodes.map((n, i) => ({ node: n.name, percent: usage(e0[i]!, e1[i]!, s).cpuPercent })),
    };
    etcdRows.push(etcdRow);
    log(`${impl.id}: etcd committed ${etcdRow.proposalsPerS.toFixed(2)} proposals/s; members' CPU ${etcdRow.cpu.map((c) => `${c.node} ${c.percent.toFixed(2)} %`).join(", ")}`);
    await lab.stopVipEverywhere();
    for (const n of lab.nodes) {
      await lab.clearVip(n);
      await lab.clearFence(n);
    }
  }
} finally {
  await lab.destroy();
}

const cmd = `npm run bench:idle${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`;
const table = [
  `Command: \`${cmd}\` · ${new Date().toISOString().slice(0, 10)} · ${await machine()} · vipd ${args.vipdBinary ? "binary" : "from source"}`,
  "",
  `Three nodes, one VIP, over ${seconds} s, 5 s after a node took the VIP, as the failover benchmark runs them: vipd with the kube-apiserver gate (a probe a second), keepalived with the kubeadm guide's health-check script (curl every 3 s). Wakeups = context switches per second of every thread alive at the end of the window; processes that ended within it (keepalived's check scripts) count in CPU, not in wakeups.`,
  "",
  "| implementation | node | wakeups/s | of which, by thread | CPU (one core) | RSS |",
  "|---|---|---|---|---|---|",
  ...rows.map((r) => `| ${r.impl} | ${r.role} | ${r.wakeupsPerS.toFixed(1)} | ${r.byThread.filter(([, w]) => w >= 0.5).map(([n, w]) => `${n} ${w.toFixed(1)}`).join(", ")} | ${r.cpuPercent.toFixed(2)} % | ${r.rssMiB.toFixed(0)} MiB${r.processes > 1 ? ` (${r.processes} processes)` : ""} |`),
  "",
  "etcd meanwhile (three members; a proposal is one write the cluster committed, whoever sent it; keepalived does not use etcd, so its row is the members' own floor):",
  "",
  "| implementation | proposals committed/s | CPU of each member (holder's first) |",
  "|---|---|---|",
  ...etcdRows.map((r) => `| ${r.impl} | ${r.proposalsPerS.toFixed(2)} | ${r.cpu.map((c) => `${c.node} ${c.percent.toFixed(2)} %`).join(", ")} |`),
].join("\n");
console.log(`\n${table}\n`);
if (args.record) {
  await recordSection(join(REPO_ROOT, "BENCHMARKS.md"), "idle", `## Idle cost\n\n${table}`);
  log("recorded in BENCHMARKS.md");
}
process.exit(0);
