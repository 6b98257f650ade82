// An etcd client that is not vipd, run inside a node's namespace by
// etcd-writer.ts, to measure what etcd itself lets a client on that node do:
//   bun etcd-writer-worker.ts ENDPOINT[,ENDPOINT...] KEY [EVERY_MS] [TIMEOUT_MS]
// Starts a put of KEY every EVERY_MS (50), whether or not earlier ones have
// finished, each with its own deadline (TIMEOUT_MS, 1000), one attempt each
// (no retry, no circuit breaker; with several endpoints each put goes to one
// of them at random, as etcd3 picks), and prints one JSON line per finished put:
//   {"t":start,"d":end,"ok":true} or {"t":..,"d":..,"ok":false,"error":"..."}
// t and d are epoch ms on the lab clock (performance.timeOrigin + now()).
import { connectEtcd, within } from "../../src/election/connection.ts";
import { atCadence, now } from "./http-probe.ts";

const [endpoint, key, everyArg, timeoutArg] = process.argv.slice(2);
if (!endpoint || !key) {
  console.error("usage: etcd-writer-worker.ts ENDPOINT[,ENDPOINT...] KEY [EVERY_MS] [TIMEOUT_MS]");
  process.exit(2);
}
const everyMs = Number(everyArg ?? 50);
const timeoutMs = Number(timeoutArg ?? 1000);
const client = connectEtcd({ endpoints: endpoint.split(",") });

let stopping = false;
process.on("SIGTERM", () => (stopping = true));
process.on("SIGINT", () => (stopping = true));

let seq = 0;
await atCadence(everyMs, () => stopping, async () => {
  const t = now();
  try {
    await client.kv.put({ key: Buffer.from(key), value: Buffer.from(String(++seq)) }, within(timeoutMs));
    process.stdout.write(`${JSON.stringify({ t, d: now(), ok: true })}\n`);
  } catch (e) {
    process.stdout.write(`${JSON.stringify({ t, d: now(), ok: false, error: e instanceof Error ? e.message : String(e) })}\n`);
  }
});
client.close();
process.exit(0);
