// The client's prober, run inside the client namespace by prober.ts:
//   bun probe-worker.ts HOST PORT [EVERY_MS] [TIMEOUT_MS]
// Starts a fresh HTTP request to http://HOST:PORT/ every EVERY_MS (10),
// whether or not earlier ones have finished, each on a new connection
// (no keep-alive: a pooled connection would hide a move of the VIP), and
// prints one JSON line per finished probe:
//   {"t":start,"d":end,"ok":true,"node":"n2"} or {"t":..,"d":..,"ok":false,"error":"timeout"}
// t and d are epoch ms on the lab clock (performance.timeOrigin + now()).
import { atCadence, probeOnce } from "./http-probe.ts";

const [host, portArg, everyArg, timeoutArg] = process.argv.slice(2);
if (!host || !portArg) {
  console.error("usage: probe-worker.ts HOST PORT [EVERY_MS] [TIMEOUT_MS]");
  process.exit(2);
}
const url = `http://${host.includes(":") ? `[${host}]` : host}:${portArg}/`;
const everyMs = Number(everyArg ?? 10);
const timeoutMs = Number(timeoutArg ?? 300);

let stopping = false;
process.on("SIGTERM", () => (stopping = true));
process.on("SIGINT", () => (stopping = true));

await atCadence(everyMs, () => stopping, async () => process.stdout.write(`${JSON.stringify(await probeOnce(url, timeoutMs))}\n`));
process.exit(0);
export {};
