// When etcd committed a key, as one member delivers it to a watcher: `curl -N`
// on the member's grpc-gateway (POST /v3/watch, one JSON object per line)
// inside a node's namespace, each line stamped on the lab clock as it
// arrives. A planned move is timed from here: `vipd drain` and `vipd
// handover` first start up and connect (a few hundred ms of their own), and
// only the commit of their key asks the agents to move. The stamp is late by
// the member's apply and the watch's delivery, a few ms, which the move's
// budget then counts against vipd. Checked on etcd 3.4.23:
//
//   POST /v3/watch {"create_request":{"key":"<b64>","range_end":"<b64>"}}
//   → {"result":{"header":{…},"created":true}}
//   → {"result":{"header":{…,"revision":"42"},"events":[{"kv":{"key":"<b64>",…,"mod_revision":"42"}},
//                                                       {"type":"DELETE","kv":{…}}]}}
//
// A PUT carries no "type" (the enum's zero value is left out).
import { labNow, type LabProcess, type SpawnStreams } from "./cluster.ts";
import { forEachLine, sleep } from "./sh.ts";

export interface EtcdWatchEvent {
  /** Lab clock when the line arrived. */
  t: number;
  type: "PUT" | "DELETE";
  key: string;
  revision: number;
}

/** One line of the watch: whether it confirms the watch, and its events; an Error for a line that cannot be read. Pure. */
export function parseWatchLine(line: string, t: number): { created: boolean; events: EtcdWatchEvent[] } | Error {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return new Error(`etcd watch line is not JSON: ${line.slice(0, 120)}`);
  }
  const r = (v as { result?: { created?: boolean; events?: { type?: string; kv?: { key?: string; mod_revision?: string } }[] }; error?: unknown }).result;
  if (!r) return new Error(`etcd watch line without a result: ${line.slice(0, 120)}`);
  const events = (r.events ?? []).map((e) => ({
    t,
    type: e.type === "DELETE" ? "DELETE" as const : "PUT" as const,
    key: Buffer.from(e.kv?.key ?? "", "base64").toString(),
    revision: Number(e.kv?.mod_revision ?? 0),
  }));
  return { created: r.created === true, events };
}

/** Spawns argv in the member's namespace with stdout piped (Lab.spawnIn, or spawnInNetns for a small lab). */
export type WatchSpawn = (name: string, argv: readonly string[], opts: SpawnStreams) => LabProcess;

const CREATE_TIMEOUT_MS = 5000;

export class EtcdKeyWatch {
  readonly events: EtcdWatchEvent[] = [];
  readonly problems: string[] = [];
  private created = false;
  private readonly done: Promise<void>;

  private constructor(private readonly proc: LabProcess, readonly prefix: string) {
    this.done = forEachLine(proc.stdout!, (line) => {
      if (!line.trim()) return;
      const r = parseWatchLine(line, labNow());
      if (r instanceof Error) this.problems.push(r.message);
      else {
        this.created ||= r.created;
        this.events.push(...r.events);
      }
    });
  }

  /**
   * Watches every key under `prefix` through the member at 127.0.0.1:2379 of
   * the namespace `spawn` runs in; resolves once etcd confirmed the watch, so
   * nothing committed after it is missed.
   */
  static async start(spawn: WatchSpawn, prefix: string): Promise<EtcdKeyWatch> {
    const b64 = (b: Buffer) => b.toString("base64");
    const key = Buffer.from(prefix);
    const end = Buffer.from(key);
    end[end.length - 1]! += 1;
    const body = JSON.stringify({ create_request: { key: b64(key), range_end: b64(end) } });
    const proc = spawn(`etcd-watch`, ["curl", "-sN", "-X", "POST", "-d", body, "http://127.0.0.1:2379/v3/watch"], { stdout: "pipe" });
    const w = new EtcdKeyWatch(proc, prefix);
    const until = labNow() + CREATE_TIMEOUT_MS;
    while (!w.created) {
      if (!proc.running || labNow() > until) {
        await w.stop();
        throw new Error(`watching ${prefix} in etcd: no confirmation within ${CREATE_TIMEOUT_MS} ms${w.problems.length ? ` (${w.problems.join("; ")})` : ""}: ${proc.logTail(3)}`);
      }
      await sleep(5);
    }
    return w;
  }

  /** The first event of `type` on `key` at or after `since`; waits up to timeoutMs for it; null if none came. */
  async first(key: string, type: "PUT" | "DELETE", timeoutMs: number, since = -Infinity): Promise<EtcdWatchEvent | null> {
    const until = labNow() + timeoutMs;
    for (;;) {
      const e = this.events.find((x) => x.key === key && x.type === type && x.t >= since);
      if (e) return e;
      if (labNow() > until || !this.proc.running) return null;
      await sleep(5);
    }
  }

  async stop(): Promise<void> {
    await this.proc.stop("SIGTERM", 1000);
    await this.done;
  }
}
