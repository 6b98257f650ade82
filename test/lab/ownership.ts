// Who holds the VIP as the kernel enforces it, from what `ip monitor` and
// `nft monitor` saw (recorder.ts does the watching). A node *effectively*
// holds the VIP when the address is on its link and vipd's fence lets its
// traffic pass. vipd's fence for IP traffic is `table inet vipd`: its chains
// `input` and `output`, hooked to the local stack's input and output, drop
// traffic to or from a VIP guarded by it (an element of vips4/vips6) unless
// the VIP is an unexpired element of proven4/proven6. (`table arp vipd` holds
// a copy of vips4/proven4 for ARP, written in the same transaction; the
// witness follows the inet table, the one clients' traffic passes.)
//
// Sets alone fence nothing: a table whose chains are gone, flushed, or hook
// nothing drops nothing, whatever its sets say. So the fence counts only
// while both chains exist, hook what their names say and carry vipd's rules
// (FENCE_RULES each: the monitor can count rules but not read them, see
// monitor-text.ts; a listing read shows them, and there the VIP's family's
// rule must be among them). Otherwise the address decides alone — as it does
// when the node has no such table (nftables absent, or an implementation
// without a fence, such as keepalived), and when the table's guard set
// exists without the VIP; otherwise the VIP must be proven. A table without
// a guard set for the VIP's family counts as guarding it. Each doubt is
// resolved towards "held": the side on which an overlap is reported rather
// than hidden.
//
// A proven element that times out disappears silently (nft monitor prints
// nothing), and the kernel drops the traffic from that instant: the ledger
// computes the expiry itself and stamps the release at the expiry, however
// late it is asked. Expiries are dated from when the recorder *received* the
// element's line plus the `expires` it carried; the monitor's latency (a few
// ms) makes them that much late, i.e. errs towards "still held".
//
// Pure: observations in, edges and intervals out; times are lab-clock ms.
import type { AddressEvent, NftChainListing, NftEvent, NftSetListing } from "./monitor-text.ts";
import type { Interval } from "./stats.ts";

export interface OwnershipEdge {
  node: string;
  /** Lab clock (labNow), epoch ms. */
  t: number;
  /** Date.now() at the same moment, for humans. */
  wall: number;
  held: boolean;
}

/** vipd's two kinds of set for the VIP's family: vips4/vips6 guard, proven4/proven6 prove. */
export type FenceSet = "guard" | "proven";

/** vipd's two chains in its inet table; each must hook what its name says. */
export type FenceChain = "input" | "output";
export const FENCE_CHAINS: readonly FenceChain[] = ["input", "output"];
/**
 * The rules vipd puts in each chain (src/kernel/nft-fence.ts: IPv4, IPv6,
 * neighbour discovery). A chain with fewer is not vipd's fence as built,
 * and counts as no fence: if that errs, it errs towards "held".
 */
export const FENCE_RULES = 3;

/** One of vipd's chains as known: what it hooks (null: nothing) and how many rules it has. */
export interface ChainFacts {
  readonly hook: string | null;
  readonly rules: number;
}

/** One change a node's kernel reported, already narrowed to the VIP. */
export type Observation =
  | { kind: "address"; present: boolean }
  | { kind: "table"; present: boolean }
  | { kind: "set"; set: FenceSet; present: boolean }
  /** One of vipd's chains created (with what it hooks) or deleted. */
  | { kind: "chain"; chain: FenceChain; present: boolean; hook: string | null }
  /** One rule added to or deleted from one of vipd's chains. */
  | { kind: "rule"; chain: FenceChain; present: boolean }
  /** The VIP's element added (or updated) or deleted; `until` is when an added element expires (Infinity: never). */
  | { kind: "element"; set: FenceSet; present: boolean; until: number };

