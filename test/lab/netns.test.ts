import { afterAll, beforeAll, expect, test } from "bun:test";
import { AF_NETLINK, close, getsockname, NETLINK_ROUTE, SOCK_RAW, socket } from "../../src/kernel/ffi/libc.ts";
import { readlinkSync } from "node:fs";
import { inNetns, Segment } from "./netns.ts";

let seg: Segment;
beforeAll(async () => {
  seg = await Segment.create(["a", "b"]);
});
afterAll(async () => {
  await seg?.destroy();
});

test("hosts on the segment reach each other and nothing else", async () => {
  const [a, b] = seg.hosts;
  await seg.exec(a!, ["ping", "-c1", "-W2", b!.ip4]);
  const routes = await seg.ip(a!.ns, "-j", "route", "show", "default");
  expect(JSON.parse(routes)).toEqual([]);
});

test("inNetns opens a socket inside the namespace and returns to the root one", async () => {
  const before = readlinkSync("/proc/thread-self/ns/net");
  const inside = inNetns(seg.hosts[0]!.ns, () => readlinkSync("/proc/thread-self/ns/net"));
  const fd = inNetns(seg.hosts[0]!.ns, () => socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE));
  expect(fd).toBeGreaterThan(0);
  expect(getsockname(fd, new Uint8Array(12))).toBe(12);
  close(fd);
  expect(inside).not.toBe(before);
  expect(readlinkSync("/proc/thread-self/ns/net")).toBe(before);
});

test("destroy removes every namespace it made", async () => {
  const tmp = await Segment.create(["x"]);
  const names = [tmp.switchNs, tmp.host("x").ns];
  await tmp.destroy();
  const list = Bun.spawnSync(["ip", "netns", "list"]).stdout.toString();
  for (const n of names) expect(list).not.toContain(n);
});
