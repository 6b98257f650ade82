// The standard process_* series (the names every Prometheus client exports,
// so existing dashboards and alerts work): CPU, resident memory, open file
// descriptors and start time. prom-client's collectDefaultMetrics would add
// these and some thirty nodejs_* series besides, several of them V8 heap
// figures that mean nothing under Bun's JavaScriptCore; these four are what
// an operator watches for a leak, a spin or a restart loop, and each costs a
// syscall or a /proc read per scrape.
import { readdirSync } from "node:fs";
import { Counter, Gauge, type Registry } from "./metrics.ts";

/** Wall time the process started, in seconds; fixed at load (vipd loads this module at start). */
const START_SECONDS = Date.now() / 1000 - process.uptime();

export function registerProcessMetrics(registry: Registry): void {
  const registers = [registry];
  let cpuSeen = 0;
  new Counter({
    name: "process_cpu_seconds_total", help: "Total user and system CPU time spent in seconds.", registers,
    collect() {
      const { user, system } = process.cpuUsage();
      const total = (user + system) / 1e6;
      // A counter only grows: add what was used since the last scrape.
      if (total > cpuSeen) this.inc(total - cpuSeen);
      cpuSeen = Math.max(cpuSeen, total);
    },
  });
  new Gauge({
    name: "process_resident_memory_bytes", help: "Resident memory size in bytes.", registers,
    collect() {
      this.set(process.memoryUsage.rss());
    },
  });
  new Gauge({
    name: "process_open_fds", help: "Number of open file descriptors.", registers,
    collect() {
      // Less the one readdirSync holds on /proc/self/fd while it reads.
      this.set(readdirSync("/proc/self/fd").length - 1);
    },
  });
  new Gauge({
    name: "process_start_time_seconds", help: "Start time of the process since unix epoch in seconds.", registers,
    collect() {
      this.set(START_SECONDS);
    },
  });
}
