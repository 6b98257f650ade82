// With every member listed, when silence makes vipd leave its etcd member,
// and when it does not (design.md §7, reconnect.ts), on a 3-member cluster
// with raft pre-vote on (etcd 3.5's default, kubeadm's) and off (3.4's):
// - (a) the member carrying the holder's watch frozen (SIGSTOP) while the
//   other two answer: the holder moves off it once, within about half a
//   hold, and keeps its VIP. What is asserted is the kernel's view: the VIP
//   on the holder's link throughout (the lab's ownership witness), one
//   reconnect (vipd_etcd_reconnects_total) and the move's log line naming
//   the frozen member silent;
// - (b) the raft leader killed: the cluster elects a new one, and no agent
//   replaces its connection (vipd_etcd_reconnects_total): nothing answers
//   while it elects, and afterwards calls to the dead member fail at once.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { parsePrometheusText, sampleValue } from "../../src/health/prom-text.ts";
import { labNow } from "../lab/cluster.ts";
import { type EtcdSite, etcdLeader, moveEtcdLeader, waitForEtcdLeader } from "../lab/etcd-admin.ts";
import type { Host } from "../lab/netns.ts";
import type { OwnershipRecorder } from "../lab/recorder.ts";
import { sh, sleep, waitFor } from "../lab/sh.ts";
import { SmallLab, stopVipd } from "../lab/small-lab.ts";
import { subtract, total } from "../lab/stats.ts";

const VIP = "192.0.2.153";
const HEALTH_PORT = 18153;
const HOLD_MS = 2500;

const messages = (log: string) =>
  log.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as { time: string; msg: string; why?: string; endpoints?: string });

