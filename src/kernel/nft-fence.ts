// The precise kernel fence: vipd's own nftables table, programmed over
// nfnetlink. On every VIP link an ingress and an egress chain drop traffic
// for a VIP unless the VIP is in a "proven" set, and each proven element
// carries a timeout that ends at the holder's fence deadline. The kernel
// expires elements on its own, to the jiffy, so a frozen or killed vipd stops
// answering for a VIP on time, where an address lifetime (whole seconds,
// removed up to a second late) cannot.
//
//   table netdev vipd {
//     set vips4 / vips6       every VIP this agent manages: guarded (constant)
//     set proven4 / proven6   VIPs it may answer for now, each with a timeout
//     chain in_<link>         ingress: IPv4/IPv6 to a VIP, ARP requests and
//                             neighbour solicitations for one
//     chain out_<link>        egress: IPv4/IPv6 from a VIP, ARP from one,
//                             neighbour advertisements for one
//   }
//
// The names are a contract: the lab's witness watches them with `nft monitor`.
import { EAFNOSUPPORT, EBADMSG, ENOENT, EOPNOTSUPP, EPERM, EPROTONOSUPPORT } from "./errno.ts";
import { KernelError, KernelInputError } from "./error.ts";
import { NETLINK_NETFILTER } from "./ffi/libc.ts";
import { type IpAddress, ipFromBytes, isUnusableAsVip, parseIp } from "./ip.ts";
import { NetlinkSocket, type Outgoing } from "./netlink.ts";
import { IFNAMSIZ } from "./wire/link.ts";
import { WireError } from "./wire/netlink.ts";
import {
  batchBegin,
  batchEnd,
  decodeChain,
  decodeRuleOwner,
  decodeSetElements,
  deleteSetElements,
  deleteTable,
  type Expr,
  getChains,
  getRules,
  getSetElements,
  net16,
  newChain,
  newRule,
  newSet,
  newSetElements,
  newTable,
  NF_ACCEPT,
  NF_DROP,
  NF_NETDEV_EGRESS,
  NF_NETDEV_INGRESS,
  NFT_CMP_EQ,
  NFT_META_L4PROTO,
  NFT_META_PROTOCOL,
  NFT_MSG_NEWCHAIN,
  NFT_MSG_NEWRULE,
  NFT_MSG_NEWSETELEM,
  NFT_PAYLOAD_NETWORK_HEADER,
  NFT_PAYLOAD_TRANSPORT_HEADER,
  NFT_SET_CONSTANT,
  NFT_SET_TIMEOUT,
  nftType,
  type SetElement,
  type SetSpec,
} from "./wire/nftables.ts";

export const TABLE = "vipd";
/** A scratch table for the one-time probe of element timeout updates. */
export const PROBE_TABLE = "vipd_probe";

/** Before the kernel's own filters and anything an administrator adds. */
const PRIORITY = -300;

/**
 * The shortest timeout ever sent; anything shorter removes the element. Kernels
 * before 6.12 without the stable fix "elements with timeout below CONFIG_HZ
 * never expire" (2024) turn a timeout under one jiffy into no timeout at all:
 * a VIP proven forever. One jiffy is at most 10 ms (HZ=100).
 */
export const MIN_TIMEOUT_MS = 10;

/** Set ids name the sets inside the one transaction that creates them and their rules. */
const SETS = {
  vips4: { id: 1, key: "ipv4_addr", flags: NFT_SET_CONSTANT },
  vips6: { id: 2, key: "ipv6_addr", flags: NFT_SET_CONSTANT },
  proven4: { id: 3, key: "ipv4_addr", flags: NFT_SET_TIMEOUT },
  proven6: { id: 4, key: "ipv6_addr", flags: NFT_SET_TIMEOUT },
} as const;
type SetName = keyof typeof SETS;

const setSpec = (name: SetName): SetSpec => ({ table: TABLE, name, ...SETS[name] });

// ---- The rules, pure. ------------------------------------------------------

