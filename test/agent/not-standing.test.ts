// Issue 19 item 1: a VIP whose link does not exist (a wrong link name, a
// NIC that has not come up). vipd runs and talks to etcd, but stands for
// nothing; /healthz (503) and /status say so and name the link, `vipd wait
// --for standing` (and `--for healthy`) times out naming the VIP and why.
// Once the link appears (a second NIC plugged into the segment: a veth in
// the node's namespace), down at first, then up, the node stands and the
// same wait returns. Seen from the agent's endpoints, from etcd's keys and
// from the kernel (`ip -j addr`).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { REPO_ROOT } from "../lab/cluster.ts";
import { etcdRange } from "../lab/etcd-admin.ts";
import type { Host } from "../lab/netns.ts";
import { sh, sleep, waitFor } from "../lab/sh.ts";
import { SmallLab, stopVipd } from "../lab/small-lab.ts";

const VIP = "192.0.2.175";
const LINK = "vx0";
const PORT = 18211;

let lab: SmallLab;
let n1: Host;

const site = () => ({ nodes: [{ name: "n1", host: n1 }] });
const queue = async () => (await etcdRange(site(), "n1", `/vipd/elections/${VIP}/`)).map((kv) => kv.key.slice(kv.key.lastIndexOf("/") + 1));
/** GET from inside n1's namespace: status and body. */
async function http(path: string): Promise<{ code: number; body: string }> {
  const out = await sh(["ip", "netns", "exec", n1.ns, "curl", "-s", "--max-time", "1", "-w", "\n%{http_code}", `http://127.0.0.1:${PORT}${path}`], { allowFail: true });
  const at = out.lastIndexOf("\n");
  return { code: Number(out.slice(at + 1)), body: out.slice(0, at).trimEnd() };
}
/** `vipd wait` from source, in n1's namespace, against n1's agent. */
async function vipdWait(what: string, timeoutS: number): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn(["ip", "netns", "exec", n1.ns, process.execPath, join(REPO_ROOT, "src", "main.ts"), "wait", "--for", what,
    "--health-listen", `127.0.0.1:${PORT}`, "--timeout", String(timeoutS)], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}

beforeAll(async () => {
  lab = await SmallLab.start(["n1"]);
  n1 = lab.host("n1");
}, 60_000);

afterAll(async () => {
  await lab?.close();
}, 30_000);

test("a VIP on a missing link: /healthz 503 and /status name the link, vipd wait --for standing times out naming it; once the link is there and up the wait returns", async () => {
  const p = lab.vipd(n1, ["--config", lab.vipConfig("vip.yaml", VIP, LINK), "--node-name", "n1", "--etcd-endpoints", "http://127.0.0.1:2379",
    "--health-listen", `127.0.0.1:${PORT}`, "--log-format", "json"]);
  try {
    await waitFor("vipd registered in etcd", async () => (await etcdRange(site(), "n1", "/vipd/agents/")).length === 1, 20_000);
    const missing = `${VIP} not standing: link ${LINK} missing`;
    // Until its first heartbeat commits /healthz names that; then the link.
    await waitFor("/healthz naming the missing link", async () => (await http("/healthz")).body === missing, 10_000);
    expect(await http("/healthz")).toEqual({ code: 503, body: missing });
    const status = JSON.parse((await http("/status")).body) as { vips: { ip: string; role: string; owner: boolean; standing: boolean; standingReason: string }[] };
    expect(status.vips).toEqual([expect.objectContaining({ ip: VIP, role: "out", owner: false, standing: false, standingReason: `not standing: link ${LINK} missing` })]);
    expect(await queue()).toEqual([]);

    const standing = await vipdWait("standing", 2);
    expect(standing).toEqual({ code: 1, out: "", err: `vipd wait: not standing after 2 s: ${missing}\n` });
    // The wait cloud-init used to run no longer passes such a node either.
    const healthy = await vipdWait("healthy", 1);
    expect(healthy).toEqual({ code: 1, out: "", err: `vipd wait: not healthy after 1 s: /healthz answered 503: ${missing}\n` });

    // The link appears, down (a second NIC on the segment, not brought up yet): named as down.
    const port = `p-n1-${LINK}`;
    await lab.seg.ip(lab.seg.switchNs, "link", "add", port, "type", "veth", "peer", "name", LINK, "netns", n1.ns);
    await lab.seg.ip(lab.seg.switchNs, "link", "set", port, "master", "br0", "up");
    await waitFor("/healthz naming the link as down", async () => (await http("/healthz")).body === `${VIP} not standing: link ${LINK} down`, 5000);
    expect((await http("/healthz")).code).toBe(503);
    expect(await queue()).toEqual([]);

    // Up, while a wait is under way: the node stands, and the wait returns.
    const waiting = vipdWait("standing", 20);
    await sleep(1000);
    await lab.seg.ip(n1.ns, "link", "set", LINK, "up");
    const stood = await waiting;
    expect(stood.code).toBe(0);
    expect(stood.err).toBe("");
    // Alone, it is first in the queue at once and holding a moment later: either is standing.
    expect(stood.out).toMatch(new RegExp(`^vipd on 127\\.0\\.0\\.1:${PORT}: standing for ${VIP.replaceAll(".", "\\.")} \\((first in the queue|holding)\\)\n$`));
    expect(await queue()).toEqual(["n1"]);
    await waitFor("the VIP on vx0", () => lab.seg.has(n1, VIP, LINK), 10_000);
    expect(await http("/healthz")).toEqual({ code: 200, body: "ok" });
    const after = JSON.parse((await http("/status")).body) as { vips: { standing: boolean; standingReason: string }[] };
    expect(after.vips).toEqual([expect.objectContaining({ standing: true, standingReason: "holding" })]);
  } finally {
    const r = await stopVipd(p);
    expect(r.code).toBe(0);
  }
  expect(await lab.seg.has(n1, VIP, LINK)).toBe(false);
}, 90_000);
