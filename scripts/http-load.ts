// One side of `npm run bench:http`, run inside the lab node's namespace by
// scripts/bench-http.ts: either a hostile local client of vipd's health port,
// or the prober that times /healthz meanwhile. They are separate processes
// so that the attacker's own load does not delay the prober's clock.
//
//   bun scripts/http-load.ts probe  URL SECONDS      → JSON { latencies, failures } on stdout
//   bun scripts/http-load.ts attack URL SECONDS KIND → JSON { requests, statuses, connections } on stdout
//
// KIND: slowloris, big-headers, connections, methods, unknown-paths, metrics.
export {};

const [role, url, secondsArg, kind] = process.argv.slice(2);
if (!role || !url || !secondsArg) {
  console.error("usage: http-load.ts probe|attack URL SECONDS [KIND]");
  process.exit(2);
}
const base = new URL(url);
const until = performance.now() + Number(secondsArg) * 1000;
const running = () => performance.now() < until;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A GET of /healthz on a new connection every 20 ms, as a kubelet or load balancer would probe: its latency, or a failure after 1 s. */
async function probe(): Promise<void> {
  const latencies: number[] = [];
  let failures = 0;
  while (running()) {
    const t = performance.now();
    try {
      const r = await fetch(new URL("/healthz", base), { signal: AbortSignal.timeout(1000), keepalive: false, headers: { connection: "close" } });
      await r.text();
      if (r.status === 200) latencies.push(performance.now() - t);
      else failures++;
    } catch {
      failures++;
    }
    await sleep(Math.max(0, 20 - (performance.now() - t)));
  }
  console.log(JSON.stringify({ latencies, failures }));
}

const statuses: Record<string, number> = {};
let requests = 0;
const count = (s: string | number) => {
  statuses[s] = (statuses[s] ?? 0) + 1;
  requests++;
};

/** `n` workers sending `init` requests to `path` back to back until time is up. */
async function flood(n: number, path: () => string, init: () => RequestInit): Promise<void> {
  await Promise.all(Array.from({ length: n }, async () => {
    while (running()) {
      try {
        const r = await fetch(new URL(path(), base), { ...init(), signal: AbortSignal.timeout(2000) });
        await r.arrayBuffer();
        count(r.status);
      } catch (e) {
        count((e as Error).name || "error");
      }
    }
  }));
}

/**
 * `n` raw TCP connections held open; each writes `opening` once and then
 * `drip` every `everyMs` (none: silent), and is opened again when vipd
 * closes it. Counts how many times vipd closed one.
 */
async function hold(n: number, opening: string, drip: string | null, everyMs: number): Promise<number> {
  let closedByServer = 0;
  const open = () => new Promise<void>((resolve) => {
    let timer: ReturnType<typeof setInterval> | null = null;
    Bun.connect({
      hostname: base.hostname.replace(/^\[|\]$/g, ""),
      port: Number(base.port),
      socket: {
        open(s) {
          if (opening) s.write(opening);
          if (drip !== null) timer = setInterval(() => s.write(drip), everyMs);
          resolve();
        },
        data() {},
        close() {
          if (timer) clearInterval(timer);
          if (running()) {
            closedByServer++;
            void open();
          }
        },
        error() {},
      },
    }).catch(() => resolve());
  });
  // Open in batches: thousands of simultaneous SYNs overflow the listen backlog.
  for (let i = 0; i < n && running(); i += 100) await Promise.all(Array.from({ length: Math.min(100, n - i) }, open));
  while (running()) await sleep(100);
  return closedByServer;
}

async function attack(): Promise<void> {
  let connections = 0;
  let closedByServer = 0;
  switch (kind) {
    case "slowloris":
      connections = 1000;
      closedByServer = await hold(connections, `GET /healthz HTTP/1.1\r\nHost: ${base.host}\r\n`, "X-a: b\r\n", 1000);
      break;
    case "connections":
      connections = 5000;
      closedByServer = await hold(connections, "", null, 0);
      break;
    case "big-headers": {
      const big = "x".repeat(1 << 20);
      await flood(8, () => "/healthz", () => ({ headers: { "x-big": big } }));
      break;
    }
    case "methods": {
      const methods = ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
      let i = 0;
      await flood(32, () => "/healthz", () => ({ method: methods[i++ % methods.length], body: i % 2 ? "x".repeat(4096) : undefined }));
      break;
    }
    case "unknown-paths": {
      let i = 0;
      await flood(32, () => `/${"a".repeat(i++ % 2000)}?${i}`, () => ({}));
      break;
    }
    case "metrics":
      while (running()) {
        const t = performance.now();
        try {
          const r = await fetch(new URL("/metrics", base), { signal: AbortSignal.timeout(2000) });
          await r.text();
          count(r.status);
        } catch (e) {
          count((e as Error).name || "error");
        }
        await sleep(Math.max(0, 10 - (performance.now() - t)));
      }
      break;
    default:
      console.error(`unknown attack ${kind}`);
      process.exit(2);
  }
  console.log(JSON.stringify({ requests, statuses, connections, closedByServer }));
}

if (role === "probe") await probe();
else if (role === "attack") await attack();
else {
  console.error(`unknown role ${role}`);
  process.exit(2);
}
process.exit(0);
