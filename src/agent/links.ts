// The VIP links as the kernel sees them: whether each is there and up (with
// carrier), its index and MAC, one announcer per link, and the kernel's
// link and address events. Events only say "look again" (design.md §8).
// It also keeps the MAC of every other link in the namespace: any of them may
// answer ARP for a VIP this node holds (design.md §12).
import { Announcer, probeAddress } from "../kernel/announce.ts";
import { formatMac } from "../kernel/ip.ts";
import { type KernelEvent, LinkEvents } from "../kernel/link-events.ts";
import type { Address, Link, Rtnl } from "../kernel/rtnl.ts";
import { describeError, type Logger } from "../log.ts";
import type { LinkState } from "../vip/decision.ts";
import type { AnnouncePort } from "../vip/ports.ts";

/**
 * How long a conflict probe listens. An owner on the segment answers within
 * milliseconds; three frames over the first half leave room for a lost one.
 * The first probe overlaps registration (~100 ms) but still comes before the
 * first join, so this is most of what conflict detection adds to start-up.
 */
export const PROBE_LISTEN_MS = 300;

export interface LinkWatchEvents {
  /** A link changed state (or index: it was re-created). */
  link(name: string, state: LinkState): void;
  /** An address event on one of our links. */
  address(name: string, address: Address, deleted: boolean): void;
  /** Events were lost: every fact must be re-read. */
  overrun(): void;
}

export class LinkWatch {
  readonly #links = new Map<string, { state: LinkState; link: Link | null }>();
  readonly #announcers = new Map<string, { key: string; port: Announcer }>();
  /** Every link of the namespace with a hardware address, by index: its name and MAC. */
  readonly #hosts = new Map<number, { name: string; mac: string }>();
  #events: LinkEvents | null = null;

  private constructor(
    private readonly rtnl: Rtnl,
    private readonly log: Logger,
    private readonly on: LinkWatchEvents,
  ) {}

  /** Reads every named link, then subscribes to the kernel's events. */
  static async open(names: Iterable<string>, rtnl: Rtnl, log: Logger, on: LinkWatchEvents): Promise<LinkWatch> {
    const w = new LinkWatch(rtnl, log, on);
    for (const name of new Set(names)) await w.refresh(name);
    // The echoes of our own address changes carry no news: the kernel drops them.
    w.#events = LinkEvents.open((e) => w.#onEvent(e), { ownPort: rtnl.portId() });
    // Subscribed first: a link that changes during the dump is told again by its event.
    try {
      await w.#readMacs();
    } catch (err) {
      w.close();
      throw err;
    }
    return w;
  }

  names(): string[] {
    return [...this.#links.keys()];
  }

  state(name: string): LinkState {
    return this.#links.get(name)?.state ?? "absent";
  }

  link(name: string): Link | null {
    return this.#links.get(name)?.link ?? null;
  }

  /**
   * The MAC of every link in this network namespace, by link name (loopback
   * and links without an Ethernet address left out). With Linux's default
   * arp_ignore=0 any of them answers ARP for any local address, a VIP
   * included, when it hears the request: such an answer is this node's own.
   */
  macs(): ReadonlyMap<string, string> {
    return new Map([...this.#hosts.values()].map((h) => [h.name, h.mac]));
  }

  /** The announcer for a link, opened on first use and replaced when the link is re-created. */
  announcer(name: string): AnnouncePort | null {
    const link = this.link(name);
    if (!link) return null;
    const have = this.#announcers.get(name);
    if (have) return have.port;
    try {
      const port = Announcer.open({ index: link.index, name: link.name, mac: link.mac });
      this.#announcers.set(name, { key: announcerKey(link), port });
      return port;
    } catch (err) {
      this.log.error("opening announcer failed", { link: name, error: describeError(err) });
      return null;
    }
  }

  /**
   * Which MACs other than the link's own answer for `ip` on it: an ARP probe,
   * or DAD's neighbour solicitation for IPv6 (kernel/announce.ts). Rejects
   * when the link is missing or the probe cannot be sent (ENETDOWN).
   */
  probe(name: string, ip: string): Promise<string[]> {
    const link = this.link(name);
    if (!link) return Promise.reject(new Error(`probing ${ip} on ${name}: the link is missing`));
    return probeAddress({ index: link.index, name: link.name, mac: link.mac }, ip, { timeoutMs: PROBE_LISTEN_MS });
  }

  /** Follows one more link (a reload added a VIP on it): reads it now, then its events count. */
  async watch(name: string): Promise<void> {
    if (!this.#links.has(name)) await this.refresh(name);
  }

  /** Stops following a link no VIP uses any more, and closes its announcer. */
  forget(name: string): void {
    this.#links.delete(name);
    this.#announcers.get(name)?.port.close();
    this.#announcers.delete(name);
  }

  /** Reads one link from the kernel again. */
  async refresh(name: string): Promise<void> {
    let link: Link | null = null;
    try {
      link = await this.rtnl.link(name);
    } catch (err) {
      if ((err as { code?: string }).code !== "ENODEV") throw err;
    }
    this.#set(name, link);
  }

  close(): void {
    this.#events?.close();
    this.#events = null;
    for (const a of this.#announcers.values()) a.port.close();
    this.#announcers.clear();
  }

  #set(name: string, link: Link | null): void {
    // IFF_UP alone is not enough: a cut cable (no carrier) must count as down.
    const state: LinkState = !link ? "absent" : link.up && link.lowerUp ? "up" : "down";
    const before = this.#links.get(name);
    this.#links.set(name, { state, link });
    const ann = this.#announcers.get(name);
    if (ann && (!link || ann.key !== announcerKey(link))) {
      ann.port.close();
      this.#announcers.delete(name);
    }
    if (before && (before.state !== state || before.link?.index !== link?.index)) {
      if (before.state !== state) this.log.info(`link ${name} is ${state}`, { link: name, state });
      this.on.link(name, state);
    }
  }

  /** Reads every link's MAC from the kernel again. */
  async #readMacs(): Promise<void> {
    const links = await this.rtnl.links();
    this.#hosts.clear();
    for (const link of links) this.#setMac(link, false);
  }

  #setMac(link: Link, deleted: boolean): void {
    // Loopback's address is all zeros, and only 6-byte addresses are Ethernet's (ARP, NDP).
    if (deleted || link.mac.length !== 6 || link.mac.every((b) => b === 0)) this.#hosts.delete(link.index);
    else this.#hosts.set(link.index, { name: link.name, mac: formatMac(link.mac) });
  }

  #onEvent(e: KernelEvent): void {
    if (e.type === "overrun") {
      this.log.warn("kernel events were lost; re-reading links");
      for (const name of this.#links.keys()) {
        void this.refresh(name).catch((err) => this.log.error("re-reading link failed", { link: name, error: describeError(err) }));
      }
      void this.#readMacs().catch((err) => this.log.error("re-reading the namespace's links failed", { error: describeError(err) }));
      this.on.overrun();
      return;
    }
    if (e.type === "link") {
      this.#setMac(e.link, e.deleted);
      const name = [...this.#links.keys()].find((n) => n === e.link.name || this.#links.get(n)?.link?.index === e.link.index);
      if (name) this.#set(name, e.deleted || e.link.name !== name ? null : e.link);
      return;
    }
    const name = [...this.#links.keys()].find((n) => this.#links.get(n)?.link?.index === e.address.linkIndex);
    if (name) this.on.address(name, e.address, e.deleted);
  }
}

function announcerKey(link: Link): string {
  return `${link.index}/${Array.from(link.mac).join(",")}`;
}
