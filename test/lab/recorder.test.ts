// The ownership witness against a real kernel: two scratch namespaces on a
// bridge, the VIP's address and a vipd-like nftables fence changed by hand
// with the ip and nft CLIs, and the recorded edges checked — including a
// proven element that expires on its own, with no event at all. Needs root;
// skipped without it.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { labNow, spawnInNetns } from "./cluster.ts";
import { type Host, Segment } from "./netns.ts";
import type { OwnershipEdge } from "./ownership.ts";
import { OwnershipRecorder, type RecorderSite } from "./recorder.ts";
import { sh, sleep, waitFor } from "./sh.ts";

const isRoot = process.getuid?.() === 0;
const VIP = "192.0.2.100";

let seg: Segment;
let dir: string;
let rec: OwnershipRecorder;
let a: Host;
let b: Host;
const seen: OwnershipEdge[] = [];

const ip = (h: Host, ...args: string[]) => sh(["ip", "-n", h.ns, ...args]);
const nft = (h: Host, script: string) => sh(["ip", "netns", "exec", h.ns, "nft", script]);
/** Runs fn and returns the lab-clock window it ran in. */
async function timed(fn: () => Promise<unknown>): Promise<{ from: number; to: number }> {
  const from = labNow();
  await fn();
  return { from, to: labNow() };
}
/** The output chain as vipd lays it out: hooked, three rules (the witness counts them). */
const OUTPUT_CHAIN = `chain output {
    type filter hook output priority raw; policy accept;
    ip saddr @vips4 ip saddr != @proven4 drop
    ip6 saddr @vips6 ip6 saddr != @proven6 drop
    icmpv6 type nd-neighbor-advert ip6 saddr @vips6 drop
  }`;
/** The fence as vipd lays it out (src/kernel/nft-fence.ts); the ND rules simplified, the witness does not read them. */
const FENCE = `table inet vipd {
  set vips4 { type ipv4_addr; flags constant; elements = { ${VIP} } }
  set vips6 { type ipv6_addr; flags constant; }
  set proven4 { type ipv4_addr; flags timeout; }
  set proven6 { type ipv6_addr; flags timeout; }
  chain input {
    type filter hook input priority raw; policy accept;
    ip daddr @vips4 ip daddr != @proven4 drop
    ip6 daddr @vips6 ip6 daddr != @proven6 drop
    icmpv6 type nd-neighbor-solicit ip6 daddr @vips6 drop
  }
  ${OUTPUT_CHAIN}
}`;
/** The monitors' latency allowance: a line arrives within a few ms of the change. */
const LATE_MS = 50;

const edgesOf = (node: string, since: number) => rec.edges.filter((e) => e.node === node && e.t >= since).map((e) => e.held);

