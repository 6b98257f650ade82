// What vipd costs etcd: writes per second and revisions per day for 3 and 7
// agents, at 1, 10 and 100 VIPs, to show the cost follows the number of
// agents and not the number of VIPs (design.md §3: one heartbeat transaction
// per holder per 250 ms, per standby per 1250 ms at the default hold,
// whatever it heads).
//
//   npm run bench:etcd [-- --seconds 20] [-- --record]
//
// Each agent is the real etcd session (src/election/session.ts) run in this
// process against one local etcd member, every agent standing for every VIP,
// so the first of them heads them all and claims them in every heartbeat (the
// largest heartbeat). Writes = etcd revisions over the window: every write
// transaction vipd sends makes exactly one revision; each agent's share is
// how many times etcd wrote its heartbeat key (the key's version). Bytes =
// the size of the values those revisions store, read back from etcd's history.
import { join } from "node:path";
import { parseArgs } from "node:util";
import { connectEtcd, EtcdConnection, within } from "../src/election/connection.ts";
import { currentIncarnation } from "../src/election/incarnation.ts";
import { heartbeatKey, prefixEnd } from "../src/election/keys.ts";
import { monotonicClock } from "../src/seams.ts";
import { Session } from "../src/election/session.ts";
import { machine, recordSection } from "./lib/bench.ts";
import { startEtcd } from "../test/lab/etcd.ts";
import { sleep, waitFor } from "../test/lab/sh.ts";

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "20" },
    record: { type: "boolean", default: false },
  },
});
const seconds = Number(args.seconds);
if (!Number.isFinite(seconds) || seconds < 5) {
  console.error(`--seconds wants a number of at least 5, got ${args.seconds}`);
  process.exit(2);
}

const quiet = { error: (m: string) => console.error(m), warn() {}, info() {}, debug() {} };
const etcd = await startEtcd();
const admin = connectEtcd({ endpoints: etcd.endpoints });

interface Row {
  agents: number;
  vips: number;
  writesPerSecond: number;
  /** Heartbeat writes per second of the agent heading every queue, and of the others on average. */
  holder: number;
  standby: number;
  revisionsPerDay: number;
  bytesPerHeartbeat: { min: number; max: number };
  bytesPerDay: number;
}

const vipList = (n: number) => Array.from({ length: n }, (_, i) => `10.${Math.floor(i / 250)}.${i % 250}.1`);

async function scenario(agents: number, vips: number, index: number): Promise<Row> {
  const prefix = `/bench${index}/`;
  const sessions: { session: Session; conn: EtcdConnection }[] = [];
  try {
    for (let a = 0; a < agents; a++) {
      const conn = new EtcdConnection({ endpoints: etcd.endpoints });
      const session = new Session({
        settings: { endpoints: etcd.endpoints, prefix, node: `n${a + 1}`, holdMs: 2500, leaseTtlS: 10 },
        conn,
        identity: currentIncarnation({ holdMs: 2500, version: "bench" }),
        clock: monotonicClock,
        log: quiet,
        serving: () => [],
      });
      session.start();
      sessions.push({ session, conn });
      await waitFor(`agent ${a + 1} ready`, () => session.ready, 10_000);
      for (const v of vipList(vips)) await session.join(v);
    }
    const first = sessions[0]!.session;
    await waitFor("the first agent proven for every VIP", () => vipList(vips).every((v) => first.proof(v) !== null), 20_000);
    await sleep(2000);
    const beats = Buffer.from(`${prefix}heartbeats/`);
    const read = async () => {
      const res = await admin.kv.range({ key: beats, range_end: prefixEnd(beats), keys_only: true }, within(2000));
      return { revision: Number(res.header.revision), versions: new Map(res.kvs.map((kv) => [kv.key.toString().slice(beats.length), Number(kv.version)])) };
    };
    const before = await read();
    const t0 = performance.now();
    await sleep(seconds * 1000);
    const after = await read();
    const elapsed = (performance.now() - t0) / 1000;
    const [r0, r1] = [before.revision, after.revision];
    const beatsOf = (a: number) => (after.versions.get(`n${a + 1}`)! - before.versions.get(`n${a + 1}`)!) / elapsed;
    // The stored size of each revision: every heartbeat's key and value, from etcd's history.
    const sizes: number[] = [];
    let bytesPerSecond = 0;
    for (let a = 0; a < agents; a++) {
      const key = Buffer.from(heartbeatKey(prefix, `n${a + 1}`));
      const res = await admin.kv.range({ key, revision: String(r1) }, within(2000));
      const kv = res.kvs[0];
      if (!kv) continue;
      sizes.push(kv.key.length + kv.value.length);
      // Each agent's heartbeats at its own rate: the holder's are the large ones, and the frequent ones.
      bytesPerSecond += beatsOf(a) * (kv.key.length + kv.value.length);
    }
    const writesPerSecond = (r1 - r0) / elapsed;
    return {
      agents,
      vips,
      writesPerSecond,
      holder: beatsOf(0),
      standby: Array.from({ length: agents - 1 }, (_, a) => beatsOf(a + 1)).reduce((x, y) => x + y, 0) / (agents - 1),
      revisionsPerDay: writesPerSecond * 86_400,
      bytesPerHeartbeat: { min: Math.min(...sizes), max: Math.max(...sizes) },
      bytesPerDay: bytesPerSecond * 86_400,
    };
  } finally {
    for (const s of sessions) {
      await s.session.stop(500).catch(() => {});
      s.conn.close();
    }
  }
}