/** What is known of one node's kernel. */
export interface NodeFacts {
  /** The VIP's address is on the node's link. */
  address: boolean;
  /** vipd's table exists. */
  table: boolean;
  /** The guard set for the VIP's family: absent, or whether the VIP is in it. */
  guard: "absent" | "in" | "out";
  /** When the VIP's proven element expires; null when it is not in the set. */
  provenUntil: number | null;
  /** vipd's chains in the table; null where one does not exist. */
  chains: Readonly<Record<FenceChain, ChainFacts | null>>;
}

export const NO_CHAINS: NodeFacts["chains"] = Object.freeze({ input: null, output: null });
export const NO_FENCE: NodeFacts = Object.freeze({ address: false, table: false, guard: "absent", provenUntil: null, chains: NO_CHAINS });
/** Both chains as vipd builds them: for tests and hand-made facts. */
export const HOOKED: NodeFacts["chains"] = Object.freeze({ input: { hook: "input", rules: FENCE_RULES }, output: { hook: "output", rules: FENCE_RULES } });

/** Both chains exist, hook what their names say, and carry vipd's rules: the sets decide. */
export const hooked = (f: Pick<NodeFacts, "chains">): boolean =>
  FENCE_CHAINS.every((c) => f.chains[c]?.hook === c && f.chains[c]!.rules >= FENCE_RULES);

/** The fence does not apply to the VIP: no vipd table, its chains not hooked, or a guard set without the VIP. */
export const unfenced = (f: NodeFacts): boolean => !f.table || !hooked(f) || f.guard === "out";

/** Whether the fence lets the VIP's traffic pass at t. */
export function fencePasses(f: NodeFacts, t: number): boolean {
  return unfenced(f) || (f.provenUntil !== null && t < f.provenUntil);
}

export const effectivelyHeld = (f: NodeFacts, t: number): boolean => f.address && fencePasses(f, t);

/** The facts after one observation. Pure. */
export function applyObservation(f: NodeFacts, o: Observation): NodeFacts {
  switch (o.kind) {
    case "address":
      return { ...f, address: o.present };
    case "table":
      // A deleted table takes its sets and chains along (nft prints `delete set`, `delete rule` and
      // `delete chain` lines only for what it had cached, and no element lines).
      return o.present ? { ...f, table: true } : { ...f, table: false, guard: "absent", provenUntil: null, chains: NO_CHAINS };
    case "chain": {
      // `add chain` for one that exists changes nothing of its rules.
      const was = f.chains[o.chain];
      return { ...f, chains: { ...f.chains, [o.chain]: o.present ? { hook: o.hook ?? was?.hook ?? null, rules: was?.rules ?? 0 } : null } };
    }
    case "rule": {
      const was = f.chains[o.chain];
      if (!was) return f;
      return { ...f, chains: { ...f.chains, [o.chain]: { ...was, rules: Math.max(0, was.rules + (o.present ? 1 : -1)) } } };
    }
    case "set":
      if (o.set === "guard") return { ...f, guard: o.present ? "out" : "absent" };
      return { ...f, provenUntil: null };
    case "element":
      if (o.set === "guard") return { ...f, guard: o.present ? "in" : "out" };
      return { ...f, provenUntil: o.present ? o.until : null };
  }
}

/** vipd's fence table, and its sets for the VIP's address family. */
export const FENCE_FAMILY = "inet";
export const FENCE_TABLE = "vipd";
export function fenceSets(vip: string): Record<FenceSet, string> {
  return vip.includes(":") ? { guard: "vips6", proven: "proven6" } : { guard: "vips4", proven: "proven4" };
}

/** What an `ip monitor address` event says about the VIP on the node's link; null if nothing. */
export function addressObservation(e: AddressEvent, vip: string, link: string): Observation | null {
  if (e.link !== link || e.address !== vip.toLowerCase()) return null;
  return { kind: "address", present: !e.deleted };
}

/**
 * What an `nft monitor` event received at `receivedAt` says about the VIP's
 * fence; [] if nothing. (A "lost" event is the caller's to handle: re-read.)
 */