describe.skipIf(!isRoot)("the ownership witness on a real kernel", () => {
  beforeAll(async () => {
    seg = await Segment.create(["a", "b"]);
    [a, b] = [seg.host("a"), seg.host("b")];
    dir = mkdtempSync(join(tmpdir(), "vipd-witness-"));
    // b starts with the address and a fence proving it for a minute: the first read must see it held.
    await nft(b, FENCE);
    await nft(b, `add element inet vipd proven4 { ${VIP} timeout 60s }`);
    await ip(b, "addr", "add", `${VIP}/32`, "dev", "eth0");
    const site: RecorderSite = { vip: VIP, dir, nodes: seg.hosts.map((h) => ({ name: h.name, host: h })), spawnIn: spawnInNetns };
    rec = await OwnershipRecorder.start(site);
    rec.onEdge((e) => seen.push(e));
  }, 30_000);

  afterAll(async () => {
    await rec?.close();
    await seg?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("the first read sees what is already there", () => {
    expect(rec.holders()).toEqual(["b"]);
    expect(rec.addressHolders()).toEqual(["b"]);
    expect(rec.fenceWatched).toBe(true);
  });

  test("without a fence table the address decides: add and delete by hand are the edges, stamped as they happen", async () => {
    const add = await timed(() => ip(a, "addr", "add", `${VIP}/32`, "dev", "eth0"));
    await waitFor("a holds", () => rec.isHeld("a"), 2000, 5);
    const del = await timed(() => ip(a, "addr", "del", `${VIP}/32`, "dev", "eth0"));
    await waitFor("a released", () => !rec.isHeld("a"), 2000, 5);
    const mine = rec.edges.filter((e) => e.node === "a");
    expect(mine.map((e) => e.held)).toEqual([true, false]);
    expect(mine[0]!.t).toBeGreaterThanOrEqual(add.from);
    expect(mine[0]!.t).toBeLessThanOrEqual(add.to + LATE_MS);
    expect(mine[1]!.t).toBeGreaterThanOrEqual(del.from);
    expect(mine[1]!.t).toBeLessThanOrEqual(del.to + LATE_MS);
    expect(seen.filter((e) => e.node === "a").map((e) => e.held)).toEqual([true, false]);
    console.log(`address edges stamped ${(mine[0]!.t - add.to).toFixed(1)} ms and ${(mine[1]!.t - del.to).toFixed(1)} ms after \`ip addr add/del\` returned`);
  });

  test("a proven element that expires on its own releases at its expiry, without anyone asking", async () => {
    const since = labNow();
    // Replace b's minute-long proof by one of 800 ms, then do nothing at all.
    const refresh = await timed(() => nft(b, `add element inet vipd proven4 { ${VIP} timeout 800ms expires 800ms }`));
    // No edge for the refresh: b held before and still holds.
    await sleep(300);
    expect(edgesOf("b", since)).toEqual([]);
    // The listener hears of the release by itself, stamped at the expiry rather than when it fired.
    await waitFor("b's release reported", () => seen.some((e) => e.node === "b" && !e.held && e.t >= since), 3000, 10);
    const release = seen.find((e) => e.node === "b" && !e.held && e.t >= since)!;
    // The kernel's timeout is in jiffies: 800 ms may come back a few ms shorter.
    expect(release.t).toBeGreaterThanOrEqual(refresh.from + 800 - 10);
    expect(release.t).toBeLessThanOrEqual(refresh.to + 800 + LATE_MS);
    console.log(`fence expiry stamped ${(release.t - refresh.from).toFixed(1)}–${(release.t - refresh.to).toFixed(1)} ms after the 800 ms element was added`);
    // The address is still there, fenced; the kernel agrees that the element is gone.
    expect(rec.hasAddress("b")).toBe(true);
    expect(rec.holders()).toEqual([]);
    expect(await sh(["ip", "netns", "exec", b.ns, "nft", "list", "set", "inet", "vipd", "proven4"])).not.toContain(VIP);
    const fenced = rec.addressIntervals(since, labNow()).get("b")!;
    const held = rec.intervals(since, labNow()).get("b")!;
    expect(fenced).toEqual([{ start: since, end: expect.any(Number) }]);
    expect(held).toEqual([{ start: since, end: release.t }]);
  });

  test("proving, un-proving and a whole vipd-style transaction by hand", async () => {
    const since = labNow();
    await nft(b, `add element inet vipd proven4 { ${VIP} timeout 5s expires 5s }`);
    await waitFor("b proven", () => rec.isHeld("b"), 2000, 5);
    // vipd's refresh on older kernels: ensure, delete, re-add in one transaction. No gap.
    await nft(b, `add element inet vipd proven4 { ${VIP} timeout 10ms expires 10ms }; delete element inet vipd proven4 { ${VIP} }; add element inet vipd proven4 { ${VIP} timeout 5s expires 5s }`);
    await sleep(200);
    expect(edgesOf("b", since)).toEqual([true]);
    await nft(b, `delete element inet vipd proven4 { ${VIP} }`);
    await waitFor("b fenced", () => !rec.isHeld("b"), 2000, 5);
    // Without vipd's table the fence is gone and the address decides again.
    await nft(b, "delete table inet vipd");
    await waitFor("b unfenced", () => rec.isHeld("b"), 2000, 5);
    expect(edgesOf("b", since)).toEqual([true, false, true]);
    await ip(b, "addr", "del", `${VIP}/32`, "dev", "eth0");
    await waitFor("b released", () => !rec.isHeld("b"), 2000, 5);
    expect(rec.holders()).toEqual([]);
    expect(rec.overruns).toBe(0);
    expect(rec.problems).toEqual([]);
  });

  test("sets fence nothing without their chains: a deleted or flushed chain makes a fenced node a holder", async () => {
    const since = labNow();
    await nft(b, FENCE);
    await ip(b, "addr", "add", `${VIP}/32`, "dev", "eth0");
    await sleep(200);
    expect(rec.isHeld("b")).toBe(false);
    // The VIP is still guarded and unproven in the sets; the kernel no longer looks.
    await nft(b, "delete chain inet vipd output");
    await waitFor("b unfenced by the deleted chain", () => rec.isHeld("b"), 2000, 5);
    await nft(b, `table inet vipd {\n  ${OUTPUT_CHAIN}\n}`);
    await waitFor("b fenced by the chain rebuilt", () => !rec.isHeld("b"), 2000, 5);
    await nft(b, "flush chain inet vipd input");
    await waitFor("b unfenced by the flushed chain", () => rec.isHeld("b"), 2000, 5);
    expect(edgesOf("b", since)).toEqual([true, false, true]);
    await nft(b, "delete table inet vipd");
    await ip(b, "addr", "del", `${VIP}/32`, "dev", "eth0");
    await waitFor("b released", () => !rec.isHeld("b"), 2000, 5);
    expect(rec.overruns).toBe(0);
    expect(rec.problems).toEqual([]);
  });

  test("close() stops the monitors", async () => {
    const before = (await sh(["ip", "netns", "pids", a.ns])).trim().split("\n").filter(Boolean);
    expect(before.length).toBeGreaterThanOrEqual(2);
    await rec.close();
    expect((await sh(["ip", "netns", "pids", a.ns])).trim()).toBe("");
    expect(rec.problems).toEqual([]);
  });
});
