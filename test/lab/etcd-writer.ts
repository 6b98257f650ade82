// What etcd itself lets a client do, node by node: etcd-writer-worker.ts runs
// in every node's namespace, puts a key of its own through that node's
// member every 50 ms, and this side keeps the answers. An etcd write
// outage on a node is a stretch with no put committed there: what any etcd
// client on that node — vipd's heartbeats among them — could not have
// written, whatever it did. The fault matrix holds vipd's dark time to it
// (bounds.ts etcdDarkBoundMs).
import { join } from "node:path";
import type { Lab, LabProcess } from "./cluster.ts";
import { forEachLine } from "./sh.ts";

export interface WriteSample {
  /** When the put was sent and answered, lab clock. */
  t: number;
  d: number;
  ok: boolean;
}

/** One line of etcd-writer-worker.ts output; null for anything else. Pure. */
export function parseWriteLine(line: string): WriteSample | null {
  try {
    const v = JSON.parse(line) as Record<string, unknown>;
    if (typeof v.t !== "number" || typeof v.d !== "number" || typeof v.ok !== "boolean") return null;
    return { t: v.t, d: v.d, ok: v.ok };
  } catch {
    return null;
  }
}

/**
 * The longest stretch of [from, to) in which no put committed, and where it
 * starts: from the answer to one committed put to the answer to the next (a
 * put answered late was still sent on time: what counts is when etcd took
 * writes). The edges of the window count as commits only if a put committed
 * within `everyMs` of them; otherwise the stretch runs to the edge. Pure.
 */
export function longestWriteOutage(samples: readonly WriteSample[], from: number, to: number): { ms: number; at: number } {
  const commits = samples.filter((s) => s.ok && s.d >= from && s.d < to).map((s) => s.d).sort((a, b) => a - b);
  let best = { ms: 0, at: from };
  let prev = from;
  for (const c of [...commits, to]) {
    if (c - prev > best.ms) best = { ms: c - prev, at: prev };
    prev = c;
  }
  return best;
}

export class EtcdWriters {
  readonly #samples = new Map<string, WriteSample[]>();
  readonly #procs: LabProcess[] = [];
  readonly #done: Promise<void>[] = [];

  private constructor() {}

  /** One writer per node, through the member the node's vipd uses. */
  static start(lab: Lab, opts: { everyMs?: number; timeoutMs?: number } = {}): EtcdWriters {
    const w = new EtcdWriters();
    for (const node of lab.nodes) {
      const samples: WriteSample[] = [];
      w.#samples.set(node.name, samples);
      const proc = lab.spawnIn(node.host.ns, join(lab.dir, `etcd-writer-${node.name}.log`), `etcd-writer-${node.name}`, [
        process.execPath, join(import.meta.dir, "etcd-writer-worker.ts"),
        lab.context(node).etcdEndpoint, `/lab/writer/${node.name}`, String(opts.everyMs ?? 50), String(opts.timeoutMs ?? 1000),
      ], { stdout: "pipe" });
      w.#procs.push(proc);
      w.#done.push(forEachLine(proc.stdout, (line) => {
        const s = parseWriteLine(line);
        if (s) samples.push(s);
      }));
    }
    return w;
  }

  /** The longest etcd write outage on the node in [from, to), ms, and its start (lab clock). */
  outage(node: string, from: number, to: number): { ms: number; at: number } {
    return longestWriteOutage(this.#samples.get(node) ?? [], from, to);
  }

  async stop(): Promise<void> {
    await Promise.all(this.#procs.map((p) => p.stop("SIGTERM", 2000)));
    await Promise.all(this.#done);
  }
}
