// The faults of the matrix, each applied to the node that holds the VIP when
// it starts (the victim) and undone by recover() after its hold time.
//
// - graceful: SIGTERM to the implementation's main PID (as `systemctl stop`).
// - crash: SIGKILL to every process of the implementation (parent and children).
// - freeze: SIGSTOP to every process for the hold, then SIGCONT.
// - link-down: the victim's cable is pulled *at the switch* (its bridge port goes
//   down, so the victim's eth0 loses carrier, as with a cut cable or a dead
//   switch port). Its addresses stay configured.
// - partition: an nftables netdev table on the victim's eth0 drops every frame
//   in and out (ARP and IPv6 ND too); loopback is untouched, so the victim
//   still talks to its own etcd member and apiserver.
// - quorum-loss: the etcd members of all other nodes are SIGKILLed; the
//   victim's own member stays up without quorum.
// - etcd-leader-and-holder: the raft leader's etcd member and the victim's
//   implementation are SIGKILLed at the same moment (one node when the holder
//   is also the leader).
import { sh } from "./sh.ts";
import type { Lab, LabNode } from "./cluster.ts";

export type FaultId = "graceful" | "crash" | "freeze" | "link-down" | "partition" | "quorum-loss" | "etcd-leader-and-holder";

export const FAULT_IDS: readonly FaultId[] = ["graceful", "crash", "freeze", "link-down", "partition", "quorum-loss", "etcd-leader-and-holder"];

export interface AppliedFault {
  /** What exactly was done, for the log (e.g. which etcd member was leader). */
  detail: string;
  recover(): Promise<void>;
}

export interface Fault {
  readonly id: FaultId;
  readonly title: string;
  /** How long the fault lasts before recover(). */
  readonly holdMs: number;
  /** The victim's implementation is dead or frozen: a VIP still on it counts as left behind. */
  readonly victimStops: boolean;
  apply(lab: Lab, victim: LabNode): Promise<AppliedFault>;
}

const HOLD_MS = 15_000;

/**
 * Recovery from a dead program is a reboot of the node: a VIP the dead program
 * left on the link is gone, and the program starts again.
 */
async function rebootVip(lab: Lab, victim: LabNode): Promise<void> {
  await lab.stopVip(victim, "SIGKILL", 1000);
  await lab.clearVip(victim);
  await restartVip(lab, victim);
}

async function restartVip(lab: Lab, victim: LabNode): Promise<void> {
  const impl = lab.implementation;
  if (!impl) throw new Error("no implementation to restart");
  if (victim.vip?.running) return;
  victim.vip = null;
  await lab.startVip(impl, victim);
}

function vipProcess(victim: LabNode) {
  if (!victim.vip?.running) throw new Error(`the implementation on ${victim.name} is not running`);
  return victim.vip;
}

export const FAULTS: Record<FaultId, Fault> = {
  graceful: {
    id: "graceful",
    title: "graceful stop (SIGTERM)",
    holdMs: 6000,
    victimStops: true,
    async apply(lab, victim) {
      const p = vipProcess(victim);
      p.signal("SIGTERM");
      return { detail: `SIGTERM to ${p.name} (pid ${p.pid})`, recover: async () => {
        await lab.stopVip(victim, "SIGTERM", 1000);
        await restartVip(lab, victim);
      } };
    },
  },
  crash: {
    id: "crash",
    title: "process crash (SIGKILL)",
    holdMs: HOLD_MS,
    victimStops: true,
    async apply(lab, victim) {
      const p = vipProcess(victim);
      const pids = p.tree();
      p.signalTree("SIGKILL");
      return { detail: `SIGKILL to ${p.name} (pids ${pids.join(",")})`, recover: async () => {
        await rebootVip(lab, victim);
      } };
    },
  },
  freeze: {
    id: "freeze",
    title: "process frozen 15 s (SIGSTOP, SIGCONT)",
    holdMs: HOLD_MS,
    victimStops: true,
    async apply(_lab, victim) {
      const p = vipProcess(victim);
      p.signalTree("SIGSTOP");
      return { detail: `SIGSTOP to ${p.name} (pids ${p.tree().join(",")})`, recover: async () => p.signalTree("SIGCONT") };
    },
  },
  "link-down": {
    id: "link-down",
    title: "link down 15 s (cable cut at the switch)",
    holdMs: HOLD_MS,
    victimStops: false,
    async apply(lab, victim) {
      await lab.seg.cable(victim.host, "down");
      return { detail: `switch port ${victim.host.port} down`, recover: () => lab.seg.cable(victim.host, "up") };
    },
  },
  partition: {
    id: "partition",
    title: "network partition 15 s (nftables drops all but loopback)",
    holdMs: HOLD_MS,
    victimStops: false,
    async apply(lab, victim) {
      const link = victim.host.link;
      await nft(victim, `table netdev vipd_lab_partition {
        chain in { type filter hook ingress device "${link}" priority -500; policy drop; }
        chain out { type filter hook egress device "${link}" priority -500; policy drop; }
      }`);
      return { detail: `nftables drop on ${victim.name}/${link}`, recover: () => nft(victim, "delete table netdev vipd_lab_partition") };
    },
  },
  "quorum-loss": {
    id: "quorum-loss",
    title: "etcd quorum lost 15 s (other members killed)",
    holdMs: HOLD_MS,
    victimStops: false,
    async apply(lab, victim) {
      const others = lab.nodes.filter((n) => n !== victim).map((n) => n.name);
      await Promise.all(others.map((n) => lab.etcdCluster.stopMember(n, "SIGKILL")));
      return { detail: `etcd SIGKILLed on ${others.join(", ")}`, recover: async () => {
        for (const n of others) await lab.etcdCluster.startMember(n);
      } };
    },
  },
  "etcd-leader-and-holder": {
    id: "etcd-leader-and-holder",
    title: "etcd raft leader and VIP holder killed (SIGKILL)",
    holdMs: HOLD_MS,
    victimStops: true,
    async apply(lab, victim) {
      const leader = await etcdLeader(lab);
      const p = vipProcess(victim);
      await Promise.all([lab.etcdCluster.stopMember(leader, "SIGKILL"), Promise.resolve(p.signalTree("SIGKILL"))]);
      return { detail: `SIGKILL to etcd leader on ${leader} and ${p.name} on ${victim.name}`, recover: async () => {
        await lab.etcdCluster.startMember(leader);
        await rebootVip(lab, victim);
      } };
    },
  },
};

export function faultsByName(list: string): Fault[] {
  return list.split(",").map((s) => s.trim()).filter(Boolean).map((id) => {
    const f = FAULTS[id as FaultId];
    if (!f) throw new Error(`unknown fault "${id}" (wanted ${FAULT_IDS.join(", ")})`);
    return f;
  });
}

async function nft(node: LabNode, script: string): Promise<void> {
  await sh(["ip", "netns", "exec", node.host.ns, "nft", script]);
}

/**
 * The node whose etcd member is the raft leader: each member's
 * /v3/maintenance/status (grpc-gateway) names the leader's member ID and its own.
 */
export async function etcdLeader(lab: Lab): Promise<string> {
  for (const node of lab.nodes) {
    const out = await sh(["ip", "netns", "exec", node.host.ns, "curl", "-sf", "--max-time", "1", "-X", "POST",
      "-d", "{}", "http://127.0.0.1:2379/v3/maintenance/status"], { allowFail: true });
    if (!out) continue;
    const s = JSON.parse(out) as { header?: { member_id?: string }; leader?: string };
    if (s.leader && s.header?.member_id === s.leader) return node.name;
  }
  throw new Error("no etcd member reports itself as the raft leader");
}
