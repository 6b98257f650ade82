// Address conflicts (RFC 5227) against two real agents, a real etcd and a
// third machine on the segment that runs no vipd: the stranger, x. Whatever
// x does with a VIP's address, the agents never fight it for it: they do not
// stand while x answers for it, a holder lets go once it hears x, and the VIP
// comes back once x lets go. The agents' own answers to each other's probes
// are no conflict: they know each other's MACs from etcd, and a holder with
// a second link on the segment, which answers ARP for the VIP there too, is
// no stranger to itself or to the others. Every outcome is
// checked where it happens: the address in each namespace's kernel, the keys
// in etcd (through etcd's own gateway), and each agent's /healthz, /status
// and /metrics.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { probeAddress } from "../../src/kernel/announce.ts";
import { parseMac } from "../../src/kernel/ip.ts";
import { REPO_ROOT } from "../lab/cluster.ts";
import { type EtcdKv, etcdRange, type EtcdSite } from "../lab/etcd-admin.ts";
import { type Host, inNetns } from "../lab/netns.ts";
import { parsePrometheusText, sampleValue } from "../../src/health/prom-text.ts";
import { sh, sleep, waitFor } from "../lab/sh.ts";
import { SmallLab, stopVipd } from "../lab/small-lab.ts";

const V4 = "192.0.2.160";
const V6 = "2001:db8::160";
const VIPS = [V4, V6] as const;
const AGENTS = ["n1", "n2"] as const;
type Agent = (typeof AGENTS)[number];
const PORT = 18221;
/** Probe interval set for the test: the agents probe every second, and every second while in conflict. */
const PROBE_S = 1;

let lab: SmallLab;
let site: EtcdSite;
let config: string;
let x: Host;
let xMac: string;
const macs = new Map<Agent, string>();
const agents = new Map<Agent, Subprocess<"ignore", "ignore", "pipe">>();

beforeAll(async () => {
  // x runs an etcd member like the others (SmallLab starts one per host), but no vipd.
  lab = await SmallLab.start([...AGENTS, "x"]);
  site = { nodes: AGENTS.map((name) => ({ name, host: lab.host(name) })) };
  x = lab.host("x");
  config = lab.write("vips.yaml", VIPS.map((ip) => `apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: ${ip}\nlink: eth0\n`).join("---\n"));
  xMac = await macOf(x);
  for (const a of AGENTS) macs.set(a, await macOf(lab.host(a)));
}, 60_000);

afterAll(() => lab?.close(), 30_000);

async function macOf(host: Host, link = "eth0"): Promise<string> {
  const [l] = JSON.parse(await lab.seg.ip(host.ns, "-j", "link", "show", "dev", link)) as { address: string }[];
  return l!.address;
}

/** Which MACs answer x's own ARP probe for `ip` (RFC 5227), as any machine on the segment would hear them. */
async function answersHeardByX(ip: string): Promise<string[]> {
  const [l] = JSON.parse(await lab.seg.ip(x.ns, "-j", "link", "show", "dev", "eth0")) as { ifindex: number; address: string }[];
  const link = { index: l!.ifindex, name: "eth0", mac: parseMac(l!.address)! };
  // The probe's socket is opened in x's namespace, synchronously, and stays there.
  const [answers] = inNetns(x.ns, () => [probeAddress(link, ip, { timeoutMs: 300 })]);
  return answers;
}

function start(a: Agent): void {
  agents.set(a, lab.vipd(lab.host(a), [
    "--config", config, "--node-name", a, "--etcd-endpoints", "http://127.0.0.1:2379", "--health-listen", `127.0.0.1:${PORT}`,
    "--announce-probe-interval", String(PROBE_S), "--log-format", "json",
  ]));
}

/** x starts or stops using an address, as any machine would: no DAD for IPv6, so it answers at once. */
async function stranger(action: "add" | "del", ip: string): Promise<void> {
  const prefix = ip.includes(":") ? `${ip}/64` : `${ip}/24`;
  await lab.seg.ip(x.ns, "addr", action, prefix, "dev", "eth0", ...(action === "add" && ip.includes(":") ? ["nodad"] : []));
}

/** Which agents have the address on their link now (the kernel's view). */
async function holders(ip: string): Promise<Agent[]> {
  const has = await Promise.all(AGENTS.map((a) => lab.seg.has(lab.host(a), ip)));
  return AGENTS.filter((_, i) => has[i]);
}

/**
 * Samples both VIPs on every agent until stop() and returns every moment an
 * agent held one while x used it too, which must never happen once the
 * agents have heard x.
 */
