// The client's prober for many VIPs at once, run inside the client namespace
// by the scale benchmark:
//   bun vips-probe-worker.ts PORT EVERY_MS TIMEOUT_MS FROM_NODE VIP...
// Per VIP, a fresh HTTP request to http://VIP:PORT/ every EVERY_MS whether or
// not earlier ones have finished (no keep-alive, as probe-worker.ts, so a move
// of the VIP is not hidden by a pooled connection; a request to a node that
// dropped the address hangs until its timeout, and must not hold the next
// one back), until the VIP answers from a node other than FROM_NODE: then that
// VIP is done, so the load falls as the VIPs move. Prints a JSON line only
// when a VIP's answer changes (another node, or ok ↔ error):
//   {"vip":"192.0.2.128","t":start,"d":end,"ok":true,"node":"n2"}
//   {"vip":"2001:db8::1:1","t":..,"d":..,"ok":false,"error":"timeout"}
// t and d are epoch ms on the lab clock (performance.timeOrigin + now()).
import { atCadence, probeOnce } from "../../test/lab/http-probe.ts";

const [portArg, everyArg, timeoutArg, from, ...vips] = process.argv.slice(2);
if (!portArg || !everyArg || !timeoutArg || !from || vips.length === 0) {
  console.error("usage: vips-probe-worker.ts PORT EVERY_MS TIMEOUT_MS FROM_NODE VIP...");
  process.exit(2);
}
const everyMs = Number(everyArg);
const timeoutMs = Number(timeoutArg);

let stopping = false;
process.on("SIGTERM", () => (stopping = true));
process.on("SIGINT", () => (stopping = true));

async function loop(vip: string): Promise<void> {
  const url = `http://${vip.includes(":") ? `[${vip}]` : vip}:${portArg}/`;
  let last = "";
  let moved = false;
  await atCadence(everyMs, () => stopping || moved, async () => {
    const line = await probeOnce(url, timeoutMs);
    if (moved) return;
    const key = line.ok ? `ok ${line.node}` : `error ${line.error}`;
    if (key !== last) process.stdout.write(`${JSON.stringify({ vip, ...line })}\n`);
    last = key;
    if (line.ok && line.node !== from) moved = true;
  });
}

await Promise.all(vips.map(loop));
process.exit(0);
export {};