export function fenceObservations(e: NftEvent, vip: string, receivedAt: number): Observation[] {
  if (e.kind === "lost" || e.kind === "generation" || e.family !== FENCE_FAMILY || e.table !== FENCE_TABLE) return [];
  const present = e.op === "add";
  if (e.kind === "table") return [{ kind: "table", present }];
  if (e.kind === "chain" || e.kind === "rule") {
    const chain = FENCE_CHAINS.find((c) => c === e.chain);
    if (!chain) return [];
    return e.kind === "chain" ? [{ kind: "chain", chain, present, hook: e.hook }] : [{ kind: "rule", chain, present }];
  }
  const sets = fenceSets(vip);
  const set: FenceSet | null = e.set === sets.guard ? "guard" : e.set === sets.proven ? "proven" : null;
  if (set === null) return [];
  if (e.kind === "set") return [{ kind: "set", set, present }];
  const el = e.elements.find((x) => x.value === vip.toLowerCase());
  if (!el) return [];
  return [{ kind: "element", set, present, until: expiryOf(el.expiresMs ?? el.timeoutMs, receivedAt) }];
}

const expiryOf = (leftMs: number | null, at: number) => (leftMs === null ? Infinity : at + leftMs);

/** What `nft list table inet vipd` shows: its sets and its chains. */
export interface FenceListing {
  sets: readonly NftSetListing[];
  chains: readonly NftChainListing[];
}

/**
 * The rule of a chain that fences the VIP's family, as `nft list` prints
 * vipd's (`ip daddr @vips4 ip daddr != @proven4 drop` in input, saddr in
 * output; ip6 and vips6/proven6 for IPv6).
 */
export function fencesFamily(rule: string, chain: FenceChain, vip: string): boolean {
  const { guard, proven } = fenceSets(vip);
  const field = `${vip.includes(":") ? "ip6" : "ip"} ${chain === "input" ? "daddr" : "saddr"}`;
  return rule.includes(`${field} @${guard} `) && rule.includes(`${field} != @${proven} `) && /\bdrop$/.test(rule);
}

/**
 * The fence facts from `nft list table inet vipd` read at readAt; null: the
 * table does not exist. A chain without the rule for the VIP's family counts
 * as having no rules.
 */
export function fenceFacts(listing: FenceListing | null, vip: string, readAt: number): Omit<NodeFacts, "address"> {
  if (listing === null) return { table: false, guard: "absent", provenUntil: null, chains: NO_CHAINS };
  const { sets } = listing;
  const chainFacts = (name: FenceChain): ChainFacts | null => {
    const c = listing.chains.find((x) => x.name === name);
    if (!c) return null;
    return { hook: c.hook, rules: c.rules.some((r) => fencesFamily(r, name, vip)) ? c.rules.length : 0 };
  };
  const names = fenceSets(vip);
  const guard = sets.find((x) => x.name === names.guard);
  const proven = sets.find((x) => x.name === names.proven)?.elements.find((x) => x.value === vip.toLowerCase());
  return {
    table: true,
    guard: guard ? (guard.elements.some((x) => x.value === vip.toLowerCase()) ? "in" : "out") : "absent",
    provenUntil: proven ? expiryOf(proven.expiresMs ?? proven.timeoutMs, readAt) : null,
    chains: { input: chainFacts("input"), output: chainFacts("output") },
  };
}

export interface LedgerOptions {
  /** Called with each effective-ownership edge as it is recorded. */
  onEdge?: (e: OwnershipEdge) => void;
  /** Date.now() for a lab-clock time (edges carry both). */
  wallAt?: (t: number) => number;
}

/**
 * Effective ownership per node, as edges. Observations must come in order of
 * their time; a time earlier than one already seen is taken as that time.
 */
export class OwnershipLedger {
  /** Effective ownership edges, in order. */
  readonly edges: OwnershipEdge[] = [];
  /** Raw edges of the address on the link, fenced or not. */
  readonly addressEdges: OwnershipEdge[] = [];
  private readonly facts = new Map<string, NodeFacts>();
  private readonly held = new Map<string, boolean>();
  private now = -Infinity;

  constructor(private readonly opts: LedgerOptions = {}) {}

