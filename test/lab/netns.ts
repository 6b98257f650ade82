// A simulated layer-2 segment made of network namespaces: one "switch"
// namespace holding a bridge, and hosts whose eth0 is a veth plugged into it.
// Addresses come from the documentation ranges (192.0.2.0/24, 2001:db8::/64),
// which never exist on a real network. No default route, nothing in the root
// namespace. Everything is removed by destroy(), also on failure and exit.
import { close } from "../../src/kernel/ffi/libc.ts";
import { enterNetns, openNetns } from "./setns.ts";
import { errnoName } from "../../src/kernel/errno.ts";
import { onExit } from "./exit.ts";
import { sh } from "./sh.ts";

export const SUBNET4 = "192.0.2";
export const SUBNET6 = "2001:db8::";

export interface Host {
  /** Short name, e.g. "n1". */
  readonly name: string;
  /** Namespace name. */
  readonly ns: string;
  /** Host address without prefix length. */
  readonly ip4: string;
  readonly ip6: string;
  /** The host's link to the segment. */
  readonly link: string;
  /** Name of the veth peer in the switch namespace (to cut or restore the cable). */
  readonly port: string;
}

export class Segment {
  readonly switchNs: string;
  readonly hosts: Host[] = [];
  private namespaces: string[] = [];
  private readonly unregisterExit: () => void;

  private constructor(readonly prefix: string) {
    this.switchNs = `${prefix}-sw`;
    this.unregisterExit = onExit(() => this.destroySync());
  }

  /** Creates a bridge namespace and `names.length` hosts on it. Host i gets .10+i. */
  static async create(names: readonly string[], opts: { tag?: string } = {}): Promise<Segment> {
    const tag = opts.tag ?? Math.random().toString(36).slice(2, 7);
    const seg = new Segment(`vipd-${tag}`);
    try {
      await seg.addNs(seg.switchNs);
      await seg.ip(seg.switchNs, "link", "add", "br0", "type", "bridge");
      // No STP delay: ports forward as soon as they are up.
      await seg.ip(seg.switchNs, "link", "set", "br0", "type", "bridge", "forward_delay", "0", "stp_state", "0");
      await seg.ip(seg.switchNs, "link", "set", "br0", "up");
      for (const [i, name] of names.entries()) await seg.addHost(name, 10 + i);
    } catch (e) {
      await seg.destroy();
      throw e;
    }
    return seg;
  }

  host(name: string): Host {
    const h = this.hosts.find((x) => x.name === name);
    if (!h) throw new Error(`no host ${name} in segment ${this.prefix}`);
    return h;
  }

  /** Runs `ip ARGS` inside namespace ns. */
  ip(ns: string, ...args: string[]): Promise<string> {
    return sh(["ip", "-n", ns, ...args]);
  }

  /** Runs argv inside a host's namespace. */
  exec(host: Host | string, argv: readonly string[], opts: { allowFail?: boolean } = {}): Promise<string> {
    const ns = typeof host === "string" ? host : host.ns;
    return sh(["ip", "netns", "exec", ns, ...argv], opts);
  }

  /** The kernel's view of addresses on a host's link (`ip -j addr show`). */
  async addresses(host: Host, link = host.link): Promise<KernelAddress[]> {
    const out = await this.ip(host.ns, "-j", "addr", "show", "dev", link);
    const parsed = JSON.parse(out || "[]") as { addr_info?: KernelAddress[] }[];
    return parsed.flatMap((l) => l.addr_info ?? []);
  }

  /** Whether `address` is currently on the host's link. */
  async has(host: Host, address: string, link = host.link): Promise<boolean> {
    return (await this.addresses(host, link)).some((a) => a.local === address);
  }

  /**
   * Plugs a further link of the host into the switch, as a second NIC on the
   * same segment: a veth named `link` in the host, up, with no address.
   * Returns its port's name in the switch namespace. It goes with the
   * namespaces in destroy().
   */
  async addLink(host: Host, link: string): Promise<string> {
    const port = `p-${host.name}-${link}`.slice(0, 15);
    await this.ip(this.switchNs, "link", "add", port, "type", "veth", "peer", "name", link, "netns", host.ns);
    await this.ip(this.switchNs, "link", "set", port, "master", "br0", "up");
    await this.ip(host.ns, "link", "set", link, "up");
    return port;
  }

  /** Cuts (down) or restores (up) the host's cable at the switch. */
  async cable(host: Host, state: "up" | "down"): Promise<void> {
    await this.ip(this.switchNs, "link", "set", host.port, state);
  }

  private async addNs(ns: string): Promise<void> {
    await sh(["ip", "netns", "add", ns]);
    this.namespaces.push(ns);
    await this.ip(ns, "link", "set", "lo", "up");
  }

  private async addHost(name: string, octet: number): Promise<void> {
    const ns = `${this.prefix}-${name}`;
    const port = `p-${name}`.slice(0, 15);
    await this.addNs(ns);
    // Create the pair in the switch namespace, then move one end to the host.
    await this.ip(this.switchNs, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns);
    await this.ip(this.switchNs, "link", "set", port, "master", "br0", "up");
    const host: Host = {
      name,
      ns,
      ip4: `${SUBNET4}.${octet}`,
      ip6: `${SUBNET6}${octet.toString(16)}`,
      link: "eth0",
      port,
    };
    await this.ip(ns, "addr", "add", `${host.ip4}/24`, "dev", "eth0");
    await this.ip(ns, "addr", "add", `${host.ip6}/64`, "dev", "eth0", "nodad");
    await this.ip(ns, "link", "set", "eth0", "up");
    this.hosts.push(host);
  }

  async destroy(): Promise<void> {
    for (const ns of this.namespaces.reverse()) await sh(["ip", "netns", "del", ns], { allowFail: true });
    this.namespaces = [];
    this.unregisterExit();
  }

  /** For exit hooks, where nothing asynchronous runs any more. */
  destroySync(): void {
    for (const ns of this.namespaces.reverse()) Bun.spawnSync(["ip", "netns", "del", ns]);
    this.namespaces = [];
    this.unregisterExit();
  }
}

export interface KernelAddress {
  family: "inet" | "inet6";
  local: string;
  prefixlen: number;
  valid_life_time?: number;
  preferred_life_time?: number;
  [k: string]: unknown;
}

/**
 * Runs fn with the calling thread switched into namespace ns, then switches back.
 * Sockets opened inside fn stay in ns for their whole life, so a test can drive
 * the kernel layer inside a namespace without a child process. fn must be
 * synchronous: nothing else may run on this thread while it is switched.
 */
export function inNetns<T>(ns: string, fn: () => T): T {
  const home = openNetns("/proc/thread-self/ns/net");
  if (home < 0) throw new Error(`opening own netns: ${errnoName(-home)}`);
  const target = openNetns(`/run/netns/${ns}`);
  if (target < 0) {
    close(home);
    throw new Error(`opening netns ${ns}: ${errnoName(-target)}`);
  }
  try {
    const r = enterNetns(target);
    if (r < 0) throw new Error(`entering netns ${ns}: ${errnoName(-r)}`);
    try {
      const out = fn();
      if (out instanceof Promise) throw new Error("inNetns: fn must be synchronous");
      return out;
    } finally {
      const back = enterNetns(home);
      if (back < 0) throw new Error(`leaving netns ${ns}: ${errnoName(-back)}`);
    }
  } finally {
    close(target);
    close(home);
  }
}
