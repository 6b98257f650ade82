// Links and addresses through rtnetlink, in the namespace the socket was opened
// in. This is the only place vipd changes kernel state for a VIP.
import { EADDRNOTAVAIL, EBADMSG, ENODEV } from "./errno.ts";
import { KernelError, KernelInputError } from "./error.ts";
import { type IpAddress, parseIp } from "./ip.ts";
import { type NetlinkOptions, NetlinkSocket, type Tagged } from "./netlink.ts";
import {
  type Address,
  decodeAddress,
  deleteAddressRequest,
  getAddressesRequest,
  hostPrefix,
  newAddressRequest,
  RTM_NEWADDR,
} from "./wire/address.ts";
import { decodeLink, getLinkRequest, getLinksRequest, IFNAMSIZ, type Link, RTM_NEWLINK } from "./wire/link.ts";
import { WireError } from "./wire/error.ts";

export type { Address } from "./wire/address.ts";
export type { Link, OperState } from "./wire/link.ts";


/** The kernel's ifa_cacheinfo "forever" is 2^32-1, so a finite lifetime must stay below it. */
const MAX_LIFETIME = 0xffffffff;

/**
 * An address lifetime in whole seconds, or a source of one. A source is asked
 * synchronously right before the request is sent — after the link lookup and
 * any queued requests ahead of it — and may answer null: "no lifetime left",
 * and then nothing is sent. A lifetime computed before an await can be stale
 * by the time it reaches the kernel (the process may have been frozen in
 * between); one read at the send cannot.
 */
export type Lifetime = number | (() => number | null);

/** One address removal waiting for, or riding in, a batch. */
interface Removal {
  readonly index: number;
  readonly addr: IpAddress;
  readonly op: string;
  readonly resolve: (removed: boolean) => void;
  readonly reject: (err: unknown) => void;
}

/** One address refresh waiting for, or riding in, a batch. */
interface Refresh {
  readonly index: number;
  readonly addr: IpAddress;
  readonly seconds: () => number;
  readonly op: string;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
  settled: boolean;
}

export class Rtnl {
  /** Names to indexes as the caller's link watch knows them; null: ask the kernel every time. */
  private knownIndex: ((name: string) => number | null) | null = null;
  /** The refreshes that will leave in the next datagram. */
  private batch: Refresh[] | null = null;
  /** The removals that will leave in the next datagram. */
  private removals: Removal[] | null = null;

  private constructor(private readonly sock: NetlinkSocket) {}

  /**
   * Address requests use the index this gives for a link name instead of
   * asking the kernel first, a round trip per request saved. The lookup must
   * follow the kernel's link events: a stale index (the link was re-created
   * and the event is not read yet) fails with ENODEV, never reaches another
   * link, since the kernel does not hand out an index again until it wraps.
   */
  useLinkIndex(lookup: (name: string) => number | null): void {
    this.knownIndex = lookup;
  }

  /** A NETLINK_ROUTE socket in the calling thread's current namespace. */
  static open(opts: Pick<NetlinkOptions, "clock" | "onSlowSends" | "timed"> = {}): Rtnl {
    return new Rtnl(NetlinkSocket.open(opts));
  }

  close(): void {
    this.sock.close();
  }

  /** The socket's netlink port ID: the kernel stamps the notifications our changes cause with it. */
  portId(): number {
    return this.sock.portId();
  }

  /** KernelError ENODEV "looking up link eth9" when there is no such link. */
  async link(name: string): Promise<Link> {
    const op = `looking up link ${name}`;
    checkLinkName(op, name);
    return this.getLink({ name }, op);
  }

  async linkByIndex(index: number): Promise<Link> {
    const op = `looking up link ${index}`;
    if (!Number.isInteger(index) || index < 1 || index > 0x7fffffff) throw new KernelInputError(op, "a link index is a positive integer");
    return this.getLink({ index }, op);
  }

  /** Every link in the socket's namespace. */
  async links(): Promise<Link[]> {
    const op = "listing links";
    const out: Link[] = [];
    for (const m of await this.sock.request(getLinksRequest(), op)) {
      if (m.type !== RTM_NEWLINK) continue;
      const link = decodeLink(m.payload);
      if (link instanceof WireError) throw new KernelError(op, EBADMSG, link.message);
      out.push(link);
    }
    return out;
  }