function watchForFights(ips: readonly string[]): () => Promise<string[]> {
  let stopped = false;
  const fights: string[] = [];
  const run = (async () => {
    while (!stopped) {
      for (const ip of ips) {
        const h = await holders(ip);
        if (h.length) fights.push(`${ip} held by ${h.join(", ")}`);
      }
      await sleep(20);
    }
  })();
  return async () => {
    stopped = true;
    await run;
    return fights;
  };
}

/** Election keys of a VIP as etcd holds them, first in line first. */
async function queue(ip: string): Promise<string[]> {
  const kvs = await etcdRange(site, "n1", `/vipd/elections/${ip}/`);
  return kvs.sort((a, b) => a.createRevision - b.createRevision).map((kv) => kv.key.split("/").at(-1)!);
}

async function http(a: Agent, path: string): Promise<{ code: number; body: string }> {
  const out = await sh(["ip", "netns", "exec", lab.host(a).ns, "curl", "-s", "-w", "\n%{http_code}", `http://127.0.0.1:${PORT}${path}`], { allowFail: true });
  const cut = out.lastIndexOf("\n");
  return { code: Number(out.slice(cut + 1)), body: out.slice(0, cut) };
}

interface VipStatus {
  ip: string;
  candidacy: string;
  reason: string;
  conflict: { macs: string[]; since: string } | null;
}
async function status(a: Agent, ip: string): Promise<VipStatus> {
  const s = JSON.parse((await http(a, "/status")).body) as { vips: VipStatus[] };
  return s.vips.find((v) => v.ip === ip)!;
}

async function conflictGauge(a: Agent, ip: string): Promise<number | undefined> {
  return sampleValue(parsePrometheusText((await http(a, "/metrics")).body), "vipd_address_conflict", { vip: ip });
}

const sentence = (ip: string) => `address conflict: ${ip} on eth0 is answered by ${xMac}, which is not a vipd agent`;

/** Every agent reports x as a conflict on each of `ips`. */
const allInConflict = (ips: readonly string[]) =>
  Promise.all(AGENTS.flatMap((a) => ips.map(async (ip) => (await status(a, ip)).conflict?.macs.join() === xMac))).then((r) => r.every(Boolean));

/** `vipd handover VIP`, run in x's namespace as an operator's command would be (x runs an etcd member). */
async function handover(ip: string): Promise<{ code: number; err: string }> {
  const p = Bun.spawn(["ip", "netns", "exec", x.ns, process.execPath, join(REPO_ROOT, "src", "main.ts"), "handover", ip, "--etcd-endpoints", "http://127.0.0.1:2379"], {
    stdin: "ignore", stdout: "ignore", stderr: "pipe", env: { ...process.env, SUDO_USER: "", USER: "ops" },
  });
  const [err, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
  return { code, err };
}

/** The log lines an agent wrote about conflicts of one VIP. */
function conflictLog(log: string, ip: string): { found: number; cleared: number } {
  const lines = log.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as { msg: string; vip?: string });
  const mine = lines.filter((l) => l.vip === ip);
  return {
    found: mine.filter((l) => l.msg.startsWith("address conflict: a machine that is not a vipd agent")).length,
    cleared: mine.filter((l) => l.msg.startsWith("address conflict cleared")).length,
  };
}

test("a VIP another machine already uses is held by no agent, and /healthz, /status and the metric say why; once it lets go, an agent takes it", async () => {
  for (const ip of VIPS) await stranger("add", ip);
  const fights = watchForFights(VIPS);
  for (const a of AGENTS) start(a);
  await waitFor("both agents in conflict over both VIPs", () => allInConflict(VIPS), 20_000);
  // Nobody stands: no election key for either VIP in etcd.
  for (const ip of VIPS) expect(await queue(ip)).toEqual([]);
  for (const a of AGENTS) {
    // The first VIP in the configuration with a conflict is the one /healthz names.
    const health = await http(a, "/healthz");
    expect(health.code).toBe(503);
    expect(health.body).toContain(sentence(V4));
    for (const ip of VIPS) {
      const s = await status(a, ip);
      expect(s.conflict?.macs).toEqual([xMac]);
      expect(s.candidacy).toBe(sentence(ip));
      expect(await conflictGauge(a, ip)).toBe(1);
    }
  }
  // Three more probes each: still nobody holds either VIP.
  await sleep(3 * PROBE_S * 1000);
  expect(await fights()).toEqual([]);

  // x lets go of the IPv4 VIP: an agent takes it; the IPv6 VIP stays dark.
  await stranger("del", V4);
  const h4 = await waitFor("an agent holds the IPv4 VIP", async () => {
    const h = await holders(V4);
    return h.length === 1 ? h[0] : null;
  }, 15_000);
  expect(await holders(V6)).toEqual([]);
  expect(await conflictGauge(h4, V4)).toBe(0);
  expect(await conflictGauge(h4, V6)).toBe(1);
  expect((await http(h4, "/healthz")).body).toContain(sentence(V6));

  await stranger("del", V6);
  await waitFor("an agent holds the IPv6 VIP", async () => (await holders(V6)).length === 1, 15_000);
  for (const a of AGENTS) {
    await waitFor(`${a} healthy again`, async () => (await http(a, "/healthz")).code === 200, 10_000);
    for (const ip of VIPS) expect(await conflictGauge(a, ip)).toBe(0);
  }
}, 90_000);

