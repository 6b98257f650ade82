// The agent's HTTP surface: /healthz for probes (systemd, kubelet, load
// balancers), /status for people and scripts, /metrics for Prometheus.
// The server only renders what the agent reports; it holds no state.
import type { Server } from "bun";
import { formatHostPort } from "../config/fields.ts";

export interface HealthReport {
  readonly ok: boolean;
  /** Why not, in one sentence ("etcd unreachable: ..."). */
  readonly reason: string;
}

export interface HealthSources {
  health(): HealthReport;
  status(): unknown;
  /** Prometheus text exposition; absent = 404. */
  metrics?(): string | Promise<string>;
}

export class HealthServer {
  private constructor(private readonly server: Server<undefined>) {}

  /** Starts listening; throws an Error naming the address if it cannot. */
  static start(listen: { host: string; port: number }, sources: HealthSources): HealthServer {
    let server: Server<undefined>;
    try {
      server = Bun.serve({
        hostname: listen.host,
        port: listen.port,
        // Limits against hostile local clients (README "HTTP endpoints"; npm
        // run bench:http measures them). Bun itself answers 431 to headers
        // over 16 KiB and drops a connection that has not sent a whole
        // request within about 10 s (a slowloris); it has no connection
        // cap, so each open connection costs one descriptor until then.
        idleTimeout: IDLE_TIMEOUT_S,
        // Every endpoint is a GET: no request needs a body.
        maxRequestBodySize: MAX_BODY_BYTES,
        // A probe must never hang: nothing here waits on I/O.
        async fetch(req) {
          const { pathname } = new URL(req.url);
          if (req.method !== "GET" && req.method !== "HEAD") return new Response("method not allowed\n", { status: 405 });
          switch (pathname) {
            case "/healthz":
            case "/livez": {
              const h = sources.health();
              return new Response(h.ok ? "ok\n" : `${h.reason}\n`, { status: h.ok ? 200 : 503, headers: TEXT });
            }
            case "/status":
              return Response.json(sources.status(), { headers: { "cache-control": "no-store" } });
            case "/metrics":
              if (!sources.metrics) break;
              return new Response(await sources.metrics(), { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } });
          }
          return new Response("not found\n", { status: 404, headers: TEXT });
        },
        error(err) {
          return new Response(`internal error: ${err.message}\n`, { status: 500, headers: TEXT });
        },
      });
    } catch (err) {
      const code = (err as { code?: string }).code ?? "error";
      throw new Error(`${code}: listening for health checks on ${formatHostPort(listen)}`);
    }
    return new HealthServer(server);
  }

  get port(): number {
    return this.server.port ?? 0;
  }

  stop(): void {
    this.server.stop(true);
  }
}

/** A kept-alive connection with no request for this long is closed. */
export const IDLE_TIMEOUT_S = 10;
/** Larger request bodies get 413 before vipd reads them. */
export const MAX_BODY_BYTES = 1024;

const TEXT = { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" };