const ETH_P_IP = 0x0800;
const ETH_P_ARP = 0x0806;
const ETH_P_IPV6 = 0x86dd;
const IPPROTO_ICMPV6 = 58;
const ND_NEIGHBOR_SOLICIT = 135;
const ND_NEIGHBOR_ADVERT = 136;

const meta = (key: number): Expr => ({ kind: "meta", key });
const eq = (...data: number[]): Expr => ({ kind: "cmp", op: NFT_CMP_EQ, data: Uint8Array.from(data) });
const network = (offset: number, len: number): Expr => ({ kind: "payload", base: NFT_PAYLOAD_NETWORK_HEADER, offset, len });
const transport = (offset: number, len: number): Expr => ({ kind: "payload", base: NFT_PAYLOAD_TRANSPORT_HEADER, offset, len });
const drop: Expr = { kind: "verdict", code: NF_DROP };

/**
 * In the netdev family nothing adds protocol dependencies: a payload offset
 * means nothing until `meta protocol` (the frame's EtherType, skb->protocol)
 * says which header is there.
 */
const protocol = (etherType: number): Expr[] => [meta(NFT_META_PROTOCOL), { kind: "cmp", op: NFT_CMP_EQ, data: net16(etherType) }];

/**
 * The field is a guarded VIP and not a proven one. The field is loaded again
 * for the second lookup, as nft does, so `nft list` prints the rule back the
 * way one would write it.
 */
