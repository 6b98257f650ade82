// The precise kernel fence: vipd's own nftables tables, programmed over
// nfnetlink. They drop traffic to and from a VIP unless the VIP is in a
// "proven" set, and each proven element carries a timeout that ends at the
// holder's fence deadline. The kernel expires elements on its own, to the
// jiffy, so a frozen or killed vipd stops answering for a VIP on time, where
// an address lifetime (whole seconds, removed up to a second late) cannot.
//
// The tables, their rules and the messages that build them are pure and live
// in nft-ruleset.ts, with the reason for each hook; this file sends them,
// keeps the proofs (allow, deny, one batch per turn), reads back what the
// kernel holds, and learns what this kernel can do.
import { EAFNOSUPPORT, EBADMSG, ENOENT, EOPNOTSUPP, EPERM, EPROTONOSUPPORT } from "./errno.ts";
import { KernelError, KernelInputError } from "./error.ts";
import { NETLINK_NETFILTER } from "./ffi/libc.ts";
import { type IpAddress, ipFromBytes, isUnusableAsVip, parseIp } from "./ip.ts";
import { type Clock, monotonicClock } from "../seams.ts";
import { type NetlinkOptions, NetlinkSocket, type Outgoing } from "./netlink.ts";
import { WireError } from "./wire/error.ts";
import {
  batchBegin,
  batchEnd,
  decodeChain,
  decodeRuleOwner,
  decodeSetElements,
  deleteTable,
  getChains,
  getRules,
  getSetElements,
  newSet,
  newSetElements,
  newTable,
  NFPROTO_INET,
  NFT_MSG_NEWCHAIN,
  NFT_MSG_NEWRULE,
  NFT_MSG_NEWSETELEM,
  NFT_SET_TIMEOUT,
  nftType,
  type SetSpec,
  type TableRef,
} from "./wire/nftables.ts";
import {
  ARP_TABLE,
  CHAINS,
  type ElementChange,
  elementMessages,
  INET_TABLE,
  LEGACY_NETDEV_TABLE,
  MIN_TIMEOUT_MS,
  PROBE_TABLE,
  type ProvenElement,
  removeMessages,
  setsOf,
  TABLE,
  tableMessages,
  tableName,
} from "./nft-ruleset.ts";

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

export class NftFence {
  private readonly allowed = new Map<string, Allowance>();
  private pending: Pending | null = null;
  private support: Promise<boolean> | null = null;
  /** Until configure() has probed, element updates take the form every kernel honours. */
  private inPlaceUpdates = false;

  private constructor(
    private readonly sock: NetlinkSocket,
    private readonly clock: Clock,
  ) {}

  /** Opens a NETLINK_NETFILTER socket in the current netns. Does not touch the ruleset. */
  static open(opts: Pick<NetlinkOptions, "clock" | "onSlowSends" | "timed"> = {}): NftFence {
    const clock = opts.clock ?? monotonicClock;
    // The socket times its sends on the same clock the timeouts are computed from.
    return new NftFence(NetlinkSocket.open({ protocol: NETLINK_NETFILTER, clock, onSlowSends: opts.onSlowSends, timed: opts.timed }), clock);
  }

