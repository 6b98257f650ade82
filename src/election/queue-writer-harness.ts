// A QueueWriter against a stand-in etcd (message level) and a cluster view
// read from it, for the queue writes' unit tests: what each write sends,
// and what the heartbeat's ledger is told. Tests import it; nothing else does.
import { StandInEtcd } from "./stand-in-etcd.ts";
import { encodeIncarnation, type Incarnation } from "./incarnation.ts";
import { agentKey, electionKey, encodeHeartbeat, heartbeatKey } from "./keys.ts";
import { QueueWriter } from "./queue-writer.ts";
import { takeoverAt } from "./takeover.ts";
import type { Guarded } from "./transactions.ts";
import { ClusterView, type KvEvent } from "./view.ts";

export const P = "/v/";
export const V1 = "192.0.2.10";
export const V2 = "192.0.2.11";
export const HOLD = 1000;
export const me = { prefix: P, node: "b", run: "run-b" };

export const incarnation = (run: string): Incarnation => ({
  run, host: "h", machine: "m", boot: "boot", netns: "net", pidns: "pid", pid: 1, start: "1", holdMs: HOLD, version: "test", startedAt: "2026-12-06T00:00:00Z",
});

export function setup() {
  const etcd = new StandInEtcd();
  const agentRevision = etcd.put(agentKey(P, "b"), encodeIncarnation(incarnation("run-b")), "99");
  const view = new ClusterView(P);
  let now = 0;
  let seq = 0;
  let established = true;
  const serving = new Set<string>();
  const ledger = { beats: 0, proved: [] as [Guarded, number][], releasing: [] as [Guarded, number][], gone: [] as Guarded[], alongside: [] as number[] };
  const wrote: string[] = [];
  let took = 0;
  const w = new QueueWriter({
    me, view, kv: etcd, clock: () => now, rpcTimeoutMs: 1000, serving: () => serving, nextSeq: () => ++seq,
    registered: () => ({ agentRevision, lease: "99" }),
    established: () => established,
    proofs: () => ({
      beat: () => void ledger.beats++,
      prove: (g: Guarded, at: number) => void ledger.proved.push([g, at]),
      releasing: (g: Guarded, at: number) => void ledger.releasing.push([g, at]),
      gone: (g: Guarded) => void ledger.gone.push(g),
      putAlongside: (at: number) => void ledger.alongside.push(at),
    }),
    takeoverAt: (vip) => takeoverAt(view, me, vip, now),
    wrote: (r) => void wrote.push(r),
    took: () => void took++,
  });
  let seen = new Map<string, string>();
  return {
    etcd, view, w, serving, ledger, wrote,
    get took() {
      return took;
    },
    at: (t: number) => void (now = t),
    unestablish: () => void (established = false),
    /** The view reads etcd again at the current time, as after a watch event. */
    sync: () => {
      seen = new Map(etcd.kvs().map((kv) => [kv.key.toString(), kv.mod_revision]));
      view.load(etcd.kvs(), String(etcd.revision), now);
    },
    /** The view applies what changed in etcd since the last watch() or sync(), as the watch's events would bring it. */
    watch: () => {
      const events: KvEvent[] = [];
      const kvs = new Map(etcd.kvs().map((kv) => [kv.key.toString(), kv]));
      for (const [key, kv] of kvs) if (seen.get(key) !== kv.mod_revision) events.push({ type: "put", kv });
      for (const key of seen.keys()) {
        if (!kvs.has(key)) events.push({ type: "delete", kv: { key: Buffer.from(key), value: Buffer.alloc(0), create_revision: "0", mod_revision: String(etcd.revision) } });
      }
      seen = new Map([...kvs].map(([k, kv]) => [k, kv.mod_revision]));
      events.sort((a, b) => Number(a.kv.mod_revision) - Number(b.kv.mod_revision));
      view.apply(events, now);
    },
    /** Another agent, registered, in the queues, heard once. */
    other: (node: string, vips: string[]) => {
      etcd.put(agentKey(P, node), encodeIncarnation(incarnation(`run-${node}`)));
      for (const v of vips) etcd.put(electionKey(P, v, node), `run-${node}`);
      etcd.put(heartbeatKey(P, node), encodeHeartbeat({ run: `run-${node}`, seq: 1, claims: vips }));
    },
  };
}