  /** Every IPv4 and IPv6 address on the link, as the kernel lists them. */
  async addresses(link: string | number): Promise<Address[]> {
    const l = typeof link === "number" ? await this.linkByIndex(link) : await this.link(link);
    const op = `listing addresses on ${l.name}`;
    const out: Address[] = [];
    for (const m of await this.sock.request(getAddressesRequest(l.index), op)) {
      if (m.type !== RTM_NEWADDR) continue;
      const a = decodeAddress(m.payload);
      if (a instanceof WireError) throw new KernelError(op, EBADMSG, a.message);
      // Kernels without strict dump checking ignore the index in the request.
      if (a && a.linkIndex === l.index) out.push(a);
    }
    return out;
  }

  /** Adds ip as a host address with the given lifetime; EEXIST if it is already there. */
  addAddress(link: string, ip: string, lifetime: Lifetime): Promise<void> {
    return this.newAddress(link, ip, lifetime, false);
  }

  /** Adds ip, or refreshes the lifetime of the existing address: the fence's keepalive. */
  replaceAddress(link: string, ip: string, lifetime: Lifetime): Promise<void> {
    return this.newAddress(link, ip, lifetime, true);
  }

  /**
   * True if the address was removed, false if it was not there. Removals
   * asked for in one turn leave together, as refreshes do: a holder letting
   * go of 100 VIPs at once (a stop, a drain) sends one datagram, not 100
   * round trips one after the other.
   */
  async deleteAddress(link: string, ip: string): Promise<boolean> {
    const addr = parseInput((p) => `removing ${p} from ${link}`, ip);
    const op = `removing ${addr.text}/${hostPrefix(addr)} from ${link}`;
    checkLinkName(op, link);
    const known = this.indexOf(link, op);
    const index = typeof known === "number" ? known : await known;
    return this.remove({ index, addr, op });
  }

  /**
   * Removes ip, as vipd adds it (a host prefix), from every link that has it;
   * answers the names of those links. For what an earlier run may have left
   * on a link the configuration no longer names (design.md §6).
   */
  async deleteAddressEverywhere(ip: string): Promise<string[]> {
    const addr = parseInput((p) => `removing ${p} from every link`, ip);
    const op = `removing ${addr.text}/${hostPrefix(addr)} from every link`;
    const holders: number[] = [];
    // Index 0: the addresses of every link.
    for (const m of await this.sock.request(getAddressesRequest(0), op)) {
      if (m.type !== RTM_NEWADDR) continue;
      const a = decodeAddress(m.payload);
      if (a instanceof WireError) throw new KernelError(op, EBADMSG, a.message);
      if (a && a.address === addr.text && a.prefixLength === hostPrefix(addr)) holders.push(a.linkIndex);
    }
    const removed: string[] = [];
    for (const index of new Set(holders)) {
      const name = await this.linkByIndex(index).then((l) => l.name, () => `link ${index}`);
      try {
        await this.sock.request(deleteAddressRequest({ ip: addr, index }), `removing ${addr.text}/${hostPrefix(addr)} from ${name}`);
        removed.push(name);
      } catch (e) {
        // Gone meanwhile (its lifetime ran out, or the link went away): as good as removed.
        if (e instanceof KernelError && (e.errno === EADDRNOTAVAIL || e.errno === ENODEV)) continue;
        throw e;
      }
    }
    return removed;
  }

  private async newAddress(link: string, ip: string, lifetime: Lifetime, replace: boolean): Promise<void> {
    const verb = (p: string) => (replace ? `refreshing ${p} on ${link}` : `adding ${p} to ${link}`);
    const addr = parseInput(verb, ip);
    const op = verb(`${addr.text}/${hostPrefix(addr)}`);
    const seconds = (): number => {
      const s = typeof lifetime === "function" ? lifetime() : lifetime;
      if (s === null) throw new KernelInputError(op, "no lifetime left: not sent");
      if (!Number.isInteger(s) || s < 1 || s >= MAX_LIFETIME) {
        throw new KernelInputError(op, `lifetime must be a whole number of seconds from 1 to ${MAX_LIFETIME - 1}, not ${s}`);
      }
      return s;
    };
    if (typeof lifetime === "number") seconds();
    checkLinkName(op, link);
    const known = this.indexOf(link, op);
    const index = typeof known === "number" ? known : await known;
    // The lifetime is read when the request leaves, not now: see Lifetime.
    if (!replace) {
      await this.sock.request(() => newAddressRequest({ ip: addr, index }, seconds(), false), op);
      return;
    }
    return this.refresh({ index, addr, seconds, op });
  }

