// Where an idle agent's CPU goes: a holder and a standby (two nodes, one etcd
// member, one VIP, no API server gate) run vipd from source under Bun's CPU
// profiler (`bun --cpu-prof`, a sample every 1 ms of the main JavaScript
// thread); after a warm-up, the samples of a window are sorted by who ran
// them: each sample's nearest stack frame in a file of vipd or of a
// dependency (etcd3, @grpc/grpc-js, protobufjs, long), so the work Bun's
// built-ins do (streams, HTTP/2, events) is charged to their caller; what
// has no such frame (timers firing, the profiler's "(program)" and
// "(garbage collector)") stays as it is. Top functions are by self time. Only the main thread is
// sampled: work on Bun's other threads (the HTTP client's, the GC helpers,
// the allocator) shows in bench:idle's per-thread wakeups, not here.
//
//   npm run bench:profile [-- --seconds 30 --warmup 10 --record]
//
// Needs root (namespaces); nothing leaves the lab's namespaces.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { parseArgs } from "node:util";
import { machine, recordSection } from "./lib/bench.ts";
import { QUIET_RUNTIME } from "../src/runtime-env.ts";
import { startEtcdCluster } from "../test/lab/etcd.ts";
import { Segment } from "../test/lab/netns.ts";
import { sh, sleep, waitFor } from "../test/lab/sh.ts";

