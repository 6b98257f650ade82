// Review findings of design.md §6 and §8, each against real processes, a
// real etcd and the kernel's view:
// - a second vipd on a node, or one under a node name that a live vipd
//   already uses, is refused with exit 2, and the first one keeps its VIP
//   untouched;
// - a node whose kernel refuses the VIP (IPv6 disabled on the link: EACCES)
//   stands down after a few failures, says why on /healthz, and another node
//   takes the VIP.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type EtcdCluster, startEtcdCluster } from "../lab/etcd.ts";
import { type Host, Segment } from "../lab/netns.ts";
import { sh, sleep, waitFor } from "../lab/sh.ts";

const ROOT = join(import.meta.dir, "..", "..");
const V4 = "192.0.2.140";
const V6 = "2001:db8::140";
let seg: Segment;
let n1: Host;
let n2: Host;
let etcd: EtcdCluster;
let dir: string;
const procs: ReturnType<typeof Bun.spawn>[] = [];

beforeAll(async () => {
  seg = await Segment.create(["n1", "n2"]);
  n1 = seg.host("n1");
  n2 = seg.host("n2");
  etcd = await startEtcdCluster([{ name: "n1", ns: n1.ns, ip: n1.ip4 }, { name: "n2", ns: n2.ns, ip: n2.ip4 }]);
  dir = mkdtempSync(join(tmpdir(), "vipd-conflicts-"));
  writeFileSync(join(dir, "v4.yaml"), `apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: ${V4}\nlink: eth0\n`);
  writeFileSync(join(dir, "v6.yaml"), `apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: ${V6}\nlink: eth0\n`);
}, 60_000);

afterAll(async () => {
  for (const p of procs) {
    if (p.exitCode === null) p.kill("SIGKILL");
    await p.exited;
  }
  await etcd?.stopAll();
  await seg?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 30_000);

function vipd(host: Host, node: string, config: string, port: number) {
  const argv = [process.execPath, join(ROOT, "src/main.ts"), "run", "--config", join(dir, config), "--node-name", node,
    "--etcd-endpoints", "http://127.0.0.1:2379", "--health-listen", `127.0.0.1:${port}`, "--log-format", "json"];
  const p = Bun.spawn(["ip", "netns", "exec", host.ns, ...argv], { stdout: "ignore", stderr: "pipe" });
  procs.push(p);
  return p;
}

async function stop(p: ReturnType<typeof Bun.spawn>): Promise<string> {
  p.kill("SIGTERM");
  expect(await p.exited).toBe(0);
  return new Response(p.stderr as ReadableStream).text();
}

/** Every address event for the VIP in a namespace, for as long as it runs. */
function watchAddress(host: Host, ip: string) {
  const monitor = Bun.spawn(["ip", "-n", host.ns, "monitor", "address"], { stdout: "pipe" });
  procs.push(monitor);
  return async () => {
    monitor.kill();
    const text = await new Response(monitor.stdout).text();
    return text.split("\n").filter((l) => l.includes(`${ip}/`));
  };
}

test("a second vipd under a live node's name exits 2 with a sentence, and the first keeps its VIP", async () => {
  const first = vipd(n1, "n1", "v4.yaml", 18131);
  await waitFor("the VIP on n1", () => seg.has(n1, V4), 15_000);
  const events = watchAddress(n1, V4);
  // A second instance on the same node, started by hand: refused before it
  // touches the kernel (it would remove the first one's VIP as a leftover).
  const second = vipd(n1, "n1", "v4.yaml", 18132);
  expect(await second.exited).toBe(2);
  const err = await new Response(second.stderr as ReadableStream).text();
  expect(err).toContain(`another vipd already runs in this network namespace (pid ${first.pid})`);
  // ...and on another node (a cloned VM that kept its host name).
  const clone = vipd(n2, "n1", "v4.yaml", 18133);
  expect(await clone.exited).toBe(2);
  expect(await new Response(clone.stderr as ReadableStream).text()).toContain('another vipd already runs as node "n1"');
  expect(await seg.has(n2, V4)).toBe(false);
  await sleep(1000);
  // The first never lost the VIP: no deletion in the kernel's own events.
  expect((await events()).filter((l) => l.startsWith("Deleted"))).toEqual([]);
  expect(await seg.has(n1, V4)).toBe(true);
  await stop(first);
}, 30_000);

test("a node whose kernel refuses the VIP stands down, says why on /healthz, and another node takes it", async () => {
  // With IPv6 disabled on the link, the kernel answers EACCES to adding an IPv6 address.
  await sh(["ip", "netns", "exec", n1.ns, "sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1"]);
  try {
    // n1 starts alone: it is first in the queue, tries, and must give up its turn.
    const a = vipd(n1, "n1", "v6.yaml", 18134);
    const health = await waitFor("n1 standing down", async () => {
      const h = await sh(["ip", "netns", "exec", n1.ns, "curl", "-s", "-w", " %{http_code}", "http://127.0.0.1:18134/healthz"], { allowFail: true });
      return h.includes("cannot hold") ? h : null;
    }, 10_000);
    expect(health).toContain(`cannot hold ${V6} on eth0: the kernel refused the address 3 times (EACCES`);
    expect(health).toEndWith(" 503");
    const b = vipd(n2, "n2", "v6.yaml", 18135);
    await waitFor("the VIP on n2", () => seg.has(n2, V6), 15_000);
    expect(await seg.has(n1, V6)).toBe(false);
    const logA = await stop(a);
    await stop(b);
    expect(logA).toContain("cannot hold the VIP; letting another node take it");
  } finally {
    await sh(["ip", "netns", "exec", n1.ns, "sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=0"]);
  }
}, 40_000);
