// The lab's operator: operator-worker.ts runs in the client namespace for as
// long as the lab does and runs `vipd handover`, `drain` and `undrain` (the
// CLI's own code) on request; this side sends the requests and reads the
// answers in order. Killed by PID on stop() or when the script exits.
import { join } from "node:path";
import type { Subprocess } from "bun";
import { type Lab, REPO_ROOT } from "../../test/lab/cluster.ts";

export type OperatorRequest =
  | { op: "handover"; endpoint: string }
  | { op: "drain" | "undrain"; node: string; endpoint: string };

export interface OperatorAnswer {
  /** operate.ts's Outcome ("done", "refused", "failed"), or "error" when the call threw. */
  outcome: string;
  ms: number;
  out: string[];
  err: string[];
}

export class Operator {
  readonly #pending: ((a: OperatorAnswer | Error) => void)[] = [];
  readonly #kill = () => this.proc.kill("SIGKILL");

  private constructor(private readonly proc: Subprocess<"pipe", "pipe", "inherit">) {
    process.once("exit", this.#kill);
    void this.#read();
  }

  static start(lab: Lab, prefix = "/vipd/"): Operator {
    const proc = Bun.spawn(["ip", "netns", "exec", lab.client.ns, process.execPath, join(import.meta.dir, "operator-worker.ts"), lab.vip, prefix], {
      cwd: REPO_ROOT,
      stdin: "pipe",
      stdout: "pipe",
      stderr: "inherit",
    });
    return new Operator(proc);
  }

  /** Sends one request; answers come back in the order the requests went out. */
  request(req: OperatorRequest): Promise<OperatorAnswer> {
    return new Promise((resolve, reject) => {
      this.#pending.push((a) => (a instanceof Error ? reject(a) : resolve(a)));
      this.proc.stdin.write(`${JSON.stringify(req)}\n`);
      this.proc.stdin.flush();
    });
  }

  async stop(): Promise<void> {
    this.proc.stdin.end();
    const done = await Promise.race([this.proc.exited.then(() => true), Bun.sleep(3000).then(() => false)]);
    if (!done) this.proc.kill("SIGKILL");
    process.off("exit", this.#kill);
  }

  async #read(): Promise<void> {
    let buf = "";
    const dec = new TextDecoder();
    for await (const chunk of this.proc.stdout) {
      buf += dec.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        this.#pending.shift()?.(JSON.parse(line) as OperatorAnswer);
      }
    }
    const code = await this.proc.exited;
    for (const p of this.#pending.splice(0)) p(new Error(`the operator worker exited with ${code}`));
  }
}
