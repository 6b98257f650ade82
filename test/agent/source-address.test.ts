// A VIP must never become the node's own address: connections the holder
// opens — to etcd, to the API server, to anything — must leave from its node
// address, or they break when the VIP moves. A peer on the segment records
// the source of a connection the holder makes, for IPv4 and IPv6.
//
// The IPv6 VIP is chosen so that it would win RFC 6724's rule 8 (longest
// matching prefix) against the node's own address for this peer: n1 is
// 2001:db8::a, the peer n3 is 2001:db8::c, the VIP 2001:db8::d shares 127
// bits with the peer and n1 only 125. Only a deprecated VIP (rule 3) keeps it
// from being picked.
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Host } from "../lab/netns.ts";
import { sh, waitFor } from "../lab/sh.ts";
import { SmallLab, stopVipd } from "../lab/small-lab.ts";

const V4 = "192.0.2.160";
const V6 = "2001:db8::d";
let lab: SmallLab;
let n1: Host;
let n3: Host;

beforeAll(async () => {
  lab = await SmallLab.start(["n1", "n2", "n3"]);
  [n1, n3] = [lab.host("n1"), lab.host("n3")];
}, 60_000);

afterAll(() => lab?.close(), 30_000);

test("the holder's own connections leave from its node address, not the VIP", async () => {
  expect([n1.ip6, n3.ip6]).toEqual(["2001:db8::a", "2001:db8::c"]);
  const config = lab.write("two.yaml", [V4, V6].map((ip) => `apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: "${ip}"\nlink: eth0\n`).join("---\n"));
  const p = lab.vipd(n1, ["--config", config, "--node-name", "n1", "--etcd-endpoints", "http://127.0.0.1:2379", "--log-format", "json"]);
  // The peer answers every connection with the address it came from.
  const server = lab.spawn(n3, [process.execPath, "-e",
    "Bun.serve({ hostname: '::', port: 8081, fetch: (req, srv) => new Response(srv.requestIP(req)?.address ?? '?') })"]);
  try {
    await waitFor("both VIPs on n1", async () => (await lab.seg.has(n1, V4)) && (await lab.seg.has(n1, V6)), 15_000);
    const seen = (url: string) => sh(["ip", "netns", "exec", n1.ns, "curl", "-sg", "--max-time", "2", "--retry", "20", "--retry-connrefused", "--retry-delay", "0", url]);
    const from4 = await seen(`http://${n3.ip4}:8081/`);
    const from6 = await seen(`http://[${n3.ip6}]:8081/`);
    expect(from4.replace(/^::ffff:/, "")).toBe(n1.ip4);
    expect(from6).toBe(n1.ip6);
    // The VIP is still there, and answers: it is only never chosen as a source.
    expect(await sh(["ip", "netns", "exec", n3.ns, "ping", "-6", "-c1", "-W1", V6])).toContain("1 received");
    const addr = (await lab.seg.addresses(n1)).find((a) => a.local === V6);
    expect(addr?.preferred_life_time).toBe(0);
  } finally {
    server.kill();
    expect((await stopVipd(p)).code).toBe(0);
  }
}, 60_000);
