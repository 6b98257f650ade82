// Who holds the VIP, per node, as the kernel sees it, watched through tools
// that share no code with vipd: in every node's namespace one long-lived
// `ip monitor address` and one `nft monitor`, their lines stamped on the lab
// clock as they arrive, and a first read with `ip -j addr show` and
// `nft list table inet vipd`. ownership.ts turns what they report into
// *effective* ownership — the address on the link and not fenced off by
// vipd's nftables fence, whose chains must be there and hooked for its sets
// to count — and its edges, including the silent expiry of a
// fence element, stamped at the instant it expires. From the intervals
// (stats.ts) come overlaps and gaps, resolved to the monitors' latency: a
// line arrives within a few ms of the kernel's change.
//
// The monitors are lab processes (tracked by PID, stopped by close(), killed
// on exit otherwise); their stderr comes back here, so lost events (ENOBUFS)
// and a monitor that dies are noticed, counted and reported, never silent.
import { join } from "node:path";
import { labNow, type LabProcess, type SpawnStreams } from "./cluster.ts";
import { addressesFromIpJson, parseIpMonitorLine, parseNftChainListing, parseNftMonitorLine, parseNftTableListing } from "./monitor-text.ts";
import {
  addressObservation,
  FENCE_FAMILY,
  FENCE_TABLE,
  fenceFacts,
  type FenceListing,
  fenceObservations,
  type Observation,
  type OwnershipEdge,
  OwnershipLedger,
  ownershipIntervals,
} from "./ownership.ts";
import { CommandError, forEachLine, sh, sleep } from "./sh.ts";
import type { Interval } from "./stats.ts";

export { type OwnershipEdge, ownershipIntervals } from "./ownership.ts";

/** What the recorder needs of a lab (a Lab is one): the nodes to watch, the VIP, and tracked processes. */
export interface RecorderSite {
  readonly vip: string;
  /** Where the monitors' logs go. */
  readonly dir: string;
  readonly nodes: readonly { readonly name: string; readonly host: { readonly ns: string; readonly link: string } }[];
  spawnIn(ns: string, logFile: string, name: string, argv: readonly string[], opts: SpawnStreams): LabProcess;
}

// Subscription markers: a monitor that printed one of these is listening, so
// a state read after it misses nothing. Both live outside what is watched
// (an address on lo, a table other than vipd's) and are removed at once.
const MARKER_ADDRESS = "127.0.0.254";
const MARKER_TABLE = "vipd_lab_witness";
const SUBSCRIBE_TIMEOUT_MS = 10_000;
/** How long an nftables transaction's lines wait for their `# new generation` line at most. */
const BATCH_FALLBACK_MS = 50;

interface Watch {
  readonly node: string;
  readonly ns: string;
  readonly link: string;
  ipListening: boolean;
  nftListening: boolean;
  /** Observations received while the state is being (re)read; replayed after it. Null when live. */
  pending: { t: number; o: Observation[] }[] | null;
  /** Fence observations of the nftables transaction being printed, stamped with its first line. */
  batch: { t: number; o: Observation[]; timer: ReturnType<typeof setTimeout> } | null;
  reading: Promise<void> | null;
}

