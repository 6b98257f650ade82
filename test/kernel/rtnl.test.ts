// Rtnl against a real kernel, inside a namespace of its own. Every assertion
// about kernel state reads `ip -j addr` (the kernel's view), not our decoder.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { KernelError, KernelInputError } from "../../src/kernel/error.ts";
import { formatMac } from "../../src/kernel/ip.ts";
import { Rtnl } from "../../src/kernel/rtnl.ts";
import { type Host, inNetns, type KernelAddress, Segment } from "../lab/netns.ts";
import { sleep, waitFor } from "../lab/sh.ts";
import { traceNetlinkSends } from "./sendto-trace.ts";

const isRoot = process.getuid?.() === 0;

let seg: Segment;
let host: Host;
let rtnl: Rtnl;

beforeAll(async () => {
  if (!isRoot) return;
  seg = await Segment.create(["a"]);
  host = seg.host("a");
  rtnl = inNetns(host.ns, () => Rtnl.open());
});

afterAll(async () => {
  rtnl?.close();
  await seg?.destroy();
});

const find = async (ip: string, link = "eth0"): Promise<KernelAddress | undefined> =>
  (await seg.addresses(host, link)).find((a) => a.local === ip);

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error("expected a rejection");
}

describe.skipIf(!isRoot)("Rtnl", () => {
  test("looks up a link in its own namespace", async () => {
    const link = await rtnl.link("eth0");
    const [kernel] = JSON.parse(await seg.ip(host.ns, "-j", "link", "show", "eth0")) as { ifindex: number; address: string; mtu: number }[];
    expect(link.index).toBe(kernel!.ifindex);
    expect(link.name).toBe("eth0");
    expect(formatMac(link.mac)).toBe(kernel!.address);
    expect(link.mtu).toBe(kernel!.mtu);
    expect(link.up).toBe(true);
    expect(link.lowerUp).toBe(true);
    expect(link.operState).toBe("up");
    expect(link.kind).toBe("veth");
    expect(await rtnl.linkByIndex(link.index)).toEqual(link);
  });

  test("lists every link in its own namespace, as `ip link` does", async () => {
    const kernel = JSON.parse(await seg.ip(host.ns, "-j", "link", "show")) as { ifindex: number; ifname: string; address: string }[];
    const links = await rtnl.links();
    expect(links.map((l) => [l.index, l.name, formatMac(l.mac)])).toEqual(kernel.map((k) => [k.ifindex, k.ifname, k.address]));
    expect(links.map((l) => l.name)).toEqual(["lo", "eth0"]);
  });

  test("an absent link is ENODEV naming it", async () => {
    const e = await rejection(rtnl.link("eth9"));
    expect(e).toBeInstanceOf(KernelError);
    expect((e as KernelError).message).toBe("ENODEV: looking up link eth9");
  });

  for (const [family, ip, prefix] of [
    ["IPv4", "192.0.2.15", 32],
    ["IPv6", "2001:db8::15", 128],
  ] as const) {
    test(`${family}: add, refuse a duplicate, refresh, list, delete`, async () => {
      await rtnl.addAddress("eth0", ip, 30);
      const added = await find(ip);
      expect(added?.prefixlen).toBe(prefix);
      expect(added?.valid_life_time).toBeLessThanOrEqual(30);
      expect(added?.valid_life_time).toBeGreaterThan(25);
      expect(added?.preferred_life_time).toBeLessThanOrEqual(30);
      if (family === "IPv6") expect(added?.tentative).toBeUndefined(); // NODAD: usable at once

      const dup = await rejection(rtnl.addAddress("eth0", ip, 30));
      expect(dup).toBeInstanceOf(KernelError);
      expect((dup as KernelError).code).toBe("EEXIST");
      expect((dup as KernelError).message).toStartWith(`EEXIST: adding ${ip}/${prefix} to eth0`);

      await rtnl.replaceAddress("eth0", ip, 300);
      expect((await find(ip))?.valid_life_time).toBeGreaterThan(290);

      const listed = (await rtnl.addresses("eth0")).find((a) => a.address === ip);
      expect(listed).toMatchObject({ family: family === "IPv4" ? 4 : 6, prefixLength: prefix });
      expect(listed!.validLifetime).toBeGreaterThan(290);
      expect(listed!.validLifetime).toBeLessThanOrEqual(300);
      // The segment's own /24 and /64 are listed too, forever.
      expect((await rtnl.addresses("eth0")).some((a) => a.address === host.ip4 && a.validLifetime === Infinity)).toBe(true);

      expect(await rtnl.deleteAddress("eth0", ip)).toBe(true);
      expect(await find(ip)).toBeUndefined();
      expect(await rtnl.deleteAddress("eth0", ip)).toBe(false);
    });
  }

  test("replaceAddress adds an address that is not there", async () => {
    await rtnl.replaceAddress("eth0", "192.0.2.16", 30);
    expect((await find("192.0.2.16"))?.valid_life_time).toBeLessThanOrEqual(30);
    expect(await rtnl.deleteAddress("eth0", "192.0.2.16")).toBe(true);
  });

  test("an address with a 2 s lifetime disappears by itself within 4 s", async () => {
    await rtnl.addAddress("eth0", "192.0.2.20", 2);
    await rtnl.addAddress("eth0", "2001:db8::20", 2);
    expect(await find("192.0.2.20")).toBeDefined();
    await waitFor("192.0.2.20 and 2001:db8::20 to expire", async () => !(await find("192.0.2.20")) && !(await find("2001:db8::20")), 4000, 50);
  });

  test("refreshing keeps an address past its first lifetime", async () => {
    await rtnl.addAddress("eth0", "192.0.2.21", 2);
    await sleep(1000);
    await rtnl.replaceAddress("eth0", "192.0.2.21", 3);
    await sleep(2500); // well past the first 2 s
    expect(await find("192.0.2.21")).toBeDefined();
    expect(await rtnl.deleteAddress("eth0", "192.0.2.21")).toBe(true);
  });

  test("the address of a SIGKILLed holder disappears by itself", async () => {
    const proc = Bun.spawn(
      ["ip", "netns", "exec", host.ns, "node_modules/.bin/bun", "test/kernel/fixtures/add-and-hang.ts", "eth0", "192.0.2.77", "2"],
      { stdout: "pipe", stderr: "inherit" },
    );
    try {
      const reader = proc.stdout.getReader();
      let out = "";
      while (!out.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`fixture exited before adding: ${out}`);
        out += new TextDecoder().decode(value);
      }
      expect(out).toStartWith("added 192.0.2.77");
      expect(await find("192.0.2.77")).toBeDefined();
      process.kill(proc.pid, "SIGKILL");
      await proc.exited;
      expect(proc.signalCode).toBe("SIGKILL");
      await waitFor("192.0.2.77 to expire after SIGKILL", async () => !(await find("192.0.2.77")), 4000, 50);
    } finally {
      if (proc.exitCode === null && proc.signalCode === null) process.kill(proc.pid, "SIGKILL");
    }
  });

  test("works on a macvlan link", async () => {
    await seg.ip(host.ns, "link", "add", "mv0", "link", "eth0", "type", "macvlan", "mode", "bridge");
    await seg.ip(host.ns, "link", "set", "mv0", "up");
    try {
      const link = await rtnl.link("mv0");
      expect(link.kind).toBe("macvlan");
      await rtnl.addAddress("mv0", "192.0.2.50", 30);
      await rtnl.addAddress("mv0", "2001:db8::50", 30);
      expect((await find("192.0.2.50", "mv0"))?.prefixlen).toBe(32);
      expect((await find("2001:db8::50", "mv0"))?.prefixlen).toBe(128);
      expect((await rtnl.addresses(link.index)).map((a) => a.address)).toEqual(expect.arrayContaining(["192.0.2.50", "2001:db8::50"]));
      expect(await rtnl.deleteAddress("mv0", "192.0.2.50")).toBe(true);
      expect(await rtnl.deleteAddress("mv0", "2001:db8::50")).toBe(true);
      expect(await find("192.0.2.50", "mv0")).toBeUndefined();
    } finally {
      await seg.ip(host.ns, "link", "del", "mv0");
    }
  });

  test("refreshes asked for together leave in one datagram, and each is answered on its own", async () => {
    // strace stops the process at every syscall, so each sendto looks slow
    // and a refresh would be sent again (netlink.test.ts tests that); a
    // clock that stands still keeps resends out of a test about batching.
    const batched = inNetns(host.ns, () => Rtnl.open({ clock: () => 0 }));
    try {
      const eth0 = (await batched.link("eth0")).index;
      // "ghost" stands for a link the watch still knows under an index the kernel has dropped.
      batched.useLinkIndex((name) => (name === "eth0" ? eth0 : name === "ghost" ? 0x7ffffff0 : null));
      const ips = Array.from({ length: 40 }, (_, i) => (i % 2 ? `2001:db8::1:${i}` : `192.0.2.${150 + i}`));
      const first = await traceNetlinkSends(() => Promise.all(ips.map((ip) => batched.replaceAddress("eth0", ip, () => 30))), host.ns);
      // No lookup by name, and one sendto for all forty.
      expect(first.sends).toEqual([{ protocol: "ROUTE", types: ips.map(() => "RTM_NEWADDR") }]);
      const kernel = new Map((await seg.addresses(host)).map((a) => [a.local, a]));
      for (const ip of ips) {
        expect(kernel.get(ip)?.valid_life_time).toBeGreaterThan(25);
        expect(kernel.get(ip)?.valid_life_time).toBeLessThanOrEqual(30);
      }

      // One refusal (no such link), one refresh whose lifetime ran out before
      // the datagram left: the other two still go through, in one datagram.
      const second = await traceNetlinkSends(() =>
        Promise.allSettled([
          batched.replaceAddress("eth0", ips[0]!, () => 300),
          batched.replaceAddress("ghost", "192.0.2.199", () => 300),
          batched.replaceAddress("eth0", ips[1]!, () => null),
          batched.replaceAddress("eth0", ips[3]!, () => 300),
        ]),
        host.ns,
      );
      const outcomes = second.result;
      expect(outcomes.map((o) => o.status)).toEqual(["fulfilled", "rejected", "rejected", "fulfilled"]);
      const ghost = (outcomes[1] as PromiseRejectedResult).reason;
      expect(ghost).toBeInstanceOf(KernelError);
      expect((ghost as KernelError).code).toBe("ENODEV");
      expect((ghost as KernelError).message).toStartWith("ENODEV: refreshing 192.0.2.199/32 on ghost");
      const expired = (outcomes[2] as PromiseRejectedResult).reason;
      expect(expired).toBeInstanceOf(KernelInputError);
      expect((expired as KernelInputError).message).toBe(`refreshing ${ips[1]}/128 on eth0: no lifetime left: not sent`);
      expect(second.sends).toEqual([{ protocol: "ROUTE", types: ["RTM_NEWADDR", "RTM_NEWADDR", "RTM_NEWADDR"] }]);
      const after = new Map((await seg.addresses(host)).map((a) => [a.local, a]));
      expect(after.get(ips[0]!)?.valid_life_time).toBeGreaterThan(290);
      expect(after.get(ips[3]!)?.valid_life_time).toBeGreaterThan(290);
      // Not refreshed: still the first lifetime.
      expect(after.get(ips[1]!)?.valid_life_time).toBeLessThanOrEqual(30);
      expect(after.has("192.0.2.199")).toBe(false);
    } finally {
      await seg.ip(host.ns, "addr", "flush", "dev", "eth0", "to", "192.0.2.128/25");
      await seg.ip(host.ns, "addr", "flush", "dev", "eth0", "to", "2001:db8::1:0/112");
      batched.close();
    }
  });

  test("removals asked for together leave in one datagram, and each is answered on its own", async () => {
    // A clock that stands still, as above: a slow send is never sent again
    // here anyway (a removal carries nothing read from the clock).
    const batched = inNetns(host.ns, () => Rtnl.open({ clock: () => 0 }));
    const ips = Array.from({ length: 40 }, (_, i) => (i % 2 ? `2001:db8::2:${i}` : `192.0.2.${192 + i / 2}`));
    try {
      const eth0 = (await batched.link("eth0")).index;
      batched.useLinkIndex((name) => (name === "eth0" ? eth0 : name === "ghost" ? 0x7ffffff0 : null));
      await Promise.all(ips.map((ip) => batched.replaceAddress("eth0", ip, () => 30)));
      // Two of them are gone already; one link the watch still knows is not the kernel's any more.
      await batched.deleteAddress("eth0", ips[0]!);
      await batched.deleteAddress("eth0", ips[1]!);
      const traced = await traceNetlinkSends(() =>
        Promise.allSettled([...ips.map((ip) => batched.deleteAddress("eth0", ip)), batched.deleteAddress("ghost", "192.0.2.99")]),
        host.ns,
      );
      // No lookup by name, and one sendto for all forty-one.
      expect(traced.sends).toEqual([{ protocol: "ROUTE", types: [...ips, "ghost"].map(() => "RTM_DELADDR") }]);
      const outcomes = traced.result;
      expect(outcomes.slice(0, 40).map((o) => (o.status === "fulfilled" ? o.value : o.reason))).toEqual(ips.map((_, i) => i >= 2));
      const ghost = outcomes[40]!;
      expect(ghost.status).toBe("rejected");
      expect((ghost as PromiseRejectedResult).reason).toBeInstanceOf(KernelError);
      expect(((ghost as PromiseRejectedResult).reason as KernelError).code).toBe("ENODEV");
      expect(((ghost as PromiseRejectedResult).reason as KernelError).message).toStartWith("ENODEV: removing 192.0.2.99/32 from ghost");
      const left = new Set((await seg.addresses(host)).map((a) => a.local));
      expect(ips.filter((ip) => left.has(ip))).toEqual([]);
    } finally {
      await seg.ip(host.ns, "addr", "flush", "dev", "eth0", "to", "192.0.2.192/27");
      await seg.ip(host.ns, "addr", "flush", "dev", "eth0", "to", "2001:db8::2:0/112");
      batched.close();
    }
  });

  test("bad input is refused with typed errors and leaves nothing behind", async () => {
    const before = await seg.addresses(host);

    const noLink = await rejection(rtnl.addAddress("eth9", "192.0.2.30", 30));
    expect(noLink).toBeInstanceOf(KernelError);
    expect((noLink as KernelError).code).toBe("ENODEV");
    expect((noLink as KernelError).message).toContain("adding 192.0.2.30/32 to eth9");
    const noLinkDel = await rejection(rtnl.deleteAddress("eth9", "192.0.2.30"));
    expect((noLinkDel as KernelError).code).toBe("ENODEV");

    for (const bad of ["192.0.2.300", "192.0.2.30/32", "", "eth0"]) {
      const e = await rejection(rtnl.addAddress("eth0", bad, 30));
      expect(e).toBeInstanceOf(KernelInputError);
      expect((e as KernelInputError).operation).toBe(`adding ${bad} to eth0`);
      expect(await rejection(rtnl.deleteAddress("eth0", bad))).toBeInstanceOf(KernelInputError);
    }
    for (const lifetime of [0, -1, 1.5, Number.NaN, Infinity, 2 ** 32 - 1]) {
      const e = await rejection(rtnl.addAddress("eth0", "192.0.2.30", lifetime));
      expect(e).toBeInstanceOf(KernelInputError);
      expect((e as KernelInputError).message).toStartWith("adding 192.0.2.30/32 to eth0: lifetime");
      expect(await rejection(rtnl.replaceAddress("eth0", "2001:db8::30", lifetime))).toBeInstanceOf(KernelInputError);
    }
    expect(await rejection(rtnl.link("a-name-too-long-for-linux"))).toBeInstanceOf(KernelInputError);

    expect(await seg.addresses(host)).toEqual(before);
  });
});