for (const preVote of [true, false]) {
  describe(`etcd pre-vote ${preVote ? "on" : "off"}`, () => {
    let lab: SmallLab;
    let n: Host[];
    let site: EtcdSite;
    let config: string;
    let witness: OwnershipRecorder;

    beforeAll(async () => {
      lab = await SmallLab.start(["n1", "n2", "n3"], { preVote });
      n = ["n1", "n2", "n3"].map((x) => lab.host(x));
      site = { nodes: n.map((h) => ({ name: h.name, host: h })) };
      config = lab.vipConfig("vip.yaml", VIP);
      witness = await lab.witness(VIP, n);
    }, 60_000);

    afterAll(async () => {
      await lab?.close();
    }, 30_000);

    const endpoints = () => n.map((e) => `http://${e.ip4}:2379`).join(",");
    const vipd = (host: Host) =>
      lab.vipd(host, ["--config", config, "--node-name", host.name, "--etcd-endpoints", endpoints(), "--log-format", "json",
        "--health-listen", `127.0.0.1:${HEALTH_PORT}`]);

    async function reconnects(host: Host): Promise<number> {
      const body = await sh(["ip", "netns", "exec", host.ns, "curl", "-s", "--max-time", "5", `http://127.0.0.1:${HEALTH_PORT}/metrics`]);
      const v = sampleValue(parsePrometheusText(body.endsWith("\n") ? body : `${body}\n`), "vipd_etcd_reconnects_total", {});
      if (v === undefined || v === null) throw new Error(`vipd on ${host.name}: no vipd_etcd_reconnects_total in /metrics`);
      return v;
    }

    /** The members with a watch stream open, by etcd's own gauge (each member's /metrics). */
    async function watchedMembers(): Promise<string[]> {
      const out: string[] = [];
      for (const h of n) {
        const body = await sh(["ip", "netns", "exec", h.ns, "curl", "-s", "--max-time", "2", "http://127.0.0.1:2379/metrics"]);
        const v = sampleValue(parsePrometheusText(body), "etcd_debugging_mvcc_watch_stream_total", {}) ?? 0;
        for (let i = 0; i < v; i++) out.push(h.name);
      }
      return out;
    }

    /** vipd's established TCP connections to the member's client port, by local address, from the kernel (ss in the holder's namespace). */
    async function connectionsTo(host: Host, pid: number, member: Host): Promise<string[]> {
      const out = await sh(["ip", "netns", "exec", host.ns, "ss", "-Htnp", "state", "established", "dst", `${member.ip4}:2379`]);
      return out.split("\n").filter((l) => l.includes(`pid=${pid},`)).map((l) => l.trim().split(/\s+/)[2]!).sort();
    }

    /** Runs fn, then stops every vipd started (always) and returns fn's result with each one's exit code and log. */
    async function withVipds<T>(procs: ReturnType<typeof vipd>[], fn: () => Promise<T>) {
      try {
        return { result: await fn(), stopped: await Promise.all(procs.map(stopVipd)) };
      } catch (e) {
        await Promise.all(procs.map(stopVipd));
        throw e;
      }
    }

    test("(a) the member carrying the holder's watch frozen while the others answer: the holder leaves it once, within about half a hold, and keeps its VIP", async () => {
      const [n1, n2] = [n[0]!, n[1]!];
      const holder = vipd(n1);
      const procs = [holder];
      let frozen: Host | null = null;
      const { result, stopped: [a, b] } = await withVipds(procs, async () => {
        await waitFor("the VIP on n1", () => witness.isHeld("n1"), 15_000);
        // Only n1's vipd watches yet: the member with a watch stream carries it.
        let watched: string[] = [];
        await waitFor("n1's watch on one member", async () => (watched = await watchedMembers()).length === 1, 10_000);
        const x = n.find((h) => h.name === watched[0])!;
        // Not the raft leader: the others keep their quorum and answer at once.
        if ((await etcdLeader(site)) === x.name) await moveEtcdLeader(site, n.find((h) => h !== x)!.name);
        procs.push(vipd(n2));
        await sleep(2000);
        const resetsBefore = await reconnects(n1);
        const before = await connectionsTo(n1, holder.pid, x);
        const t0 = labNow();
        frozen = x;
        lab.etcd.signal(x.name, "SIGSTOP");
        // The move, then the replaced client's drain (3 s) and some.
        await sleep(HOLD_MS / 2 + 3000 + 1500);
        const left = await connectionsTo(n1, holder.pid, x);
        const resets = (await reconnects(n1)) - resetsBefore;
        lab.etcd.signal(x.name, "SIGCONT");
        frozen = null;
        await sleep(1000);
        const end = labNow();
        const held = witness.intervals(t0, end);
        const dark = subtract([{ start: t0, end }], held.get("n1") ?? []);
        const others = [...held].filter(([node, list]) => node !== "n1" && list.length > 0).map(([node]) => node);
        return { x, t0, before, left, resets, darkMs: total(dark), others };
      }).finally(() => frozen && lab.etcd.signal(frozen.name, "SIGCONT"));
      expect([a!.code, b!.code]).toEqual([0, 0]);
      const { x, t0, before, left, resets, darkMs, others } = result;
      const moves = messages(a!.log).filter((m) => m.msg === "etcd connection moved to the members that answer");
      const moveMs = moves[0] ? Math.round(Date.parse(moves[0].time) - t0) : null;
      console.log(`pre-vote ${preVote}: ${x.name} frozen: n1 reconnected ${resets} times, moved after ${moveMs} ms (${moves[0]?.why}); ` +
        `connections to it before ${before}, after ${left}; n1 dark ${Math.round(darkMs)} ms; others holding: ${others}`);
      expect(witness.problems).toEqual([]);
      expect(darkMs).toBe(0);
      expect(others).toEqual([]);
      expect(resets, a!.log).toBe(1);
      expect(moves.length).toBe(1);
      expect(moves[0]!.why).toContain(`http://${x.ip4}:2379 silent`);
      // Half a hold after the silence began (stallAfter + probeMs), plus up
      // to one heartbeat interval before the first heartbeat the watch
      // misses, and 500 ms of a loaded machine's scheduling.
      expect(moveMs!).toBeLessThanOrEqual(HOLD_MS / 2 + 250 + 500);
      // Not asserted: vipd's TCP connections to the frozen member. Those
      // of the replaced client, and the probe's, stay ESTABLISHED while the
      // member cannot take part in closing them (measured: 2 opened since
      // the freeze left on this branch, 2 and 4 on the rule before it).
    }, 90_000);

    test("(b) the raft leader killed: a new election, and no agent replaces its connection", async () => {
      const [n1, n2] = [n[0]!, n[1]!];
      const procs = [vipd(n1)];
      const { result, stopped: [a, b] } = await withVipds(procs, async () => {
        await waitFor("the VIP on n1", () => witness.isHeld("n1"), 15_000);
        procs.push(vipd(n2));
        // The leader on n3, where no agent runs: each agent talks to it as to any member.
        await moveEtcdLeader(site, "n3");
        await sleep(2000);
        const before = [await reconnects(n1), await reconnects(n2)];
        const t0 = labNow();
        await lab.etcd.stopMember("n3", "SIGKILL");
        const elected = await waitForEtcdLeader({ nodes: site.nodes.filter((x) => x.name !== "n3") }, (l) => l !== "n3", { timeoutMs: 15_000 });
        await sleep(5000);
        const after = [await reconnects(n1), await reconnects(n2)];
        const held = witness.intervals(t0, labNow());
        return { electedMs: Math.round(elected.ms), leader: elected.leader, resets: after.map((x, i) => x - before[i]!), holders: [...held].filter(([, l]) => l.length > 0).map(([node]) => node) };
      });
      expect([a!.code, b!.code]).toEqual([0, 0]);
      console.log(`pre-vote ${preVote}: leader n3 killed, ${result.leader} elected after ${result.electedMs} ms; reconnects n1 ${result.resets[0]}, n2 ${result.resets[1]}; VIP held by ${result.holders}`);
      expect(witness.problems).toEqual([]);
      expect(result.resets, `n1:\n${a!.log}\nn2:\n${b!.log}`).toEqual([0, 0]);
    }, 90_000);
  });
}
