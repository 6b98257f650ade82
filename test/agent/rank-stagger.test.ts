// The rank stagger (design.md §3, takeover.ts takeoverAt): a candidate may
// take a VIP over once every agent ahead of it has been silent for its window
// H(1 + ρ) + m since it last heard it, and "ranks after the first wait
// TAKEOVER_STAGGER_MS (250 ms) more per rank, so the next in line normally
// takes over alone". Timed through etcd itself: a watch on the prefix dates
// each agent's last heartbeat and the takeover's commit (the holder's queue
// key deleted) as they arrive, as every agent's own watch receives them.
//   1. Holder n1 killed, n2 and n3 alive behind it: n2 takes over one window
//      after n1's last heartbeat, and n3 never holds the VIP.
//   2. n1 restarted (the queue is now n2, n3, n1); holder n2 killed and n3
//      frozen at once: n1, second in line, takes over one window and one
//      stagger after the later of their last heartbeats. n3, a standby,
//      beat at its slow pace (design.md §3 "Heartbeat by role", 1250 ms);
//      the window counts from when its last heartbeat was received all
//      the same.
// Both against etcd without raft pre-vote (3.4's default) and with it
// (3.5's, kubeadm's), to the same bounds.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { labNow, spawnInNetns } from "../lab/cluster.ts";
import type { EtcdSite } from "../lab/etcd-admin.ts";
import { queueOf, startInLine } from "./fixtures/in-line.ts";
import { EtcdKeyWatch } from "../lab/etcd-watch.ts";
import { OwnershipRecorder } from "../lab/recorder.ts";
import { sleep, waitFor } from "../lab/sh.ts";
import { SmallLab, stopVipd } from "../lab/small-lab.ts";
import { DRIFT, MARGIN_MS, STANDBY_INTERVAL_MAX_MS, TAKEOVER_STAGGER_MS } from "../../src/election/proof.ts";

const VIP = "192.0.2.178";
const NODES = ["n1", "n2", "n3"] as const;
type Node = (typeof NODES)[number];
const ETCD = ["--etcd-endpoints", "http://127.0.0.1:2379"];
/** The default hold time, and the silence window a candidate waits for each agent ahead (proof.ts silenceWindow). */
const HOLD_MS = 2500;
const WINDOW_MS = HOLD_MS * (1 + DRIFT) + MARGIN_MS;
/**
 * Measured against the watch's arrival times, the takeover lands after the
 * candidate's deadline by its loop's timer, the transaction's round trip and
 * the watch's delivery: a few ms on an idle machine. Allowed: less than half
 * a stagger, so a missing or doubled stagger cannot pass.
 */
const LATE_MS = 100;
/** The watch and the candidate receive the same heartbeat a few ms apart, in either order. */
const EARLY_MS = 20;

let lab: SmallLab;
let rec: OwnershipRecorder;
let site: EtcdSite;
let watch: EtcdKeyWatch;
const agents = new Map<Node, Subprocess<"ignore", "ignore", "pipe">>();
let config: string;

function start(node: Node): void {
  agents.set(node, lab.vipd(lab.host(node), ["--config", config, "--node-name", node, ...ETCD, "--health-listen", "127.0.0.1:18178", "--log-format", "json"]));
}

const queue = () => queueOf(site, VIP);

/** When the watch received node's last heartbeat before `before`. */
function lastHeartbeat(node: Node, before: number): number {
  const hb = watch.events.filter((e) => e.key === `/vipd/heartbeats/${node}` && e.type === "PUT" && e.t < before);
  expect(hb.length, `heartbeats of ${node} seen`).toBeGreaterThan(0);
  return hb[hb.length - 1]!.t;
}

/** Kills the holder (and freezes `frozen`, if any), then times the takeover of `taker` from the last heartbeat of those ahead of it. */
async function timedTakeover(holder: Node, taker: Node, frozen: Node | null): Promise<number> {
  await sleep(1000); // every agent beating steadily
  const since = labNow();
  if (frozen) agents.get(frozen)!.kill("SIGSTOP");
  agents.get(holder)!.kill("SIGKILL");
  await agents.get(holder)!.exited;
  const took = await watch.first(`/vipd/elections/${VIP}/${holder}`, "DELETE", 10_000, since);
  expect(took, `${holder}'s queue key taken over`).not.toBeNull();
  await waitFor(`${taker} holds the VIP`, () => rec.isHeld(taker), 5000, 5);
  const silentFrom = Math.max(lastHeartbeat(holder, since + 50), ...(frozen ? [lastHeartbeat(frozen, since + 50)] : []));
  return took!.t - silentFrom;
}