  /**
   * Joins the next datagram of address refreshes: every VIP a heartbeat
   * extends asks at once, and they leave together, one sendto and one
   * receive for all, each acknowledged (and possibly refused) on its own.
   * A refresh whose lifetime has run out by the time the datagram is built
   * is refused alone and left out.
   */
  private refresh(r: Pick<Refresh, "index" | "addr" | "seconds" | "op">): Promise<void> {
    return new Promise((resolve, reject) => {
      if (!this.batch) {
        const entries: Refresh[] = [];
        this.batch = entries;
        const settleAll = (answer: (e: Refresh) => unknown) => {
          for (const e of entries) {
            if (e.settled) continue;
            e.settled = true;
            const err = answer(e);
            if (err) e.reject(err);
            else e.resolve();
          }
        };
        this.sock.requestEach(() => this.batchMessages(entries), "refreshing addresses").then(
          (outcomes) => settleAll((e) => outcomes.get(e) ?? (outcomes.has(e) ? null : new KernelInputError(e.op, "not sent"))),
          (err: unknown) => settleAll(() => err),
        );
      }
      this.batch.push({ ...r, resolve, reject, settled: false });
    });
  }

  /**
   * Joins the next datagram of removals: rtnetlink carries out and answers
   * each message on its own, so one refusal fails only its own removal.
   * Sent once, never again on a slow send (nothing in it is read from the
   * clock, and a second send would find the address gone).
   */
  private remove(r: Pick<Removal, "index" | "addr" | "op">): Promise<boolean> {
    return new Promise((resolve, reject) => {
      if (!this.removals) {
        const entries: Removal[] = [];
        this.removals = entries;
        // Built once, as the datagram leaves: from then on the batch is no longer the open one, and new removals go into the next.
        const build = (): Tagged<Removal>[] => {
          if (this.removals !== entries) return [];
          this.removals = null;
          return entries.map((e) => ({ tag: e, message: { ...deleteAddressRequest({ ip: e.addr, index: e.index }), operation: e.op } }));
        };
        // A request that failed before it was built (a closed socket) must not keep later removals waiting on it.
        const done = () => {
          if (this.removals === entries) this.removals = null;
        };
        this.sock.requestEach(build, "removing addresses").then(
          (outcomes) => {
            done();
            for (const e of entries) {
              const err = outcomes.get(e);
              // Both IPv4 and IPv6 answer EADDRNOTAVAIL for an address not on the link.
              if (err === null) e.resolve(true);
              else if (err instanceof KernelError && err.errno === EADDRNOTAVAIL) e.resolve(false);
              else e.reject(err ?? new KernelInputError(e.op, "not sent"));
            }
          },
          (err: unknown) => {
            done();
            for (const e of entries) e.reject(err);
          },
        );
      }
      this.removals.push({ ...r, resolve, reject });
    });
  }

  /** Built as the datagram leaves: from then on, new refreshes go into the next one. */
  private batchMessages(entries: Refresh[]): Tagged<Refresh>[] {
    if (this.batch === entries) this.batch = null;
    const out: Tagged<Refresh>[] = [];
    for (const e of entries) {
      if (e.settled) continue;
      let seconds: number;
      try {
        seconds = e.seconds();
      } catch (err) {
        e.settled = true;
        e.reject(err);
        continue;
      }
      out.push({ tag: e, message: { ...newAddressRequest({ ip: e.addr, index: e.index }, seconds, true), operation: e.op } });
    }
    return out;
  }

  /** The link's index from the caller's link watch, or else from the kernel. */
  private indexOf(name: string, operation: string): number | Promise<number> {
    return this.knownIndex?.(name) ?? this.resolve(name, operation);
  }

  /** The link's index, with a missing link reported as part of the caller's operation. */
  private async resolve(name: string, operation: string): Promise<number> {
    try {
      return (await this.getLink({ name }, operation)).index;
    } catch (e) {
      if (e instanceof KernelError && e.errno === ENODEV) throw new KernelError(operation, ENODEV, `no link ${name}`);
      throw e;
    }
  }

  private async getLink(ref: { index: number } | { name: string }, op: string): Promise<Link> {
    const replies = await this.sock.request(getLinkRequest(ref), op);
    const m = replies.find((r) => r.type === RTM_NEWLINK);
    if (!m) throw new KernelError(op, ENODEV);
    const link = decodeLink(m.payload);
    if (link instanceof WireError) throw new KernelError(op, EBADMSG, link.message);
    return link;
  }
}

function parseInput(verb: (subject: string) => string, ip: string): IpAddress {
  const addr = parseIp(ip);
  if (!addr) throw new KernelInputError(verb(ip), `${JSON.stringify(ip)} is not an IPv4 or IPv6 address`);
  return addr;
}

function checkLinkName(op: string, name: string): void {
  const len = new TextEncoder().encode(name).byteLength;
  if (len === 0 || len >= IFNAMSIZ || name.includes("\0")) {
    throw new KernelInputError(op, `a link name is 1 to ${IFNAMSIZ - 1} bytes, not ${JSON.stringify(name)}`);
  }
}
