// Every setting of VIPAgentConfig, declared once. From this table come the
// document schema, the command-line flags, the environment variables
// (VIPD_<FLAG>), the defaults, `--help`, `vipd config example` and the type
// of Settings: a setting added here exists everywhere, and nowhere else
// needs to know its name.

import type * as v from "valibot";
import { LOG_FORMATS, LOG_LEVELS } from "../log.ts";
import * as f from "./fields.ts";

/**
 * How a value written as text (a flag, a variable) becomes a value the schema
 * can judge. "json": the text is JSON, for lists whose items may themselves
 * hold commas or spaces (a hook's argv).
 */
export type TextKind = "string" | "number" | "boolean" | "list" | "json";

export interface Setting<T = unknown, Required extends boolean = boolean> {
  readonly kind: "setting";
  readonly schema: v.GenericSchema<unknown, T>;
  readonly text: TextKind;
  /** Without "--"; the variable is VIPD_ and this in upper case. */
  readonly flag: string;
  /** Placeholder for the value in help, e.g. "SECONDS". */
  readonly value: string;
  readonly help: string;
  readonly required: Required;
  /** The value when nothing sets it. */
  readonly default?: T;
  /** Filled in when loading, when nothing sets it: the host name, or what suits the terminal. */
  readonly fallback?: "hostname" | "terminal";
  /** How `vipd config example` shows a setting that has no default (YAML). */
  readonly example?: string;
  /** A file vipd will read: it must exist and be readable when the configuration is loaded. */
  readonly file?: true;
  /**
   * A running vipd takes it from a reload (the CLI swaps its logger, the
   * agent gives the hook runner its new hooks); any other setting waits for a
   * restart (agent/reload.ts says why).
   */
  readonly live?: true;
}

export interface Section<E extends Entries = Entries, Optional extends boolean = boolean> {
  readonly kind: "section";
  readonly entries: E;
  /**
   * Present only when the setting named by `on` is given (the kube-apiserver
   * gate exists only when asked for, by its URL).
   */
  readonly optional: Optional;
  /** For an optional section: the setting that turns it on; any other of its settings needs it. */
  readonly on?: string;
  /** One line for `vipd config example`. */
  readonly help: string;
}

export type Entries = { readonly [name: string]: Setting | Section };

type Spec<T> = Omit<Setting<T>, "kind" | "required" | "default" | "fallback" | "schema" | "text"> & {
  readonly schema: v.GenericSchema<unknown, T>;
  readonly text?: TextKind;
};

/**
 * A setting with a default (or a fallback filled in when loading): always
 * present in Settings. The schema alone decides T; the default must fit it
 * (inferred from both, "info" would widen log.level to string).
 */
function withDefault<T>(spec: Spec<T> & ({ default: NoInfer<T> } | { fallback: "hostname" | "terminal" })): Setting<T, true> {
  return { kind: "setting", text: "string", ...spec, required: true };
}

/** A setting that may stay unset. */
function optional<T>(spec: Spec<T>): Setting<T, false> {
  return { kind: "setting", text: "string", ...spec, required: false };
}

function section<E extends Entries>(help: string, entries: E): Section<E, false> {
  return { kind: "section", entries, optional: false, help };
}

function optionalSection<E extends Entries>(help: string, on: keyof E & string, entries: E): Section<E, true> {
  return { kind: "section", entries, optional: true, on, help };
}

