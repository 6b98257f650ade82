// Review findings of design.md §6 and §8, each against real processes, a
// real etcd and the kernel's view:
// - a second vipd on a node, or one under a node name that a live vipd
//   already uses, is refused with exit 2, and the first one keeps its VIP
//   untouched;
// - a node whose kernel refuses the VIP (IPv6 disabled on the link: EACCES)
//   stands down after a few failures, says why on /healthz, and another node
//   takes the VIP.
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Host } from "../lab/netns.ts";
import { sh, sleep, waitFor } from "../lab/sh.ts";
import { readLog, SmallLab, stopVipd } from "../lab/small-lab.ts";

const V4 = "192.0.2.140";
const V6 = "2001:db8::140";
let lab: SmallLab;
let n1: Host;
let n2: Host;
let v4: string;
let v6: string;

beforeAll(async () => {
  lab = await SmallLab.start(["n1", "n2"]);
  [n1, n2] = [lab.host("n1"), lab.host("n2")];
  v4 = lab.vipConfig("v4.yaml", V4);
  v6 = lab.vipConfig("v6.yaml", V6);
}, 60_000);

afterAll(() => lab?.close(), 30_000);

const vipd = (host: Host, node: string, config: string, port: number) =>
  lab.vipd(host, ["--config", config, "--node-name", node, "--etcd-endpoints", "http://127.0.0.1:2379", "--health-listen", `127.0.0.1:${port}`, "--log-format", "json"]);

/** Every address event for the VIP in a namespace, for as long as it runs. */
function watchAddress(host: Host, ip: string) {
  const monitor = lab.spawn(host, ["ip", "monitor", "address"]);
  return async () => {
    monitor.kill();
    const text = await new Response(monitor.stdout).text();
    return text.split("\n").filter((l) => l.includes(`${ip}/`));
  };
}

const healthz = (host: Host, port: number) =>
  sh(["ip", "netns", "exec", host.ns, "curl", "-s", "-w", " %{http_code}", `http://127.0.0.1:${port}/healthz`], { allowFail: true });

test("a second vipd under a live node's name exits 2 with a sentence, and the first keeps its VIP", async () => {
  const first = vipd(n1, "n1", v4, 18131);
  await waitFor("the VIP on n1", () => lab.seg.has(n1, V4), 15_000);
  const events = watchAddress(n1, V4);
  // A second instance on the same node, started by hand: refused before it
  // touches the kernel (it would remove the first one's VIP as a leftover).
  const second = vipd(n1, "n1", v4, 18132);
  expect(await second.exited).toBe(2);
  expect(await readLog(second)).toContain(`another vipd already runs in this network namespace (pid ${first.pid})`);
  // ...and on another node (a cloned VM that kept its host name).
  const clone = vipd(n2, "n1", v4, 18133);
  expect(await clone.exited).toBe(2);
  expect(await readLog(clone)).toContain('another vipd already runs as node "n1"');
  expect(await lab.seg.has(n2, V4)).toBe(false);
  await sleep(1000);
  // The first never lost the VIP: no deletion in the kernel's own events.
  expect((await events()).filter((l) => l.startsWith("Deleted"))).toEqual([]);
  expect(await lab.seg.has(n1, V4)).toBe(true);
  expect((await stopVipd(first)).code).toBe(0);
}, 30_000);

test("a node whose kernel refuses the VIP stands down, says why on /healthz, and another node takes it", async () => {
  // With IPv6 disabled on the link, the kernel answers EACCES to adding an IPv6 address.
  await sh(["ip", "netns", "exec", n1.ns, "sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1"]);
  try {
    // n1 starts alone: it is first in the queue, tries, and must give up its turn.
    const a = vipd(n1, "n1", v6, 18134);
    const health = await waitFor("n1 standing down", async () => {
      const h = await healthz(n1, 18134);
      return h.includes("cannot hold") ? h : null;
    }, 10_000);
    expect(health).toContain(`cannot hold ${V6} on eth0: the kernel refused the address 3 times (EACCES`);
    expect(health).toEndWith(" 503");
    const b = vipd(n2, "n2", v6, 18135);
    await waitFor("the VIP on n2", () => lab.seg.has(n2, V6), 15_000);
    expect(await lab.seg.has(n1, V6)).toBe(false);
    const stopped = await stopVipd(a);
    expect(stopped.code).toBe(0);
    expect((await stopVipd(b)).code).toBe(0);
    expect(stopped.log).toContain("cannot hold the VIP; letting another node take it");
  } finally {
    await sh(["ip", "netns", "exec", n1.ns, "sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=0"]);
  }
}, 40_000);
