// What a client sees when it asks every node's MAC at once whether it
// answers for a VIP: mac-probe-worker.ts runs in the client namespace and
// streams ticks and answers; this side groups the answers by tick. Two nodes
// answering in one tick are two kernels answering for the VIP at the same
// time, the overlap design.md §1 forbids, seen from the wire.
import { join } from "node:path";
import type { Host } from "./netns.ts";
import { forEachLine, sh } from "./sh.ts";
import type { SmallLab } from "./small-lab.ts";

export interface MacTarget {
  /** The node the MAC belongs to: answers from two of its links count as one node. */
  readonly node: string;
  readonly mac: string;
}

export interface WitnessTick {
  readonly k: number;
  /** Lab clock (labNow), epoch ms, when the tick's requests left. */
  readonly t: number;
  /** Nodes that answered in this tick (ARP reply or echo reply). */
  readonly nodes: Set<string>;
}

/** The MAC of a host's link, as the kernel reports it. */
export async function macOf(host: Host, link = host.link): Promise<string> {
  const out = JSON.parse(await sh(["ip", "-n", host.ns, "-j", "link", "show", "dev", link])) as { address: string }[];
  const mac = out[0]?.address;
  if (!mac) throw new Error(`no MAC for ${link} in ${host.ns}`);
  return mac;
}

export class MacWitness {
  readonly ticks: WitnessTick[] = [];
  readonly errors: string[] = [];
  readonly #done: Promise<void>;

  private constructor(
    private readonly proc: ReturnType<SmallLab["spawn"]>,
    private readonly names: Map<string, string>,
  ) {
    this.#done = forEachLine(proc.stdout, (line) => this.#line(line));
  }

  /** Starts asking every target's MAC for vip every everyMs (10) from the client host. */
  static start(lab: SmallLab, client: Host, vip: string, targets: readonly MacTarget[], everyMs = 10): MacWitness {
    // Each MAC gets its own label; answers are then counted per node.
    const names = new Map(targets.map((t, i) => [`m${i}`, t.node]));
    const proc = lab.spawn(client, [
      process.execPath, join(import.meta.dir, "mac-probe-worker.ts"),
      client.link, client.ip4, vip, String(everyMs),
      ...targets.map((t, i) => `m${i}=${t.mac}`),
    ]);
    return new MacWitness(proc, names);
  }

  #line(line: string): void {
    if (!line.trim()) return;
    let o: { k?: unknown; t?: unknown; node?: unknown };
    try {
      o = JSON.parse(line);
    } catch {
      this.errors.push(`not JSON: ${line.slice(0, 80)}`);
      return;
    }
    if (typeof o.k !== "number" || typeof o.t !== "number") return void this.errors.push(`no tick: ${line.slice(0, 80)}`);
    if (o.node === undefined) {
      this.ticks[o.k] = { k: o.k, t: o.t, nodes: new Set() };
      return;
    }
    const node = this.names.get(String(o.node));
    const tick = this.ticks[o.k];
    if (!node || !tick) return void this.errors.push(`answer for an unknown tick or MAC: ${line.slice(0, 80)}`);
    tick.nodes.add(node);
  }

  /** Ticks sent at or after `from` (lab clock) in which node answered. */
  answeredBy(node: string, from = 0): WitnessTick[] {
    return this.ticks.filter((t) => t && t.t >= from && t.nodes.has(node));
  }

  /** Ticks in which two or more nodes answered. */
  overlaps(): WitnessTick[] {
    return this.ticks.filter((t) => t && t.nodes.size > 1);
  }

  /** Overlapping ticks as "t=… a+b" runs, for a failure message: first, last and count. */
  describeOverlaps(): string {
    const o = this.overlaps();
    if (o.length === 0) return "none";
    const first = o[0]!;
    const last = o[o.length - 1]!;
    return `${o.length} ticks (${Math.round(o.length * 10)} ms at 10 ms a tick), from tick ${first.k} to ${last.k} ` +
      `(${Math.round(last.t - first.t)} ms), nodes ${[...first.nodes].join("+")}`;
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill("SIGTERM");
    await this.proc.exited;
    await this.#done;
  }
}
