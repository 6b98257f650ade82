// vipd's nftables ruleset, pure: the tables, sets and chains the fence
// builds, and the nfnetlink messages that build them and write proofs
// (nft-fence.ts sends them). The layout, and why each hook:
//
//   table inet vipd {
//     set vips4 / vips6       every VIP this agent manages: guarded (constant)
//     set proven4 / proven6   VIPs it may answer for now, each with a timeout
//     chain input             IPv4/IPv6 to a VIP, neighbour solicitations for one
//     chain output            IPv4/IPv6 from a VIP, neighbour advertisements for one
//   }
//   table arp vipd {
//     set vips4 / proven4     the same IPv4 VIPs and proofs
//     chain input             ARP requests for a VIP
//     chain output            ARP from a VIP
//   }
//
// Only hooks that every kernel vipd supports (kernel-release.ts) has, so the
// path tested here is the path that runs on Ubuntu 22.04 or RHEL 8:
//   - arp input/output: nf_tables' ARP family, "netfilter: nf_tables: add ARP
//     filtering support" (ed683f138b3d, Linux 3.13). arp_rcv and arp_xmit
//     pass NF_ARP_IN and NF_ARP_OUT for every ARP the kernel takes or sends.
//   - inet input/output: "netfilter: nf_tables: add "inet" table for
//     IPv4/IPv6" (1d49144c0aaa, Linux 3.14), with `meta nfproto` from
//     124edfa9e045 in the same series. LOCAL_OUT sees all the local stack
//     sends: TCP segments and retransmits, ICMP answers, and the neighbour
//     discovery of ndisc_send_skb (NF_HOOK(NFPROTO_IPV6, NF_INET_LOCAL_OUT)).
//   - element timeouts: "netfilter: nf_tables: add set element timeout
//     support" (c3e1b005ed1c, Linux 4.1).
//   - `!= @set`: "netfilter: nf_tables: add support for inverted logic in
//     nft_lookup" (0071e184a535, Linux 4.8), the newest of them.
// The netdev egress hook (Linux 5.16) is not used: before it a fenced node
// kept sending from the VIP until the address backstop ran out.
//
// Input and output, not prerouting and postrouting: a node that does not
// hold a VIP forwards its pods' traffic to the holder, and a fence on the
// forwarding path would cut that. The hooks are not per device: a fenced VIP
// is silent on every interface, loopback included.
//
// What no inet or arp hook sees: frames a packet socket sends (dev_queue_xmit
// directly). vipd's own announcements go that way, and VipController sends
// each one only after checking, at that instant, that the proof still holds.
//
// Sets belong to one table, so an IPv4 proof is written to both tables, in
// the one batch that carries it. The names are a contract: the lab's witness
// watches `table inet vipd` with `nft monitor`.
import type { IpAddress } from "./ip.ts";
import type { Outgoing } from "./netlink.ts";
import {
  deleteSetElements,
  deleteTable,
  type Expr,
  newChain,
  newRule,
  newSet,
  newSetElements,
  newTable,
  NF_ACCEPT,
  NF_ARP_IN,
  NF_ARP_OUT,
  NF_DROP,
  NF_INET_LOCAL_IN,
  NF_INET_LOCAL_OUT,
  NFPROTO_ARP,
  NFPROTO_NETDEV,
  NFPROTO_INET,
  NFPROTO_IPV4,
  NFPROTO_IPV6,
  NFT_CMP_EQ,
  NFT_META_L4PROTO,
  NFT_META_NFPROTO,
  NFT_PAYLOAD_NETWORK_HEADER,
  NFT_PAYLOAD_TRANSPORT_HEADER,
  NFT_SET_CONSTANT,
  NFT_SET_TIMEOUT,
  type SetElement,
  type SetSpec,
  type TableRef,
} from "./wire/nftables.ts";

export const TABLE = "vipd";
export const INET_TABLE: TableRef = Object.freeze({ family: NFPROTO_INET, name: TABLE });
export const ARP_TABLE: TableRef = Object.freeze({ family: NFPROTO_ARP, name: TABLE });
/**
 * vipd before 0.3 fenced in `table netdev vipd` (per-device ingress and
 * egress chains). An upgraded node's leftovers() reads it, and the first
 * configure() deletes it.
 */
export const LEGACY_NETDEV_TABLE: TableRef = Object.freeze({ family: NFPROTO_NETDEV, name: TABLE });
/** A scratch table for the one-time probe of element timeout updates. */
export const PROBE_TABLE = "vipd_probe";

