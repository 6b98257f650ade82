// The fence on a re-created link (design.md §5, nft-fence.ts: the hooks are
// not per device). The holder's link is deleted and a new veth of the same
// name plugged in (a new ifindex, a new MAC): the address goes with the old
// link, vipd stands again on the new one and holds the VIP there, with the
// table whole. Then the holder freezes (SIGSTOP): a client asking the new
// link's MAC for the VIP every 10 ms must get no answer once the holder's
// fence deadline (s + H − m, less than H after the freeze) has passed, while
// the address is still on the new link (its backstop lifetime ends more than
// a second after the deadline): the kernel's fence drops it, not the address
// running out.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { labNow } from "../lab/cluster.ts";
import { MacWitness, macOf } from "../lab/mac-witness.ts";
import type { Host } from "../lab/netns.ts";
import { sh, sleep, waitFor } from "../lab/sh.ts";
import { SmallLab, stopVipd } from "../lab/small-lab.ts";

const X = "192.0.2.174";
/** The default hold time (election.holdTime): the holder's deadline is less than this after its last heartbeat. */
const HOLD_MS = 2500;

let lab: SmallLab;
let a: Host;
let client: Host;

beforeAll(async () => {
  lab = await SmallLab.start(["a"], {}, { clients: ["c"] });
  [a, client] = [lab.host("a"), lab.host("c")];
}, 60_000);

afterAll(async () => {
  await lab?.close();
}, 30_000);

const ifindex = async () => (JSON.parse(await lab.seg.ip(a.ns, "-j", "link", "show", "dev", a.link)) as { ifindex: number }[])[0]!.ifindex;
const has = () => lab.seg.has(a, X);
const chainsWhole = async () => {
  const inet = await sh(["ip", "netns", "exec", a.ns, "nft", "list", "chain", "inet", "vipd", "input"], { allowFail: true });
  const arp = await sh(["ip", "netns", "exec", a.ns, "nft", "list", "chain", "arp", "vipd", "output"], { allowFail: true });
  return inet.includes("chain input") && arp.includes("chain output");
};

test("on a link deleted and plugged in again, the frozen holder's fence still silences the VIP at its deadline, before the address runs out", async () => {
  const p = lab.vipd(a, ["--config", lab.vipConfig("a.yaml", X), "--node-name", "a", "--etcd-endpoints", "http://127.0.0.1:2379",
    "--health-listen", "127.0.0.1:18174", "--log-format", "json"]);
  let witness: MacWitness | null = null;
  let frozen = false;
  try {
    await waitFor("X on a", has, 15_000);
    const before = await ifindex();
    // Unplug: deleting the switch's end deletes a's eth0 with it, and the address with that.
    await lab.seg.ip(lab.seg.switchNs, "link", "del", a.port);
    await waitFor("a's eth0 gone", async () => (await lab.seg.ip(a.ns, "-o", "link", "show")).includes(" eth0") === false, 5000);
    await sleep(500);
    // Plug a new veth of the same name in, as a re-created NIC would be.
    await lab.seg.ip(lab.seg.switchNs, "link", "add", a.port, "type", "veth", "peer", "name", a.link, "netns", a.ns);
    await lab.seg.ip(lab.seg.switchNs, "link", "set", a.port, "master", "br0", "up");
    await lab.seg.ip(a.ns, "addr", "add", `${a.ip4}/24`, "dev", a.link);
    await lab.seg.ip(a.ns, "link", "set", a.link, "up");
    const after = await ifindex();
    expect(after).not.toBe(before);
    await waitFor("X on a's new eth0", has, 15_000);
    expect(await chainsWhole()).toBe(true);

    witness = MacWitness.start(lab, client, X, [{ node: "a", mac: await macOf(a) }]);
    await waitFor("a answering for X on the new link", () => witness!.answeredBy("a").length > 20, 10_000, 20);
    p.kill("SIGSTOP");
    frozen = true;
    const frozenAt = labNow();
    await waitFor("X's address gone from a (its backstop lifetime)", async () => !(await has()), 10_000, 20);
    const goneAt = labNow();
    await sleep(300);
    await witness.stop();
    const answered = witness.answeredBy("a");
    const lastAnswer = answered[answered.length - 1]!.t;
    console.log(`ifindex ${before} -> ${after}; after the freeze a answered for ${Math.round(lastAnswer - frozenAt)} ms; ` +
      `the address went ${Math.round(goneAt - frozenAt)} ms after the freeze`);
    expect(witness.errors).toEqual([]);
    expect(answered.filter((t) => t.t >= frozenAt - 200 && t.t < frozenAt).length).toBeGreaterThan(5); // answering up to the freeze
    // The fence closed at the deadline, less than H after the last heartbeat...
    expect(lastAnswer - frozenAt).toBeLessThan(HOLD_MS);
    // ...while the address was still on the new link: the fence dropped it, not the lifetime.
    expect(goneAt - lastAnswer).toBeGreaterThan(500);
  } finally {
    await witness?.stop().catch(() => {});
    if (frozen) p.kill("SIGCONT");
  }
  const { code, log } = await stopVipd(p);
  expect(code).toBe(0);
  expect(log).toContain("acquired VIP");
}, 90_000);
