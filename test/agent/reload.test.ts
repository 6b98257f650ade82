// Live reload against real etcd, seen from the kernel: two nodes run three
// VIPs between them; a reload (SIGHUP on one node, `vipd reload` on the
// other) removes one, adds one and keeps one.
// - the kept VIP shows no ownership change: no address event and no fence
//   change that lets it go, in the recorder's `ip monitor` / `nft monitor`
//   witness, and no announcement on the wire after the reload;
// - the removed VIP leaves every link, its election keys leave etcd, and
//   no fence table guards or allows it any more;
// - the added VIP becomes held by one node, which announces it;
// - an invalid file changes nothing, is reported (exit 2 with the problem),
//   and vipd keeps running and holding;
// - a setting that cannot change live is named, and not applied.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { labNow, REPO_ROOT, spawnInNetns } from "../lab/cluster.ts";
import { etcdRange } from "../lab/etcd-admin.ts";
import { parseNftTableListing } from "../lab/monitor-text.ts";
import type { Host } from "../lab/netns.ts";
import { OwnershipRecorder } from "../lab/recorder.ts";
import { sh, sleep, waitFor } from "../lab/sh.ts";
import { SmallLab, stopVipd } from "../lab/small-lab.ts";
import { Capture } from "../kernel/capture.ts";

const KEPT = "192.0.2.150";
const GONE = "192.0.2.151";
const ADDED = "192.0.2.152";
const PREFIX = "/vipd/";

let lab: SmallLab;
let n1: Host;
let n2: Host;
let recorder: OwnershipRecorder | null = null;
let capture: Capture | null = null;

const doc = (ip: string) => `apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: ${ip}\nlink: eth0\n`;
const config = (...docs: string[]) => docs.join("---\n");
const site = () => ({ nodes: [{ name: "n1", host: n1 }, { name: "n2", host: n2 }] });

beforeAll(async () => {
  lab = await SmallLab.start(["n1", "n2"]);
  [n1, n2] = [lab.host("n1"), lab.host("n2")];
}, 60_000);

afterAll(async () => {
  await recorder?.close();
  await capture?.stop();
  capture?.dispose();
  await lab?.close();
}, 30_000);

// No refresh announcements: any frame for the kept VIP after the reload would be a burst.
const vipd = (host: Host, file: string, port: number) =>
  lab.vipd(host, ["--config", file, "--node-name", host.name, "--etcd-endpoints", "http://127.0.0.1:2379", "--health-listen", `127.0.0.1:${port}`,
    "--announce-refresh", "0", "--log-format", "json"]);

/** `vipd reload` run on the host, as an operator would. */
async function vipdReload(host: Host): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn(["ip", "netns", "exec", host.ns, process.execPath, join(REPO_ROOT, "src", "main.ts"), "reload"], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}

const electionKeys = async (vip: string) => (await etcdRange(site(), "n1", `${PREFIX}elections/${vip}/`)).map((kv) => kv.key);

/** vipd's nftables sets on a host (its inet table): set name → addresses. */
async function fenceSets(host: Host, family: "inet" | "arp" = "inet"): Promise<Map<string, string[]>> {
  const text = await sh(["ip", "netns", "exec", host.ns, "nft", "list", "table", family, "vipd"]);
  return new Map(parseNftTableListing(text).map((s) => [s.name, s.elements.map((e) => e.value)]));
}

const metrics = (host: Host, port: number) => sh(["ip", "netns", "exec", host.ns, "curl", "-sf", `http://127.0.0.1:${port}/metrics`]);

/** Gratuitous ARP frames (sender address = target address = ip) in a capture. */
function announcements(cap: Capture, ip: string): number {
  const want = ip.split(".").map(Number);
  const at = (f: Uint8Array, off: number) => [f[off], f[off + 1], f[off + 2], f[off + 3]];
  const same = (a: (number | undefined)[]) => a.every((x, i) => x === want[i]);
  // Ethernet header 14 bytes; ARP sender protocol address at 14+14, target at 14+24.
  return cap.frames().filter((fr) => fr.bytes[12] === 0x08 && fr.bytes[13] === 0x06 && same(at(fr.bytes, 28)) && same(at(fr.bytes, 38))).length;
}

