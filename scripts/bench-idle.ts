// What holding one VIP costs a node that has nothing else to do: wakeups
// (context switches of every thread), CPU and memory of the holder, for vipd
// and keepalived in the same lab and the same run.
//
//   npm run bench:idle [-- --seconds 60 --vipd-binary dist/vipd --record]
//
// The lab is the failover benchmark's: three nodes, etcd on each, a stand-in
// API server. Each implementation runs on every node; once one node holds the
// VIP and 5 s have passed, its process tree (keepalived forks a VRRP child
// and its health-check scripts) is read from /proc at the start and the end
// of the window: voluntary and involuntary context switches of every thread,
// user and system CPU time, and RSS. Per thread name for vipd, so what is
// left shows where it comes from. Needs root; nothing leaves the lab.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { labBenchArgs, machine, recordSection } from "./lib/bench.ts";
import { Lab, REPO_ROOT } from "../test/lab/cluster.ts";
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

/** The pid and its descendants, from /proc/<pid>/task/<tid>/children. */
function tree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    try {
      for (const t of readdirSync(`/proc/${out[i]}/task`)) {
        const kids = readFileSync(`/proc/${out[i]}/task/${t}/children`, "utf8").trim();
        if (kids) out.push(...kids.split(/\s+/).map(Number));
      }
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function snapshot(root: number): Snapshot {
  const switches = new Map<string, { name: string; n: number }>();
  let cpuTicks = 0;
  let rssKiB = 0;
  for (const pid of tree(root)) {
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
  wakeupsPerS: number;
  byThread: [string, number][];
  cpuPercent: number;
  rssMiB: number;
  processes: number;
}

const log = (s: string) => console.log(`${new Date().toISOString().slice(11, 19)} ${s}`);
const impls: VipImplementation[] = [vipd(args.vipdBinary ? { binary: args.vipdBinary } : {}), keepalived()];
const rows: Row[] = [];
const lab = await Lab.start({ onStep: (s) => log(s) });
try {
  for (const impl of impls) {
    await lab.startVipEverywhere(impl);
    const holder = await waitFor(`${impl.id}: one holder`, async () => {
      const h = await lab.holders();
      return h.length === 1 ? h[0]! : null;
    }, 30_000);
    await Bun.sleep(5000);
    const pid = holder.vip!.pid;
    log(`${impl.id}: ${holder.name} holds the VIP; measuring pid ${pid} and its children for ${seconds} s`);
    const a = snapshot(pid);
    const t0 = performance.now();
    await Bun.sleep(seconds * 1000);
    const b = snapshot(pid);
    const s = (performance.now() - t0) / 1000;
    // Per thread alive at the end (one that started meanwhile counts from 0;
    // one that ended meanwhile is lost: the scripts keepalived forks).
    const perName = new Map<string, number>();
    for (const [id, { name, n }] of b.switches) perName.set(name, (perName.get(name) ?? 0) + (n - (a.switches.get(id)?.n ?? 0)) / s);
    const byThread = [...perName].sort((x, y) => y[1] - x[1]);
    const row: Row = {
      impl: impl.id,
      wakeupsPerS: byThread.reduce((sum, [, n]) => sum + n, 0),
      byThread,
      cpuPercent: ((b.cpuTicks - a.cpuTicks) / TICK / s) * 100,
      rssMiB: b.rssKiB / 1024,
      processes: tree(pid).length,
    };
    rows.push(row);
    log(`${impl.id}: ${row.wakeupsPerS.toFixed(1)} wakeups/s (${byThread.map(([n, w]) => `${n} ${w.toFixed(1)}`).join(", ")}), CPU ${row.cpuPercent.toFixed(2)} %, RSS ${row.rssMiB.toFixed(0)} MiB in ${row.processes} process(es)`);
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
  `The node holding one VIP, over ${seconds} s, 5 s after it took the VIP, both as the failover benchmark runs them: vipd with the kube-apiserver gate (a probe a second), keepalived with the kubeadm guide's health-check script (curl every 3 s). Wakeups = context switches per second of every thread alive at the end of the window; processes that ended within it (keepalived's check scripts) count in CPU, not in wakeups.`,
  "",
  "| implementation | wakeups/s | of which, by thread | CPU (one core) | RSS |",
  "|---|---|---|---|---|",
  ...rows.map((r) => `| ${r.impl} | ${r.wakeupsPerS.toFixed(1)} | ${r.byThread.filter(([, w]) => w >= 0.5).map(([n, w]) => `${n} ${w.toFixed(1)}`).join(", ")} | ${r.cpuPercent.toFixed(2)} % | ${r.rssMiB.toFixed(0)} MiB${r.processes > 1 ? ` (${r.processes} processes)` : ""} |`),
].join("\n");
console.log(`\n${table}\n`);
if (args.record) {
  await recordSection(join(REPO_ROOT, "BENCHMARKS.md"), "idle", `## Idle cost\n\n${table}`);
  log("recorded in BENCHMARKS.md");
}
process.exit(0);