test("a stranger that starts using a held VIP: the holder lets go within the probe interval, and no agent takes it back until the stranger stops", async () => {
  for (const ip of VIPS) await waitFor(`both agents in ${ip}'s queue`, async () => (await queue(ip)).length === 2, 15_000);
  const before = await Promise.all(VIPS.map(holders));
  expect(before.map((h) => h.length)).toEqual([1, 1]);
  for (const ip of VIPS) await stranger("add", ip);
  // A probe every second and half a second to listen: both gone well within 5 s.
  await waitFor("the holders let go", async () => (await Promise.all(VIPS.map(holders))).every((h) => h.length === 0), 5_000);
  await waitFor("both agents in conflict over both VIPs", () => allInConflict(VIPS), 10_000);
  // Settled: neither agent stands or holds while x answers.
  const fights = watchForFights(VIPS);
  await sleep(3 * PROBE_S * 1000);
  expect(await fights()).toEqual([]);
  for (const ip of VIPS) expect(await queue(ip)).toEqual([]);
  for (const a of AGENTS) {
    const released = sampleValue(parsePrometheusText((await http(a, "/metrics")).body), "vipd_ownership_transitions_total", {
      vip: V4, direction: "released", reason: "conflict",
    });
    if (before[0]!.includes(a)) expect(released).toBeGreaterThanOrEqual(1);
  }

  for (const ip of VIPS) await stranger("del", ip);
  for (const ip of VIPS) await waitFor(`an agent holds ${ip} again`, async () => (await holders(ip)).length === 1, 15_000);
}, 60_000);

test("the agents' answers to each other's probes are no conflict: they stay put, and a hand-over between them is none either", async () => {
  // Each agent published its MAC for each VIP in etcd, and that of each of its links.
  const published = await etcdRange(site, "n1", "/vipd/macs/");
  expect(published.map((kv: EtcdKv) => [kv.key, JSON.parse(kv.value)])).toEqual(
    AGENTS.map((a) => [`/vipd/macs/${a}`, { [V4]: macs.get(a), [V6]: macs.get(a), "link/eth0": macs.get(a) }]),
  );
  for (const ip of VIPS) await waitFor(`both agents in ${ip}'s queue`, async () => (await queue(ip)).length === 2, 15_000);
  const held = await Promise.all(VIPS.map(holders));
  // Both agents probe every second, and hear the holder answer: nothing moves.
  await sleep(4 * PROBE_S * 1000);
  expect(await Promise.all(VIPS.map(holders))).toEqual(held);
  for (const a of AGENTS) for (const ip of VIPS) expect(await conflictGauge(a, ip)).toBe(0);

  // A graceful stop hands the IPv4 VIP to the other agent, which probes at once and hears nobody.
  const from = held[0]![0]!;
  const to = AGENTS.find((a) => a !== from)!;
  const stopped = await stopVipd(agents.get(from)!);
  expect(stopped.code).toBe(0);
  for (const ip of VIPS) await waitFor(`${to} holds ${ip}`, async () => (await holders(ip)).join() === to, 10_000);
  // The stopped agent's log covers both earlier tests: one report when each conflict was found, one when it cleared.
  for (const ip of VIPS) expect(conflictLog(stopped.log, ip)).toEqual({ found: 2, cleared: 2 });

  // Back again: it probes before standing, hears `to` answer (an agent), and joins behind it.
  start(from);
  for (const ip of VIPS) await waitFor(`${from} back in ${ip}'s queue`, async () => (await queue(ip)).join() === `${to},${from}`, 15_000);
  await sleep(3 * PROBE_S * 1000);
  for (const ip of VIPS) expect(await holders(ip)).toEqual([to]);

  // A planned hand-over (`vipd handover`) moves the IPv4 VIP back; the old holder steps back in line.
  const moved = await handover(V4);
  expect([moved.code, moved.err]).toEqual([0, ""]);
  expect(await holders(V4)).toEqual([from]);
  await waitFor(`${to} back in line for ${V4}`, async () => (await queue(V4)).join() === `${from},${to}`, 10_000);
  await sleep(3 * PROBE_S * 1000);
  expect(await holders(V4)).toEqual([from]);
  expect(await holders(V6)).toEqual([to]);
  for (const a of AGENTS) {
    expect((await http(a, "/healthz")).code).toBe(200);
    for (const ip of VIPS) expect(await conflictGauge(a, ip)).toBe(0);
  }
  for (const a of AGENTS) {
    const { code, log } = await stopVipd(agents.get(a)!);
    expect(code).toBe(0);
    if (a === from) for (const ip of VIPS) expect(conflictLog(log, ip)).toEqual({ found: 0, cleared: 0 });
  }
}, 90_000);

