// The VIP's own link loses carrier while etcd stays reachable over another
// link: README ("Losing for any reason (... link down ...) closes the fence
// and removes the address first, then tells etcd — and telling etcd hands the
// VIP over at once"; the `link-down` release). Each node has eth0, which
// carries etcd, and vip0, a second cable to a second bridge, which carries
// only the VIP. Pulling the holder's vip0 cable at the switch leaves its link
// administratively up without carrier, as a dead switch port would. The
// witness is the recorder's `ip monitor` / `nft monitor` on vip0 in each
// node; the queue is read from etcd.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { labNow, spawnInNetns } from "../lab/cluster.ts";
import { CI_ALLOWANCE, vipdBounds } from "../lab/bounds.ts";
import { etcdRange } from "../lab/etcd-admin.ts";
import type { Host } from "../lab/netns.ts";
import { OwnershipRecorder } from "../lab/recorder.ts";
import { waitFor } from "../lab/sh.ts";
import { SmallLab, stopVipd } from "../lab/small-lab.ts";
import { overlap } from "../lab/stats.ts";

const VIP = "192.0.2.180";
const LINK = "vip0";
const PREFIX = "/vipd/";
const HANDOVER_MS = vipdBounds().gracefulMs + CI_ALLOWANCE.gracefulMs;

let lab: SmallLab;
let n1: Host;
let n2: Host;

const site = () => ({ nodes: [{ name: "n1", host: n1 }, { name: "n2", host: n2 }] });
/** The VIP's queue as etcd holds it, first in line first. */
const queue = async () =>
  (await etcdRange(site(), "n2", `${PREFIX}elections/${VIP}/`)).sort((a, b) => a.createRevision - b.createRevision).map((kv) => kv.key.slice(kv.key.lastIndexOf("/") + 1));
/** Agents registered in etcd (their sessions are alive). */
const agents = async () => (await etcdRange(site(), "n2", `${PREFIX}agents/`)).map((kv) => kv.key.slice(kv.key.lastIndexOf("/") + 1)).sort();
/** The switch end of a host's vip0 cable. */
const port = (h: Host) => `q-${h.name}`;

beforeAll(async () => {
  lab = await SmallLab.start(["n1", "n2"]);
  [n1, n2] = [lab.host("n1"), lab.host("n2")];
  // A second bridge in the switch namespace, and a second cable from each node to it.
  const sw = lab.seg.switchNs;
  await lab.seg.ip(sw, "link", "add", "br1", "type", "bridge");
  await lab.seg.ip(sw, "link", "set", "br1", "type", "bridge", "forward_delay", "0", "stp_state", "0");
  await lab.seg.ip(sw, "link", "set", "br1", "up");
  for (const h of [n1, n2]) {
    await lab.seg.ip(sw, "link", "add", port(h), "type", "veth", "peer", "name", LINK, "netns", h.ns);
    await lab.seg.ip(sw, "link", "set", port(h), "master", "br1", "up");
    await lab.seg.ip(h.ns, "link", "set", LINK, "up");
  }
}, 60_000);

afterAll(async () => {
  await lab?.close();
}, 30_000);

test("the holder's VIP link loses carrier, etcd's link does not: it gives the VIP up at once, the next node takes it, and it stays there when carrier returns", async () => {
  const file = lab.vipConfig("vip.yaml", VIP, LINK);
  const start = (host: Host, port: number) =>
    lab.vipd(host, ["--config", file, "--node-name", host.name, "--etcd-endpoints", "http://127.0.0.1:2379", "--health-listen", `127.0.0.1:${port}`, "--log-format", "json"]);
  const p1 = start(n1, 18191);
  await waitFor("n1 holding the VIP", () => lab.seg.has(n1, VIP, LINK), 20_000);
  const p2 = start(n2, 18192);
  await waitFor("n2 queued behind n1", async () => (await queue()).join(",") === "n1,n2", 20_000);
  const recorder = await OwnershipRecorder.start({
    vip: VIP, dir: lab.dir, spawnIn: spawnInNetns,
    nodes: [n1, n2].map((h) => ({ name: h.name, host: { ns: h.ns, link: LINK } })),
  });
  try {
    expect(recorder.holders()).toEqual(["n1"]);
    const t0 = labNow();

    await lab.seg.ip(lab.seg.switchNs, "link", "set", port(n1), "down");
    // Carrier lost, not the link taken down: vip0 is still up on n1.
    const [link] = JSON.parse(await lab.seg.ip(n1.ns, "-j", "link", "show", LINK)) as { flags: string[]; operstate: string }[];
    expect(link!.flags).toEqual(expect.arrayContaining(["UP", "NO-CARRIER"]));
    expect(link!.operstate).toBe("DOWN");

    await waitFor("n2 alone holding the VIP", () => (recorder.holders().join(",") === "n2" ? true : null), 10_000, 5);
    const handoverMs = labNow() - t0;
    console.log(`carrier lost on n1's ${LINK}: n2 holds the VIP after ${Math.round(handoverMs)} ms`);
    // A hand-over, not a takeover after n1's silence (which would take the hold time).
    expect(handoverMs).toBeLessThanOrEqual(HANDOVER_MS);
    expect(await lab.seg.has(n1, VIP, LINK)).toBe(false);
    expect(await lab.seg.has(n2, VIP, LINK)).toBe(true);
    // n1 left the queue, but its session lives on over eth0.
    await waitFor("n2 alone in the queue", async () => (await queue()).join(",") === "n2", 5000);
    expect(await agents()).toEqual(["n1", "n2"]);
    expect(p1.exitCode).toBeNull();

    // Carrier back: n1 stands again, behind n2, and takes nothing back.
    await lab.seg.ip(lab.seg.switchNs, "link", "set", port(n1), "up");
    await waitFor("n1 queued behind n2", async () => (await queue()).join(",") === "n2,n1", 15_000);
    expect(recorder.holders()).toEqual(["n2"]);
    expect(await lab.seg.has(n1, VIP, LINK)).toBe(false);

    const now = labNow();
    expect(overlap(recorder.intervals(t0, now)).total).toBe(0);
    expect(overlap(recorder.addressIntervals(t0, now)).total).toBe(0);
    expect(recorder.problems).toEqual([]);
  } finally {
    await recorder.close();
    for (const p of [p2, p1]) expect((await stopVipd(p)).code).toBe(0);
  }
}, 90_000);
