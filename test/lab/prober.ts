// What the client sees: probe-worker.ts runs in the client namespace and
// streams one JSON line per probe of http://VIP:6443/; this side parses the
// lines into samples and keeps them in order of their start time.
import { join } from "node:path";
import { APISERVER_PORT, type Lab, type LabProcess } from "./cluster.ts";
import type { ProbeSample } from "./stats.ts";
import { forEachLine } from "./sh.ts";

export interface ProberOptions {
  everyMs?: number;
  timeoutMs?: number;
}

/** One line of probe-worker.ts output, or an Error naming what is wrong with it. Pure. */
export function parseProbeLine(line: string): ProbeSample | Error {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return new Error(`probe line is not JSON: ${JSON.stringify(line.slice(0, 80))}`);
  }
  if (typeof v !== "object" || v === null) return new Error(`probe line is not an object: ${line.slice(0, 80)}`);
  const o = v as Record<string, unknown>;
  if (typeof o.t !== "number" || typeof o.d !== "number" || typeof o.ok !== "boolean") {
    return new Error(`probe line wants numbers t and d and a boolean ok: ${line.slice(0, 80)}`);
  }
  if (o.ok) {
    if (typeof o.node !== "string") return new Error(`successful probe without a node: ${line.slice(0, 80)}`);
    return { t: o.t, d: o.d, ok: true, node: o.node };
  }
  return { t: o.t, d: o.d, ok: false, error: typeof o.error === "string" ? o.error : "unknown" };
}

export class Prober {
  readonly samples: ProbeSample[] = [];
  readonly errors: Error[] = [];
  private listeners: ((s: ProbeSample) => void)[] = [];
  private readonly done: Promise<void>;

  private constructor(
    private readonly proc: LabProcess,
    stdout: ReadableStream<Uint8Array>,
  ) {
    this.done = this.read(stdout);
  }

  static start(lab: Lab, opts: ProberOptions = {}): Prober {
    const { proc, stdout } = lab.spawnClient("prober", [
      process.execPath, join(import.meta.dir, "probe-worker.ts"),
      lab.vip, String(APISERVER_PORT), String(opts.everyMs ?? 10), String(opts.timeoutMs ?? 300),
    ]);
    return new Prober(proc, stdout);
  }

  onSample(fn: (s: ProbeSample) => void): () => void {
    this.listeners.push(fn);
    return () => (this.listeners = this.listeners.filter((x) => x !== fn));
  }

  /** Samples that started in [from, to), by start time. */
  between(from: number, to: number): ProbeSample[] {
    return this.samples.filter((s) => s.t >= from && s.t < to).sort((a, b) => a.t - b.t);
  }

  get running(): boolean {
    return this.proc.running;
  }

  async stop(): Promise<void> {
    await this.proc.stop("SIGTERM", 2000);
    await this.done;
  }

  private read(stdout: ReadableStream<Uint8Array>): Promise<void> {
    return forEachLine(stdout, (line) => {
      if (!line.trim()) return;
      const s = parseProbeLine(line);
      if (s instanceof Error) {
        this.errors.push(s);
        return;
      }
      this.samples.push(s);
      for (const l of this.listeners) l(s);
    });
  }
}