  /** Sets a node's facts as read at t (first read, or a re-read after lost events). */
  reset(node: string, t: number, facts: NodeFacts): void {
    t = this.advance(t);
    this.update(node, t, facts);
  }

  /** Applies one observation, or several committed together (one nftables transaction) at once. */
  observe(node: string, t: number, o: Observation | readonly Observation[]): void {
    t = this.advance(t);
    const all: readonly Observation[] = Array.isArray(o) ? o : [o as Observation];
    this.update(node, t, all.reduce(applyObservation, this.facts.get(node) ?? NO_FENCE));
  }

  /**
   * Moves the clock to t (never back), recording the release of every
   * proven element that expired by then at its expiry instant. Returns the
   * clock.
   */
  advance(t: number): number {
    this.now = Math.max(this.now, t);
    for (;;) {
      let next: { node: string; at: number } | null = null;
      for (const [node, f] of this.facts) {
        if (!this.held.get(node) || f.provenUntil === null || unfenced(f)) continue;
        if (f.provenUntil <= this.now && (!next || f.provenUntil < next.at)) next = { node, at: f.provenUntil };
      }
      if (!next) return this.now;
      this.held.set(next.node, false);
      this.push(this.edges, next.node, next.at, false);
    }
  }

  /** The earliest expiry that would end an effective hold; null if none is pending. */
  nextExpiry(): number | null {
    let next: number | null = null;
    for (const [node, f] of this.facts) {
      if (!this.held.get(node) || f.provenUntil === null || !Number.isFinite(f.provenUntil) || unfenced(f)) continue;
      if (next === null || f.provenUntil < next) next = f.provenUntil;
    }
    return next;
  }

  /** Nodes effectively holding the VIP at t (expiries due by t applied). */
  holders(t: number): string[] {
    this.advance(t);
    return [...this.held].filter(([, h]) => h).map(([n]) => n);
  }

  isHeld(node: string, t: number): boolean {
    this.advance(t);
    return this.held.get(node) ?? false;
  }

  /** Nodes with the VIP's address on their link, fenced or not. */
  addressHolders(): string[] {
    return [...this.facts].filter(([, f]) => f.address).map(([n]) => n);
  }

  factsOf(node: string): NodeFacts {
    return this.facts.get(node) ?? NO_FENCE;
  }

  private update(node: string, t: number, next: NodeFacts): void {
    const first = !this.facts.has(node);
    const before = this.facts.get(node) ?? NO_FENCE;
    this.facts.set(node, next);
    if (next.address !== before.address) this.push(this.addressEdges, node, t, next.address);
    const held = effectivelyHeld(next, t);
    if (held === (this.held.get(node) ?? false)) {
      this.held.set(node, held);
      return;
    }
    this.held.set(node, held);
    // A node first seen not holding has no edge: nothing changed.
    if (first && !held) return;
    this.push(this.edges, node, t, held);
  }

  private push(list: OwnershipEdge[], node: string, t: number, held: boolean): void {
    const e = { node, t, wall: this.opts.wallAt?.(t) ?? t, held };
    list.push(e);
    if (list === this.edges) this.opts.onEdge?.(e);
  }
}

/** Folds edges into closed intervals per node, clipped to [from, to]. Pure. */
export function ownershipIntervals(edges: readonly OwnershipEdge[], nodes: readonly string[], from: number, to: number): Map<string, Interval[]> {
  const out = new Map<string, Interval[]>(nodes.map((n) => [n, []]));
  const open = new Map<string, number>();
  for (const e of [...edges].sort((a, b) => a.t - b.t)) {
    if (e.held && !open.has(e.node)) open.set(e.node, e.t);
    else if (!e.held && open.has(e.node)) {
      const start = open.get(e.node)!;
      open.delete(e.node);
      if (e.t > from && start < to) out.get(e.node)?.push({ start: Math.max(start, from), end: Math.min(e.t, to) });
    }
  }
  for (const [node, start] of open) if (start < to) out.get(node)?.push({ start: Math.max(start, from), end: to });
  return out;
}
