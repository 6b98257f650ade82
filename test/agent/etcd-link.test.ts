// vipd's link to etcd when etcd misbehaves in the ways TCP and raft allow
// (design.md §7), with vipd on n1 talking to a member on another node:
// - the TCP connections vipd has to its member become black holes (a
//   half-open link: no FIN, no RST). vipd must notice within a second or two
//   and reconnect on new connections, soon enough that it never lets go of
//   its VIP;
// - the member a watch is on is cut off from its peers (it loses its raft
//   leader but still answers): etcd cancels the watch, because vipd requires
//   a leader on it; a plain watch would stay open and silent.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import type { Host } from "../lab/netns.ts";
import { sh, sleep, waitFor } from "../lab/sh.ts";
import { SmallLab, stopVipd } from "../lab/small-lab.ts";

const VIP = "192.0.2.150";
let lab: SmallLab;
let n: Host[];
let config: string;

beforeAll(async () => {
  lab = await SmallLab.start(["n1", "n2", "n3"], { preVote: true });
  n = ["n1", "n2", "n3"].map((x) => lab.host(x));
  config = lab.vipConfig("vip.yaml", VIP);
}, 60_000);

afterAll(() => lab?.close(), 30_000);

const vipd = (endpoint: Host) =>
  lab.vipd(n[0]!, ["--config", config, "--node-name", "n1", "--etcd-endpoints", `http://${endpoint.ip4}:2379`, "--log-format", "json"]);

const nft = (host: Host, script: string) => sh(["ip", "netns", "exec", host.ns, "nft", script]);

/** Local ports of n1's established TCP connections to a member's client port. */
async function connectionsTo(member: Host): Promise<string[]> {
  const out = await sh(["ip", "netns", "exec", n[0]!.ns, "ss", "-Htn", "state", "established", "dst", `${member.ip4}:2379`]);
  return out.split("\n").filter(Boolean).map((l) => l.trim().split(/\s+/).at(-2)!.split(":").at(-1)!);
}

test("a half-open TCP link to etcd: vipd reconnects on new connections and keeps its VIP", async () => {
  const [n1, n2] = [n[0]!, n[1]!];
  const p = vipd(n2);
  try {
    await waitFor("the VIP on n1", () => lab.seg.has(n1, VIP), 15_000);
    await sleep(1000);
    // Every TCP connection vipd has to n2's member, by its source port on n1.
    const ports = await connectionsTo(n2);
    expect(ports.length).toBeGreaterThan(0);
    const monitor = lab.spawn(n1, ["ip", "monitor", "address"]);
    // Black holes, silently: on n2 drop those connections' segments both ways. New ones pass.
    await nft(n2, `table inet vipd_test_blackhole {
      chain in { type filter hook input priority -10; ip saddr ${n1.ip4} tcp sport { ${ports.join(", ")} } drop; }
      chain out { type filter hook output priority -10; ip daddr ${n1.ip4} tcp dport { ${ports.join(", ")} } drop; }
    }`);
    // Longer than a hold: had vipd kept waiting on the dead connections, the VIP would be gone.
    await sleep(5000);
    monitor.kill();
    const events = (await new Response(monitor.stdout).text()).split("\n").filter((l) => l.includes(`${VIP}/`));
    expect(events.filter((l) => l.startsWith("Deleted"))).toEqual([]);
    expect(await lab.seg.has(n1, VIP)).toBe(true);
    const fresh = await connectionsTo(n2);
    expect(fresh.some((port) => !ports.includes(port))).toBe(true);
  } finally {
    await nft(n2, "delete table inet vipd_test_blackhole").catch(() => {});
  }
  const { code, log } = await stopVipd(p);
  expect(code).toBe(0);
  // (With LAB_DEBUG=1 the log went to the terminal instead.)
  if (!process.env.LAB_DEBUG) expect(log).toMatch(/etcd answered no heartbeat; reconnecting|did not deliver revision/);
}, 60_000);

test("a member cut off from the cluster cancels a watch that requires a leader; a plain watch stays silent", async () => {
  const [n1, n3] = [n[0]!, n[2]!];
  const watch = (plain: boolean) =>
    lab.spawn(n1, [process.execPath, join(import.meta.dir, "..", "election", "fixtures", "watch-until-end.ts"), `http://${n3.ip4}:2379`, ...(plain ? ["--plain"] : [])]);
  const ours = watch(false);
  const plain = watch(true);
  const lines = (p: ReturnType<typeof watch>) => {
    const out: { event: string; detail: string }[] = [];
    void (async () => {
      for await (const chunk of p.stdout) for (const l of new TextDecoder().decode(chunk).split("\n")) if (l) out.push(JSON.parse(l));
    })();
    return out;
  };
  const [a, b] = [lines(ours), lines(plain)];
  await waitFor("both watches created", () => a.some((e) => e.event === "created") && b.some((e) => e.event === "created"), 10_000);
  // n3's member loses its peers (raft on 2380) but still answers clients on 2379.
  await nft(n3, `table inet vipd_test_isolate {
    chain in { type filter hook input priority -10; tcp dport 2380 drop; tcp sport 2380 drop; }
    chain out { type filter hook output priority -10; tcp dport 2380 drop; tcp sport 2380 drop; }
  }`);
  try {
    // etcd checks for a leader every election timeout and cancels after three misses.
    const ended = await waitFor("our watch ended", () => a.find((e) => e.event === "error" || e.event === "canceled"), 15_000);
    expect(ended.detail).toContain("no leader");
    // The plain one, on the same member at the same time, heard nothing at all.
    expect(b.filter((e) => e.event !== "created")).toEqual([]);
  } finally {
    await nft(n3, "delete table inet vipd_test_isolate").catch(() => {});
    ours.kill();
    plain.kill();
  }
}, 60_000);
