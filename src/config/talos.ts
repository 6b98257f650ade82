// VIPs as Talos machine configs carry them, besides Layer2VIPConfig
// documents (documents.ts): most Talos clusters still declare the VIP in the
// v1alpha1 machine config document itself,
//
//   machine:
//     network:
//       interfaces:
//         - interface: eth0
//           vip: { ip: 192.168.0.15 }          → 192.168.0.15 on eth0
//           vlans:
//             - vlanId: 100
//               vip: { ip: 192.168.100.15 }   → on eth0.100
//
// A VIP vipd cannot serve is an error, never skipped: an operator who moves
// a cluster to vipd must not find the VIP silently unmanaged. That is a VIP
// announced through a cloud's API instead of ARP (vip.hcloud, vip.equinixMetal,
// an HCloudVIPConfig document), and one on an interface named by a
// deviceSelector, which vipd cannot resolve to a link.
import * as v from "valibot";
import * as f from "./fields.ts";
import { CLOUD_VIP_KINDS } from "./kinds.ts";
import { type ConfigIssue, issue, render } from "./issue.ts";

export const MACHINE_CONFIG = "Talos machine config";

/** A VIP found in a document, with where it was written. */
export interface FoundVip {
  readonly ip: string;
  readonly link: string;
  /** "machine.network.interfaces[0].vip.ip", for duplicate errors. */
  readonly path: string;
}

/** Whether an untyped document is a Talos v1alpha1 machine config. */
export function isMachineConfig(doc: Record<string, unknown>): boolean {
  return doc.kind === undefined && doc.version === "v1alpha1" && typeof doc.machine === "object" && doc.machine !== null;
}

/** The VIP documents of Talos that announce through a cloud API: vipd cannot serve them. */
export function isCloudVipKind(kind: string): boolean {
  return CLOUD_VIP_KINDS.has(kind);
}

const CLOUDS: Record<string, string> = { hcloud: "Hetzner Cloud's API", equinixMetal: "Equinix Metal's API" };

export function cloudVipProblem(what: string): string {
  return `${what}: vipd announces VIPs on layer 2 (ARP and neighbour discovery) and cannot serve it. Leave this VIP to Talos, or declare it as a Layer2VIPConfig if the nodes share a layer-2 segment`;
}

const asRecord = (x: unknown): Record<string, unknown> | null => (typeof x === "object" && x !== null && !Array.isArray(x) ? (x as Record<string, unknown>) : null);

/** The VIPs of a v1alpha1 machine config, and what is wrong with the ones it cannot take. */
export function machineConfigVips(doc: Record<string, unknown>, label: string): { vips: FoundVip[]; issues: ConfigIssue[] } {
  const vips: FoundVip[] = [];
  const issues: ConfigIssue[] = [];
  const interfaces = asRecord(asRecord(doc.machine)?.network)?.interfaces;
  if (interfaces === undefined) return { vips, issues };
  if (!Array.isArray(interfaces)) {
    issues.push(issue(label, "machine.network.interfaces", "a list of interfaces", render(interfaces)));
    return { vips, issues };
  }
  /** One VIP at `path`, on `link` (null: its interface has no name), of the interface at `ifaceAt`. */
  const take = (vipNode: unknown, path: string, link: string | null, ifaceAt: string, selector: boolean) => {
    const vip = asRecord(vipNode);
    if (!vip) {
      issues.push(issue(label, path, "a mapping with ip", render(vipNode)));
      return;
    }
    for (const [key, api] of Object.entries(CLOUDS)) {
      if (vip[key] !== undefined) {
        issues.push(issue(label, `${path}.${key}`, "a layer-2 VIP", `a VIP announced through ${api}`, cloudVipProblem(`a VIP announced through ${api}`)));
        return;
      }
    }
    const r = v.safeParse(f.vipAddress, vip.ip);
    if (!r.success) {
      issues.push(issue(label, `${path}.ip`, r.issues[0]!.message, render(vip.ip)));
      return;
    }
    if (link === null) {
      const detail = selector
        ? "vipd cannot resolve a deviceSelector to a link: name the link instead (interface: eth0), or declare the VIP in a Layer2VIPConfig document with its link"
        : "an interface with a VIP needs its link's name (interface: eth0)";
      issues.push(issue(label, `${ifaceAt}.${selector ? "deviceSelector" : "interface"}`, "an interface name", selector ? "a deviceSelector" : "nothing", detail));
      return;
    }
    vips.push({ ip: r.output, link, path: `${path}.ip` });
  };
  for (const [i, node] of interfaces.entries()) {
    const at = `machine.network.interfaces[${i}]`;
    const iface = asRecord(node);
    if (!iface) continue;
    const selector = iface.deviceSelector !== undefined;
    let link: string | null = null;
    if (iface.interface !== undefined) {
      const r = v.safeParse(f.linkName, iface.interface);
      if (!r.success) {
        if (iface.vip !== undefined || Array.isArray(iface.vlans)) issues.push(issue(label, `${at}.interface`, r.issues[0]!.message, render(iface.interface)));
        continue;
      }
      link = r.output;
    }
    if (iface.vip !== undefined) take(iface.vip, `${at}.vip`, link, at, selector);
    if (!Array.isArray(iface.vlans)) continue;
    for (const [j, vlanNode] of iface.vlans.entries()) {
      const vlan = asRecord(vlanNode);
      if (!vlan || vlan.vip === undefined) continue;
      const vat = `${at}.vlans[${j}]`;
      const id = vlan.vlanId;
      if (typeof id !== "number" || !Number.isInteger(id) || id < 1 || id > 4094) {
        issues.push(issue(label, `${vat}.vlanId`, "a VLAN id from 1 to 4094", render(id)));
        continue;
      }
      const vlanLink = link === null ? null : `${link}.${id}`;
      if (vlanLink !== null && !f.isLinkName(vlanLink)) {
        issues.push(issue(label, `${vat}.vlanId`, "a VLAN link name of at most 15 bytes", JSON.stringify(vlanLink), `the VLAN's link ${JSON.stringify(vlanLink)} is longer than Linux allows (15 bytes)`));
        continue;
      }
      take(vlan.vip, `${vat}.vip`, vlanLink, at, selector);
    }
  }
  return { vips, issues };
}

