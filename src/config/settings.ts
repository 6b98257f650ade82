// The one typed, validated, frozen value everything after config/ works on.
// Its shape comes from the table of settings (table.ts) and the VIP documents.
import { isIP } from "node:net";
import type { TableSettings } from "./table.ts";

export interface VipSettings {
  /** Canonical text (RFC 5952 for IPv6). */
  ip: string;
  family: 4 | 6;
  link: string;
  /** Index of the document that declared it, for log lines. */
  document: number;
}

export type Settings = Omit<TableSettings, "apiServer"> & {
  readonly vips: readonly VipSettings[];
  /** The kube-apiserver gate: present only with its URL, its switch (table.ts). */
  readonly apiServer?: NonNullable<TableSettings["apiServer"]> & { readonly url: string };
};

/**
 * Freezes a value and everything it holds: Settings, once loaded (or
 * re-read by a reload), change only by being replaced as a whole.
 */
export function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

/**
 * A TLS client's files, as etcd's client and the kube-apiserver probe take
 * them. Any may be absent: no CA = the system's roots; no certificate and
 * key = no client certificate (the table refuses one without the other).
 */
export interface TlsFiles {
  readonly caFile?: string | undefined;
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
}

/** etcd's TLS files as the etcd client takes them; undefined when none is set. */
export function etcdTls(etcd: Settings["etcd"]): TlsFiles | undefined {
  const { caFile, certFile, keyFile } = etcd;
  if (!caFile && !certFile && !keyFile) return undefined;
  return { ...(caFile ? { caFile } : {}), ...(certFile ? { certFile } : {}), ...(keyFile ? { keyFile } : {}) };
}

/**
 * The name a kubeadm API server certificate always carries (kubeadm's
 * GetAPIServerAltNames: the node name, kubernetes, kubernetes.default[.svc[.<domain>]],
 * the service IP, the advertise address, controlPlaneEndpoint and certSANs;
 * never 127.0.0.1).
 */
export const KUBEADM_APISERVER_NAME = "kubernetes";

/**
 * The name the gate checks the API server's certificate against: serverName
 * when set; else, for a URL whose host is an IP address (the local
 * https://127.0.0.1:6443, which kubeadm's certificate does not name),
 * "kubernetes"; else the URL's host.
 */
export function apiServerName(apiServer: { readonly url: string; readonly serverName?: string | undefined }): string {
  if (apiServer.serverName) return apiServer.serverName;
  const host = new URL(apiServer.url).hostname;
  return host.startsWith("[") || isIP(host) ? KUBEADM_APISERVER_NAME : host;
}
