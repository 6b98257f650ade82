// The faults of the matrix, each applied to the node that holds the VIP when
// it starts (the victim) and undone by recover() after its hold time.
//
// Faults on the holder, where the VIP should move:
// - graceful: SIGTERM to the implementation's main PID (as `systemctl stop`).
// - drain, handover: planned moves, `vipd drain <victim>` and
//   `vipd handover <vip>` run from the client's namespace; undrained at
//   recovery. vipd only.
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
// crash, freeze, link-down and partition also come placed: `<fault>@leader`
// with etcd's raft leader moved onto the victim's node first, `<fault>@follower`
// with it moved to another node. The trial places it before the fault's clock
// starts and waits for a steady holder again (trial.ts).
//
// Faults of etcd alone, where the VIP must NOT move (vipStays): the holder is
// fine and etcd keeps quorum; the trials report whether the VIP moved anyway
// and what the client lost (expected: nothing).
// - etcd-leader-elsewhere: the raft leader's member, on a node that does not
//   hold the VIP, is SIGKILLed; restarted at recovery.
// - etcd-member-freeze: the holder's own member (a follower) is frozen for
//   1.5 s (SIGSTOP, SIGCONT); `@leader`: the same with the leader on the holder.
// - etcd-move-leader-to-holder: MoveLeader from another node to the holder's
//   member; etcd-move-leader-off-holder: from the holder's member to another.
// - same-node-name: a second instance started under the holder's node name on
//   another host of the segment (the client's namespace, where no agent runs:
//   a cloned VM that kept its host name). It must refuse to run (exit 2) and
//   leave the holder alone. Only for implementations with node names (vipd).
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Lab, type LabNode, labNow } from "./cluster.ts";
import type { VipImplementation } from "./implementations.ts";
import { etcdLeader, type LeaderMove, moveEtcdLeader, waitForEtcdLeader } from "./etcd-admin.ts";
import { sh, sleep } from "./sh.ts";

export { etcdLeader } from "./etcd-admin.ts";

type Placeable = "crash" | "freeze" | "link-down" | "partition";

export type FaultId =
  | "graceful"
  | "drain"
  | "handover"
  | Placeable
  | `${Placeable}@leader`
  | `${Placeable}@follower`
  | "quorum-loss"
  | "etcd-leader-and-holder"
  | "etcd-leader-elsewhere"
  | "etcd-member-freeze"
  | "etcd-member-freeze@leader"
  | "etcd-move-leader-to-holder"
  | "etcd-move-leader-off-holder"
  | "same-node-name";

/** The faults the benchmark and the fault matrix run by default, in order. */
export const FAULT_IDS: readonly FaultId[] = [
  "graceful", "drain", "handover",
  "crash@leader", "crash@follower",
  "freeze@leader", "freeze@follower",
  "link-down@leader", "link-down@follower",
  "partition@leader", "partition@follower",
  "quorum-loss", "etcd-leader-and-holder",
  "etcd-leader-elsewhere", "etcd-member-freeze", "etcd-member-freeze@leader",
  "etcd-move-leader-to-holder", "etcd-move-leader-off-holder",
  "same-node-name",
];

/**
 * The faults whose etcd outage depends on raft pre-vote, run again against
 * etcd without it: the cut node rejoining (without pre-vote it comes back
 * with a higher term and deposes the leader), and the holder's member frozen
 * as the leader.
 */
export const PRE_VOTE_FAULT_IDS: readonly FaultId[] = [
  "link-down@leader", "link-down@follower", "partition@leader", "partition@follower", "etcd-member-freeze@leader",
];

/** Where etcd's raft leader must be when the fault hits: on the victim's node, or on another. */
export type LeaderPlacement = "victim" | "elsewhere";

export interface AppliedFault {
  /** What exactly was done, for the log (e.g. which etcd member was leader). */
  detail: string;
  /** What the fault measured while it lasted, in ms (e.g. how long etcd took to elect a leader). */
  readonly timings?: Record<string, number>;
  /** What it learnt while it lasted, for the log; filled in as it happens. */
  readonly notes?: string[];
  /**
   * A planned move's request took effect then (lab clock): the signal sent.
   * Faults with a requestKey leave it to the trial, which watches the key.
   */
  readonly requestAt?: number;
  recover(): Promise<void>;
}

