// The one typed, validated, frozen value everything after config/ works on.

import { DEFAULT_HOLD_MS } from "../election/proof.ts";

export interface VipSettings {
  /** Canonical text (RFC 5952 for IPv6). */
  ip: string;
  family: 4 | 6;
  link: string;
  /** Index of the Layer2VIPConfig document that declared it, for log lines. */
  document: number;
}

export interface Settings {
  nodeName: string;
  vips: readonly VipSettings[];
  etcd: {
    endpoints: readonly string[];
    prefix: string;
    tls?: { caFile?: string; certFile?: string; keyFile?: string };
  };
  election: {
    /** ms a committed heartbeat proves ownership for (design.md §3). */
    holdTime: number;
    /** s of the lease that only cleans up after a vanished agent. */
    leaseTTL: number;
  };
  health: { listen: { host: string; port: number } };
  /** Absent: no kube-apiserver gate. */
  apiServer?: {
    url: string;
    caFile?: string;
    certFile?: string;
    keyFile?: string;
    insecureSkipVerify: boolean;
    interval: number;
    timeout: number;
    rise: number;
    fall: number;
  };
  announce: { burst: number; burstInterval: number; refresh: number };
  log: { format: "pretty" | "json"; level: string };
}

export const DEFAULTS = Object.freeze({
  endpoints: Object.freeze(["https://127.0.0.1:2379"]),
  prefix: "/vipd/",
  holdTime: DEFAULT_HOLD_MS,
  leaseTTL: 10,
  listen: Object.freeze({ host: "127.0.0.1", port: 8099 }),
  apiServerUrl: "https://127.0.0.1:6443/readyz",
  interval: 1,
  timeout: 2,
  rise: 2,
  fall: 3,
  burst: 3,
  burstInterval: 0.05,
  refresh: 10,
  logLevel: "info",
});
