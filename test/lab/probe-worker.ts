// The client's prober, run inside the client namespace by prober.ts:
//   bun probe-worker.ts HOST PORT [EVERY_MS] [TIMEOUT_MS]
// Starts a fresh HTTP request to http://HOST:PORT/ every EVERY_MS (10),
// whether or not earlier ones have finished, each on a new connection
// (no keep-alive: a pooled connection would hide a move of the VIP), and
// prints one JSON line per finished probe:
//   {"t":start,"d":end,"ok":true,"node":"n2"} or {"t":..,"d":..,"ok":false,"error":"timeout"}
// t and d are epoch ms on the lab clock (performance.timeOrigin + now()).
const [host, portArg, everyArg, timeoutArg] = process.argv.slice(2);
if (!host || !portArg) {
  console.error("usage: probe-worker.ts HOST PORT [EVERY_MS] [TIMEOUT_MS]");
  process.exit(2);
}
const url = `http://${host.includes(":") ? `[${host}]` : host}:${portArg}/`;
const everyMs = Number(everyArg ?? 10);
const timeoutMs = Number(timeoutArg ?? 300);
const now = () => performance.timeOrigin + performance.now();

let stopping = false;
process.on("SIGTERM", () => (stopping = true));
process.on("SIGINT", () => (stopping = true));

function emit(line: object): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

async function probe(): Promise<void> {
  const t = now();
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), keepalive: false, headers: { connection: "close" } });
    const body = await r.text();
    const d = now();
    if (r.ok) emit({ t, d, ok: true, node: body.trim() });
    else emit({ t, d, ok: false, error: `HTTP ${r.status}` });
  } catch (e) {
    const name = e instanceof Error ? e.name : "";
    const code = (e as { code?: string }).code;
    emit({ t, d: now(), ok: false, error: name === "TimeoutError" || name === "AbortError" ? "timeout" : code ?? String(e) });
  }
}

// Scheduled against absolute times so that slow probes do not stretch the cadence.
const pending = new Set<Promise<void>>();
let next = now();
while (!stopping) {
  const p = probe();
  pending.add(p);
  void p.finally(() => pending.delete(p));
  next += everyMs;
  const wait = next - now();
  if (wait > 0) await Bun.sleep(wait);
  else next = now();
}
await Promise.all(pending);
process.exit(0);
export {};