const rows: Row[] = [];
try {
  let i = 0;
  for (const agents of [3, 7]) {
    for (const vips of [1, 10, 100]) {
      const row = await scenario(agents, vips, i++);
      rows.push(row);
      console.log(`${agents} agents, ${vips} VIPs: ${row.writesPerSecond.toFixed(2)} writes/s (holder ${row.holder.toFixed(2)}, each standby ${row.standby.toFixed(2)}), ${(row.revisionsPerDay / 1e6).toFixed(2)} M revisions/day, heartbeat ${row.bytesPerHeartbeat.min}–${row.bytesPerHeartbeat.max} B`);
    }
  }
} finally {
  admin.close();
  await etcd.stop();
}

const mb = (b: number) => `${(b / 1e6).toFixed(0)} MB`;
const body = `## etcd cost

Command: \`npm run bench:etcd -- --seconds ${seconds} --record\` (as root) · ${new Date().toISOString().slice(0, 10)} · ${await machine()} · Bun ${Bun.version} · etcd 3.4.23, one member

Each agent is vipd's etcd session, all of them standing for every VIP, the first one heading
(and claiming) them all: the holder, the others standbys. Writes are etcd revisions over ${seconds} s:
each heartbeat, and nothing else in steady state, is one write; holder and standby are the writes
of their heartbeat keys (each key's version in etcd). Bytes are the key and value each heartbeat
stores; etcd keeps every revision until it is compacted (kube-apiserver compacts every 5 minutes; a
standalone etcd needs \`--auto-compaction-retention\`), so "per day" is what history grows by between
compactions, at most.

| agents | VIPs | writes/s | holder | each standby | revisions/day | heartbeat size | history/day |
|---|---|---|---|---|---|---|---|
${rows.map((r) => `| ${r.agents} | ${r.vips} | ${r.writesPerSecond.toFixed(2)} | ${r.holder.toFixed(2)} | ${r.standby.toFixed(2)} | ${(r.revisionsPerDay / 1e6).toFixed(2)} M | ${r.bytesPerHeartbeat.min}–${r.bytesPerHeartbeat.max} B | ${mb(r.bytesPerDay)} |`).join("\n")}

The holder writes its heartbeat 4 times a second, each standby about 0.8 times (every 1250 ms at
the default 2.5 s hold, design.md §3), at 1, 10 and 100 VIPs: the count does not grow with the VIPs.
Three nodes with one VIP cost etcd ${rows[0]?.writesPerSecond.toFixed(2)} writes per second; with every agent at 250 ms, as
before, they cost 12 (issue 18's target: at most 6). The size grows with the VIPs for the one agent
that heads them: its heartbeat lists the VIPs it claims; history/day counts each agent's
heartbeats at its own rate.`;
console.log(body);
if (args.record) await recordSection(join(import.meta.dir, "..", "BENCHMARKS.md"), "etcd", body);