export interface Fault {
  readonly id: FaultId;
  readonly title: string;
  /** How long the fault lasts before recover(). */
  readonly holdMs: number;
  /** The victim's implementation is dead or frozen, or was asked to let go: a VIP still on it counts as left behind. */
  readonly victimStops: boolean;
  /**
   * Where etcd's raft leader is put before the fault, outside its clock;
   * wherever it happens to be when absent.
   */
  readonly etcdLeader?: LeaderPlacement;
  /**
   * The fault leaves the holder able to serve and etcd with quorum: the VIP
   * must stay where it is and the client should notice nothing.
   */
  readonly vipStays: boolean;
  /** The unplaced fault this one is a variant of (its own id otherwise): targets judge them together. */
  readonly base: FaultId;
  /** Whether the fault means anything for an implementation (all of them when absent). */
  appliesTo?(impl: VipImplementation): boolean;
  /**
   * A planned move asked through etcd: the key whose commit is the request.
   * The trial watches it on the victim's member from before the fault, and
   * times the move from its commit (etcd-watch.ts).
   */
  requestKey?(lab: Lab, victim: LabNode): string;
  apply(lab: Lab, victim: LabNode): Promise<AppliedFault>;
}

const HOLD_MS = 15_000;
/** vipd's keys in the lab's etcd: its default prefix (design.md §2). */
const ETCD_PREFIX = "/vipd/";
/** Faults of etcd alone: the disturbance, then a few seconds to see whether anything moves. */
const ETCD_HOLD_MS = 6000;
const MEMBER_FREEZE_MS = 1500;

/**
 * Recovery from a dead program is a reboot of the node: a VIP the dead program
 * left on the link is gone, so is its nftables fence, and the program starts again.
 */
