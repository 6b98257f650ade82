// Start-up after an unclean exit. A VIP of ours left on the link (by an older
// vipd, or by hand) is removed before anything else, even while etcd is
// unreachable. The killed run's keys are cleared at registration (its PID is
// gone, design.md §6), so a restarted holder need not wait out anything.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { etcdRange } from "../lab/etcd-admin.ts";
import { type EtcdCluster, startEtcdCluster } from "../lab/etcd.ts";
import { type Host, Segment } from "../lab/netns.ts";
import { sh, waitFor } from "../lab/sh.ts";

const ROOT = join(import.meta.dir, "..", "..");
const VIP = "192.0.2.130";
let seg: Segment;
let n1: Host;
let etcd: EtcdCluster;
let dir: string;

beforeAll(async () => {
  seg = await Segment.create(["n1"]);
  n1 = seg.host("n1");
  etcd = await startEtcdCluster([{ name: "n1", ns: n1.ns, ip: n1.ip4 }]);
  dir = mkdtempSync(join(tmpdir(), "vipd-start-"));
  writeFileSync(join(dir, "vip.yaml"), `apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: ${VIP}\nlink: eth0\n`);
}, 60_000);

afterAll(async () => {
  await etcd?.stopAll();
  await seg?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function vipd(endpoints: string) {
  const argv = [process.execPath, join(ROOT, "src/main.ts"), "run", "--config", join(dir, "vip.yaml"), "--node-name", "n1",
    "--etcd-endpoints", endpoints, "--health-listen", "127.0.0.1:18120", "--log-format", "json"];
  return Bun.spawn(["ip", "netns", "exec", n1.ns, ...argv], { stdout: "ignore", stderr: "pipe" });
}

test("a VIP left on the link is removed at start, before etcd answers", async () => {
  // Forever, as `ip addr add` makes it: only vipd can take it away.
  await seg.ip(n1.ns, "addr", "add", `${VIP}/32`, "dev", "eth0");
  // Nothing listens on this port: etcd never answers.
  const p = vipd("http://127.0.0.1:1");
  try {
    await waitFor("the leftover VIP gone", async () => !(await seg.has(n1, VIP)), 5000);
    const health = await waitFor("/healthz naming the refusal", async () => {
      const h = await sh(["ip", "netns", "exec", n1.ns, "curl", "-s", "--max-time", "0.5", "-w", " %{http_code}", "http://127.0.0.1:18120/healthz"], { allowFail: true });
      return h.includes("connection refused") ? h : null;
    }, 10_000);
    expect(health).toEndWith(" 503");
    expect(await seg.has(n1, VIP)).toBe(false);
  } finally {
    p.kill("SIGTERM");
    expect(await p.exited).toBe(0);
  }
  const log = await new Response(p.stderr).text();
  expect(log).toContain("removed VIP left on the link by an earlier run");
  expect(log).toContain("connection refused");
}, 20_000);

test("a restarted holder clears its dead run's keys and holds again at once", async () => {
  const first = vipd(etcd.endpoints.join(","));
  await waitFor("the VIP on n1", () => seg.has(n1, VIP), 10_000);
  first.kill("SIGKILL");
  await first.exited;
  const killedAt = performance.now();
  const second = vipd(etcd.endpoints.join(","));
  try {
    // The old run's key stays first in the queue, and its heartbeat's claim in
    // force, until cleared: waiting out its silence (hold time, 2.5 s) or its
    // lease (10 s). Holding sooner proves the restart cleared them.
    await waitFor("the VIP held again", async () => {
      const s = await sh(["ip", "netns", "exec", n1.ns, "curl", "-s", "--max-time", "0.5", "http://127.0.0.1:18120/status"], { allowFail: true });
      return s.includes('"owner":true');
    }, 10_000, 20);
    const ms = performance.now() - killedAt;
    console.log(`held again ${Math.round(ms)} ms after SIGKILL (the old run's claim would have lasted ~2550 ms)`);
    expect(ms).toBeLessThan(2000);
    const status = JSON.parse(await sh(["ip", "netns", "exec", n1.ns, process.execPath, join(ROOT, "src/main.ts"), "status", "--json", "--etcd-endpoints", etcd.endpoints.join(",")])) as {
      vips: { vip: string; holder: { node: string } | null; claimedBy: string[]; waiting: unknown[]; handover: unknown }[];
      agents: { node: string; pid: number }[];
    };
    expect(status.vips).toEqual([{ vip: VIP, holder: expect.objectContaining({ node: "n1" }), claimedBy: ["n1"], waiting: [], handover: null }]);
    expect(status.agents.map((a) => [a.node, a.pid])).toEqual([["n1", second.pid]]);
  } finally {
    second.kill("SIGTERM");
    expect(await second.exited).toBe(0);
  }
}, 30_000);

/** vipd's keys as etcd holds them, read through n1's member. */
const keys = async () => (await etcdRange({ nodes: [{ name: "n1", host: n1 }] }, "n1", "/vipd/")).map((kv) => kv.key);

test("SIGINT is a clean stop: exit 0, the VIP off the link, the fence table gone, and n1's keys out of etcd", async () => {
  const p = vipd(etcd.endpoints.join(","));
  try {
    await waitFor("the VIP on n1", () => seg.has(n1, VIP), 10_000);
    expect((await keys()).filter((k) => k.includes(VIP))).not.toEqual([]);
  } finally {
    p.kill("SIGINT");
  }
  expect(await p.exited).toBe(0);
  expect(await seg.has(n1, VIP)).toBe(false);
  expect(await sh(["ip", "netns", "exec", n1.ns, "nft", "list", "tables"])).not.toContain("vipd");
  expect((await keys()).filter((k) => k.includes("n1") || k.includes(VIP))).toEqual([]);
}, 30_000);

test("the health port taken: exit 1 with the reason in one line, and nothing left on the link or in etcd", async () => {
  // Another process in n1's namespace holds the health port.
  const squatter = Bun.spawn(["ip", "netns", "exec", n1.ns, process.execPath, "-e",
    "Bun.serve({ hostname: '127.0.0.1', port: 18120, fetch: () => new Response('not vipd') }); console.log('listening')"],
  { stdout: "pipe", stderr: "ignore" });
  try {
    const reader = squatter.stdout.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toContain("listening");
    const p = vipd(etcd.endpoints.join(","));
    expect(await p.exited).toBe(1);
    const err = await new Response(p.stderr).text();
    expect(err).toContain("EADDRINUSE: listening for health checks on 127.0.0.1:18120");
    expect(err).not.toMatch(/^\s+at /m); // no stack trace
    expect(await seg.has(n1, VIP)).toBe(false);
    expect(await sh(["ip", "netns", "exec", n1.ns, "nft", "list", "tables"])).not.toContain("vipd");
    expect((await keys()).filter((k) => k.includes("n1") || k.includes(VIP))).toEqual([]);
  } finally {
    squatter.kill("SIGTERM");
    await squatter.exited;
  }
}, 30_000);

test("SIGTERM with etcd frozen: the address leaves the link at once, before etcd can be told; vipd still exits 0", async () => {
  const p = vipd(etcd.endpoints.join(","));
  let thawed = false;
  let stopped = false;
  try {
    await waitFor("the VIP on n1", () => seg.has(n1, VIP), 10_000);
    // Nothing written to etcd can commit from here on, so whatever the
    // kernel shows next happened before etcd heard of the release.
    etcd.signal("n1", "SIGSTOP");
    const t0 = performance.now();
    p.kill("SIGTERM");
    stopped = true;
    // Not the address's own backstop lifetime (ceil(proof left) + 1 s, so
    // more than a second left): vipd removed it.
    await waitFor("the VIP off the link while etcd is frozen", async () => !(await seg.has(n1, VIP)), 500, 5);
    console.log(`address removed ${Math.round(performance.now() - t0)} ms after SIGTERM, etcd frozen`);
    expect(p.exitCode).toBeNull(); // still waiting for etcd
    etcd.signal("n1", "SIGCONT");
    thawed = true;
  } finally {
    if (!thawed) etcd.signal("n1", "SIGCONT");
    if (!stopped) p.kill("SIGTERM");
  }
  expect(await p.exited).toBe(0);
  expect(await seg.has(n1, VIP)).toBe(false);
}, 30_000);
