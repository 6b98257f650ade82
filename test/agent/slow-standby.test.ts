// The paths where a standby's slow heartbeat (design.md §3 "Heartbeat by
// role": every min(H/2, 1250 ms), against a holder's 250 ms) is what bounds
// the outcome, on three real agents and a real etcd cluster, against etcd
// without raft pre-vote (3.4's default) and with it (3.5's, kubeadm's):
//   1. `vipd handover` to a node that stands by at its slow pace: the command
//      hears a heartbeat of each candidate (one interval, 750 ms to spare in
//      HEARD_WITHIN_MS) and writes its key within one standby interval of its
//      own start-up; the move, from the key, is the planned move's; the new
//      head, made so by the holder's release, beats at once and every 250 ms.
//   2. The holder killed, the first in line frozen right after a slow
//      heartbeat it sent once the holder was dead: the third in line takes
//      over one window and one stagger after *that* heartbeat, which it
//      received last (its window, not the holder's, decides), not before,
//      and serves within the documented bound.
// Commits are dated by a watch on the prefix through n3's etcd member, as
// the agents' watches receive them; what a client sees by a witness asking
// each node's MAC for the VIP every 10 ms (mac-witness.ts): the VIP answered
// by the new holder's MAC, never by two at once.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { labNow, REPO_ROOT, spawnInNetns } from "../lab/cluster.ts";
import { CI_ALLOWANCE, vipdBounds } from "../lab/bounds.ts";
import type { EtcdSite } from "../lab/etcd-admin.ts";
import { queueOf, startInLine } from "./fixtures/in-line.ts";
import { EtcdKeyWatch, type EtcdWatchEvent } from "../lab/etcd-watch.ts";
import { MacWitness, macOf } from "../lab/mac-witness.ts";
import { sleep, waitFor } from "../lab/sh.ts";
import { SmallLab, stopVipd } from "../lab/small-lab.ts";
import { HEARTBEAT_INTERVAL_MS, silenceWindow, STANDBY_INTERVAL_MAX_MS, TAKEOVER_STAGGER_MS } from "../../src/election/proof.ts";

const VIP = "192.0.2.179";
const NODES = ["n1", "n2", "n3"] as const;
type Node = (typeof NODES)[number];
const B = vipdBounds();
const WINDOW_MS = silenceWindow(B.holdMs);
/** A planned move, from its key's commit (bounds.ts). */
const PLANNED_MS = B.gracefulMs + CI_ALLOWANCE.gracefulMs;
/** Serving behind two silent agents, from the later of their last heartbeats (bounds.ts). */
const SERVE_BEHIND_SILENT_MS = B.serveBehindSilentMs + CI_ALLOWANCE.serveMs;
/** The command polls heartbeats every 100 ms (operate.ts heardFrom); then a lease and a transaction: allowed, with scheduling. */
const COMMAND_REACTS_MS = 300;
/** As rank-stagger.test.ts: the takeover lands after its deadline by a timer, a transaction and the watch's delivery; less than half a stagger. */
const LATE_MS = 100;
/** The watch here and the candidate's own receive a heartbeat a few ms apart, in either order. */
const EARLY_MS = 20;
/** A head made by a release beats at once (one watch event and a round trip): half a holder's interval. */
const AT_ONCE_MS = HEARTBEAT_INTERVAL_MS / 2;
/** Its heartbeats in its first second as head: one at once and one every 250 ms (5), less one late timer. */
const FIRST_SECOND_MIN = 4;
/** Gaps between a standby's heartbeats: its slow pace, not a holder's (a 100 ms retry or a 250 ms beat would be far below). */
const SLOW_GAP_MIN_MS = STANDBY_INTERVAL_MAX_MS - TAKEOVER_STAGGER_MS;

let lab: SmallLab;
let site: EtcdSite;
let watch: EtcdKeyWatch;
let witness: MacWitness;
let config: string;
let since = 0;
const agents = new Map<Node, Subprocess<"ignore", "ignore", "pipe">>();

function start(node: Node): void {
  agents.set(node, lab.vipd(lab.host(node), ["--config", config, "--node-name", node, "--etcd-endpoints", "http://127.0.0.1:2379",
    "--health-listen", "127.0.0.1:18179", "--log-format", "json"]));
}

const queue = () => queueOf(site, VIP);

const beats = (node: Node, from: number, to: number): EtcdWatchEvent[] =>
  watch.events.filter((e) => e.key === `/vipd/heartbeats/${node}` && e.type === "PUT" && e.t >= from && e.t < to);