/** Before conntrack and anything an administrator adds. */
const PRIORITY = -300;

/**
 * The shortest timeout ever sent; anything shorter removes the element. Kernels
 * before 6.12 without the stable fix "elements with timeout below CONFIG_HZ
 * never expire" (2024) turn a timeout under one jiffy into no timeout at all:
 * a VIP proven forever. One jiffy is at most 10 ms (HZ=100).
 */
export const MIN_TIMEOUT_MS = 10;

type SetName = "vips4" | "vips6" | "proven4" | "proven6";
const SET_KEYS = {
  vips4: { key: "ipv4_addr", flags: NFT_SET_CONSTANT },
  vips6: { key: "ipv6_addr", flags: NFT_SET_CONSTANT },
  proven4: { key: "ipv4_addr", flags: NFT_SET_TIMEOUT },
  proven6: { key: "ipv6_addr", flags: NFT_SET_TIMEOUT },
} as const;

/**
 * Set ids name the sets inside the one transaction that creates them and
 * their rules. They are unique across both tables: kernels without "netfilter:
 * nf_tables: do not allow SET_ID to refer to another table" (470ee20e069a,
 * 2022, in stable kernels since) look an id up in the whole transaction,
 * whatever the table.
 */
const SET_IDS: Record<"inet" | "arp", Partial<Record<SetName, number>>> = {
  inet: { vips4: 1, vips6: 2, proven4: 3, proven6: 4 },
  arp: { vips4: 5, proven4: 6 },
};

const setSpec = (table: TableRef, name: SetName): SetSpec => ({ table, name, id: setId(table, name), ...SET_KEYS[name] });
const setId = (table: TableRef, name: SetName): number => SET_IDS[table.family === NFPROTO_ARP ? "arp" : "inet"][name]!;

/** The tables that hold a family's sets: IPv4 proofs gate ARP too. */
const tablesOf = (family: 4 | 6): readonly TableRef[] => (family === 4 ? [INET_TABLE, ARP_TABLE] : [INET_TABLE]);
export const setsOf = (table: TableRef): SetName[] => (table.family === NFPROTO_ARP ? ["vips4", "proven4"] : ["vips4", "vips6", "proven4", "proven6"]);

const IPPROTO_ICMPV6 = 58;
const ND_NEIGHBOR_SOLICIT = 135;
const ND_NEIGHBOR_ADVERT = 136;

const meta = (key: number): Expr => ({ kind: "meta", key });
const eq = (...data: number[]): Expr => ({ kind: "cmp", op: NFT_CMP_EQ, data: Uint8Array.from(data) });
const network = (offset: number, len: number): Expr => ({ kind: "payload", base: NFT_PAYLOAD_NETWORK_HEADER, offset, len });
const transport = (offset: number, len: number): Expr => ({ kind: "payload", base: NFT_PAYLOAD_TRANSPORT_HEADER, offset, len });
const drop: Expr = { kind: "verdict", code: NF_DROP };

/**
 * An inet chain sees IPv4 and IPv6 alike: a payload offset means nothing
 * until `meta nfproto` (the hook's own family) says which header is there,
 * the dependency nft itself adds to `ip saddr` in an inet table.
 */
const nfproto = (family: 4 | 6): Expr[] => [meta(NFT_META_NFPROTO), eq(family === 4 ? NFPROTO_IPV4 : NFPROTO_IPV6)];

/**
 * The field is a guarded VIP and not a proven one, by the sets of `table`.
 * The field is loaded again for the second lookup, as nft does, so `nft
 * list` prints the rule back the way one would write it.
 */
function guarded(table: TableRef, family: 4 | 6, field: () => Expr): Expr[] {
  const [vips, proven]: [SetName, SetName] = family === 4 ? ["vips4", "proven4"] : ["vips6", "proven6"];
  return [
    field(),
    { kind: "lookup", set: vips, setId: setId(table, vips), invert: false },
    field(),
    { kind: "lookup", set: proven, setId: setId(table, proven), invert: true },
  ];
}

/**
 * ARP (RFC 826) over Ethernet for IPv4 only: htype 1, ptype 0x0800, hlen 6,
 * plen 4. Only then do the addresses sit at fixed offsets (sender IP at 14,
 * target IP at 24). Compared four bytes at a time, as nft does.
 */