export class OwnershipRecorder {
  /** Times events were lost (ENOBUFS, or nft lost track of a set) and a node's state was read again. */
  overruns = 0;
  /**
   * What went wrong with the witness itself: a monitor that exited, a state
   * that could not be read. While any is new, the recorded ownership is not
   * to be trusted.
   */
  readonly problems: string[] = [];
  /** Whether nft is installed: without it no node can have vipd's fence, and the address decides. */
  readonly fenceWatched = Bun.which("nft") !== null;
  private readonly ledger: OwnershipLedger;
  private readonly watches: Watch[] = [];
  private readonly procs: LabProcess[] = [];
  private readonly readers: Promise<void>[] = [];
  private listeners: ((e: OwnershipEdge) => void)[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;

  private constructor(private readonly site: RecorderSite) {
    this.ledger = new OwnershipLedger({
      onEdge: (e) => {
        for (const l of this.listeners) l(e);
      },
      wallAt: (t) => Date.now() - (labNow() - t),
    });
  }

  /** Starts the monitors on every node, waits until they listen, and reads the starting state. */
  static async start(site: RecorderSite): Promise<OwnershipRecorder> {
    const r = new OwnershipRecorder(site);
    try {
      await Promise.all(site.nodes.map((n) => r.watch(n.name, n.host.ns, n.host.link)));
    } catch (e) {
      await r.close();
      throw e;
    }
    return r;
  }

  /** Effective ownership edges, in order. */
  get edges(): readonly OwnershipEdge[] {
    return this.ledger.edges;
  }

  /** Edges of the VIP's address on each link, fenced or not. */
  get addressEdges(): readonly OwnershipEdge[] {
    return this.ledger.addressEdges;
  }

  onEdge(fn: (e: OwnershipEdge) => void): () => void {
    this.listeners.push(fn);
    return () => (this.listeners = this.listeners.filter((x) => x !== fn));
  }

  /** Nodes effectively holding the VIP now. */
  holders(): string[] {
    return this.ledger.holders(labNow());
  }

  isHeld(node: string): boolean {
    return this.ledger.isHeld(node, labNow());
  }

  /** Nodes with the VIP's address on their link now, fenced or not. */
  addressHolders(): string[] {
    return this.ledger.addressHolders();
  }

  hasAddress(node: string): boolean {
    return this.ledger.factsOf(node).address;
  }

  /** Effective ownership intervals per node between from and to; an interval still open ends at `to`. */
  intervals(from: number, to: number): Map<string, Interval[]> {
    this.ledger.advance(Math.min(to, labNow()));
    return ownershipIntervals(this.ledger.edges, this.nodeNames(), from, to);
  }

  /** Intervals with the VIP's address on the link, fenced or not. */
  addressIntervals(from: number, to: number): Map<string, Interval[]> {
    return ownershipIntervals(this.ledger.addressEdges, this.nodeNames(), from, to);
  }

  /** Stops the monitors. */
  async close(): Promise<void> {
    this.closed = true;
    for (const w of this.watches) if (w.batch) clearTimeout(w.batch.timer);
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await Promise.all(this.procs.map((p) => p.stop("SIGTERM", 1000)));
    await Promise.all(this.readers);
  }

  private nodeNames(): string[] {
    return this.site.nodes.map((n) => n.name);
  }

  private async watch(node: string, ns: string, link: string): Promise<void> {
    const w: Watch = { node, ns, link, ipListening: false, nftListening: false, pending: [], batch: null, reading: null };
    this.watches.push(w);
    this.monitor(w, "ip", ["ip", "monitor", "address"], (line) => this.onIpLine(w, line));
    if (this.fenceWatched) this.monitor(w, "nft", ["nft", "monitor"], (line) => this.onNftLine(w, line));
    await this.subscribe(w);
    await this.read(w);
  }

  private monitor(w: Watch, tool: string, argv: readonly string[], onLine: (line: string) => void): void {
    const p = this.site.spawnIn(w.ns, join(this.site.dir, `witness-${tool}-${w.node}.log`), `${tool}-monitor-${w.node}`, argv, { stdout: "pipe", stderr: "pipe" });
    this.procs.push(p);
    const onError = (line: string) => {
      // iproute2: "netlink receive error No buffer space available (105)"; nft's warnings come as "W: …".
      if (/No buffer space|ENOBUFS|lost|unknown set|Unable to cache/i.test(line)) this.lost(w, `${tool}: ${line}`);
      else if (line.trim()) this.problems.push(`${tool} monitor in ${w.node}: ${line.trim()}`);
    };
    this.readers.push(
      forEachLine(p.stdout, onLine),
      forEachLine(p.stderr, onError),
      p.exited.then((code) => {
        if (!this.closed) this.problems.push(`${tool} monitor in ${w.node} exited with ${code}: ownership on ${w.node} is no longer watched`);
      }),
    );
  }

  private onIpLine(w: Watch, line: string): void {
    const t = labNow();
    const e = parseIpMonitorLine(line);
    if (!e) return;
    if (e.link === "lo" && e.address === MARKER_ADDRESS) {
      w.ipListening = true;
      return;
    }
    const o = addressObservation(e, this.site.vip, w.link);
    if (o) this.take(w, t, [o]);
  }

  private onNftLine(w: Watch, line: string): void {
    const t = labNow();
    const e = parseNftMonitorLine(line);
    if (!e) return;
    if (e.kind === "generation") return this.commit(w);
    if (e.kind === "lost") {
      this.commit(w);
      return this.lost(w, `nft: ${e.text}`);
    }
    if (e.kind === "table" && e.table === MARKER_TABLE) {
      w.nftListening = true;
      return;
    }
    const os = fenceObservations(e, this.site.vip, t);
    if (os.length === 0) return;
    // Held back until the transaction's `# new generation` line (or, should
    // that never come, briefly): its changes took effect together.
    w.batch ??= { t, o: [], timer: setTimeout(() => this.commit(w), BATCH_FALLBACK_MS) };
    w.batch.o.push(...os);
  }

  private commit(w: Watch): void {
    const b = w.batch;
    if (!b) return;
    clearTimeout(b.timer);
    w.batch = null;
    this.take(w, b.t, b.o);
  }

  private take(w: Watch, t: number, o: Observation[]): void {
    if (w.pending) w.pending.push({ t, o });
    else {
      this.ledger.observe(w.node, t, o);
      this.schedule();
    }
  }

  private lost(w: Watch, what: string): void {
    if (this.closed) return;
    this.overruns++;
    // A read in flight may have missed what was lost: read again after it.
    const previous = w.reading ?? Promise.resolve();
    w.pending ??= [];
    w.reading = previous.then(() => this.read(w)).catch((e) => {
      this.problems.push(`re-reading ${w.node} after "${what}": ${String(e)}`);
    });
  }

  /** Until both monitors print their marker, writes the markers again every 100 ms. */
  private async subscribe(w: Watch): Promise<void> {
    const end = labNow() + SUBSCRIBE_TIMEOUT_MS;
    while (!w.ipListening || (this.fenceWatched && !w.nftListening)) {
      if (labNow() > end) {
        throw new Error(`the ip/nft monitors in ${w.ns} printed no marker within ${SUBSCRIBE_TIMEOUT_MS} ms (ip ${w.ipListening ? "listening" : "silent"}, nft ${w.nftListening ? "listening" : "silent"})`);
      }
      if (!w.ipListening) {
        await sh(["ip", "-n", w.ns, "addr", "add", `${MARKER_ADDRESS}/32`, "dev", "lo"], { allowFail: true });
        await sh(["ip", "-n", w.ns, "addr", "del", `${MARKER_ADDRESS}/32`, "dev", "lo"], { allowFail: true });
      }
      if (this.fenceWatched && !w.nftListening) {
        await sh(["ip", "netns", "exec", w.ns, "nft", `add table ${FENCE_FAMILY} ${MARKER_TABLE}; delete table ${FENCE_FAMILY} ${MARKER_TABLE}`], { allowFail: true });
      }
      await sleep(100);
    }
  }

  /**
   * Reads the node's state and makes it the ledger's, then replays what the
   * monitors reported since the read began: what the read already reflects
   * changes nothing when applied again, what came after it is applied on top.
   */
  private async read(w: Watch): Promise<void> {
    w.pending ??= [];
    const r0 = labNow();
    const [address, fence] = await Promise.all([this.readAddress(w), this.readFence(w)]);
    const r1 = labNow();
    const pending = w.pending;
    w.pending = null;
    this.ledger.reset(w.node, r1, { address, ...fenceFacts(fence, this.site.vip, r1) });
    for (const p of pending) if (p.t >= r0) this.ledger.observe(w.node, p.t, p.o);
    this.schedule();
  }

  private async readAddress(w: Watch): Promise<boolean> {
    try {
      const out = await sh(["ip", "-j", "-n", w.ns, "addr", "show", "dev", w.link]);
      return addressesFromIpJson(out).some((a) => a.address === this.site.vip.toLowerCase());
    } catch (e) {
      this.problems.push(`reading the addresses of ${w.node}/${w.link}: ${String(e)}`);
      return false;
    }
  }

  /** vipd's table's sets and chains as listed now; null when there is no such table (or no nft). */
  private async readFence(w: Watch): Promise<FenceListing | null> {
    if (!this.fenceWatched) return null;
    try {
      const text = await sh(["ip", "netns", "exec", w.ns, "nft", "list", "table", FENCE_FAMILY, FENCE_TABLE]);
      return { sets: parseNftTableListing(text), chains: parseNftChainListing(text) };
    } catch (e) {
      if (e instanceof CommandError && /No such file or directory/.test(e.stderr)) return null;
      this.problems.push(`reading vipd's nftables table on ${w.node}: ${String(e)}`);
      return null;
    }
  }

  /** Wakes up at the next fence expiry, so edges and listeners need no one to ask. */
  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const next = this.ledger.nextExpiry();
    if (next === null || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.ledger.advance(labNow());
      this.schedule();
    }, Math.max(0, next - labNow()) + 1);
  }
}