export const TABLE = {
  nodeName: withDefault({
    schema: f.nodeName, flag: "node-name", value: "N", fallback: "hostname",
    help: "this node's name in elections (default: the host name)",
  }),
  etcd: section("the etcd cluster vipd elects through (kubeadm's, on a control-plane node)", {
    endpoints: withDefault({
      schema: f.endpoints, text: "list", flag: "etcd-endpoints", value: "URL,URL", default: ["https://127.0.0.1:2379"],
      help: "etcd endpoints: list every member, so that vipd moves off one that pauses",
    }),
    caFile: optional({ schema: f.filePath, file: true, flag: "etcd-ca", value: "FILE", help: "CA bundle to verify etcd", example: "/etc/kubernetes/pki/etcd/ca.crt" }),
    certFile: optional({
      schema: f.filePath, file: true, flag: "etcd-cert", value: "FILE", help: "client certificate for etcd (needs --etcd-key)",
      example: "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
    }),
    keyFile: optional({
      schema: f.filePath, file: true, flag: "etcd-key", value: "FILE", help: "client key for etcd (needs --etcd-cert)",
      example: "/etc/kubernetes/pki/etcd/healthcheck-client.key",
    }),
    serverName: optional({
      schema: f.serverName, flag: "etcd-server-name", value: "NAME",
      help: "name etcd's certificate must carry (default: the endpoint's address or host name)", example: "etcd.example.internal",
    }),
    prefix: withDefault({
      schema: f.keyPrefix, flag: "etcd-prefix", value: "PREFIX", default: "/vipd/",
      help: "where vipd's keys live in etcd: agents/, heartbeats/, elections/<vip>/",
    }),
  }),
  election: section("how ownership is proven and handed over (docs/design.md)", {
    holdTime: withDefault({
      schema: f.holdTime, text: "number", flag: "hold-time", value: "MS", default: 2500,
      help: "how long a committed heartbeat proves ownership, 1000 to 30000 ms; another node takes over about this long after the holder falls silent",
    }),
    leaseTTL: withDefault({
      schema: f.leaseTTL, text: "number", flag: "lease-ttl", value: "SECONDS", default: 10,
      help: "TTL of the lease that removes a vanished agent's keys, 3 to 300 s, at least the hold time + 0.5 s",
    }),
  }),
  health: section("/healthz, /status and /metrics", {
    listen: withDefault({
      schema: f.hostPort, flag: "health-listen", value: "HOST:PORT", default: { host: "127.0.0.1", port: 8099 },
      help: "address of /healthz, /status and /metrics",
    }),
  }),
  apiServer: optionalSection("gate ownership on this node's kube-apiserver answering /readyz (no url: no gate)", "url", {
    url: optional({
      schema: f.httpUrl, flag: "apiserver-url", value: "URL", example: "https://127.0.0.1:6443/readyz",
      help: "turns the kube-apiserver gate on: hold VIPs only while this readiness URL answers 200 (kubeadm's: https://127.0.0.1:6443/readyz)",
    }),
    caFile: optional({ schema: f.filePath, file: true, flag: "apiserver-ca", value: "FILE", help: "CA bundle to verify the kube-apiserver", example: "/etc/kubernetes/pki/ca.crt" }),
    serverName: optional({
      schema: f.tlsName, flag: "apiserver-server-name", value: "NAME",
      help: "name (or IP address) the kube-apiserver's certificate must carry (default: kubernetes, which kubeadm's always carries, when the URL's host is an IP address; else that host); the probe still connects to the URL's address",
      example: "kubernetes",
    }),
    certFile: optional({
      schema: f.filePath, file: true, flag: "apiserver-cert", value: "FILE", help: "client certificate for the kube-apiserver (needs --apiserver-key)",
      example: "/etc/kubernetes/pki/apiserver-kubelet-client.crt",
    }),
    keyFile: optional({
      schema: f.filePath, file: true, flag: "apiserver-key", value: "FILE", help: "client key for the kube-apiserver (needs --apiserver-cert)",
      example: "/etc/kubernetes/pki/apiserver-kubelet-client.key",
    }),
    insecureSkipVerify: withDefault({
      schema: f.bool, text: "boolean", flag: "apiserver-insecure-skip-verify", value: "", default: false,
      help: "do not verify the kube-apiserver's certificate",
    }),
    interval: withDefault({ schema: f.seconds, text: "number", flag: "apiserver-interval", value: "SECONDS", default: 1, help: "seconds between probes" }),
    timeout: withDefault({ schema: f.seconds, text: "number", flag: "apiserver-timeout", value: "SECONDS", default: 2, help: "seconds a probe may take" }),
    rise: withDefault({ schema: f.count, text: "number", flag: "apiserver-rise", value: "N", default: 2, help: "successes in a row that open the gate" }),
    fall: withDefault({ schema: f.count, text: "number", flag: "apiserver-fall", value: "N", default: 3, help: "failures in a row that close it" }),
  }),
  announce: section("gratuitous ARP / unsolicited neighbour advertisements", {
    burst: withDefault({ schema: f.count, text: "number", flag: "announce-burst", value: "N", default: 3, help: "announcement rounds right after taking a VIP" }),
    burstInterval: withDefault({
      schema: f.burstInterval, text: "number", flag: "announce-burst-interval", value: "SECONDS", default: 0.05,
      help: "seconds between those rounds",
    }),
    refresh: withDefault({
      schema: f.refresh, text: "number", flag: "announce-refresh", value: "SECONDS", default: 10,
      help: "seconds between announcements while holding (0: none)",
    }),
    probeInterval: withDefault({
      schema: f.probeInterval, text: "number", flag: "announce-probe-interval", value: "SECONDS", default: 60,
      help: "seconds between probes (ARP; DAD for IPv6) for another machine that uses a VIP, while standing for or holding it (0: no conflict detection)",
    }),
  }),
  hooks: section("programs run after this node acquires, releases or is fenced off a VIP (README: Hooks)", {
    acquired: optional({
      schema: f.argv, text: "json", flag: "hook-acquired", value: "JSON", live: true,
      help: 'run after this node acquired a VIP: an argv list, no shell (flag or variable: a JSON array, ["/usr/local/sbin/vip-up","--quiet"])',
      example: "[/usr/local/sbin/vipd-hook, acquired]",
    }),
    released: optional({
      schema: f.argv, text: "json", flag: "hook-released", value: "JSON", live: true,
      help: "run after this node gave a VIP up (stop, drain, hand-over, link down, gate closed...): an argv list like --hook-acquired",
      example: "[/usr/local/sbin/vipd-hook, released]",
    }),
    fenced: optional({
      schema: f.argv, text: "json", flag: "hook-fenced", value: "JSON", live: true,
      help: "run after this node lost a VIP because it could no longer prove it (etcd unreachable, another node took over): an argv list like --hook-acquired",
      example: "[/usr/local/sbin/vipd-hook, fenced]",
    }),
    timeout: withDefault({
      schema: f.hookTimeout, text: "number", flag: "hook-timeout", value: "SECONDS", default: 10, live: true,
      help: "seconds a hook may run before it and its process group are killed, at most 300",
    }),
  }),
  log: section("vipd's log on stderr", {
    format: withDefault({
      schema: f.logFormat, flag: "log-format", value: LOG_FORMATS.join("|"), fallback: "terminal", example: "json", live: true,
      help: "log format (default: pretty on a terminal, else json)",
    }),
    level: withDefault({
      schema: f.logLevel, flag: "log-level", value: "LEVEL", default: "info", live: true,
      help: `${LOG_LEVELS.slice(0, -1).join(", ")} or ${LOG_LEVELS.at(-1)}`,
    }),
  }),
} as const satisfies Entries;