/** The gaps between node's heartbeats over `ms` before `at`: at least one, each a standby's. */
function expectSlowPace(node: Node, at: number, ms = 4000): void {
  const b = beats(node, at - ms, at);
  const gaps = b.slice(1).map((e, i) => Math.round(e.t - b[i]!.t));
  console.log(`${node}'s heartbeats before the fault came ${gaps.join(", ")} ms apart`);
  expect(gaps.length, `${node}'s heartbeats seen`).toBeGreaterThan(0);
  for (const g of gaps) expect(g, `${node} stands by at its slow pace`).toBeGreaterThan(SLOW_GAP_MIN_MS);
}

/** `vipd ARGS` from the client's namespace, as an operator's machine on the segment, through every etcd member. */
async function vipdCommand(args: readonly string[]): Promise<{ code: number; out: string; err: string }> {
  const endpoints = NODES.map((n) => `http://${lab.host(n).ip4}:2379`).join(",");
  const p = Bun.spawn(["ip", "netns", "exec", lab.host("c").ns, process.execPath, join(REPO_ROOT, "src", "main.ts"), ...args, "--etcd-endpoints", endpoints], {
    stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, SUDO_USER: "", USER: "ops" },
  });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}

/** The first tick node answered in at or after `from`, on the lab clock; fails the test if none. */
function firstAnswer(node: Node, from: number): number {
  const t = witness.answeredBy(node, from)[0]?.t;
  expect(t, `${node} answered for the VIP after ${Math.round(from - since)} ms`).toBeDefined();
  return t!;
}

