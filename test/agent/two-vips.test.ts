// Two VIPs in one config elect independently, and a VIP's election follows
// its own link: the IPv4 VIP lives on eth0, the IPv6 VIP on a macvlan (mv0)
// over it. Taking mv0 down on the IPv6 holder must move only the IPv6 VIP;
// bringing it back puts that node at the back of the queue, not back in charge.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Lab, Lab as LabClass, type LabNode, REPO_ROOT } from "../lab/cluster.ts";
import { sleep, waitFor } from "../lab/sh.ts";

const V4 = "192.0.2.100";
const V6 = "2001:db8::100";
let lab: Lab;
let stopWatch = false;
let watcher: Promise<void>;
const violations: string[] = [];

/** Which nodes have the address now, by `ip -j addr`. */
async function holdersOf(ip: string, link: string): Promise<string[]> {
  const has = await Promise.all(lab.nodes.map((n) => lab.seg.has(n.host, ip, link).catch(() => false)));
  return lab.nodes.filter((_, i) => has[i]).map((n) => n.name);
}

beforeAll(async () => {
  lab = await LabClass.start();
  const config = `apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: ${V4}\nlink: eth0\n---\napiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: ${V6}\nlink: mv0\n`;
  for (const n of lab.nodes) {
    await lab.seg.ip(n.host.ns, "link", "add", "mv0", "link", "eth0", "type", "macvlan", "mode", "bridge");
    await lab.seg.ip(n.host.ns, "link", "set", "mv0", "up");
    const file = join(n.dir, "two-vips.yaml");
    writeFileSync(file, config);
    const ctx = lab.context(n);
    n.vip = ctx.spawn("vipd", [process.execPath, join(REPO_ROOT, "src", "main.ts"), "run", "--config", file, "--node-name", n.name,
      "--etcd-endpoints", ctx.etcdEndpoint, "--log-format", "json"]);
  }
  // Sample both VIPs on every node for the whole test; two holders of one VIP at any sample fails it.
  watcher = (async () => {
    while (!stopWatch) {
      for (const [ip, link] of [[V4, "eth0"], [V6, "mv0"]] as const) {
        const h = await holdersOf(ip, link);
        if (h.length > 1) violations.push(`${ip} held by ${h.join(" and ")}`);
      }
      await sleep(10);
    }
  })();
}, 120_000);

afterAll(async () => {
  stopWatch = true;
  await watcher;
  await lab?.destroy();
}, 60_000);

const single = (ip: string, link: string) =>
  waitFor(`one holder of ${ip}`, async () => {
    const h = await holdersOf(ip, link);
    return h.length === 1 ? lab.node(h[0]!) : null;
  }, 20_000);

test("the IPv6 VIP moves off a node whose link went down; the IPv4 VIP stays", async () => {
  const h6: LabNode = await single(V6, "mv0");
  const h4: LabNode = await single(V4, "eth0");
  // Act only once every node stands for both VIPs, or "the back of the queue" below means nothing.
  const queue6 = await waitFor("all three nodes in both queues", async () => {
    const s = JSON.parse(await lab.seg.exec(h6.host, ["curl", "-sf", "http://127.0.0.1:8099/status"])) as { vips: { ip: string; queue: { node: string }[] }[] };
    return s.vips.every((v) => v.queue.length === 3) ? s.vips.find((v) => v.ip === V6)!.queue.map((q) => q.node) : null;
  }, 15_000);
  expect(queue6[0]).toBe(h6.name);
  await lab.seg.ip(h6.host.ns, "link", "set", "mv0", "down");
  const next6 = await waitFor("IPv6 VIP on another node", async () => {
    const h = await holdersOf(V6, "mv0");
    return h.length === 1 && h[0] !== h6.name ? h[0] : null;
  }, 5000);
  // The holder leaving the queue hands the VIP to the next in line, not to anyone.
  expect(next6).toBe(queue6[1]!);
  expect(await holdersOf(V4, "eth0")).toEqual([h4.name]);

  // Link back: the node stands again, at the back of the queue; the VIP stays where it is.
  await lab.seg.ip(h6.host.ns, "link", "set", "mv0", "up");
  await sleep(2000);
  expect(await holdersOf(V6, "mv0")).toEqual([next6]);
  const status = JSON.parse(await lab.seg.exec(h6.host, ["curl", "-sf", "http://127.0.0.1:8099/status"])) as {
    vips: { ip: string; role: string; leader: string | null; queue: { node: string }[] }[];
  };
  const v6 = status.vips.find((v) => v.ip === V6)!;
  expect(v6.role).toBe("waiting");
  expect(v6.leader).toBe(next6);
  expect(v6.queue.map((q) => q.node).at(-1)).toBe(h6.name);
  expect(violations).toEqual([]);
}, 60_000);
