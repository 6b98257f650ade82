// What a standby of many VIPs costs while nothing happens, for one or more
// source trees of vipd in the same lab and the same run (before and after a
// change): 3 nodes with an etcd member each, N VIPs (IPv4) on eth0; vipd on
// n1 until it holds every VIP, then on n2 and n3 until each is queued for
// every VIP; after a warm-up, each standby's process CPU (utime + stime of
// its tree, from /proc) over the window. Then the holder is killed
// (SIGKILL), and the time until n2 and n3 have every VIP on their links
// between them is taken; then the standbys are stopped, the event-loop
// stalls each agent logged are counted, and the next tree runs.
//
//   npm run bench:standby -- [--vips 100] [--seconds 15] [--rounds 1] TREE...
//
// With PROFILE_DIR set, the standbys run under Bun's CPU profiler
// (`--cpu-prof`, with the runtime settings preset so that vipd does not
// re-execute itself) and leave TREE-name-node.cpuprofile there.
//
// TREE: a checkout of vipd (its src/main.ts runs from source). Needs root;
// nothing leaves the lab.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { QUIET_RUNTIME } from "../src/runtime-env.ts";
import { processTree } from "../test/lab/cluster.ts";
import { etcdRange, type EtcdSite } from "../test/lab/etcd-admin.ts";
import { sleep } from "../test/lab/sh.ts";
import { SmallLab } from "../test/lab/small-lab.ts";

const argv = process.argv.slice(2);
const opt = (name: string, dflt: number) => {
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = Number(argv[i + 1]);
  argv.splice(i, 2);
  return v;
};
const vipCount = opt("vips", 100);
const seconds = opt("seconds", 15);
const rounds = opt("rounds", 1);
const trees = argv;
if (trees.length === 0) throw new Error("usage: npm run bench:standby -- [--vips N] [--seconds S] [--rounds R] TREE...");
const NODES = ["n1", "n2", "n3"] as const;
const VIPS = Array.from({ length: vipCount }, (_, i) => `198.51.100.${i + 1}`);
const TICK = 100; // USER_HZ

function cpuTicks(root: number): number {
  let n = 0;
  for (const pid of processTree(root)) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      n += Number(f[11]) + Number(f[12]);
    } catch {
      // gone meanwhile
    }
  }
  return n;
}

async function waitUntil(what: string, ok: () => Promise<boolean>, ms: number, everyMs = 250): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await ok().catch(() => false)) return;
    await sleep(everyMs);
  }
  throw new Error(`timed out waiting for ${what}`);
}

const lab = await SmallLab.start(NODES);
const site: EtcdSite = { nodes: NODES.map((name) => ({ name, host: lab.host(name) })) };
const config = lab.write("vips.yaml", VIPS.map((v) => `apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: ${v}\nlink: eth0\n`).join("---\n"));
const running: Subprocess<"ignore", "ignore", "pipe">[] = [];
const rows: string[] = [];

const profileDir = process.env.PROFILE_DIR;

function start(treeDir: string, node: string, port: number): Subprocess<"ignore", "ignore", "pipe"> {
  const profile = profileDir && node !== "n1"
    ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${treeDir.replaceAll("/", "_")}-${node}.cpuprofile`]
    : [];
  const p = Bun.spawn(
    ["ip", "netns", "exec", lab.host(node).ns, process.execPath, ...profile, join(treeDir, "src", "main.ts"), "run", "--config", config, "--node-name", node,
      "--etcd-endpoints", "http://127.0.0.1:2379", "--health-listen", `127.0.0.1:${port}`, "--log-format", "json"],
    { stdin: "ignore", stdout: "ignore", stderr: "pipe", ...(profile.length ? { env: { ...process.env, ...QUIET_RUNTIME } } : {}) },
  ) as Subprocess<"ignore", "ignore", "pipe">;
  running.push(p);
  return p;
}

async function held(node: string): Promise<number> {
  const addrs = await lab.seg.addresses(lab.host(node));
  return addrs.filter((a) => VIPS.includes(a.local)).length;
}

async function queued(node: string): Promise<number> {
  return (await etcdRange(site, "n1", "/vipd/elections/")).filter((kv) => kv.key.endsWith(`/${node}`)).length;
}

try {
  for (let round = 0; round < rounds; round++) {
    for (const dir of trees) {
      // A holder killed in the last run left its VIPs on its link until their lifetimes end: not this run's holding.
      await waitUntil("n1's link clear of the last run's VIPs", async () => (await held("n1")) === 0, 30_000);
      const holder = start(dir, "n1", 18201);
      await waitUntil("n1 to hold every VIP", async () => (await held("n1")) === VIPS.length, 60_000);
      const standbys = [start(dir, "n2", 18202), start(dir, "n3", 18203)];
      await waitUntil("n2 and n3 queued for every VIP", async () => (await queued("n2")) === VIPS.length && (await queued("n3")) === VIPS.length, 60_000);
      await sleep(5000);
      const before = standbys.map((p) => cpuTicks(p.pid));
      const hBefore = cpuTicks(holder.pid);
      await sleep(seconds * 1000);
      const cpu = standbys.map((p, i) => ((cpuTicks(p.pid) - before[i]!) / TICK / seconds) * 100);
      const hCpu = ((cpuTicks(holder.pid) - hBefore) / TICK / seconds) * 100;
      const killedAt = performance.now();
      holder.kill("SIGKILL");
      await waitUntil("n2 and n3 to hold every VIP", async () => (await held("n2")) + (await held("n3")) === VIPS.length, 30_000, 20);
      const takeoverMs = performance.now() - killedAt;
      const logs: string[] = [];
      for (const p of [holder, ...standbys]) {
        if (p !== holder) p.kill("SIGTERM");
        await p.exited;
        logs.push(await new Response(p.stderr).text());
      }
      if (process.env.LOG_DIR) logs.forEach((l, i) => Bun.write(join(process.env.LOG_DIR!, `${round}-${dir.replaceAll("/", "_")}-n${i + 1}.log`), l));
      // How long after the holder's last heartbeat (as each standby received it) each takeover was decided.
      const silent = logs.slice(1).flatMap((l) => l.split("\n").filter((line) => line.includes("took the VIP's queue over")).map((line) => JSON.parse(line).silentMs as number));
      const stalls = logs.map((l) => l.split("\n").filter((line) => line.includes("event loop stalled")).map((line) => JSON.parse(line).stalledMs as number));
      rows.push(`| ${dir} | ${cpu.map((c) => c.toFixed(2)).join(" / ")} % | ${hCpu.toFixed(2)} % | ${Math.round(takeoverMs)} ms | ${silent.length} VIPs, ${Math.min(...silent)}–${Math.max(...silent)} ms | ${stalls.map((s) => (s.length ? `${s.length} (max ${Math.max(...s)} ms)` : "0")).join(" / ")} |`);
      await waitUntil("the queues empty", async () => (await etcdRange(site, "n1", "/vipd/elections/")).length === 0, 30_000);
    }
  }
} finally {
  for (const p of running) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
  await lab.close();
}
console.log(`${vipCount} VIPs, 3 nodes (etcd member each), holder n1, standbys n2 n3; CPU over ${seconds} s after 5 s of warm-up, % of one core\n`);
console.log("| tree | standby CPU n2 / n3 | holder CPU | holder killed: n2 + n3 hold all (polled every 20 ms) | takeovers: silence of the holder when decided (window 2552.5 ms; rank 2: + 250) | stalls logged n1 / n2 / n3 |\n|---|---|---|---|---|---|");
for (const r of rows) console.log(r);
