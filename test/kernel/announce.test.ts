// Root-only: announcements and probes on a lab segment, witnessed by tcpdump
// and by the neighbour caches of another namespace. Nothing here touches the
// root namespace or any address outside the segment.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Announcer, arpProbe, ndpProbe, probeAddress } from "../../src/kernel/announce.ts";
import { KernelError, KernelInputError } from "../../src/kernel/error.ts";
import { formatMac, parseMac } from "../../src/kernel/ip.ts";
import type { LinkRef } from "../../src/kernel/link-ref.ts";
import { NftFence } from "../../src/kernel/nft-fence.ts";
import { PacketSocket } from "../../src/kernel/packet.ts";
import { encodeBpf, neighborAdvertisementFilter } from "../../src/kernel/wire/bpf.ts";
import { decodeArp as arpOrRefusal, Operation, type ArpPacket } from "../../src/kernel/wire/arp.ts";
import { decodeEthernet as ethernetOrRefusal, EtherType } from "../../src/kernel/wire/ethernet.ts";
import { decoded } from "../../src/kernel/wire/hex-fixture.ts";
import { dadSolicitation, decodeNeighborAdvertisement as naOrRefusal, decodeNeighborSolicitation as nsOrRefusal } from "../../src/kernel/wire/ndp.ts";
import { inNetns, Segment, type Host } from "../lab/netns.ts";
import { waitFor } from "../lab/sh.ts";
import { parseIp } from "../../src/kernel/ip.ts";
import { Capture } from "./capture.ts";

const root = process.getuid?.() === 0;

// What vipd sent must decode: a refusal fails the test with its reason.
const decodeEthernet = (b: Uint8Array) => decoded(ethernetOrRefusal(b));
const decodeArp = (b: Uint8Array) => decoded(arpOrRefusal(b));
const decodeNeighborAdvertisement = (b: Uint8Array) => decoded(naOrRefusal(b));
const decodeNeighborSolicitation = (b: Uint8Array) => decoded(nsOrRefusal(b));
const VIP4 = "192.0.2.15";
const VIP6 = "2001:db8::15";
const FAKE_MAC = "02:00:00:00:00:99";

let seg: Segment;
let a: Host;
let b: Host;
let aEth0: LinkRef;
let bMac: string;

/** What another engineer's netlink lookup will produce; here from `ip -j link`. */
async function linkRef(host: Host, name: string): Promise<LinkRef> {
  const [l] = JSON.parse(await seg.ip(host.ns, "-j", "link", "show", "dev", name)) as { ifindex: number; ifname: string; address: string }[];
  return { index: l!.ifindex, name: l!.ifname, mac: parseMac(l!.address)! };
}

/** Runs fn with an Announcer opened inside host's namespace, then closes it. */
async function withAnnouncer<T>(host: Host, link: LinkRef, fn: (an: Announcer) => T | Promise<T>): Promise<T> {
  const an = inNetns(host.ns, () => Announcer.open(link));
  try {
    return await fn(an);
  } finally {
    an.close();
  }
}

/** Captures on b while `act` runs, until `done(frames)` holds. */
async function capture(filter: string, act: () => unknown, done: (frames: Uint8Array[]) => boolean): Promise<{ frames: Uint8Array[]; verbose: string }> {
  const cap = await Capture.start(b.ns, "eth0", filter);
  try {
    await act();
    const frames = await waitFor("captured frames", () => {
      const f = cap.frames().map((x) => x.bytes);
      return done(f) ? f : null;
    }, 3000);
    await cap.stop();
    return { frames, verbose: await cap.verbose() };
  } finally {
    await cap.stop();
    cap.dispose();
  }
}

function arpFrames(frames: Uint8Array[]) {
  return frames.map(decodeEthernet).filter((e) => e.etherType === EtherType.ARP).map((e) => ({ eth: e, arp: decodeArp(e.payload) }));
}

const ipText = (b: Uint8Array) => Array.from(b).join(".");
const isGarp = (arp: ArpPacket, ip: string) => ipText(arp.senderIp) === ip && ipText(arp.targetIp) === ip;