for (const preVote of [false, true]) {
  describe(`etcd ${preVote ? "with" : "without"} raft pre-vote`, () => {
    beforeAll(async () => {
      lab = await SmallLab.start(NODES, { preVote }, { clients: ["c"] });
      site = { nodes: NODES.map((name) => ({ name, host: lab.host(name) })) };
      config = lab.vipConfig("vip.yaml", VIP);
      // Through n3's member: only vipd processes are killed or frozen here, never etcd.
      watch = await EtcdKeyWatch.start((name, argv, opts) => spawnInNetns(lab.host("n3").ns, join(lab.dir, `${name}.log`), name, argv, opts), "/vipd/");
      witness = MacWitness.start(lab, lab.host("c"), VIP, await Promise.all(NODES.map(async (node) => ({ node, mac: await macOf(lab.host(node)) }))));
      since = labNow();
      await startInLine(lab, site, VIP, NODES, start);
    }, 60_000);

    afterAll(async () => {
      for (const p of agents.values()) p.kill("SIGCONT");
      await witness?.stop().catch(() => {});
      await watch?.stop().catch(() => {});
      await lab?.close();
    }, 30_000);

    test("handover to a standby at its slow pace: the key within one standby interval, the move within the planned bound, one MAC at a time, the new head at 250 ms at once", async () => {
      // The command's own cost (start-up, connecting, one read, exit), measured here: a hand-over of a VIP nobody stands for refuses after one read.
      const t0 = labNow();
      const refused = await vipdCommand(["handover", "198.51.100.7"]);
      const ownMs = labNow() - t0;
      expect(refused.code).toBe(1);
      await sleep(5000); // a few standby heartbeats of n2 and n3, past n3's join
      const t = labNow();
      expectSlowPace("n2", t);
      expectSlowPace("n3", t);
      const r = await vipdCommand(["handover", VIP]);
      expect(r.err).toBe("");
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/^192\.0\.2\.179: handed over from n1 to n2 in \d+ ms\n$/);
      const key = await watch.first(`/vipd/handovers/${VIP}`, "PUT", 1000, t);
      expect(key, "the hand-over key committed").not.toBeNull();
      // It heard each candidate's heartbeat after it started, and wrote its key once it had: one standby interval at the most.
      const heard = (["n2", "n3"] as const).map((n) => beats(n, t, key!.t).at(-1)?.t);
      for (const [i, h] of heard.entries()) expect(h, `a heartbeat of ${["n2", "n3"][i]} between the command's start and its key`).toBeDefined();
      const lastHeard = Math.max(...heard.map((h) => h!));
      console.log(`handover: the command's own cost ${Math.round(ownMs)} ms; its key ${Math.round(key!.t - t)} ms after its start, ` +
        `${Math.round(key!.t - lastHeard)} ms after the later of n2's and n3's heartbeats (${heard.map((h) => Math.round(h! - t)).join(", ")} ms after its start)`);
      expect(key!.t - lastHeard).toBeLessThanOrEqual(COMMAND_REACTS_MS);
      expect(key!.t - t).toBeLessThanOrEqual(ownMs + STANDBY_INTERVAL_MAX_MS + COMMAND_REACTS_MS);
      // What a client sees: n1's MAC stops answering and n2's starts within the planned-move bound of the key, never both.
      await waitFor("n2 answers for the VIP", () => witness.answeredBy("n2", key!.t).length > 0, 5000, 5);
      const n2From = firstAnswer("n2", key!.t);
      const n1Until = witness.answeredBy("n1", key!.t).at(-1)?.t ?? key!.t;
      console.log(`handover: n1 answered until ${Math.round(n1Until - key!.t)} ms and n2 from ${Math.round(n2From - key!.t)} ms after the key`);
      expect(n1Until - key!.t).toBeLessThanOrEqual(PLANNED_MS);
      expect(n2From - key!.t).toBeLessThanOrEqual(PLANNED_MS);
      expect(witness.describeOverlaps()).toBe("none");
      // The new head, made so by n1's release: its heartbeats in etcd right after it.
      const released = await watch.first(`/vipd/elections/${VIP}/n1`, "DELETE", 1000, t);
      expect(released, "n1's queue key released").not.toBeNull();
      await sleep(Math.max(0, released!.t + 1000 - labNow()));
      const first = beats("n2", released!.t, released!.t + 1000);
      console.log(`n2's heartbeats after n1's release: ${first.map((e) => Math.round(e.t - released!.t)).join(", ")} ms`);
      expect(first.length).toBeGreaterThanOrEqual(FIRST_SECOND_MIN);
      expect(first[0]!.t - released!.t).toBeLessThanOrEqual(AT_ONCE_MS);
      await waitFor("n1 back in line", async () => (await queue()).join() === "n2,n3,n1", 5000);
    }, 60_000);

    test("holder killed, the next frozen after a slow heartbeat sent since: the third takes over one window and one stagger after that heartbeat, not before, and serves within the bound", async () => {
      await sleep(3000); // n3 and n1 back at their slow pace after the hand-over
      const t = labNow();
      expectSlowPace("n3", t);
      agents.get("n2")!.kill("SIGKILL");
      await agents.get("n2")!.exited;
      // n3's first heartbeat at least 200 ms after the kill (so its window ends clearly after n2's), within its interval; then freeze it at once.
      const last3 = await watch.first("/vipd/heartbeats/n3", "PUT", STANDBY_INTERVAL_MAX_MS + 1000, t + 200);
      agents.get("n3")!.kill("SIGSTOP");
      expect(last3, "a heartbeat of n3 after the kill").not.toBeNull();
      try {
        const took = await watch.first(`/vipd/elections/${VIP}/n2`, "DELETE", 10_000, t);
        expect(took, "n2's queue key taken over").not.toBeNull();
        await waitFor("n1 answers for the VIP", () => witness.answeredBy("n1", t).length > 0, 5000, 5);
        const last2 = beats("n2", t - 2000, t + 50).at(-1);
        expect(last2, "n2's heartbeats seen").toBeDefined();
        const lastN3 = beats("n3", t, labNow()).at(-1)!;
        expect(lastN3.t).toBe(last3!.t); // frozen right after it
        const fromN2 = took!.t - last2!.t;
        const fromN3 = took!.t - last3!.t;
        const served = firstAnswer("n1", t) - last3!.t;
        console.log(`n1 (third) took over ${Math.round(fromN2)} ms after n2's last heartbeat and ${Math.round(fromN3)} ms after n3's, ` +
          `which came ${Math.round(last3!.t - t)} ms after the kill; served ${Math.round(served)} ms after it (window ${Math.round(WINDOW_MS)} ms + stagger ${TAKEOVER_STAGGER_MS} ms)`);
        // After both windows and the stagger: the later, n3's, decides.
        expect(fromN2).toBeGreaterThanOrEqual(WINDOW_MS + TAKEOVER_STAGGER_MS - EARLY_MS);
        expect(fromN3).toBeGreaterThanOrEqual(WINDOW_MS + TAKEOVER_STAGGER_MS - EARLY_MS);
        expect(fromN3).toBeLessThan(WINDOW_MS + TAKEOVER_STAGGER_MS + LATE_MS);
        expect(served).toBeLessThanOrEqual(SERVE_BEHIND_SILENT_MS);
        expect(witness.answeredBy("n3", t)).toEqual([]);
        expect(witness.describeOverlaps()).toBe("none");
      } finally {
        agents.get("n3")!.kill("SIGCONT");
      }
      for (const node of ["n1", "n3"] as const) expect((await stopVipd(agents.get(node)!)).code).toBe(0);
    }, 60_000);

    test("the whole run: never two MACs at once, the witness and the watch whole", () => {
      expect(witness.errors).toEqual([]);
      expect(watch.problems).toEqual([]);
      expect(witness.describeOverlaps()).toBe("none");
    });
  });
}