/** The value type a table node gives Settings. */
type ValueOf<N> =
  N extends Setting<infer T, infer R> ? (R extends true ? T : T | undefined)
  : N extends Section<infer E, infer O> ? (O extends true ? SettingsOf<E> | undefined : SettingsOf<E>)
  : never;

type SettingsOf<E> = { readonly [K in keyof E as undefined extends ValueOf<E[K]> ? never : K]: ValueOf<E[K]> } & {
  readonly [K in keyof E as undefined extends ValueOf<E[K]> ? K : never]?: Exclude<ValueOf<E[K]>, undefined>;
};

/** The settings the table declares, as everything after config/ reads them. */
export type TableSettings = SettingsOf<typeof TABLE>;

export interface Leaf {
  /** "etcd.endpoints": where it is in the document and in Settings. */
  readonly path: string;
  readonly setting: Setting;
  /** VIPD_ETCD_ENDPOINTS */
  readonly env: string;
}

export const envName = (flag: string) => `VIPD_${flag.toUpperCase().replaceAll("-", "_")}`;

function leavesOf(entries: Entries, base: string): Leaf[] {
  return Object.entries(entries).flatMap(([name, node]) => {
    const path = base ? `${base}.${name}` : name;
    return node.kind === "setting" ? [{ path, setting: node as Setting, env: envName(node.flag) }] : leavesOf(node.entries, path);
  });
}

/** Every setting, in table order. */
export const LEAVES: readonly Leaf[] = Object.freeze(leavesOf(TABLE, ""));

/** The settings a running vipd takes from a reload, by path ("log.level"). */
export const LIVE: ReadonlySet<string> = new Set(LEAVES.filter((l) => l.setting.live).map((l) => l.path));

/** The sections that exist only when asked for, by name ("apiServer"). */
export const OPTIONAL_SECTIONS: readonly string[] = Object.entries(TABLE)
  .filter(([, n]) => n.kind === "section" && n.optional)
  .map(([name]) => name);

/** The setting that turns an optional section on: "apiServer" → "apiServer.url". */
export function sectionSwitch(section: string): string {
  const node = (TABLE as Entries)[section];
  if (node?.kind !== "section" || !node.on) throw new Error(`${section} is no optional section with a switch`);
  return `${section}.${node.on}`;
}
