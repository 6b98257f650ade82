// An etcd stall longer than the ride-out drops the VIP by the proof deadline
// (design.md §5, §7, §10; README's failure table: "the holder's own etcd
// member, when it is the only endpoint vipd is given, stalls for longer than
// about holdTime − 0.3 s"). The holder's only endpoint is its own member,
// frozen (SIGSTOP) for 4 s, longer than a hold, while the other two members
// keep quorum and etcd's raft leader is elsewhere. No heartbeat of the holder
// commits after the freeze, so its last proof, from a heartbeat sent before
// it, runs out at most H − m after the freeze: its kernel must stop
// answering by then, and a node with its own healthy member takes over.
// What is asserted is the kernel's view, as the lab's ownership witness
// records it (recorder.ts): the address on the link and the fence letting
// it pass, with the instant a fence element expires.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { labNow } from "../lab/cluster.ts";
import { moveEtcdLeader } from "../lab/etcd-admin.ts";
import type { Host } from "../lab/netns.ts";
import type { OwnershipRecorder } from "../lab/recorder.ts";
import { sleep, waitFor } from "../lab/sh.ts";
import { CI_ALLOWANCE, vipdBounds } from "../lab/bounds.ts";
import { SmallLab, stopVipd } from "../lab/small-lab.ts";
import { overlap } from "../lab/stats.ts";

const VIP = "192.0.2.173";
const FREEZE_MS = 4000;
/** The proof deadline after the freeze (H − m), plus the witness's stated allowance (its monitors, a jiffy, scheduling: 100 ms). */
const RELEASE_MS = vipdBounds().releaseMs + CI_ALLOWANCE.releaseMs;
/** Another node serves within the design's crash bound (§10, ≈ 2.8 s), plus the CI allowance for serving (one heartbeat interval). */
const SERVE_MS = vipdBounds().serveMs + CI_ALLOWANCE.serveMs;

let lab: SmallLab;
let n: Host[];
let witness: OwnershipRecorder;

beforeAll(async () => {
  lab = await SmallLab.start(["n1", "n2", "n3"]);
  n = ["n1", "n2", "n3"].map((x) => lab.host(x));
  witness = await lab.witness(VIP, n);
}, 60_000);

afterAll(async () => {
  lab?.etcd.signal("n1", "SIGCONT");
  await lab?.close();
}, 30_000);

test("the holder's only member frozen 4 s: its kernel stops answering by the proof deadline, and n2 takes over, never two holders", async () => {
  const config = lab.vipConfig("vip.yaml", VIP);
  const [n1, n2] = [n[0]!, n[1]!];
  const vipd = (h: Host) => lab.vipd(h, ["--config", config, "--node-name", h.name, "--etcd-endpoints", "http://127.0.0.1:2379", "--log-format", "json"]);
  const procs = [vipd(n1)];
  try {
    await waitFor("the VIP on n1", () => witness.isHeld("n1"), 15_000);
    procs.push(vipd(n2));
    // The cluster keeps a leader through the freeze: only n1's member stalls.
    await moveEtcdLeader({ nodes: n.map((h) => ({ name: h.name, host: h })) }, "n3");
    await sleep(2000);
    expect(witness.holders()).toEqual(["n1"]);

    const t0 = labNow();
    lab.etcd.signal("n1", "SIGSTOP");
    try {
      await sleep(FREEZE_MS);
    } finally {
      lab.etcd.signal("n1", "SIGCONT");
    }
    await sleep(2000);
    const end = labNow();

    const held = witness.intervals(t0, end);
    const n1Stop = witness.edges.find((e) => e.t >= t0 && e.node === "n1" && !e.held);
    const n2Start = witness.edges.find((e) => e.t >= t0 && e.node === "n2" && e.held);
    const n1StopMs = n1Stop ? Math.round(n1Stop.t - t0) : null;
    const n2StartMs = n2Start ? Math.round(n2Start.t - t0) : null;
    console.log(`member frozen ${FREEZE_MS} ms: n1 stopped answering after ${n1StopMs} ms (bound ${RELEASE_MS}), n2 answered after ${n2StartMs} ms (bound ${SERVE_MS})`);
    expect(witness.problems).toEqual([]);
    expect(n1StopMs, "n1 never stopped answering").not.toBeNull();
    expect(n1StopMs!).toBeLessThanOrEqual(RELEASE_MS);
    expect(n2StartMs, "n2 never took over").not.toBeNull();
    expect(n2StartMs!).toBeLessThanOrEqual(SERVE_MS);
    expect(overlap(held).total).toBe(0);
    // n3 runs no agent; n1 took nothing back while n2 held it.
    expect(witness.holders()).toEqual(["n2"]);
  } finally {
    await Promise.all(procs.map(stopVipd));
  }
}, 60_000);
