// The one typed, validated, frozen value everything after config/ works on.
// Its shape comes from the table of settings (table.ts) and the VIP documents.
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

/** etcd's TLS files as the etcd client takes them; undefined when none is set. */
export function etcdTls(etcd: Settings["etcd"]): { caFile?: string; certFile?: string; keyFile?: string } | undefined {
  const { caFile, certFile, keyFile } = etcd;
  if (!caFile && !certFile && !keyFile) return undefined;
  return { ...(caFile ? { caFile } : {}), ...(certFile ? { certFile } : {}), ...(keyFile ? { keyFile } : {}) };
}