const ROOT = join(import.meta.dir, "..");
const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "30" },
    warmup: { type: "string", default: "10" },
    record: { type: "boolean", default: false },
  },
});
const seconds = Number(args.seconds);
const warmup = Number(args.warmup);
if (!(seconds >= 5) || !(warmup >= 3)) {
  console.error("bench:profile: --seconds must be at least 5 and --warmup at least 3");
  process.exit(2);
}
if (process.getuid?.() !== 0) {
  console.error("bench:profile: needs root (it creates network namespaces)");
  process.exit(2);
}
const VIP = "192.0.2.99";

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; parent?: number; children?: number[] }[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** What a leaf frame belongs to, for the breakdown. */
function category(url: string, fn: string): string {
  if (!url) return fn.startsWith("(") ? fn : `Bun built-in (${fn || "anonymous"})`;
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (m) return m[1]!;
  const path = url.replace(/^file:\/\//, "");
  if (path.startsWith(ROOT)) {
    const rel = relative(ROOT, path);
    return `vipd ${rel}`;
  }
  if (/^(node|bun|internal):/.test(url) || url.startsWith("builtin://")) return `Bun built-in (${url.replace(/^builtin:\/\//, "")})`;
  return url;
}

/** The three parts the breakdown is read in: what talks to etcd, vipd's own code, the rest. */
function group(cat: string, fn: string): "etcd client" | "vipd" | "runtime and other" {
  if (cat.startsWith("vipd ")) return "vipd";
  if (/^(etcd3|@grpc\/.+|protobufjs|long)$/.test(cat) || /node:http2|streams\/|setStreamReading/.test(cat) || /\$(toObject|fromObject|encode|decode)$/.test(fn)) return "etcd client";
  return "runtime and other";
}

interface Breakdown {
  /** ms of main-thread samples in the window, per category and per function. */
  byCategory: Map<string, number>;
  byGroup: Map<string, number>;
  byFunction: Map<string, number>;
  windowMs: number;
}

function analyse(p: CpuProfile, fromUs: number, toUs: number): Breakdown {
  const nodes = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  /** The sample's nearest frame in vipd or a dependency: who asked the runtime for the work. */
  const owner = (id: number) => {
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const { url, functionName } = nodes.get(cur)!.callFrame;
      const cat = category(url, functionName);
      if (!cat.startsWith("Bun built-in") && !cat.startsWith("(")) return cat;
    }
    return category(nodes.get(id)!.callFrame.url, nodes.get(id)!.callFrame.functionName);
  };
  const byCategory = new Map<string, number>();
  const byGroup = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i]!;
    if (t < fromUs || t > toUs) continue;
    // JSC samples only while JavaScript runs, every 1 ms: a sample stands for
    // the time to the next one, up to 2 ms; a longer gap is the thread idle.
    const dt = Math.min(p.timeDeltas[i + 1] ?? 1000, 2000) / 1000;
    const leaf = nodes.get(p.samples[i]!)!;
    const { functionName: fn, url, lineNumber } = leaf.callFrame;
    if (fn === "(idle)") continue;
    const cat = owner(leaf.id);
    byCategory.set(cat, (byCategory.get(cat) ?? 0) + dt);
    const g = group(cat, fn);
    byGroup.set(g, (byGroup.get(g) ?? 0) + dt);
    const file = url.replace(/^file:\/\//, "");
    const key = `${fn || "(anonymous)"} ${url ? `${file.startsWith(ROOT) ? relative(ROOT, file) : file.replace(/.*node_modules\//, "")}:${lineNumber + 1}` : ""}`.trim();
    byFunction.set(key, (byFunction.get(key) ?? 0) + dt);
  }
  return { byCategory, byGroup, byFunction, windowMs: (toUs - fromUs) / 1000 };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "vipd-bench-profile-"));
  const seg = await Segment.create(["n1", "n2"]);
  const procs: { name: string; p: Bun.Subprocess; log(): Promise<string> }[] = [];
  try {
    const n1 = seg.host("n1");
    const etcd = await startEtcdCluster([{ name: "n1", ns: n1.ns, ip: n1.ip4 }]);
    try {
      const config = join(dir, "vip.yaml");
      writeFileSync(config, `apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: ${VIP}\nlink: eth0\n`);
      for (const name of ["n1", "n2"]) {
        const h = seg.host(name);
        const argv = [
          "ip", "netns", "exec", h.ns,
          process.execPath, "--cpu-prof", `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${name}.cpuprofile`,
          join(ROOT, "src/main.ts"), "run",
          "--config", config, "--node-name", name,
          "--etcd-endpoints", `http://${n1.ip4}:2379`,
          "--health-listen", "127.0.0.1:8099", "--log-format", "json",
        ];
        // The runtime settings preset, as `vipd run` would set them: its
        // re-exec would race the profiler's sampling signal (SIGPWR), which
        // kills the new image before it installs its handler.
        const p = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...QUIET_RUNTIME } });
        const logs: Promise<string>[] = [new Response(p.stdout).text(), new Response(p.stderr).text()];
        procs.push({ name, p, log: () => Promise.all(logs).then((l) => l.join("")) });
        // n1 first, so it holds and n2 stands by.
        if (name === "n1") {
          await waitFor("n1 holds the VIP", async () => (await sh(["ip", "-n", h.ns, "-4", "addr", "show", "dev", "eth0"])).includes(`${VIP}/`), 20_000).catch(async (e) => {
            procs[0]!.p.kill("SIGKILL");
            throw new Error(`${e}; n1 logged: ${(await procs[0]!.log()).slice(-3000)}`);
          });
        }
      }
      console.log(`holder n1 and standby n2 up; warming up ${warmup} s, then profiling ${seconds} s`);
      await sleep((warmup + seconds) * 1000);
      for (const { p } of procs) p.kill("SIGTERM");
      for (const { p } of procs) await p.exited;
    } finally {
      await etcd.stopAll();
    }
    const out: string[] = [
      `Command: \`npm run bench:profile -- --seconds ${seconds} --warmup ${warmup}${args.record ? " --record" : ""}\` · ${new Date().toISOString().slice(0, 10)} · ${await machine()} · vipd from source`,
      "",
      `Two agents on one etcd member, one VIP, no API server gate; the main thread's samples of ${seconds} s after ${warmup} s of warm-up, each charged to the nearest frame on its stack that is vipd's or a dependency's (work inside Bun's built-ins — streams, HTTP/2, events — goes to whoever called it). JavaScriptCore samples every 1 ms while JavaScript runs; each sample counts for the time to the next, up to 2 ms. "% of a core" is that time over the window; the profiler's own overhead is in it, so read shares, not absolute cost (bench:idle measures that).`,
      "",
    ];
    for (const { name, log } of procs) {
      const file = readdirSync(dir).find((f) => f === `${name}.cpuprofile`);
      if (!file) throw new Error(`no CPU profile from ${name} (exit ${procs.find((x) => x.name === name)!.p.exitCode}, signal ${procs.find((x) => x.name === name)!.p.signalCode}); its log: ${(await log()).slice(-2000)}`);
      const prof = JSON.parse(readFileSync(join(dir, file), "utf8")) as CpuProfile;
      // The profile starts with the (re-executed) process; the window is
      // measured from there, and stops a second before the end: shutdown.
      const from = prof.startTime + warmup * 1e6;
      const to = Math.min(from + seconds * 1e6, prof.endTime - 1e6);
      const b = analyse(prof, from, to);
      const total = [...b.byCategory.values()].reduce((s, x) => s + x, 0);
      const pct = (msx: number) => `${((msx / b.windowMs) * 100).toFixed(2)} %`;
      out.push(`**${name === "n1" ? "holder (n1)" : "standby (n2)"}**: ${pct(total)} of a core on the main thread over ${(b.windowMs / 1000).toFixed(1)} s (${(total / b.windowMs * 1000).toFixed(1)} ms per second): ${[...b.byGroup].sort((x, y) => y[1] - x[1]).map(([g, v]) => `${g} ${((v / total) * 100).toFixed(0)} %`).join(", ")}.`, "");
      out.push("| who ran it (nearest frame in vipd or a dependency) | ms per s | % of a core | share |", "|---|---|---|---|");
      for (const [cat, v] of [...b.byCategory].sort((x, y) => y[1] - x[1]).slice(0, 14)) {
        out.push(`| ${cat} | ${(v / b.windowMs * 1000).toFixed(2)} | ${pct(v)} | ${((v / total) * 100).toFixed(0)} % |`);
      }
      out.push("", "Top functions (self time):", "", "| function | ms per s |", "|---|---|");
      for (const [fn, v] of [...b.byFunction].sort((x, y) => y[1] - x[1]).slice(0, 12)) {
        out.push(`| \`${fn.replace(/\|/g, "\\|")}\` | ${(v / b.windowMs * 1000).toFixed(2)} |`);
      }
      out.push("");
    }
    const body = out.join("\n");
    console.log(body);
    if (args.record) await recordSection(join(ROOT, "BENCHMARKS.md"), "profile", `## Where an idle agent's CPU goes\n\n${body}`);
  } finally {
    for (const { p } of procs) if (p.exitCode === null) p.kill("SIGKILL");
    await seg.destroy();
    if (!process.env.KEEP) rmSync(dir, { recursive: true, force: true });
    else console.log(`kept ${dir}`);
  }
}

await main();
process.exit(0);