function guarded(family: 4 | 6, field: () => Expr): Expr[] {
  const [vips, proven]: [SetName, SetName] = family === 4 ? ["vips4", "proven4"] : ["vips6", "proven6"];
  return [
    field(),
    { kind: "lookup", set: vips, setId: SETS[vips].id, invert: false },
    field(),
    { kind: "lookup", set: proven, setId: SETS[proven].id, invert: true },
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
 * from the kernel's own walk of the extension headers (ipv6_find_hdr in the
 * netdev hook), so a solicitation behind an extension header is caught too;
 * a fragmented one is never read as ND (RFC 6980, and Linux drops them).
 */
const neighbourDiscovery = (type: number): Expr[] => [
  ...protocol(ETH_P_IPV6),
  meta(NFT_META_L4PROTO),
  eq(IPPROTO_ICMPV6),
  transport(0, 1),
  eq(type),
  ...guarded(6, () => transport(8, 16)),
  drop,
];

/** What a link's ingress drops: traffic to a VIP and requests that would make us claim one. */
export const INGRESS_RULES: readonly (readonly Expr[])[] = [
  [...protocol(ETH_P_IP), ...guarded(4, () => network(16, 4)), drop],
  [...protocol(ETH_P_ARP), ...arpEthernetIpv4, network(4, 4), eq(6, 4, 0, ARP_REQUEST), ...guarded(4, () => network(24, 4)), drop],
  [...protocol(ETH_P_IPV6), ...guarded(6, () => network(24, 16)), drop],
  neighbourDiscovery(ND_NEIGHBOR_SOLICIT),
];

/** What a link's egress drops: anything that speaks for a VIP, announcements included. */
export const EGRESS_RULES: readonly (readonly Expr[])[] = [
  [...protocol(ETH_P_IP), ...guarded(4, () => network(12, 4)), drop],
  [...protocol(ETH_P_ARP), ...arpEthernetIpv4, network(4, 2), eq(6, 4), ...guarded(4, () => network(14, 4)), drop],
  [...protocol(ETH_P_IPV6), ...guarded(6, () => network(8, 16)), drop],
  neighbourDiscovery(ND_NEIGHBOR_ADVERT),
];

/** Each link gets a chain per hook, named for it: in_<link>, out_<link>. */
const HOOKS = [
  { prefix: "in", name: "ingress", hook: NF_NETDEV_INGRESS, rules: INGRESS_RULES },
  { prefix: "out", name: "egress", hook: NF_NETDEV_EGRESS, rules: EGRESS_RULES },
] as const;

export interface ProvenElement {
  readonly ip: IpAddress;
  readonly timeoutMs: number;
}

export interface TableSpec {
  readonly links: readonly string[];
  readonly vips: readonly IpAddress[];
  /** Elements of the proven sets, timeouts already computed. */
  readonly proven: readonly ProvenElement[];
  readonly egress: boolean;
}

/** The element of a proven set: expiration = timeout, so a kernel with updates always restarts the countdown. */
const provenElement = (ip: IpAddress, timeoutMs: number): SetElement => ({ key: ip.bytes, timeoutMs, expirationMs: timeoutMs });

/**
 * The whole table in one transaction. NEWTABLE then DELTABLE removes a table
 * left from before (DELTABLE alone would fail when there is none); the new
 * one replaces it at the commit, so traffic never sees a moment without one.
 * Elements come before the rules: a constant set takes no elements once a
 * rule is bound to it.
 */
export function tableMessages(spec: TableSpec): Outgoing[] {
  const out: Outgoing[] = [newTable(TABLE), deleteTable(TABLE), newTable(TABLE)];
  for (const name of Object.keys(SETS) as SetName[]) out.push(newSet(setSpec(name)));
  const add = (name: SetName, elements: SetElement[]) => {
    if (elements.length > 0) out.push(newSetElements(TABLE, name, elements, SETS[name].id));
  };
  for (const family of [4, 6] as const) {
    add(family === 4 ? "vips4" : "vips6", spec.vips.filter((v) => v.family === family).map((v) => ({ key: v.bytes })));
    const proven = spec.proven.filter((p) => p.ip.family === family);
    add(family === 4 ? "proven4" : "proven6", proven.map((p) => provenElement(p.ip, p.timeoutMs)));
  }
  for (const link of spec.links) {
    for (const h of HOOKS) {
      if (h.hook === NF_NETDEV_EGRESS && !spec.egress) continue;
      const chain = `${h.prefix}_${link}`;
      const hook = newChain({ table: TABLE, name: chain, hook: h.hook, device: link, priority: PRIORITY, policy: NF_ACCEPT });
      out.push({ ...hook, operation: `hooking chain ${chain} to ${link} ${h.name}` });
      for (const rule of h.rules) out.push({ ...newRule(TABLE, chain, rule), operation: `adding a rule to ${chain}` });
    }
  }
  return out;
}

export interface ElementChange {
  readonly ip: IpAddress;
  /** Milliseconds to allow it for (at least MIN_TIMEOUT_MS), or null to remove it. */
  readonly timeoutMs: number | null;
}

/**
 * Changes to the proven sets, in one transaction:
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
    const operation = [
      ...(allowed.length > 0 ? [`allowing ${allowed.map((p) => p.ip.text).join(", ")}`] : []),
      ...(removed.length > 0 ? [`denying ${removed.map((ip) => ip.text).join(", ")}`] : []),
    ].join(" and ") + ` in ${TABLE} ${set}`;
    const added = allowed.map((p) => provenElement(p.ip, p.timeoutMs));
    const ensured = [...added, ...removed.map((ip) => provenElement(ip, MIN_TIMEOUT_MS))];
    const deleted = inPlaceUpdates ? removed : [...allowed.map((p) => p.ip), ...removed];
    out.push({ ...newSetElements(TABLE, set, ensured), operation });
    if (deleted.length > 0) out.push({ ...deleteSetElements(TABLE, set, deleted.map((ip) => ip.bytes)), operation });
    if (!inPlaceUpdates && added.length > 0) out.push({ ...newSetElements(TABLE, set, added), operation });
  }
  return out;
}

// ---- The kernel side. -------------------------------------------------------

/** A VIP allowed until its deadline, which is asked again whenever it is sent. */
interface Allowance {
  readonly ip: IpAddress;
  readonly deadline: () => number | null;
}

/** allow()/deny() calls not yet sent, coalesced into one transaction. */
interface Pending {
  /** Last word per VIP: true allow, false deny. */
  readonly changes: Map<string, { ip: IpAddress; allow: boolean }>;
  readonly done: Promise<unknown>;
}

interface Support {
  readonly egress: boolean;
  readonly inPlaceUpdates: boolean;
}

export class NftFence {
  private readonly allowed = new Map<string, Allowance>();
  private pending: Pending | null = null;
  private support: Promise<Support> | null = null;
  /** Until configure() has probed, element updates take the form every kernel honours. */
  private inPlaceUpdates = false;

  private constructor(
    private readonly sock: NetlinkSocket,
    private readonly clock: () => number,
  ) {}

  /** Opens a NETLINK_NETFILTER socket in the current netns. Does not touch the ruleset. */
  static open(opts: { clock?: () => number } = {}): NftFence {
    const clock = opts.clock ?? (() => performance.now());
    // The socket times its sends on the same clock the timeouts are computed from.
    return new NftFence(NetlinkSocket.open({ protocol: NETLINK_NETFILTER, clock }), clock);
  }

  /**
   * Rebuilds vipd's table atomically in ONE batch (there is never a moment without a fence:
   * delete-if-present via NEWTABLE+DELTABLE, then NEWTABLE, sets, the guarded elements, the
   * currently allowed elements with their timeouts computed at send time, and one in_/out_
   * chain pair per link). Called at start and whenever the set of VIP links or VIPs changes.
   * Returns which hooks the kernel accepted; throws KernelError naming the link/operation otherwise.
   *
   * The first call also learns, once, whether the kernel has the egress hook
   * and updates element timeouts in place (see elementMessages).
   */
  async configure(spec: { links: readonly string[]; vips: readonly string[] }): Promise<{ egress: boolean }> {
    const op = `configuring nftables table ${TABLE}`;
    const links = [...new Set(spec.links)];
    for (const link of links) checkLinkName(op, link);
    const vips = uniqueVips(op, spec.vips);
    const support = await this.probeOnce();
    await this.sock.request(
      () => [batchBegin(), ...tableMessages({ links, vips, proven: this.provenNow(), egress: support.egress }), batchEnd()],
      op,
    );
    return { egress: support.egress };
  }

  /**
   * Lets `ip` through until deadline() (clock ms). The timeout sent is deadline() − clock(),
   * read synchronously right before the datagram leaves (a thunk, like Lifetime in rtnl.ts).
   * If the send call itself took longer than ~2 ms (a blocked sendto), the timeout it carried
   * started late: immediately send again with the value recomputed (loop, bounded). If deadline()
   * returns null or a time already past, the element is removed instead. Calls made in the same
   * tick are coalesced into one batch. Resolves when the kernel acknowledged.
   *
   * Below MIN_TIMEOUT_MS left, the element is removed too. The deadline is
   * remembered: configure() re-adds the element with the time then left.
   * ENOENT means the table is gone (someone deleted it): configure() again.
   */
  async allow(ip: string, deadline: () => number | null): Promise<void> {
    const addr = vipInput(`allowing ${ip} in ${TABLE}`, ip);
    this.allowed.set(addr.text, { ip: addr, deadline });
    await this.change(addr, true);
  }

  /** Removes ip from the proven set at once (idempotent: no error if it was not there). */
  async deny(ip: string): Promise<void> {
    const addr = vipInput(`denying ${ip} in ${TABLE}`, ip);
    this.allowed.delete(addr.text);
    await this.change(addr, false);
  }

  /**
   * Every VIP address vipd's table in this namespace names now, guarded or
   * proven, as text; empty when there is no table. Read at start before
   * configure() replaces the table: the table an earlier run left names
   * every VIP that run may have put on a link, whatever the configuration
   * says now (design.md §6). This is the one place that knows where in the
   * table's layout those addresses are.
   */
  async leftovers(): Promise<string[]> {
    const op = `listing the VIPs in nftables table ${TABLE}`;
    const found = new Map<string, IpAddress>();
    for (const set of Object.keys(SETS) as SetName[]) {
      let replies;
      try {
        replies = await this.sock.request(getSetElements(TABLE, set), op);
      } catch (e) {
        // No table (or no such set in it, or no netdev family at all): nothing left there.
        if (e instanceof KernelError && (e.errno === ENOENT || e.errno === EAFNOSUPPORT)) continue;
        throw e;
      }
      for (const m of replies) {
        if (m.type !== nftType(NFT_MSG_NEWSETELEM)) continue;
        const list = decodeSetElements(m.payload);
        if (list instanceof WireError) throw new KernelError(op, EBADMSG, list.message);
        for (const e of list.elements) {
          if (e.key.length !== 4 && e.key.length !== 16) continue;
          const ip = ipFromBytes(e.key);
          found.set(ip.text, ip);
        }
      }
    }
    return [...found.keys()];
  }

  /**
   * What keeps the table from fencing `links` now, one entry per problem
   * (a link's chain missing, hooked elsewhere, or short of its rules; all
   * of them when the table is gone); empty when it fences them all. Reads
   * the kernel's own listing, so it sees what someone else did to the
   * table, and what a configure() that failed left out.
   */
  async problems(links: readonly string[]): Promise<{ link: string; problem: string }[]> {
    const op = `checking nftables table ${TABLE}`;
    const support = await this.probeOnce();
    const chains = new Map<string, { hook: number | null; device: string | null }>();
    for (const m of await this.sock.request(getChains(), op)) {
      if (m.type !== nftType(NFT_MSG_NEWCHAIN)) continue;
      const c = decodeChain(m.payload);
      if (c instanceof WireError) throw new KernelError(op, EBADMSG, c.message);
      if (c.table === TABLE) chains.set(c.name, c);
    }
    const rules = new Map<string, number>();
    for (const m of await this.sock.request(getRules(), op)) {
      if (m.type !== nftType(NFT_MSG_NEWRULE)) continue;
      const r = decodeRuleOwner(m.payload);
      if (r instanceof WireError) throw new KernelError(op, EBADMSG, r.message);
      if (r.table === TABLE) rules.set(r.chain, (rules.get(r.chain) ?? 0) + 1);
    }
    const out: { link: string; problem: string }[] = [];
    for (const link of new Set(links)) {
      for (const h of HOOKS) {
        if (h.hook === NF_NETDEV_EGRESS && !support.egress) continue;
        const name = `${h.prefix}_${link}`;
        const c = chains.get(name);
        const n = rules.get(name) ?? 0;
        if (!c) out.push({ link, problem: `chain ${name} (${h.name} of ${link}) is missing` });
        else if (c.hook !== h.hook || c.device !== link) out.push({ link, problem: `chain ${name} hooks ${c.device ?? "no device"} (hook ${c.hook}), not ${link} ${h.name}` });
        else if (n < h.rules.length) out.push({ link, problem: `chain ${name} has ${n} of its ${h.rules.length} rules` });
      }
    }
    return out;
  }

  /** Deletes vipd's table (idempotent). For clean shutdown. */
  async remove(): Promise<void> {
    this.allowed.clear();
    await this.sock.request([batchBegin(), newTable(TABLE), deleteTable(TABLE), batchEnd()], `removing nftables table ${TABLE}`);
  }

  close(): void {
    this.sock.close();
  }

  private change(ip: IpAddress, allow: boolean): Promise<unknown> {
    if (!this.pending) {
      const changes = new Map<string, { ip: IpAddress; allow: boolean }>();
      const done = this.sock.request(() => this.changeMessages(changes), `updating nftables table ${TABLE}`);
      this.pending = { changes, done };
    }
    this.pending.changes.set(ip.text, { ip, allow });
    return this.pending.done;
  }

  /** Built when the batch leaves: from then on, new calls go into the next one. */
  private changeMessages(changes: Pending["changes"]): Outgoing[] {
    if (this.pending?.changes === changes) this.pending = null;
    const list = [...changes.values()].map(({ ip, allow }): ElementChange => ({ ip, timeoutMs: allow ? this.timeoutOf(ip) : null }));
    return [batchBegin(), ...elementMessages(list, this.inPlaceUpdates), batchEnd()];
  }

  /** Milliseconds the allowance of ip has left, or null (and forgotten) when too little. */
  private timeoutOf(ip: IpAddress): number | null {
    const a = this.allowed.get(ip.text);
    if (!a) return null;
    const deadline = a.deadline();
    if (deadline !== null && !Number.isFinite(deadline)) {
      this.allowed.delete(ip.text);
      throw new KernelInputError(`allowing ${ip.text} in ${TABLE}`, `a deadline is a finite clock time, not ${deadline}`);
    }
    const left = deadline === null ? 0 : Math.floor(deadline - this.clock());
    if (left >= MIN_TIMEOUT_MS) return left;
    this.allowed.delete(ip.text);
    return null;
  }

  private provenNow(): ProvenElement[] {
    const out: ProvenElement[] = [];
    for (const { ip } of [...this.allowed.values()]) {
      const timeoutMs = this.timeoutOf(ip);
      if (timeoutMs !== null) out.push({ ip, timeoutMs });
    }
    return out;
  }

  private probeOnce(): Promise<Support> {
    if (!this.support) {
      this.support = (async () => {
        const egress = await hookWorks(this.sock, NF_NETDEV_EGRESS);
        const inPlaceUpdates = await updatesInPlace(this.sock);
        this.inPlaceUpdates = inPlaceUpdates;
        return { egress, inPlaceUpdates };
      })();
      // A failed probe is tried again by the next configure().
      this.support.catch(() => (this.support = null));
    }
    return this.support;
  }
}

/**
 * Whether a netdev chain can hook `hook`, tried in a transaction that is
 * never committed: without BATCH_END the kernel checks every message, answers,
 * and aborts. Nothing is created, and `nft monitor` sees nothing.
 * The egress hook came with Linux 5.16 (CONFIG_NETFILTER_EGRESS); without it
 * the chain is refused with EOPNOTSUPP.
 */
async function hookWorks(sock: NetlinkSocket, hook: typeof NF_NETDEV_INGRESS | typeof NF_NETDEV_EGRESS): Promise<boolean> {
  const name = hook === NF_NETDEV_INGRESS ? "ingress" : "egress";
  const chain = newChain({ table: PROBE_TABLE, name, hook, device: "lo", priority: PRIORITY, policy: NF_ACCEPT });
  try {
    const table = { ...newTable(PROBE_TABLE), operation: "trying a netdev table" };
    await sock.request([batchBegin(), table, { ...chain, operation: `trying a netdev ${name} chain` }], "checking nftables");
    return true;
  } catch (e) {
    if (e instanceof KernelError && e.errno === EOPNOTSUPP && hook === NF_NETDEV_EGRESS) return false;
    throw e;
  }
}

/**
 * Whether re-adding an element updates its timeout (Linux 6.12 and later),
 * learned from the kernel itself: an element added for an hour, re-added for
 * a minute, then read back. This needs real commits, in a scratch table of
 * its own that is deleted again at once.
 */
async function updatesInPlace(sock: NetlinkSocket): Promise<boolean> {
  const op = "checking whether nftables updates element timeouts";
  const set: SetSpec = { table: PROBE_TABLE, name: "timeouts", id: 1, key: "ipv4_addr", flags: NFT_SET_TIMEOUT };
  const key = new Uint8Array(4);
  const HOUR = 3_600_000;
  const MINUTE = 60_000;
  await sock.request(
    [
      batchBegin(),
      newTable(PROBE_TABLE),
      deleteTable(PROBE_TABLE),
      newTable(PROBE_TABLE),
      newSet(set),
      newSetElements(PROBE_TABLE, set.name, [{ key, timeoutMs: HOUR, expirationMs: HOUR }], set.id),
      batchEnd(),
    ],
    op,
  );
  try {
    await sock.request([batchBegin(), newSetElements(PROBE_TABLE, set.name, [{ key, timeoutMs: MINUTE, expirationMs: MINUTE }]), batchEnd()], op);
    for (const m of await sock.request(getSetElements(PROBE_TABLE, set.name), op)) {
      if (m.type !== nftType(NFT_MSG_NEWSETELEM)) continue;
      const list = decodeSetElements(m.payload);
      if (list instanceof WireError) throw new KernelError(op, EBADMSG, list.message);
      const left = list.elements[0]?.expirationMs;
      if (left !== undefined) return left <= MINUTE;
    }
    throw new KernelError(op, ENOENT, "the probe element was not listed");
  } finally {
    await sock.request([batchBegin(), newTable(PROBE_TABLE), deleteTable(PROBE_TABLE), batchEnd()], `removing nftables table ${PROBE_TABLE}`);
  }
}

/** What an operator can do about a refusal from probeNftables(), by errno. */
const PROBE_HINTS: Record<number, string> = {
  [EPERM]: "vipd needs CAP_NET_ADMIN",
  [EPROTONOSUPPORT]: "the kernel has no nfnetlink (CONFIG_NETFILTER_NETLINK)",
  [EOPNOTSUPP]: "this kernel's nf_tables lacks it (CONFIG_NF_TABLES, CONFIG_NETFILTER_INGRESS)",
  [EAFNOSUPPORT]: "nf_tables has no netdev family (CONFIG_NF_TABLES_NETDEV)",
  [ENOENT]: "a module is missing (nf_tables' netdev filter chain type)",
};

/**
 * Why an error from opening or configuring the fence means this kernel has
 * no usable nftables (a missing module or config option), or null when it
 * means something else (EPERM: a missing capability is the operator's to fix).
 */
export function nftablesMissing(err: unknown): string | null {
  if (!(err instanceof KernelError) || err.errno === EPERM) return null;
  const hint = PROBE_HINTS[err.errno];
  return hint ? `${err.message}: ${hint}` : null;
}

/** Whether nftables with netdev ingress is usable here, or why not (e.g. EPROTONOSUPPORT, ENOENT module missing, EPERM). */
export async function probeNftables(): Promise<{ ok: true; egress: boolean } | { ok: false; reason: string }> {
  const refused = (e: unknown) => {
    if (!(e instanceof KernelError)) throw e;
    const hint = PROBE_HINTS[e.errno];
    return { ok: false as const, reason: hint ? `${e.message}: ${hint}` : e.message };
  };
  let sock: NetlinkSocket;
  try {
    sock = NetlinkSocket.open({ protocol: NETLINK_NETFILTER });
  } catch (e) {
    return refused(e);
  }
  try {
    await hookWorks(sock, NF_NETDEV_INGRESS);
    return { ok: true, egress: await hookWorks(sock, NF_NETDEV_EGRESS) };
  } catch (e) {
    return refused(e);
  } finally {
    sock.close();
  }
}

function checkLinkName(op: string, name: string): void {
  const len = new TextEncoder().encode(name).byteLength;
  if (len === 0 || len >= IFNAMSIZ || name.includes("\0")) {
    throw new KernelInputError(op, `a link name is 1 to ${IFNAMSIZ - 1} bytes, not ${JSON.stringify(name)}`);
  }
}

function vipInput(op: string, text: string): IpAddress {
  const ip = parseIp(text);
  if (!ip) throw new KernelInputError(op, `${JSON.stringify(text)} is not an IPv4 or IPv6 address`);
  if (isUnusableAsVip(ip)) throw new KernelInputError(op, `${ip.text} is never a VIP`);
  return ip;
}

function uniqueVips(op: string, texts: readonly string[]): IpAddress[] {
  const byText = new Map<string, IpAddress>();
  for (const t of texts) {
    const ip = vipInput(op, t);
    byText.set(ip.text, ip);
  }
  return [...byText.values()];
}