test("a reload removes one VIP, adds one and leaves the kept one untouched: by SIGHUP and by `vipd reload`", async () => {
  const f1 = lab.write("n1.yaml", config(doc(KEPT), doc(GONE)));
  const f2 = lab.write("n2.yaml", config(doc(KEPT), doc(GONE)));
  const a = vipd(n1, f1, 18151);
  await waitFor("n1 holding both VIPs", async () => (await lab.seg.has(n1, KEPT)) && (await lab.seg.has(n1, GONE)), 20_000);
  const b = vipd(n2, f2, 18152);
  await waitFor("n2 standing for both VIPs", async () => (await electionKeys(KEPT)).length === 2 && (await electionKeys(GONE)).length === 2, 20_000);

  recorder = await OwnershipRecorder.start({
    vip: KEPT,
    dir: lab.dir,
    nodes: [{ name: "n1", host: n1 }, { name: "n2", host: n2 }],
    spawnIn: spawnInNetns,
  });
  capture = await Capture.start(n1.ns, "eth0", "arp");
  expect(recorder.holders()).toEqual(["n1"]);
  const t0 = labNow();

  // n2 first, by SIGHUP: it leaves GONE's queue and is alone in ADDED's, so it takes ADDED.
  lab.write("n2.yaml", config(doc(KEPT), doc(ADDED)));
  b.kill("SIGHUP");
  await waitFor("n2 out of GONE's queue and holding ADDED", async () => !(await electionKeys(GONE)).includes(`${PREFIX}elections/${GONE}/n2`) && (await lab.seg.has(n2, ADDED)), 15_000);

  // n1 by `vipd reload`: it releases GONE and queues for ADDED behind n2.
  lab.write("n1.yaml", config(doc(KEPT), doc(ADDED)));
  const r = await vipdReload(n1);
  expect(r.err).toBe("");
  expect(r.code).toBe(0);
  expect(r.out).toContain(`reloaded ${f1}:`);
  expect(r.out).toContain(`removed  ${GONE} on eth0 (released, out of its queue)`);
  expect(r.out).toContain(`added    ${ADDED} on eth0 (standing for it)`);
  expect(r.out).toContain(`kept     ${KEPT} on eth0 (untouched)`);

  // The removed VIP: on no link, no key of it in etcd, in no fence set.
  expect(await lab.seg.has(n1, GONE)).toBe(false);
  expect(await lab.seg.has(n2, GONE)).toBe(false);
  expect(await electionKeys(GONE)).toEqual([]);
  for (const host of [n1, n2]) {
    for (const family of ["inet", "arp"] as const) {
      const sets = await fenceSets(host, family);
      expect(sets.get("vips4"), `${host.name} ${family}`).not.toContain(GONE);
      expect(sets.get("proven4"), `${host.name} ${family}`).not.toContain(GONE);
      expect(sets.get("vips4"), `${host.name} ${family}`).toContain(ADDED);
      expect(sets.get("vips4"), `${host.name} ${family}`).toContain(KEPT);
    }
  }
  const m1 = await metrics(n1, 18151);
  expect(m1).not.toContain(GONE);
  expect(m1).toContain(`vipd_vip_held{vip="${KEPT}",link="eth0"} 1`);
  expect(m1).toContain(`vipd_vip_held{vip="${ADDED}",link="eth0"} 0`);

  // The added VIP: held by n2 alone, with n1 queued behind it, and announced.
  await waitFor("n1 queued for ADDED", async () => (await electionKeys(ADDED)).length === 2, 10_000);
  expect(await lab.seg.has(n2, ADDED)).toBe(true);
  expect(await lab.seg.has(n1, ADDED)).toBe(false);
  await waitFor("ADDED's burst in the capture", () => announcements(capture!, ADDED) > 0, 5000);

  // The kept VIP: n1 held it throughout; the kernel never saw it change, nor the wire a new burst.
  await sleep(500);
  expect(recorder.problems).toEqual([]);
  expect(recorder.edges.filter((e) => e.t >= t0)).toEqual([]);
  expect(recorder.addressEdges.filter((e) => e.t >= t0)).toEqual([]);
  expect(recorder.holders()).toEqual(["n1"]);
  expect(announcements(capture, KEPT)).toBe(0);
  expect((await electionKeys(KEPT)).length).toBe(2);
  expect(a.exitCode).toBeNull();
  expect(b.exitCode).toBeNull();

  // An invalid file changes nothing, on either path, and vipd keeps running and holding.
  lab.write("n1.yaml", config(doc(KEPT), doc("192.0.2.300")));
  const bad = await vipdReload(n1);
  expect(bad.code).toBe(2);
  expect(bad.out).toBe("");
  expect(bad.err).toContain(`did not reload ${f1}: it is not valid. Nothing changed; vipd runs as before.`);
  expect(bad.err).toContain('name: expected an IPv4 or IPv6 address, received "192.0.2.300"');
  expect(await metrics(n1, 18151)).toContain("vipd_config_last_reload_successful 0");
  lab.write("n2.yaml", "kind: Layer2VIPConfig\nname: [\n");
  b.kill("SIGHUP");
  await waitFor("n2 refusing the file", async () => (await metrics(n2, 18152)).includes('vipd_config_reloads_total{result="invalid"} 1'), 10_000);
  expect(await metrics(n2, 18152)).toContain('vipd_config_reloads_total{result="reloaded"} 1');
  expect(a.exitCode).toBeNull();
  expect(b.exitCode).toBeNull();
  expect(await lab.seg.has(n1, KEPT)).toBe(true);
  expect(await lab.seg.has(n2, ADDED)).toBe(true);
  expect(await electionKeys(ADDED)).toEqual([`${PREFIX}elections/${ADDED}/n1`, `${PREFIX}elections/${ADDED}/n2`]);

  // A setting that cannot change live is named and left as it was; the log level applies.
  lab.write("n1.yaml", config(doc(KEPT), doc(ADDED), "apiVersion: v1alpha1\nkind: VIPAgentConfig\nelection:\n  holdTime: 3000\nlog:\n  level: debug\n"));
  const partial = await vipdReload(n1);
  expect(partial.code).toBe(1);
  expect(partial.out).toContain(`reloaded ${f1}:`);
  expect(partial.out).toContain("applied  log.level");
  expect(partial.out).toContain("Not applied: election.holdTime changed, and take effect only when vipd restarts");
  const status = JSON.parse(await sh(["ip", "netns", "exec", n1.ns, "curl", "-sf", "http://127.0.0.1:18151/status"])) as { etcd: { holdMs: number } };
  expect(status.etcd.holdMs).toBe(2500);
  expect(await metrics(n1, 18151)).toContain("vipd_config_last_reload_successful 1");

  expect(recorder.edges.filter((e) => e.t >= t0)).toEqual([]);
  expect(recorder.addressEdges.filter((e) => e.t >= t0)).toEqual([]);
  expect(announcements(capture, KEPT)).toBe(0);

  const stoppedB = await stopVipd(b);
  const stoppedA = await stopVipd(a);
  expect(stoppedA.code).toBe(0);
  expect(stoppedB.code).toBe(0);
  expect(stoppedB.log).toContain('"msg":"configuration reloaded","trigger":"SIGHUP"');
  expect(stoppedB.log).toContain('"msg":"configuration not reloaded: it is not valid; running as before","trigger":"SIGHUP"');
  expect(stoppedA.log).toContain('"msg":"configuration reloaded","trigger":"vipd reload"');
  expect(stoppedA.log).toContain("changed settings need a restart to apply; running with their old values: election.holdTime");
}, 120_000);

