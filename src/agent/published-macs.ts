// What the other agents' conflict probes may hear from us (design.md §12):
// the MAC of each VIP's link that exists now, by VIP, and that of every link
// in this namespace, by `link/<name>` (any of them answers ARP for a VIP we
// hold when it is on the segment too). The session asks for them at every
// committed heartbeat, and they change only with a reload or a link event:
// the same object is handed out while the VIPs and the links' MACs are the
// same, so that a heartbeat costs nothing per VIP here (the registration
// does not encode the same object twice).
import type { VipSettings } from "../config/index.ts";
import { formatMac } from "../kernel/ip.ts";
import type { LinkWatch } from "./links.ts";

export class PublishedMacs {
  #vips: readonly VipSettings[] | null = null;
  #vipLinks: readonly string[] = [];
  #seen = "";
  #value: Record<string, string> = {};

  /** The MACs for these VIPs (the settings' list: a new one is a reload) over the links as they are now. */
  of(vips: readonly VipSettings[], links: Pick<LinkWatch, "link" | "macs"> | null): Record<string, string> {
    if (vips !== this.#vips) this.#vipLinks = [...new Set(vips.map((v) => v.link))];
    const all = links?.macs() ?? new Map<string, string>();
    let seen = "";
    for (const name of this.#vipLinks) {
      const link = links?.link(name);
      seen += `${name}=${link ? formatMac(link.mac) : ""};`;
    }
    for (const [name, mac] of all) seen += `link/${name}=${mac};`;
    if (vips === this.#vips && seen === this.#seen) return this.#value;
    const out: Record<string, string> = {};
    for (const v of vips) {
      const link = links?.link(v.link);
      if (link) out[v.ip] = formatMac(link.mac);
    }
    for (const [name, mac] of all) out[`link/${name}`] = mac;
    this.#vips = vips;
    this.#seen = seen;
    this.#value = out;
    return out;
  }
}