  /**
   * Rebuilds vipd's tables atomically in ONE batch (there is never a moment without a fence:
   * delete-if-present via NEWTABLE+DELTABLE, then NEWTABLE, sets, the guarded elements, the
   * currently allowed elements with their timeouts computed at send time, and the chains).
   * Called at start and whenever the set of VIPs changes. Throws KernelError naming the
   * operation when the kernel refuses.
   *
   * The first call also learns, once, whether the kernel updates element
   * timeouts in place (see elementMessages).
   */
  async configure(spec: { vips: readonly string[] }): Promise<void> {
    const op = `configuring nftables tables ${tableName(INET_TABLE)} and ${tableName(ARP_TABLE)}`;
    const vips = uniqueVips(op, spec.vips);
    await this.probeOnce();
    await this.sock.request(() => [batchBegin(), ...tableMessages({ vips, proven: this.provenNow() }), batchEnd()], op);
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
   * Every VIP address vipd's tables in this namespace name now, guarded or
   * proven, as text; empty when there are none. Read at start before
   * configure() replaces the tables: the tables an earlier run left name
   * every VIP that run may have put on a link, whatever the configuration
   * says now (design.md §6). That includes the netdev table of vipd before
   * 0.3, which configure() then deletes. This is the one place that knows
   * where in the tables' layout those addresses are.
   */
  async leftovers(): Promise<string[]> {
    const found = new Map<string, IpAddress>();
    for (const table of [INET_TABLE, ARP_TABLE, LEGACY_NETDEV_TABLE]) {
      const op = `listing the VIPs in nftables table ${tableName(table)}`;
      for (const set of table === ARP_TABLE ? setsOf(ARP_TABLE) : setsOf(INET_TABLE)) {
        let replies;
        try {
          replies = await this.sock.request(getSetElements(table, set), op);
        } catch (e) {
          // No table (or no such set in it, or no such family at all): nothing left there.
          if (e instanceof KernelError && (e.errno === ENOENT || e.errno === EAFNOSUPPORT || e.errno === EOPNOTSUPP)) continue;
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
    }
    return [...found.keys()];
  }

  /**
   * What keeps the tables from fencing now, one entry per problem (a chain
   * missing, hooked elsewhere, or short of its rules; every chain when a
   * table is gone); empty when both are whole. The chains are not per
   * device, so a problem concerns every VIP. Reads the kernel's own
   * listing, so it sees what someone else did to the tables, and what a
   * configure() that failed left out.
   */
  async problems(): Promise<string[]> {
    const out: string[] = [];
    for (const table of [INET_TABLE, ARP_TABLE]) {
      const op = `checking nftables table ${tableName(table)}`;
      const chains = new Map<string, { hook: number | null }>();
      for (const m of await this.sock.request(getChains(table.family), op)) {
        if (m.type !== nftType(NFT_MSG_NEWCHAIN)) continue;
        const c = decodeChain(m.payload);
        if (c instanceof WireError) throw new KernelError(op, EBADMSG, c.message);
        if (c.table === table.name) chains.set(c.name, c);
      }
      const rules = new Map<string, number>();
      for (const m of await this.sock.request(getRules(table.family), op)) {
        if (m.type !== nftType(NFT_MSG_NEWRULE)) continue;
        const r = decodeRuleOwner(m.payload);
        if (r instanceof WireError) throw new KernelError(op, EBADMSG, r.message);
        if (r.table === table.name) rules.set(r.chain, (rules.get(r.chain) ?? 0) + 1);
      }
      for (const want of CHAINS) {
        if (want.table !== table) continue;
        const where = `${tableName(table)} ${want.name}`;
        const c = chains.get(want.name);
        const n = rules.get(want.name) ?? 0;
        if (!c) out.push(`chain ${where} is missing`);
        else if (c.hook !== want.hook) out.push(`chain ${where} hooks ${c.hook === null ? "nothing" : `hook ${c.hook}`}, not hook ${want.hook}`);
        else if (n < want.rules.length) out.push(`chain ${where} has ${n} of its ${want.rules.length} rules`);
      }
    }
    return out;
  }

  /** Deletes vipd's tables (idempotent). For clean shutdown. */
  async remove(): Promise<void> {
    this.allowed.clear();
    await this.sock.request([batchBegin(), ...removeMessages(), batchEnd()], `removing nftables tables ${tableName(INET_TABLE)} and ${tableName(ARP_TABLE)}`);
  }

  close(): void {
    this.sock.close();
  }

  private change(ip: IpAddress, allow: boolean): Promise<unknown> {
    if (!this.pending) {
      const changes = new Map<string, { ip: IpAddress; allow: boolean }>();
      const done = this.sock.request(() => this.changeMessages(changes), `updating nftables tables ${TABLE}`);
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

  private probeOnce(): Promise<boolean> {
    if (!this.support) {
      this.support = (async () => {
        const inPlaceUpdates = await updatesInPlace(this.sock);
        this.inPlaceUpdates = inPlaceUpdates;
        return inPlaceUpdates;
      })();
      // A failed probe is tried again by the next configure().
      this.support.catch(() => (this.support = null));
    }
    return this.support;
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
  const table: TableRef = { family: NFPROTO_INET, name: PROBE_TABLE };
  const set: SetSpec = { table, name: "timeouts", id: 1, key: "ipv4_addr", flags: NFT_SET_TIMEOUT };
  const key = new Uint8Array(4);
  const HOUR = 3_600_000;
  const MINUTE = 60_000;
  await sock.request(
    [
      batchBegin(),
      newTable(table),
      deleteTable(table),
      newTable(table),
      newSet(set),
      newSetElements(table, set.name, [{ key, timeoutMs: HOUR, expirationMs: HOUR }], set.id),
      batchEnd(),
    ],
    op,
  );
  try {
    await sock.request([batchBegin(), newSetElements(table, set.name, [{ key, timeoutMs: MINUTE, expirationMs: MINUTE }]), batchEnd()], op);
    for (const m of await sock.request(getSetElements(table, set.name), op)) {
      if (m.type !== nftType(NFT_MSG_NEWSETELEM)) continue;
      const list = decodeSetElements(m.payload);
      if (list instanceof WireError) throw new KernelError(op, EBADMSG, list.message);
      const left = list.elements[0]?.expirationMs;
      if (left !== undefined) return left <= MINUTE;
    }
    throw new KernelError(op, ENOENT, "the probe element was not listed");
  } finally {
    await sock.request([batchBegin(), newTable(table), deleteTable(table), batchEnd()], `removing nftables table ${tableName(table)}`);
  }
}

/** What an errno from building the fence says this kernel lacks. */
const MISSING_HINTS: Record<number, string> = {
  [EPROTONOSUPPORT]: "the kernel has no nfnetlink (CONFIG_NETFILTER_NETLINK)",
  [EOPNOTSUPP]: "this kernel's nf_tables lacks it (CONFIG_NF_TABLES)",
  [EAFNOSUPPORT]: "nf_tables has no inet or arp family (CONFIG_NF_TABLES_INET, CONFIG_NF_TABLES_ARP)",
  [ENOENT]: "a module is missing (nf_tables' inet or arp filter chain type, or an expression)",
};

/**
 * Why an error from opening or configuring the fence means this kernel has
 * no usable nftables (a missing module or config option), or null when it
 * means something else (EPERM: a missing capability is the operator's to fix).
 */
export function nftablesMissing(err: unknown): string | null {
  if (!(err instanceof KernelError) || err.errno === EPERM) return null;
  const hint = MISSING_HINTS[err.errno];
  return hint ? `${err.message}: ${hint}` : null;
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