test("a VIP moved to another link is released on the old one, then held on the new one; the fence's chains stay as they are", async () => {
  const MOVED = "192.0.2.153";
  // Where no vipd runs (n2's stopped above), `vipd reload` says so.
  const none = await vipdReload(n2);
  expect(none.code).toBe(1);
  expect(none.err).toBe("vipd reload: no vipd runs in this network namespace (nothing listens on its socket @vipd): start it, or run this where it runs\n");
  await lab.seg.ip(n1.ns, "link", "add", "mv0", "link", "eth0", "type", "macvlan", "mode", "bridge");
  await lab.seg.ip(n1.ns, "link", "set", "mv0", "up");
  const f = lab.write("moved.yaml", config(doc(KEPT), doc(MOVED)));
  const a = vipd(n1, f, 18153);
  await waitFor("n1 holding both VIPs on eth0", async () => (await lab.seg.has(n1, KEPT)) && (await lab.seg.has(n1, MOVED)), 20_000);
  // The fence hooks no device (inet and arp input/output), so a link coming or going changes no chain.
  const CHAINS = ["inet chain input", "inet chain output", "arp chain input", "arp chain output"];
  const chains = async () => {
    const list = async (family: string) => (await sh(["ip", "netns", "exec", n1.ns, "nft", "list", "table", family, "vipd"])).match(/chain \S+/g) ?? [];
    return [...(await list("inet")).map((c) => `inet ${c}`), ...(await list("arp")).map((c) => `arp ${c}`)];
  };
  expect(await chains()).toEqual(CHAINS);

  lab.write("moved.yaml", config(doc(KEPT), `apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: ${MOVED}\nlink: mv0\n`));
  const r = await vipdReload(n1);
  expect(r.code).toBe(0);
  expect(r.out).toContain(`removed  ${MOVED} on eth0 (released, out of its queue)`);
  expect(r.out).toContain(`added    ${MOVED} on mv0 (standing for it)`);
  expect(r.out).toContain(`kept     ${KEPT} on eth0 (untouched)`);
  await waitFor("MOVED held on mv0", () => lab.seg.has(n1, MOVED, "mv0"), 10_000);
  expect(await lab.seg.has(n1, MOVED, "eth0")).toBe(false);
  expect(await lab.seg.has(n1, KEPT, "eth0")).toBe(true);
  expect(await electionKeys(MOVED)).toEqual([`${PREFIX}elections/${MOVED}/n1`]);
  expect(await chains()).toEqual(CHAINS);
  expect((await fenceSets(n1)).get("vips4")?.sort()).toEqual([KEPT, MOVED].sort());

  // Back to the kept VIP alone: MOVED goes, and with it its guard.
  lab.write("moved.yaml", config(doc(KEPT)));
  const back = await vipdReload(n1);
  expect(back.code).toBe(0);
  expect(back.out).toContain(`removed  ${MOVED} on mv0 (released, out of its queue)`);
  expect(await lab.seg.has(n1, MOVED, "mv0")).toBe(false);
  expect(await electionKeys(MOVED)).toEqual([]);
  expect(await chains()).toEqual(CHAINS);
  expect((await fenceSets(n1)).get("vips4")).toEqual([KEPT]);
  expect((await fenceSets(n1, "arp")).get("vips4")).toEqual([KEPT]);
  expect(await lab.seg.has(n1, KEPT, "eth0")).toBe(true);
  expect((await stopVipd(a)).code).toBe(0);
}, 60_000);