const arpEthernetIpv4 = [network(0, 4), eq(0x00, 0x01, 0x08, 0x00)];
const ARP_REQUEST = 1;

/**
 * ICMPv6 of one type, its target address (RFC 4861 §4.3 and §4.4: 8 bytes
 * into the message) guarded. `meta l4proto` and the transport header come
 * from the kernel's own walk of the extension headers (ipv6_find_hdr), so a
 * message behind an extension header is caught too; a fragmented one is
 * never read as ND (RFC 6980, and Linux drops them).
 */
const neighbourDiscovery = (type: number): Expr[] => [
  ...nfproto(6),
  meta(NFT_META_L4PROTO),
  eq(IPPROTO_ICMPV6),
  transport(0, 1),
  eq(type),
  ...guarded(INET_TABLE, 6, () => transport(8, 16)),
  drop,
];

/** What the local stack may not take: traffic to a VIP, and solicitations that would make it claim one. */
export const INET_INPUT_RULES: readonly (readonly Expr[])[] = [
  [...nfproto(4), ...guarded(INET_TABLE, 4, () => network(16, 4)), drop],
  [...nfproto(6), ...guarded(INET_TABLE, 6, () => network(24, 16)), drop],
  neighbourDiscovery(ND_NEIGHBOR_SOLICIT),
];

/** What the local stack may not send: anything from a VIP, and advertisements for one from any address. */
export const INET_OUTPUT_RULES: readonly (readonly Expr[])[] = [
  [...nfproto(4), ...guarded(INET_TABLE, 4, () => network(12, 4)), drop],
  [...nfproto(6), ...guarded(INET_TABLE, 6, () => network(8, 16)), drop],
  neighbourDiscovery(ND_NEIGHBOR_ADVERT),
];

/** ARP requests for a VIP: the kernel would answer them. */
export const ARP_INPUT_RULES: readonly (readonly Expr[])[] = [
  [...arpEthernetIpv4, network(4, 4), eq(6, 4, 0, ARP_REQUEST), ...guarded(ARP_TABLE, 4, () => network(24, 4)), drop],
];

/** ARP with a VIP as the sender: replies, the kernel's own requests, gratuitous ARP (arp_notify). */
export const ARP_OUTPUT_RULES: readonly (readonly Expr[])[] = [
  [...arpEthernetIpv4, network(4, 2), eq(6, 4), ...guarded(ARP_TABLE, 4, () => network(14, 4)), drop],
];

export const CHAINS = [
  { table: INET_TABLE, name: "input", hook: NF_INET_LOCAL_IN, rules: INET_INPUT_RULES },
  { table: INET_TABLE, name: "output", hook: NF_INET_LOCAL_OUT, rules: INET_OUTPUT_RULES },
  { table: ARP_TABLE, name: "input", hook: NF_ARP_IN, rules: ARP_INPUT_RULES },
  { table: ARP_TABLE, name: "output", hook: NF_ARP_OUT, rules: ARP_OUTPUT_RULES },
] as const;

const FAMILY_NAMES: Record<number, string> = { [NFPROTO_INET]: "inet", [NFPROTO_ARP]: "arp", [NFPROTO_NETDEV]: "netdev" };
/** "inet vipd", as nft names a table. */
export const tableName = (t: TableRef): string => `${FAMILY_NAMES[t.family]} ${t.name}`;

export interface ProvenElement {
  readonly ip: IpAddress;
  readonly timeoutMs: number;
}

export interface TableSpec {
  readonly vips: readonly IpAddress[];
  /** Elements of the proven sets, timeouts already computed. */
  readonly proven: readonly ProvenElement[];
}

/** The element of a proven set: expiration = timeout, so a kernel with updates always restarts the countdown. */
const provenElement = (ip: IpAddress, timeoutMs: number): SetElement => ({ key: ip.bytes, timeoutMs, expirationMs: timeoutMs });

/**
 * Both tables in one transaction. NEWTABLE then DELTABLE removes a table
 * left from before (DELTABLE alone would fail when there is none); the new
 * one replaces it at the commit, so traffic never sees a moment without one.
 * Elements come before the rules: a constant set takes no elements once a
 * rule is bound to it.
 */
