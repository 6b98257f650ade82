// A restart after the configuration changed must not leave the old run's
// VIP answering (design.md §6, I6). Node a holds X and is SIGKILLed; its
// configuration is edited so that X is no longer where the old run put it
// (a serves Y instead, or X moved to another link of a), and a starts again
// at once. The restart finds the old run's keys "dead, here" and clears
// them, so b takes X over within a second; by then nothing of the old run
// may answer for X any more. A client on the segment asks each node's MAC
// directly for X (ARP and ICMP echo, unicast) every 10 ms: no tick may get
// answers from both nodes.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { labNow } from "../lab/cluster.ts";
import { MacWitness, macOf } from "../lab/mac-witness.ts";
import type { Host } from "../lab/netns.ts";
import { sh, sleep, waitFor } from "../lab/sh.ts";
import { SmallLab, stopVipd } from "../lab/small-lab.ts";

const X = "192.0.2.160";
const Y = "192.0.2.161";

let lab: SmallLab;
let a: Host;
let b: Host;
let client: Host;

const doc = (ip: string, link = "eth0") => `apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: ${ip}\nlink: ${link}\n`;

beforeAll(async () => {
  lab = await SmallLab.start(["a", "b"], {}, { clients: ["c"] });
  [a, b, client] = [lab.host("a"), lab.host("b"), lab.host("c")];
  // A second link of a on the segment, for X to move to. As design.md §10
  // asks of such a node, a answers ARP only on the link that has the address;
  // otherwise its mv0 would answer b's probes for X with a MAC it does not publish.
  await lab.seg.ip(a.ns, "link", "add", "mv0", "link", "eth0", "type", "macvlan", "mode", "bridge");
  await lab.seg.ip(a.ns, "link", "set", "mv0", "up");
  await lab.seg.exec(a, ["sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1"]);
}, 60_000);

afterAll(async () => {
  await lab?.close();
}, 30_000);

const vipd = (host: Host, file: string, port: number) =>
  lab.vipd(host, ["--config", file, "--node-name", host.name, "--etcd-endpoints", "http://127.0.0.1:2379", "--health-listen", `127.0.0.1:${port}`, "--log-format", "json"]);

/** Links of the host that carry ip now (any link: the old run's may not be the configured one). */
async function linksWith(host: Host, ip: string): Promise<string[]> {
  const out = JSON.parse(await sh(["ip", "-n", host.ns, "-j", "addr", "show"])) as { ifname: string; addr_info?: { local: string }[] }[];
  return out.filter((l) => (l.addr_info ?? []).some((x) => x.local === ip)).map((l) => l.ifname);
}

/**
 * `beforeKill` runs while a is frozen (SIGSTOP): its proof still runs, and
 * nothing of a can repair what the step changes before the SIGKILL.
 */
async function restartAfterEdit(edited: string, beforeKill?: () => Promise<void>): Promise<void> {
  const fileA = lab.write("a.yaml", doc(X));
  let first = vipd(a, fileA, 18131);
  const others = [];
  const witness = MacWitness.start(lab, client, X, [
    { node: "a", mac: await macOf(a) },
    { node: "a", mac: await macOf(a, "mv0") },
    { node: "b", mac: await macOf(b) },
  ]);
  try {
    await waitFor("X on a", async () => (await linksWith(a, X)).length > 0, 10_000);
    const pb = vipd(b, lab.write("b.yaml", doc(X)), 18132);
    others.push(pb);
    // b registered and queued behind a: its health turns ok with its first heartbeat.
    await waitFor("b healthy", () => sh(["ip", "netns", "exec", b.ns, "curl", "-sf", "http://127.0.0.1:18132/healthz"], { allowFail: true }), 10_000);
    await sleep(500);
    if (beforeKill) {
      first.kill("SIGSTOP");
      await beforeKill();
    }
    const killedAt = labNow();
    first.kill("SIGKILL");
    await first.exited;
    lab.write("a.yaml", edited);
    first = vipd(a, fileA, 18131);
    others.push(first);
    await waitFor("X on b", async () => (await linksWith(b, X)).length > 0, 10_000, 5);
    const tookOver = labNow() - killedAt;
    // Whatever the old run left would go with its address's backstop lifetime
    // (a few seconds): watch until X is off the old run's link, and a second more.
    await waitFor("X gone from a's eth0", async () => !(await linksWith(a, X)).includes("eth0"), 10_000);
    await sleep(1000);
    await witness.stop();
    console.log(`b held X ${Math.round(tookOver)} ms after a was killed; ticks: ${witness.ticks.length}; both answering: ${witness.describeOverlaps()}`);
    expect(witness.errors).toEqual([]);
    // The witness sees each holder: a before the kill, b after.
    expect(witness.answeredBy("a").filter((t) => t.t < killedAt).length).toBeGreaterThan(10);
    expect(witness.answeredBy("b", killedAt).length).toBeGreaterThan(10);
    expect(witness.describeOverlaps()).toBe("none");
  } finally {
    await witness.stop().catch(() => {});
    for (const p of [first, ...others]) if (p.exitCode === null && p.signalCode === null) await stopVipd(p);
  }
}

test("restarted with Y instead of X: the old run's X stops answering before b takes it", async () => {
  await restartAfterEdit(doc(Y));
}, 60_000);

test("restarted with X moved to another link: the old link's X stops answering before b takes it", async () => {
  await restartAfterEdit(doc(X, "mv0"));
}, 60_000);

test("restarted with Y, the old table gone too: X, named only by the old run's last heartbeat, stops answering before b takes it", async () => {
  // Someone deleted vipd's table while a held X (a firewall reload, say): X
  // is then unfenced, but still a's to answer for until its proof runs out.
  // The restart finds no table to read; only the claim in etcd names X.
  await restartAfterEdit(doc(Y), () => lab.seg.exec(a, ["nft", "delete", "table", "inet", "vipd"]).then(() => lab.seg.exec(a, ["nft", "delete", "table", "arp", "vipd"])).then(() => {}));
}, 60_000);
