// Prometheus text exposition (format 0.0.4) through prom-client.
//
// prom-client is the maintained reference client for Node; it runs unchanged
// under Bun and inside a `bun build --compile` binary (checked when it was
// added), so the exposition format — escaping, HELP/TYPE lines, histogram
// buckets with `+Inf`, `_sum` and `_count` — is not ours to get right.
//
// Every registry is created here and passed around: no default (global)
// registry, so tests and several agents in one process never share series.
// Rendering is asynchronous because prom-client's is (collect callbacks may
// await); HealthServer must await it.
import { Registry } from "prom-client";

export { Counter, Gauge, Histogram, Registry } from "prom-client";

/** The Content-Type of the text exposition format. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export function newRegistry(): Registry {
  return new Registry();
}

/** The registry's samples in the text exposition format. */
export function renderRegistry(registry: Registry): Promise<string> {
  return registry.metrics();
}

/** Seconds from milliseconds, for the base unit Prometheus wants. */
export const seconds = (ms: number): number => ms / 1000;