async function rebootVip(lab: Lab, victim: LabNode): Promise<void> {
  await lab.stopVip(victim, "SIGKILL", 1000);
  await lab.clearVip(victim);
  await lab.clearFence(victim);
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

/** The node after `node` in the lab's order (n1 → n2 → n3 → n1): where a leader placed "elsewhere" goes. */
export function nextNode(lab: Lab, node: LabNode): LabNode {
  const i = lab.nodes.indexOf(node);
  return lab.nodes[(i + 1) % lab.nodes.length]!;
}

/**
 * Puts etcd's raft leader on the victim's node or on another one (the next
 * node), with MoveLeader, and waits until every member names it. Returns the
 * move made, or null when the leader already stood where it should.
 */
export async function placeEtcdLeader(lab: Lab, where: LeaderPlacement, victim: LabNode): Promise<LeaderMove | null> {
  const leader = await etcdLeader(lab);
  if (where === "victim" ? leader === victim.name : leader !== victim.name) return null;
  return await moveEtcdLeader(lab, where === "victim" ? victim.name : nextNode(lab, victim).name);
}

const graceful: Fault = {
  id: "graceful",
  base: "graceful",
  title: "graceful stop (SIGTERM)",
  holdMs: 6000,
  victimStops: true,
  vipStays: false,
  async apply(lab, victim) {
    const p = vipProcess(victim);
    const requestAt = labNow();
    p.signal("SIGTERM");
    return { detail: `SIGTERM to ${p.name} (pid ${p.pid})`, requestAt, recover: async () => {
      await lab.stopVip(victim, "SIGTERM", 1000);
      await restartVip(lab, victim);
    } };
  },
};

/**
 * Runs `vipd ARGS` from the client's namespace against the victim's etcd
 * member, as an operator would, and requires exit 0.
 */
async function vipdCommand(lab: Lab, victim: LabNode, name: string, args: readonly string[]): Promise<void> {
  const command = lab.implementation?.command;
  if (!command) throw new Error(`${lab.implementation?.id ?? "no implementation"} has no commands`);
  const dir = join(lab.dir, "commands");
  mkdirSync(dir, { recursive: true });
  const p = lab.spawnIn(lab.client.ns, join(dir, `${name}.log`), name, [...command, ...args, "--etcd-endpoints", `http://${victim.host.ip4}:2379`]);
  const code = await p.exited;
  if (code !== 0) throw new Error(`vipd ${args.join(" ")} exited with ${code}: ${p.logTail(3)}`);
}

const drain: Fault = {
  id: "drain",
  base: "drain",
  title: "planned: vipd drain <holder>",
  holdMs: 6000,
  victimStops: true,
  vipStays: false,
  appliesTo: (impl) => impl.command !== undefined,
  requestKey: (_lab, victim) => `${ETCD_PREFIX}drains/${victim.name}`,
  async apply(lab, victim) {
    await vipdCommand(lab, victim, `drain-${victim.name}`, ["drain", victim.name]);
    return { detail: `vipd drain ${victim.name}`, recover: () => vipdCommand(lab, victim, `undrain-${victim.name}`, ["undrain", victim.name]) };
  },
};

const handover: Fault = {
  id: "handover",
  base: "handover",
  title: "planned: vipd handover <vip> (to the next in line)",
  holdMs: 6000,
  victimStops: true,
  vipStays: false,
  appliesTo: (impl) => impl.command !== undefined,
  requestKey: (lab) => `${ETCD_PREFIX}handovers/${lab.vip}`,
  async apply(lab, victim) {
    await vipdCommand(lab, victim, `handover-from-${victim.name}`, ["handover", lab.vip]);
    return { detail: `vipd handover ${lab.vip} (held by ${victim.name})`, recover: async () => {} };
  },
};

const crash: Fault & { id: Placeable } = {
  id: "crash",
  base: "crash",
  title: "process crash (SIGKILL)",
  holdMs: HOLD_MS,
  victimStops: true,
  vipStays: false,
  async apply(lab, victim) {
    const p = vipProcess(victim);
    const pids = p.tree();
    p.signalTree("SIGKILL");
    return { detail: `SIGKILL to ${p.name} (pids ${pids.join(",")})`, recover: async () => {
      await rebootVip(lab, victim);
    } };
  },
};

const freeze: Fault & { id: Placeable } = {
  id: "freeze",
  base: "freeze",
  title: "process frozen 15 s (SIGSTOP, SIGCONT)",
  holdMs: HOLD_MS,
  victimStops: true,
  vipStays: false,
  async apply(_lab, victim) {
    const p = vipProcess(victim);
    p.signalTree("SIGSTOP");
    return { detail: `SIGSTOP to ${p.name} (pids ${p.tree().join(",")})`, recover: async () => p.signalTree("SIGCONT") };
  },
};

const linkDown: Fault & { id: Placeable } = {
  id: "link-down",
  base: "link-down",
  title: "link down 15 s (cable cut at the switch)",
  holdMs: HOLD_MS,
  victimStops: false,
  vipStays: false,
  async apply(lab, victim) {
    await lab.seg.cable(victim.host, "down");
    return { detail: `switch port ${victim.host.port} down`, recover: () => lab.seg.cable(victim.host, "up") };
  },
};

const partition: Fault & { id: Placeable } = {
  id: "partition",
  base: "partition",
  title: "network partition 15 s (nftables drops all but loopback)",
  holdMs: HOLD_MS,
  victimStops: false,
  vipStays: false,
  async apply(_lab, victim) {
    const link = victim.host.link;
    await nft(victim, `table netdev vipd_lab_partition {
      chain in { type filter hook ingress device "${link}" priority -500; policy drop; }
      chain out { type filter hook egress device "${link}" priority -500; policy drop; }
    }`);
    return { detail: `nftables drop on ${victim.name}/${link}`, recover: () => nft(victim, "delete table netdev vipd_lab_partition") };
  },
};

/** The same fault with etcd's raft leader placed first. */
function placed<B extends Placeable>(f: Fault & { id: B }, where: LeaderPlacement): Fault {
  return {
    ...f,
    id: where === "victim" ? `${f.id}@leader` : `${f.id}@follower`,
    title: `${f.title}, ${where === "victim" ? "etcd raft leader on the victim's node" : "etcd raft leader on another node"}`,
    etcdLeader: where,
  };
}

const quorumLoss: Fault = {
  id: "quorum-loss",
  base: "quorum-loss",
  title: "etcd quorum lost 15 s (other members killed)",
  holdMs: HOLD_MS,
  victimStops: false,
  vipStays: false,
  async apply(lab, victim) {
    const others = lab.nodes.filter((n) => n !== victim).map((n) => n.name);
    await Promise.all(others.map((n) => lab.etcdCluster.stopMember(n, "SIGKILL")));
    return { detail: `etcd SIGKILLed on ${others.join(", ")}`, recover: async () => {
      // All at once: on 5 or more nodes the first member back alone is short
      // of a quorum, and would never report healthy while the rest wait.
      await Promise.all(others.map((n) => lab.etcdCluster.startMember(n)));
    } };
  },
};

const leaderAndHolder: Fault = {
  id: "etcd-leader-and-holder",
  base: "etcd-leader-and-holder",
  title: "etcd raft leader and VIP holder killed (SIGKILL)",
  holdMs: HOLD_MS,
  victimStops: true,
  vipStays: false,
  async apply(lab, victim) {
    // The holder dies at the fault's start, before the leader is looked up:
    // its fence is judged from then, and an etcd round trip here (tens of
    // ms, more on a loaded machine) would have counted against it.
    const p = vipProcess(victim);
    p.signalTree("SIGKILL");
    const leader = await etcdLeader(lab);
    await lab.etcdCluster.stopMember(leader, "SIGKILL");
    return { detail: `SIGKILL to etcd leader on ${leader} and ${p.name} on ${victim.name}`, recover: async () => {
      await lab.etcdCluster.startMember(leader);
      await rebootVip(lab, victim);
    } };
  },
};

const leaderElsewhere: Fault = {
  id: "etcd-leader-elsewhere",
  base: "etcd-leader-elsewhere",
  title: "etcd raft leader killed on a node not holding the VIP (SIGKILL)",
  holdMs: ETCD_HOLD_MS,
  victimStops: false,
  vipStays: true,
  etcdLeader: "elsewhere",
  async apply(lab, victim) {
    const leader = await etcdLeader(lab);
    if (leader === victim.name) throw new Error(`etcd's leader is on the holder ${victim.name}, not elsewhere`);
    const killedAt = labNow();
    await lab.etcdCluster.stopMember(leader, "SIGKILL");
    const timings: Record<string, number> = {};
    const notes: string[] = [];
    const survivors = lab.nodes.map((n) => n.name).filter((n) => n !== leader);
    // Measured alongside: how long the survivors take to agree on a new leader.
    const elected = waitForEtcdLeader(lab, (l) => l !== leader, { nodes: survivors, timeoutMs: ETCD_HOLD_MS }).then(
      ({ leader: next }) => {
        timings["etcd election"] = labNow() - killedAt;
        notes.push(`etcd elected ${next} ${Math.round(timings["etcd election"])} ms after the kill`);
      },
      (e) => void notes.push(`no new etcd leader: ${e instanceof Error ? e.message : String(e)}`),
    );
    return { detail: `SIGKILL to the etcd leader on ${leader} (VIP on ${victim.name})`, timings, notes, recover: async () => {
      await elected;
      await lab.etcdCluster.startMember(leader);
    } };
  },
};

const memberFreeze: Fault = {
  id: "etcd-member-freeze",
  base: "etcd-member-freeze",
  title: "holder's etcd member (a follower) frozen 1.5 s (SIGSTOP, SIGCONT)",
  holdMs: ETCD_HOLD_MS,
  victimStops: false,
  vipStays: true,
  etcdLeader: "elsewhere",
  async apply(lab, victim) {
    const etcd = lab.etcdCluster;
    etcd.signal(victim.name, "SIGSTOP");
    let thawed = false;
    const thaw = () => {
      if (thawed) return;
      thawed = true;
      etcd.signal(victim.name, "SIGCONT");
    };
    const timer = sleep(MEMBER_FREEZE_MS).then(thaw);
    return { detail: `SIGSTOP to etcd on ${victim.name} (pid ${etcd.pid(victim.name)}) for ${MEMBER_FREEZE_MS} ms`, recover: async () => {
      thaw();
      await timer;
    } };
  },
};

const memberFreezeOnLeader: Fault = {
  ...memberFreeze,
  id: "etcd-member-freeze@leader",
  title: "holder's etcd member, the raft leader, frozen 1.5 s (SIGSTOP, SIGCONT)",
  etcdLeader: "victim",
};

/** MoveLeader while the VIP is held: onto the holder's member, or off it to the next node. */
function moveLeader(direction: "to-holder" | "off-holder"): Fault {
  return {
    id: direction === "to-holder" ? "etcd-move-leader-to-holder" : "etcd-move-leader-off-holder",
    base: direction === "to-holder" ? "etcd-move-leader-to-holder" : "etcd-move-leader-off-holder",
    title: direction === "to-holder" ? "etcd MoveLeader onto the holder's member" : "etcd MoveLeader off the holder's member",
    holdMs: 5000,
    victimStops: false,
    vipStays: true,
    etcdLeader: direction === "to-holder" ? "elsewhere" : "victim",
    async apply(lab, victim) {
      const to = direction === "to-holder" ? victim : nextNode(lab, victim);
      const m = await moveEtcdLeader(lab, to.name);
      return {
        detail: [...m.notTaken, `MoveLeader ${m.from} → ${m.to}: answered in ${Math.round(m.requestMs)} ms, seen by all members after ${Math.round(m.visibleMs)} ms`].join("; "),
        timings: { "MoveLeader answered": m.requestMs, "MoveLeader seen by all": m.visibleMs },
        recover: async () => {},
      };
    },
  };
}

/** How long the clone may take to give up: the holder's silence window at most, then its exit. */
const CLONE_EXIT_MS = 10_000;

const sameNodeName: Fault = {
  id: "same-node-name",
  base: "same-node-name",
  title: "a second instance under the holder's node name, on another host",
  holdMs: 5000,
  victimStops: false,
  vipStays: true,
  appliesTo: (impl) => impl.startUnderName !== undefined,
  async apply(lab, victim) {
    const impl = lab.implementation;
    if (!impl?.startUnderName) throw new Error(`${impl?.id ?? "no implementation"} has no node names to clone`);
    const dir = join(lab.dir, `clone-of-${victim.name}`);
    mkdirSync(dir, { recursive: true });
    const clone = impl.startUnderName({
      name: victim.name,
      index: -1,
      host: lab.client,
      peers: lab.nodes.map((n) => n.host),
      vip: lab.vip,
      dir,
      etcdEndpoint: `http://${victim.host.ip4}:2379`,
      apiserverUrl: `http://${victim.host.ip4}:6443/readyz`,
      spawn: (name, argv) => lab.spawnIn(lab.client.ns, join(dir, `${name}.log`), name, argv),
    }, victim.name, { healthPort: 8099 });
    const t0 = labNow();
    const code = await Promise.race([clone.exited, sleep(CLONE_EXIT_MS).then(() => null)]);
    const exitMs = labNow() - t0;
    const notes = [`the clone exited ${code === null ? `not at all within ${CLONE_EXIT_MS} ms` : `with ${code} after ${Math.round(exitMs)} ms`}: ${clone.logTail(3)}`];
    if (code === null) await clone.stop("SIGKILL", 1000);
    if (code !== 2) throw new Error(notes[0]);
    return { detail: `${impl.id} started as ${victim.name} on ${lab.client.name}`, timings: { "clone refused": exitMs }, notes, recover: async () => {} };
  },
};

export const FAULTS: Record<FaultId, Fault> = {
  graceful,
  drain,
  handover,
  crash,
  freeze,
  "link-down": linkDown,
  partition,
  "crash@leader": placed(crash, "victim"),
  "crash@follower": placed(crash, "elsewhere"),
  "freeze@leader": placed(freeze, "victim"),
  "freeze@follower": placed(freeze, "elsewhere"),
  "link-down@leader": placed(linkDown, "victim"),
  "link-down@follower": placed(linkDown, "elsewhere"),
  "partition@leader": placed(partition, "victim"),
  "partition@follower": placed(partition, "elsewhere"),
  "quorum-loss": quorumLoss,
  "etcd-leader-and-holder": leaderAndHolder,
  "etcd-leader-elsewhere": leaderElsewhere,
  "etcd-member-freeze": memberFreeze,
  "etcd-member-freeze@leader": memberFreezeOnLeader,
  "etcd-move-leader-to-holder": moveLeader("to-holder"),
  "etcd-move-leader-off-holder": moveLeader("off-holder"),
  "same-node-name": sameNodeName,
};

const isFaultId = (s: string): s is FaultId => Object.hasOwn(FAULTS, s);

export function faultsByName(list: string): Fault[] {
  return list.split(",").map((s) => s.trim()).filter(Boolean).map((id) => {
    if (!isFaultId(id)) throw new Error(`unknown fault "${id}" (wanted ${Object.keys(FAULTS).join(", ")})`);
    return FAULTS[id];
  });
}

async function nft(node: LabNode, script: string): Promise<void> {
  await sh(["ip", "netns", "exec", node.host.ns, "nft", script]);
}
