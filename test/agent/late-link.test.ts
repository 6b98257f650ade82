// A VIP's link that does not exist when vipd starts (a macvlan or VLAN that
// networkd creates later, a NIC renamed late). vipd starts anyway, stands
// for nothing on that link and holds nothing there; once the link appears
// and is up it joins the queue and takes the VIP, and when the link goes
// away again it leaves the queue. Seen from the kernel (`ip -j addr`) and
// from etcd's keys.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { etcdRange } from "../lab/etcd-admin.ts";
import type { Host } from "../lab/netns.ts";
import { sh, sleep, waitFor } from "../lab/sh.ts";
import { SmallLab, stopVipd } from "../lab/small-lab.ts";

const VIP = "192.0.2.170";
const LINK = "mv0";

let lab: SmallLab;
let n1: Host;

const site = () => ({ nodes: [{ name: "n1", host: n1 }] });
const queue = async () => (await etcdRange(site(), "n1", `/vipd/elections/${VIP}/`)).map((kv) => kv.key.slice(kv.key.lastIndexOf("/") + 1));
const health = () => sh(["ip", "netns", "exec", n1.ns, "curl", "-s", "--max-time", "1", "-w", " %{http_code}", "http://127.0.0.1:18181/healthz"], { allowFail: true });

beforeAll(async () => {
  lab = await SmallLab.start(["n1"]);
  n1 = lab.host("n1");
}, 60_000);

afterAll(async () => {
  await lab?.close();
}, 30_000);

test("a link that appears after start: nothing held or queued before it; held once it is up; out of the queue when it goes", async () => {
  const file = lab.vipConfig("late.yaml", VIP, LINK);
  const p = lab.vipd(n1, ["--config", file, "--node-name", "n1", "--etcd-endpoints", "http://127.0.0.1:2379", "--health-listen", "127.0.0.1:18181", "--log-format", "json"]);
  try {
    // Running and registered, but standing for nothing: the link is missing.
    await waitFor("vipd registered in etcd", async () => (await etcdRange(site(), "n1", "/vipd/agents/")).length === 1, 20_000);
    await sleep(1000);
    expect(await queue()).toEqual([]);
    expect(await sh(["ip", "netns", "exec", n1.ns, "ip", "-j", "addr", "show", "to", VIP])).not.toContain(VIP);

    // The link appears, down: still nothing.
    await lab.seg.ip(n1.ns, "link", "add", LINK, "link", "eth0", "type", "macvlan", "mode", "bridge");
    await sleep(500);
    expect(await queue()).toEqual([]);
    expect(await lab.seg.has(n1, VIP, LINK)).toBe(false);

    // Up: it stands and holds, on that link.
    await lab.seg.ip(n1.ns, "link", "set", LINK, "up");
    await waitFor("the VIP on mv0", () => lab.seg.has(n1, VIP, LINK), 10_000);
    expect(await queue()).toEqual(["n1"]);
    expect(await lab.seg.has(n1, VIP, "eth0")).toBe(false);
    expect(await health()).toBe("ok\n 200");

    // Gone: out of the queue, and vipd keeps running.
    await lab.seg.ip(n1.ns, "link", "del", LINK);
    await waitFor("n1 out of the queue", async () => (await queue()).length === 0, 10_000);
    expect(p.exitCode).toBeNull();

    // Back again: held again.
    await lab.seg.ip(n1.ns, "link", "add", LINK, "link", "eth0", "type", "macvlan", "mode", "bridge");
    await lab.seg.ip(n1.ns, "link", "set", LINK, "up");
    await waitFor("the VIP on mv0 again", () => lab.seg.has(n1, VIP, LINK), 10_000);
    expect(await queue()).toEqual(["n1"]);
  } finally {
    const r = await stopVipd(p);
    expect(r.code).toBe(0);
  }
  expect(await lab.seg.has(n1, VIP, LINK)).toBe(false);
}, 60_000);
