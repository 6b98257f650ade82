// The shipped binary: size, start-to-/healthz and start-to-VIP time, idle
// memory. References in the same run: vipd from source (`bun src/main.ts`)
// for start-up, and keepalived (the common peer) for idle memory.
//
//   npm run bench:binary [-- --rounds N] [-- --record]
import { statSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { latency, machine, ms, recordSection } from "./lib/bench.ts";
import { startEtcdCluster } from "../test/lab/etcd.ts";
import { Segment } from "../test/lab/netns.ts";
import { sh, sleep } from "../test/lab/sh.ts";

const ROOT = join(import.meta.dir, "..");
const args = process.argv.slice(2);
const rounds = Number(args[args.indexOf("--rounds") + 1]) || 5;
const record = args.includes("--record");
const VIP = "192.0.2.77";

const rssKiB = async (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(await Bun.file(`/proc/${pid}/status`).text())?.[1] ?? NaN);

async function main(): Promise<void> {
  const t = performance.now();
  await sh([process.execPath, join(ROOT, "build.ts")]);
  const buildMs = performance.now() - t;
  const sizes = ["x64", "arm64"].map((a) => [a, statSync(join(ROOT, "dist", `vipd-linux-${a}`)).size / 2 ** 20] as const);

  const seg = await Segment.create(["n1"]);
  const dir = mkdtempSync(join(tmpdir(), "vipd-bench-bin-"));
  const n1 = seg.host("n1");
  const etcd = await startEtcdCluster([{ name: "n1", ns: n1.ns, ip: n1.ip4 }]);
  try {
    const config = join(dir, "vip.yaml");
    writeFileSync(config, `apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: ${VIP}\nlink: eth0\n`);
    const programs = {
      binary: [join(ROOT, "dist", "vipd")],
      source: [process.execPath, join(ROOT, "src", "main.ts")],
    };
    const results: Record<string, { healthz: number[]; vip: number[]; rss: number[] }> = {};
    for (const [name, program] of Object.entries(programs)) {
      const r = (results[name] = { healthz: [] as number[], vip: [] as number[], rss: [] as number[] });
      for (let i = 0; i < rounds; i++) {
        const start = performance.now();
        const p = Bun.spawn(["ip", "netns", "exec", n1.ns, ...program, "run", "--config", config, "--node-name", "n1",
          "--etcd-endpoints", etcd.endpoints.join(","), "--log-format", "json", "--log-level", "warn"], { stdout: "ignore", stderr: "ignore" });
        let healthz = 0;
        let vip = 0;
        while ((!healthz || !vip) && performance.now() - start < 15_000) {
          if (!healthz) {
            const code = await sh(["ip", "netns", "exec", n1.ns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "0.2", "http://127.0.0.1:8099/healthz"], { allowFail: true });
            if (code === "200") healthz = performance.now() - start;
          }
          if (!vip && (await seg.has(n1, VIP))) vip = performance.now() - start;
        }
        r.healthz.push(healthz);
        r.vip.push(vip);
        if (i === 0) {
          await sleep(10_000);
          r.rss.push(await rssKiB(p.pid));
        }
        p.kill("SIGTERM");
        await p.exited;
      }
    }
    // keepalived idle, configured as in the lab (one VRRP instance), for scale.
    const kconf = join(dir, "keepalived.conf");
    writeFileSync(kconf, `vrrp_instance VI_1 {\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority 100\n  advert_int 1\n  virtual_ipaddress {\n    ${VIP}/32\n  }\n}\n`);
    const k = Bun.spawn(["ip", "netns", "exec", n1.ns, "keepalived", "-n", "-l", "-D", "-f", kconf, "-p", join(dir, "k.pid"), "-r", join(dir, "v.pid"), "-c", join(dir, "c.pid")], { stdout: "ignore", stderr: "ignore" });
    await sleep(10_000);
    const kids = (await sh(["pgrep", "-P", String(k.pid)], { allowFail: true })).split("\n").filter(Boolean).map(Number);
    let keepalivedRss = await rssKiB(k.pid);
    for (const c of kids) keepalivedRss += await rssKiB(c);
    k.kill("SIGTERM");
    await k.exited;

    const b = results.binary!;
    const s = results.source!;
    const lh = latency(b.healthz);
    const lv = latency(b.vip);
    const sh_ = latency(s.healthz);
    const body = `## The binary

Command: \`npm run bench:binary -- --record\` (as root) · ${new Date().toISOString().slice(0, 10)} · ${await machine()} · Bun ${Bun.version}

Build (\`bun build.ts\`, both targets): ${ms(buildMs)} ms. Sizes: ${sizes.map(([a, mb]) => `linux-${a} ${mb.toFixed(1)} MiB`).join(", ")}
(the Bun runtime is most of it; \`strip\` would turn the binary back into plain bun, so it is not stripped).

Start-up, ${rounds} starts each, one node with a local etcd member, measured from spawn by polling
(curl every few ms, so ~10 ms resolution):

| | median (ms) | max (ms) |
|---|---|---|
| binary: spawn → \`/healthz\` 200 | ${ms(lh.median)} | ${ms(Math.max(...b.healthz))} |
| binary: spawn → VIP on the link | ${ms(lv.median)} | ${ms(Math.max(...b.vip))} |
| from source (\`bun src/main.ts\`): spawn → \`/healthz\` 200 | ${ms(sh_.median)} | ${ms(Math.max(...s.healthz))} |

Idle memory after 10 s holding one VIP: vipd binary ${(b.rss[0]! / 1024).toFixed(1)} MiB RSS, from source
${(s.rss[0]! / 1024).toFixed(1)} MiB; keepalived 2.2.7 (all its processes, one VRRP instance) ${(keepalivedRss / 1024).toFixed(1)} MiB
— vipd uses ${(b.rss[0]! / keepalivedRss).toFixed(0)}× keepalived's memory: the price of a JavaScript runtime.`;
    console.log(body);
    if (record) await recordSection(join(ROOT, "BENCHMARKS.md"), "binary", body);
  } finally {
    await etcd.stopAll();
    await seg.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