test("a holder with a second link on the segment (arp_ignore=0) answers probes there too: it keeps its VIPs, nobody reports a conflict, and a real stranger is still found", async () => {
  const n1 = lab.host("n1");
  await lab.seg.addLink(n1, "eth1");
  // Linux's default, stated: every link answers ARP for every local address.
  await lab.seg.exec(n1, ["sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=0", "net.ipv4.conf.eth1.arp_ignore=0"]);
  const eth1Mac = await macOf(n1, "eth1");
  start("n1");
  for (const ip of VIPS) await waitFor(`n1 holds ${ip}`, async () => (await holders(ip)).join() === "n1", 15_000);
  // The premise: the segment hears n1 answer for the IPv4 VIP from both of its links.
  expect(await answersHeardByX(V4)).toEqual([macs.get("n1")!, eth1Mac].sort());
  // n1 probes every second and hears eth1 answer: it keeps both VIPs.
  const kept = watchHolders("n1");
  await sleep(4 * PROBE_S * 1000);
  expect(await kept()).toEqual([]);
  expect((await http("n1", "/healthz")).code).toBe(200);
  for (const ip of VIPS) expect(await conflictGauge("n1", ip)).toBe(0);
  // eth1's MAC is published for the others' probes.
  const [n1Macs] = await etcdRange(site, "n1", "/vipd/macs/n1");
  expect(JSON.parse(n1Macs!.value)).toEqual({ [V4]: macs.get("n1"), [V6]: macs.get("n1"), "link/eth0": macs.get("n1"), "link/eth1": eth1Mac });

  // n2 probes before standing, hears n1's eth1 answer, and joins behind n1 all the same.
  start("n2");
  for (const ip of VIPS) await waitFor(`n2 behind n1 in ${ip}'s queue`, async () => (await queue(ip)).join() === "n1,n2", 15_000);
  const stillKept = watchHolders("n1");
  await sleep(3 * PROBE_S * 1000);
  expect(await stillKept()).toEqual([]);
  for (const a of AGENTS) {
    expect((await http(a, "/healthz")).code).toBe(200);
    for (const ip of VIPS) expect(await conflictGauge(a, ip)).toBe(0);
  }

  // A real stranger is still one, and named alone: n1 lets go, both report x and only x.
  await stranger("add", V4);
  await waitFor("n1 lets go of the IPv4 VIP", async () => (await holders(V4)).length === 0, 5_000);
  await waitFor("both agents in conflict over the IPv4 VIP", () => allInConflict([V4]), 10_000);
  expect(await holders(V6)).toEqual(["n1"]);
  await stranger("del", V4);
  await waitFor("an agent holds the IPv4 VIP again", async () => (await holders(V4)).length === 1, 15_000);
  for (const a of AGENTS) await waitFor(`${a} healthy again`, async () => (await http(a, "/healthz")).code === 200, 10_000);

  for (const a of AGENTS) {
    const { code, log } = await stopVipd(agents.get(a)!);
    expect(code).toBe(0);
    expect(conflictLog(log, V4)).toEqual({ found: 1, cleared: 1 });
    expect(conflictLog(log, V6)).toEqual({ found: 0, cleared: 0 });
  }
}, 90_000);

/** Samples until stop() and returns every moment `a` did not hold both VIPs. */
function watchHolders(a: Agent): () => Promise<string[]> {
  let stopped = false;
  const lost: string[] = [];
  const run = (async () => {
    while (!stopped) {
      for (const ip of VIPS) {
        const h = await holders(ip);
        if (h.join() !== a) lost.push(`${ip} held by [${h.join(", ")}]`);
      }
      await sleep(20);
    }
  })();
  return async () => {
    stopped = true;
    await run;
    return lost;
  };
}