for (const preVote of [false, true]) {
  describe(`etcd ${preVote ? "with" : "without"} raft pre-vote`, () => {
    beforeAll(async () => {
      lab = await SmallLab.start(NODES, { preVote });
      site = { nodes: NODES.map((name) => ({ name, host: lab.host(name) })) };
      config = lab.vipConfig("vip.yaml", VIP);
      rec = await OwnershipRecorder.start({ vip: VIP, dir: lab.dir, nodes: NODES.map((name) => ({ name, host: lab.host(name) })), spawnIn: spawnInNetns });
      // Through n3's etcd member: only vipd processes are killed or frozen here, never etcd.
      watch = await EtcdKeyWatch.start((name, argv, opts) => spawnInNetns(lab.host("n3").ns, join(lab.dir, `${name}.log`), name, argv, opts), "/vipd/");
      await startInLine(lab, site, VIP, NODES, start);
    }, 60_000);

    afterAll(async () => {
      await watch?.stop().catch(() => {});
      await rec?.close();
      await lab?.close();
    }, 30_000);

    test("the next in line takes over one window after the holder's last heartbeat; the one behind it never holds", async () => {
      const from = labNow();
      const delay = await timedTakeover("n1", "n2", null);
      console.log(`n2 (first in line) took over ${Math.round(delay)} ms after n1's last heartbeat (window ${Math.round(WINDOW_MS)} ms)`);
      expect(delay).toBeGreaterThanOrEqual(WINDOW_MS - EARLY_MS);
      expect(delay).toBeLessThan(WINDOW_MS + LATE_MS);
      await sleep(1000); // n3 would have taken over a stagger later
      expect(rec.intervals(from, labNow()).get("n3") ?? []).toEqual([]);
      expect(rec.holders()).toEqual(["n2"]);
    }, 60_000);

    test("with the first in line silent too, the second takes over one stagger later", async () => {
      start("n1");
      await waitFor("n1 back in the queue", async () => (await queue()).join(",") === "n2,n3,n1", 10_000);
      const from = labNow();
      let delay = 0;
      try {
        delay = await timedTakeover("n2", "n1", "n3");
      } finally {
        agents.get("n3")!.kill("SIGCONT");
      }
      console.log(`n1 (second in line) took over ${Math.round(delay)} ms after the later last heartbeat of n2 and n3 (window ${Math.round(WINDOW_MS)} ms + stagger ${TAKEOVER_STAGGER_MS} ms)`);
      // The premise: n3 stood by at its slow pace for the 5 s up to the freeze (timedTakeover freezes it 1 s after `from`), not at the holder's.
      const n3Beats = watch.events.filter((e) => e.key === "/vipd/heartbeats/n3" && e.type === "PUT" && e.t >= from - 4000 && e.t < from + 1000 + 50);
      const gaps = n3Beats.slice(1).map((e, i) => e.t - n3Beats[i]!.t);
      console.log(`n3's heartbeats before the freeze came ${gaps.map(Math.round).join(", ")} ms apart`);
      expect(gaps.length).toBeGreaterThan(0);
      for (const g of gaps) expect(g).toBeGreaterThan(STANDBY_INTERVAL_MAX_MS - TAKEOVER_STAGGER_MS);
      expect(delay).toBeGreaterThanOrEqual(WINDOW_MS + TAKEOVER_STAGGER_MS - EARLY_MS);
      expect(delay).toBeLessThan(WINDOW_MS + TAKEOVER_STAGGER_MS + LATE_MS);
      expect(rec.problems).toEqual([]);
      const held = rec.intervals(from, labNow());
      expect(held.get("n3") ?? []).toEqual([]);
      expect(watch.problems).toEqual([]);
      for (const node of ["n1", "n3"] as const) expect((await stopVipd(agents.get(node)!)).code).toBe(0);
    }, 60_000);
  });
}
