// The fence is checked, not assumed (design.md §5): when someone deletes
// vipd's chains on the holder, the holder notices within a second,
// says so and builds them again. Then the holder freezes (SIGSTOP): b takes
// the VIP over after the holder's window, and a client asking each node's MAC
// for the VIP every 10 ms must never get answers from both, which it would
// if the frozen holder's address still answered unfenced past its deadline.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { labNow } from "../lab/cluster.ts";
import { MacWitness, macOf } from "../lab/mac-witness.ts";
import type { Host } from "../lab/netns.ts";
import { sh, sleep, waitFor } from "../lab/sh.ts";
import { SmallLab, stopVipd } from "../lab/small-lab.ts";

const X = "192.0.2.170";

let lab: SmallLab;
let a: Host;
let b: Host;
let client: Host;

beforeAll(async () => {
  lab = await SmallLab.start(["a", "b"], {}, { clients: ["c"] });
  [a, b, client] = [lab.host("a"), lab.host("b"), lab.host("c")];
}, 60_000);

afterAll(async () => {
  await lab?.close();
}, 30_000);

const vipd = (host: Host, port: number) =>
  lab.vipd(host, ["--config", lab.vipConfig(`${host.name}.yaml`, X), "--node-name", host.name, "--etcd-endpoints", "http://127.0.0.1:2379",
    "--health-listen", `127.0.0.1:${port}`, "--log-format", "json"]);

const has = (host: Host) => lab.seg.has(host, X);
const chainPresent = async (family: string, name: string) =>
  (await sh(["ip", "netns", "exec", a.ns, "nft", "list", "chain", family, "vipd", name], { allowFail: true })).includes(`chain ${name}`);

test("chains deleted by hand on the holder come back at the next check (about a second), and the frozen holder's fence then closes on time", async () => {
  const pa = vipd(a, 18141);
  let pb: ReturnType<typeof vipd> | null = null;
  const witness = MacWitness.start(lab, client, X, [{ node: "a", mac: await macOf(a) }, { node: "b", mac: await macOf(b) }]);
  let frozen = false;
  try {
    await waitFor("X on a", () => has(a), 10_000);
    pb = vipd(b, 18142);
    await waitFor("b healthy", () => sh(["ip", "netns", "exec", b.ns, "curl", "-sf", "http://127.0.0.1:18142/healthz"], { allowFail: true }), 10_000);
    await sleep(300);
    await lab.seg.exec(a, ["nft", "delete", "chain", "inet", "vipd", "input"]);
    await lab.seg.exec(a, ["nft", "delete", "chain", "arp", "vipd", "output"]);
    const deletedAt = labNow();
    await waitFor("a's chains rebuilt", async () => (await chainPresent("inet", "input")) && (await chainPresent("arp", "output")), 3000, 10);
    const rebuiltIn = labNow() - deletedAt;
    expect(await has(a)).toBe(true); // rebuilt, not given up: the fence guards it again
    // The holder freezes: only its kernel's fence can stop it answering now.
    pa.kill("SIGSTOP");
    frozen = true;
    const frozenAt = labNow();
    await waitFor("X on b", () => has(b), 10_000, 5);
    const tookOver = labNow() - frozenAt;
    // The frozen holder's address outlives its deadline by its backstop lifetime (1-2 s).
    await waitFor("X gone from a", async () => !(await has(a)), 10_000);
    await sleep(500);
    await witness.stop();
    console.log(`chains rebuilt ${Math.round(rebuiltIn)} ms after deletion; b held X ${Math.round(tookOver)} ms after a froze; both answering: ${witness.describeOverlaps()}`);
    expect(witness.errors).toEqual([]);
    expect(witness.answeredBy("a").filter((t) => t.t < frozenAt).length).toBeGreaterThan(10);
    expect(witness.answeredBy("b", frozenAt).length).toBeGreaterThan(10);
    expect(witness.describeOverlaps()).toBe("none");
  } finally {
    await witness.stop().catch(() => {});
    if (frozen) pa.kill("SIGCONT");
    if (pb) await stopVipd(pb);
  }
  const { log } = await stopVipd(pa);
  expect(log).toContain("vipd's nftables fence is incomplete; building it again");
  expect(log).toContain("chain inet vipd input is missing; chain arp vipd output is missing");
  expect(log).toContain("vipd's nftables fence is whole again");
}, 60_000);