async function neighbourMac(host: Host, ip: string): Promise<string | undefined> {
  const out = JSON.parse(await seg.ip(host.ns, "-j", "neigh", "show", "to", ip, "dev", "eth0")) as { lladdr?: string }[];
  return out[0]?.lladdr;
}

describe.skipIf(!root)("announcements on a lab segment", () => {
  beforeAll(async () => {
    seg = await Segment.create(["a", "b"]);
    a = seg.host("a");
    b = seg.host("b");
    aEth0 = await linkRef(a, "eth0");
    bMac = formatMac((await linkRef(b, "eth0")).mac);
  });
  afterAll(async () => {
    await seg?.destroy();
  });

  test("one IPv4 round is a broadcast gratuitous ARP request and reply from a's MAC", async () => {
    const aMac = formatMac(aEth0.mac);
    const { frames } = await capture(
      `arp and ether src ${aMac}`,
      () => withAnnouncer(a, aEth0, (an) => an.announceOnce(VIP4)),
      (f) => arpFrames(f).filter((x) => isGarp(x.arp, VIP4)).length >= 2,
    );
    const garps = arpFrames(frames).filter((x) => isGarp(x.arp, VIP4));
    expect(garps.map((x) => x.arp.operation).sort()).toEqual([Operation.REQUEST, Operation.REPLY]);
    for (const { eth, arp } of garps) {
      expect(formatMac(eth.destination)).toBe("ff:ff:ff:ff:ff:ff");
      expect(formatMac(eth.source)).toBe(aMac);
      expect(formatMac(arp.senderMac)).toBe(aMac);
      // RFC 5227 §3: zero in the request; RFC 5944 §4.6: our own MAC in the reply.
      expect(formatMac(arp.targetMac)).toBe(arp.operation === Operation.REQUEST ? "00:00:00:00:00:00" : aMac);
    }
    // Padded to the Ethernet minimum (no FCS in captures).
    expect(frames.every((f) => f.length === 60)).toBe(true);
  });

  test("one IPv6 round is an unsolicited NA to all nodes that tcpdump finds well-formed", async () => {
    const aMac = formatMac(aEth0.mac);
    const { frames, verbose } = await capture(
      `icmp6 and ether src ${aMac} and ip6[40] == 136`,
      () => withAnnouncer(a, aEth0, (an) => an.announceOnce(VIP6)),
      (f) => f.length >= 1,
    );
    expect(frames).toHaveLength(1);
    const eth = decodeEthernet(frames[0]!);
    expect(formatMac(eth.destination)).toBe("33:33:00:00:00:01");
    expect(formatMac(eth.source)).toBe(aMac);
    expect(eth.etherType).toBe(EtherType.IPv6);
    const na = decodeNeighborAdvertisement(eth.payload); // also verifies the checksum
    expect(na).toMatchObject({ hopLimit: 255, router: false, solicited: false, override: true });
    expect(formatMac(na.targetMac!)).toBe(aMac);
    expect(Array.from(na.target)).toEqual(Array.from(na.source));
    // tcpdump recomputes the checksum independently of our code.
    expect(verbose).toContain("[icmp6 sum ok]");
    expect(verbose).toContain(`tgt is ${VIP6}, Flags [override]`);
    expect(verbose).toContain(`destination link-address option (2), length 8 (1): ${aMac}`);
    expect(verbose).not.toContain("bad");
  });

  test("a burst sends count rounds intervalMs apart and reports the frames sent", async () => {
    let sent = 0;
    const started = performance.now();
    const { frames } = await capture(
      `arp and ether src ${formatMac(aEth0.mac)}`,
      () => withAnnouncer(a, aEth0, async (an) => (sent = await an.burst(VIP4, { count: 3, intervalMs: 40 }))),
      (f) => f.length >= 6,
    );
    expect(sent).toBe(6);
    expect(frames).toHaveLength(6);
    expect(performance.now() - started).toBeGreaterThanOrEqual(80);
  });

  test("a burst asks its guard before every round and ends quietly when it says no", async () => {
    let sent = 0;
    let asked = 0;
    // Two rounds allowed, then the owner loses its proof (e.g. resumed after a freeze).
    const guard = () => ++asked <= 2;
    const { frames } = await capture(
      `arp and ether src ${formatMac(aEth0.mac)}`,
      () => withAnnouncer(a, aEth0, async (an) => (sent = await an.burst(VIP4, { count: 5, intervalMs: 10, guard }))),
      (f) => f.length >= 4,
    );
    // The burst has resolved: nothing more can follow the 2 rounds × 2 frames.
    expect(sent).toBe(4);
    expect(asked).toBe(3);
    expect(frames).toHaveLength(4);
  });

  test("a burst stops on abort and rejects with the signal's reason", async () => {
    await withAnnouncer(a, aEth0, async (an) => {
      const ctl = new AbortController();
      const p = an.burst(VIP6, { count: 50, intervalMs: 20, signal: ctl.signal });
      setTimeout(() => ctl.abort(new Error("lost leadership")), 30);
      const t0 = performance.now();
      await expect(p).rejects.toThrow("lost leadership");
      expect(performance.now() - t0).toBeLessThan(500);
      const pre = new AbortController();
      pre.abort(new Error("already gone"));
      await expect(an.burst(VIP6, { signal: pre.signal })).rejects.toThrow("already gone");
    });
  });

  test("gratuitous ARP moves b's existing neighbour entry for the VIP to a's MAC", async () => {
    await seg.ip(a.ns, "addr", "add", `${VIP4}/24`, "dev", "eth0");
    try {
      // Linux (arp_accept=0) only updates entries it already has from gratuitous ARP.
      await seg.ip(b.ns, "neigh", "replace", VIP4, "lladdr", FAKE_MAC, "dev", "eth0", "nud", "stale");
      expect(await neighbourMac(b, VIP4)).toBe(FAKE_MAC);
      await withAnnouncer(a, aEth0, (an) => an.announceOnce(VIP4));
      await waitFor("b's entry to point at a", async () => (await neighbourMac(b, VIP4)) === formatMac(aEth0.mac), 2000);
    } finally {
      await seg.ip(a.ns, "addr", "del", `${VIP4}/24`, "dev", "eth0");
    }
  });

  test("an unsolicited NA with O=1 moves b's existing neighbour entry for the VIP to a's MAC", async () => {
    await seg.ip(a.ns, "addr", "add", `${VIP6}/64`, "dev", "eth0", "nodad");
    try {
      await seg.ip(b.ns, "neigh", "replace", VIP6, "lladdr", FAKE_MAC, "dev", "eth0", "nud", "stale");
      expect(await neighbourMac(b, VIP6)).toBe(FAKE_MAC);
      await withAnnouncer(a, aEth0, (an) => an.announceOnce(VIP6));
      await waitFor("b's entry to point at a", async () => (await neighbourMac(b, VIP6)) === formatMac(aEth0.mac), 2000);
    } finally {
      await seg.ip(a.ns, "addr", "del", `${VIP6}/64`, "dev", "eth0");
    }
  });

  test("arpProbe finds exactly the host that owns an address, and nobody for a free one", async () => {
    await seg.ip(b.ns, "addr", "add", "192.0.2.50/24", "dev", "eth0");
    try {
      const [owned] = inNetns(a.ns, () => [arpProbe(aEth0, "192.0.2.50", { timeoutMs: 300 })]);
      expect(await owned!).toEqual([bMac]);
      const [free] = inNetns(a.ns, () => [arpProbe(aEth0, "192.0.2.51", { timeoutMs: 300 })]);
      expect(await free!).toEqual([]);
      // Our own address: we hear our own probe looped back, never count ourselves.
      const [own] = inNetns(a.ns, () => [arpProbe(aEth0, a.ip4, { timeoutMs: 200, probes: 1 })]);
      expect(await own!).toEqual([]);
    } finally {
      await seg.ip(b.ns, "addr", "del", "192.0.2.50/24", "dev", "eth0");
    }
  });

  test("ndpProbe finds exactly the host that owns an IPv6 address, and nobody for a free one", async () => {
    await seg.ip(b.ns, "addr", "add", "2001:db8::50/64", "dev", "eth0", "nodad");
    try {
      const [owned] = inNetns(a.ns, () => [ndpProbe(aEth0, "2001:db8::50", { timeoutMs: 300 })]);
      expect(await owned!).toEqual([bMac]);
      const [free] = inNetns(a.ns, () => [ndpProbe(aEth0, "2001:db8::51", { timeoutMs: 300 })]);
      expect(await free!).toEqual([]);
      // Our own address: our kernel never sees our own solicitation, and our own MAC never counts.
      const [own] = inNetns(a.ns, () => [ndpProbe(aEth0, a.ip6, { timeoutMs: 200, probes: 1 })]);
      expect(await own!).toEqual([]);
    } finally {
      await seg.ip(b.ns, "addr", "del", "2001:db8::50/64", "dev", "eth0");
    }
  });

  test("an IPv6 probe is a DAD solicitation as RFC 4862 asks, which tcpdump finds well-formed", async () => {
    const aMac = formatMac(aEth0.mac);
    const { frames, verbose } = await capture(
      `icmp6 and ether src ${aMac} and ip6[40] == 135`,
      () => inNetns(a.ns, () => [ndpProbe(aEth0, VIP6, { timeoutMs: 100, probes: 1 })])[0],
      (f) => f.length >= 1,
    );
    expect(frames).toHaveLength(1);
    const eth = decodeEthernet(frames[0]!);
    expect(formatMac(eth.destination)).toBe("33:33:ff:00:00:15");
    expect(formatMac(eth.source)).toBe(aMac);
    expect(decodeNeighborSolicitation(eth.payload)).toEqual(dadSolicitation(parseIp(VIP6)!.bytes));
    expect(verbose).toContain("[icmp6 sum ok]");
    expect(verbose).toContain(":: > ff02::1:ff00:15");
    expect(verbose).toContain(`who has ${VIP6}`);
    // RFC 4861 §7.2.2: no source link-layer address from ::.
    expect(verbose).not.toContain("link-address option");
  });

  test("an IPv6 probe's socket filter hands it advertisements only, not the link's other IPv6 traffic", async () => {
    const [filtered, all] = inNetns(a.ns, () => [
      PacketSocket.open(aEth0, EtherType.IPv6, encodeBpf(neighborAdvertisementFilter())),
      PacketSocket.open(aEth0, EtherType.IPv6),
    ]);
    try {
      await seg.exec(b, ["ping", "-6", "-n", "-c", "2", "-i", "0.2", "-W", "1", a.ip6]);
      await withAnnouncer(b, await linkRef(b, "eth0"), (an) => an.announceOnce(VIP6));
      const drain = async (s: PacketSocket) => {
        const payloads: Uint8Array[] = [];
        for (let got = await s.receive("test", performance.now() + 300); got; got = await s.receive("test", performance.now() + 300)) {
          payloads.push(decodeEthernet(got.frame).payload);
        }
        return payloads;
      };
      /** The ICMPv6 type, or minus the next header for anything else (MLD behind a hop-by-hop header). */
      const icmpType = (p: Uint8Array) => (p[6] === 58 ? p[40]! : -p[6]!);
      // b's echo requests (128), solicitations (135) and announcement (136) reach the unfiltered socket...
      expect((await drain(all)).map(icmpType)).toEqual(expect.arrayContaining([128, 135, 136]));
      // ...and advertisements only the filtered one: b's announcement, and any answer of b's to a's solicitations.
      const kept = await drain(filtered);
      expect(kept.map(icmpType).every((t) => t === 136)).toBe(true);
      expect(kept.map((p) => decodeNeighborAdvertisement(p).target)).toContainEqual(parseIp(VIP6)!.bytes);
    } finally {
      filtered.close();
      all.close();
    }
  });

  test("probeAddress probes either family", async () => {
    await seg.ip(b.ns, "addr", "add", "192.0.2.50/24", "dev", "eth0");
    await seg.ip(b.ns, "addr", "add", "2001:db8::50/64", "dev", "eth0", "nodad");
    try {
      const probes = inNetns(a.ns, () => ["192.0.2.50", "2001:db8::50"].map((ip) => probeAddress(aEth0, ip, { timeoutMs: 300 })));
      expect(await Promise.all(probes)).toEqual([[bMac], [bMac]]);
    } finally {
      await seg.ip(b.ns, "addr", "del", "192.0.2.50/24", "dev", "eth0");
      await seg.ip(b.ns, "addr", "del", "2001:db8::50/64", "dev", "eth0");
    }
  });

  test("answers pass the prober's own fence; a fenced owner stays silent until it is proven", async () => {
    const vips = ["192.0.2.50", "2001:db8::50"];
    await seg.ip(b.ns, "addr", "add", "192.0.2.50/24", "dev", "eth0");
    await seg.ip(b.ns, "addr", "add", "2001:db8::50/64", "dev", "eth0", "nodad");
    const aFence = inNetns(a.ns, () => NftFence.open());
    const bFence = inNetns(b.ns, () => NftFence.open());
    const probeBoth = () => Promise.all(inNetns(a.ns, () => vips.map((ip) => probeAddress(aEth0, ip, { timeoutMs: 300 }))));
    try {
      // a guards both VIPs and is proven for neither, like a node that does not hold them.
      await aFence.configure({ vips });
      expect(await probeBoth()).toEqual([[bMac], [bMac]]);
      // b guards them too, unproven: its arp and inet input hooks drop the probes, as they must.
      await bFence.configure({ vips });
      expect(await probeBoth()).toEqual([[], []]);
      // b proven, as a holder is: it answers again.
      const until = performance.now() + 10_000;
      await Promise.all(vips.map((ip) => bFence.allow(ip, () => until)));
      expect(await probeBoth()).toEqual([[bMac], [bMac]]);
    } finally {
      await aFence.remove();
      await bFence.remove();
      aFence.close();
      bFence.close();
      await seg.ip(b.ns, "addr", "del", "192.0.2.50/24", "dev", "eth0");
      await seg.ip(b.ns, "addr", "del", "2001:db8::50/64", "dev", "eth0");
    }
  });

  test("announcements on a macvlan go out with the macvlan's MAC", async () => {
    await seg.ip(a.ns, "link", "add", "mv0", "link", "eth0", "type", "macvlan", "mode", "bridge");
    try {
      await seg.ip(a.ns, "link", "set", "mv0", "up");
      const mv0 = await linkRef(a, "mv0");
      const mvMac = formatMac(mv0.mac);
      expect(mvMac).not.toBe(formatMac(aEth0.mac));
      const { frames } = await capture(
        // Only our frames: the kernel sends its own (DAD, MLD, RS) from a new link.
        `(arp or (icmp6 and ip6[40] == 136)) and ether src ${mvMac}`,
        () => withAnnouncer(a, mv0, (an) => {
          an.announceOnce(VIP4);
          an.announceOnce(VIP6);
        }),
        (f) => f.length >= 3,
      );
      const eths = frames.map(decodeEthernet);
      expect(eths.map((e) => formatMac(e.source))).toEqual([mvMac, mvMac, mvMac]);
      expect(arpFrames(frames).map((x) => formatMac(x.arp.senderMac))).toEqual([mvMac, mvMac]);
      const na = decodeNeighborAdvertisement(eths.find((e) => e.etherType === EtherType.IPv6)!.payload);
      expect(formatMac(na.targetMac!)).toBe(mvMac);
    } finally {
      await seg.ip(a.ns, "link", "del", "mv0");
    }
  });

  test("sending on a link that is down fails with ENETDOWN naming the VIP and link", async () => {
    await seg.ip(a.ns, "link", "add", "mvdown", "link", "eth0", "type", "macvlan", "mode", "bridge");
    try {
      const link = await linkRef(a, "mvdown");
      await withAnnouncer(a, link, async (an) => {
        expect(() => an.announceOnce(VIP4)).toThrow(new KernelError(`announcing ${VIP4} on mvdown`, 100));
        expect(() => an.announceOnce(VIP4)).toThrow("ENETDOWN: announcing 192.0.2.15 on mvdown");
        expect(() => an.announceOnce(VIP6)).toThrow("ENETDOWN: announcing 2001:db8::15 on mvdown");
        await expect(an.burst(VIP4)).rejects.toMatchObject({ code: "ENETDOWN" });
      });
      const [probe] = inNetns(a.ns, () => [arpProbe(link, "192.0.2.50", { timeoutMs: 50 })]);
      await expect(probe!).rejects.toThrow("ENETDOWN: probing 192.0.2.50 on mvdown");
      const [probe6] = inNetns(a.ns, () => [ndpProbe(link, "2001:db8::50", { timeoutMs: 50 })]);
      await expect(probe6!).rejects.toThrow("ENETDOWN: probing 2001:db8::50 on mvdown");
    } finally {
      await seg.ip(a.ns, "link", "del", "mvdown");
    }
  });

  test("a link index that does not exist fails at open with ENODEV", () => {
    const ghost = { index: 99999, name: "ghost0", mac: aEth0.mac };
    expect(() => inNetns(a.ns, () => Announcer.open(ghost))).toThrow("ENODEV: binding a packet socket to ghost0 (index 99999)");
  });

  test("a closed announcer refuses to send", async () => {
    const an = inNetns(a.ns, () => Announcer.open(aEth0));
    an.close();
    an.close(); // idempotent
    expect(() => an.announceOnce(VIP4)).toThrow(/^EBADF: announcing 192.0.2.15 on eth0/);
  });

  test("bad input is refused before any syscall", async () => {
    await withAnnouncer(a, aEth0, async (an) => {
      for (const bad of ["", "vip", "192.0.2.15/32", "192.0.2.256", "fe80::1%eth0"]) {
        expect(() => an.announceOnce(bad)).toThrow(KernelInputError);
      }
      expect(() => an.announceOnce("vip")).toThrow('announcing vip on eth0: "vip" is not an IPv4 or IPv6 address');
      for (const unusable of ["224.0.0.1", "0.0.0.0", "127.0.0.1", "255.255.255.255", "fe80::1", "ff02::1", "::"]) {
        expect(() => an.announceOnce(unusable)).toThrow(/never a VIP/);
      }
      await expect(an.burst("vip")).rejects.toBeInstanceOf(KernelInputError);
      await expect(an.burst(VIP4, { count: 0 })).rejects.toThrow(/burst count 0/);
      await expect(an.burst(VIP4, { intervalMs: -1 })).rejects.toThrow(/burst interval -1/);
    });
    await expect(arpProbe(aEth0, VIP6)).rejects.toThrow(`probing ${VIP6} on eth0: ARP probes IPv4 addresses only`);
    await expect(arpProbe(aEth0, "nope")).rejects.toBeInstanceOf(KernelInputError);
    await expect(arpProbe(aEth0, VIP4, { timeoutMs: 0 })).rejects.toThrow(/timeout 0 ms/);
    await expect(arpProbe(aEth0, VIP4, { probes: 0 })).rejects.toThrow(/probe count 0/);
    await expect(ndpProbe(aEth0, VIP4)).rejects.toThrow(`probing ${VIP4} on eth0: Neighbor Discovery probes IPv6 addresses only`);
    await expect(ndpProbe(aEth0, "fe80::1")).rejects.toThrow(/never a VIP/);
    await expect(ndpProbe(aEth0, VIP6, { timeoutMs: -1 })).rejects.toThrow(/timeout -1 ms/);
    await expect(probeAddress(aEth0, "nope")).rejects.toBeInstanceOf(KernelInputError);
    expect(() => Announcer.open({ ...aEth0, mac: new Uint8Array(20) })).toThrow(KernelInputError);
  });
});
