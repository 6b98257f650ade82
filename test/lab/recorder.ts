// Who holds the VIP, per node, exactly: a netlink address watch (LinkEvents)
// opened inside every node's namespace records when the VIP appears on and
// disappears from that node's kernel. From these edges come ownership
// intervals, and from the intervals (stats.ts) the overlap — two nodes holding
// the VIP at once — with the resolution of the poll (a few ms).
import { type KernelEvent, LinkEvents } from "../../src/kernel/link-events.ts";
import { type Lab, labNow } from "./cluster.ts";
import { inNetns } from "./netns.ts";
import type { Interval } from "./stats.ts";

export interface OwnershipEdge {
  node: string;
  /** Lab clock (labNow), epoch ms. */
  t: number;
  /** Date.now() at the same moment, for humans. */
  wall: number;
  held: boolean;
}

export class OwnershipRecorder {
  readonly edges: OwnershipEdge[] = [];
  /** Times events were lost and the state re-read (edges from a re-read are late by up to the read). */
  overruns = 0;
  private readonly held = new Map<string, boolean>();
  private readonly watches: LinkEvents[] = [];
  private listeners: ((e: OwnershipEdge) => void)[] = [];

  private constructor(private readonly lab: Lab) {}

  /** Opens one watch per node and reads the starting state. */
  static async start(lab: Lab, opts: { pollMs?: number } = {}): Promise<OwnershipRecorder> {
    const r = new OwnershipRecorder(lab);
    for (const node of lab.nodes) {
      r.watches.push(inNetns(node.host.ns, () => LinkEvents.open((e) => r.onEvent(node.name, e), { pollMs: opts.pollMs ?? 2 })));
    }
    for (const node of lab.nodes) r.set(node.name, await lab.seg.has(node.host, lab.vip));
    return r;
  }

  onEdge(fn: (e: OwnershipEdge) => void): () => void {
    this.listeners.push(fn);
    return () => (this.listeners = this.listeners.filter((x) => x !== fn));
  }

  /** Nodes holding the VIP now, by the recorded edges. */
  holders(): string[] {
    return [...this.held].filter(([, h]) => h).map(([n]) => n);
  }

  isHeld(node: string): boolean {
    return this.held.get(node) ?? false;
  }

  /** Ownership intervals per node between from and to; an interval still open ends at `to`. */
  intervals(from: number, to: number): Map<string, Interval[]> {
    return ownershipIntervals(this.edges, this.lab.nodes.map((n) => n.name), from, to);
  }

  close(): void {
    for (const w of this.watches) w.close();
    this.watches.length = 0;
  }

  private onEvent(node: string, e: KernelEvent): void {
    if (e.type === "address" && e.address.address === this.lab.vip) {
      // A refresh (new lifetime) is an RTM_NEWADDR too: only changes are edges.
      this.set(node, !e.deleted);
    } else if (e.type === "overrun") {
      this.overruns++;
      // Events were lost: read the kernel's state instead.
      const host = this.lab.node(node).host;
      void this.lab.seg.has(host, this.lab.vip).then((h) => this.set(node, h), () => {});
    }
  }

  private set(node: string, held: boolean): void {
    if ((this.held.get(node) ?? false) === held && this.held.has(node)) return;
    const first = !this.held.has(node);
    this.held.set(node, held);
    if (first && !held) return;
    const edge = { node, t: labNow(), wall: Date.now(), held };
    this.edges.push(edge);
    for (const l of this.listeners) l(edge);
  }
}

/** Folds edges into closed intervals per node, clipped to [from, to]. Pure. */
export function ownershipIntervals(edges: readonly OwnershipEdge[], nodes: readonly string[], from: number, to: number): Map<string, Interval[]> {
  const out = new Map<string, Interval[]>(nodes.map((n) => [n, []]));
  const open = new Map<string, number>();
  for (const e of [...edges].sort((a, b) => a.t - b.t)) {
    if (e.held && !open.has(e.node)) open.set(e.node, e.t);
    else if (!e.held && open.has(e.node)) {
      const start = open.get(e.node)!;
      open.delete(e.node);
      if (e.t > from && start < to) out.get(e.node)?.push({ start: Math.max(start, from), end: Math.min(e.t, to) });
    }
  }
  for (const [node, start] of open) if (start < to) out.get(node)?.push({ start: Math.max(start, from), end: to });
  return out;
}