export function tableMessages(spec: TableSpec): Outgoing[] {
  // An older vipd's netdev table goes in the same commit that brings the new ones.
  const out: Outgoing[] = [newTable(LEGACY_NETDEV_TABLE), deleteTable(LEGACY_NETDEV_TABLE)];
  for (const table of [INET_TABLE, ARP_TABLE]) {
    out.push(newTable(table), deleteTable(table), newTable(table));
    const sets = setsOf(table);
    for (const name of sets) out.push(newSet(setSpec(table, name)));
    const add = (name: SetName, elements: SetElement[]) => {
      if (sets.includes(name) && elements.length > 0) out.push({ ...newSetElements(table, name, elements, setId(table, name)), items: elements.length });
    };
    for (const family of [4, 6] as const) {
      add(family === 4 ? "vips4" : "vips6", spec.vips.filter((v) => v.family === family).map((v) => ({ key: v.bytes })));
      const proven = spec.proven.filter((p) => p.ip.family === family);
      add(family === 4 ? "proven4" : "proven6", proven.map((p) => provenElement(p.ip, p.timeoutMs)));
    }
  }
  for (const c of CHAINS) {
    const where = `${tableName(c.table)} ${c.name}`;
    const hook = newChain({ table: c.table, name: c.name, hook: c.hook, priority: PRIORITY, policy: NF_ACCEPT });
    out.push({ ...hook, operation: `hooking chain ${where}` });
    for (const rule of c.rules) out.push({ ...newRule(c.table, c.name, rule), operation: `adding a rule to ${where}` });
  }
  return out;
}

export interface ElementChange {
  readonly ip: IpAddress;
  /** Milliseconds to allow it for (at least MIN_TIMEOUT_MS), or null to remove it. */
  readonly timeoutMs: number | null;
}

/**
 * Changes to the proven sets, in one transaction, for every table that
 * holds the family's set (IPv4: inet and arp; IPv6: inet):
 *
 *   NEWSETELEM  every element concerned, so that it exists (removals with
 *               the shortest timeout, in case anything went wrong after)
 *   DELSETELEM  the removals, and on kernels that keep an old timeout, the
 *               allowed ones too
 *   NEWSETELEM  on such kernels, the allowed ones again, with their timeouts
 *
 * A DELSETELEM of an absent element would abort the whole batch; after the
 * first NEWSETELEM none is absent. Kernels since 6.12 update the timeout and
 * expiration of an existing element in place ("netfilter: nf_tables: set
 * element timeout update support", 4201f3938914); older ones leave both as
 * they were and still answer success, hence the delete and re-add, which the
 * commit applies at once.
 */
export function elementMessages(changes: readonly ElementChange[], inPlaceUpdates: boolean): Outgoing[] {
  const out: Outgoing[] = [];
  for (const family of [4, 6] as const) {
    const set = family === 4 ? "proven4" : "proven6";
    const allowed: ProvenElement[] = [];
    const removed: IpAddress[] = [];
    for (const c of changes) {
      if (c.ip.family !== family) continue;
      if (c.timeoutMs === null) removed.push(c.ip);
      else allowed.push({ ip: c.ip, timeoutMs: c.timeoutMs });
    }
    if (allowed.length + removed.length === 0) continue;
    const what = [
      ...(allowed.length > 0 ? [`allowing ${allowed.map((p) => p.ip.text).join(", ")}`] : []),
      ...(removed.length > 0 ? [`denying ${removed.map((ip) => ip.text).join(", ")}`] : []),
    ].join(" and ");
    const added = allowed.map((p) => provenElement(p.ip, p.timeoutMs));
    const ensured = [...added, ...removed.map((ip) => provenElement(ip, MIN_TIMEOUT_MS))];
    const deleted = inPlaceUpdates ? removed : [...allowed.map((p) => p.ip), ...removed];
    for (const table of tablesOf(family)) {
      const operation = `${what} in ${tableName(table)} ${set}`;
      out.push({ ...newSetElements(table, set, ensured), operation, items: ensured.length });
      if (deleted.length > 0) out.push({ ...deleteSetElements(table, set, deleted.map((ip) => ip.bytes)), operation, items: deleted.length });
      if (!inPlaceUpdates && added.length > 0) out.push({ ...newSetElements(table, set, added), operation, items: added.length });
    }
  }
  return out;
}

/** Deletes both tables if they exist: NEWTABLE first, so DELTABLE never fails for want of one. */
export function removeMessages(): Outgoing[] {
  return [INET_TABLE, ARP_TABLE].flatMap((t) => [newTable(t), deleteTable(t)]);
}
