// QueueWriter.newHeads: whether we just became first in a queue (the
// session then sends a heartbeat at once, design.md §3), looked at only
// where something changed. Its answer must be the one a scan of every VIP
// would give (guard() now against guard() at the last look), whichever VIP
// changed and however: by the view's events, or by our own releases, which
// change guard() without any change in the view.
import { expect, test } from "bun:test";
import { int, prng } from "../seeded.ts";
import { electionKey, encodeHeartbeat, heartbeatKey } from "./keys.ts";
import { P, setup, V1, V2 } from "./queue-writer-harness.ts";

/** guard() at the last look, and whether it holds a VIP now that it did not then: what newHeads must say. */
function reference(s: ReturnType<typeof setup>) {
  let last = new Set<string>();
  return () => {
    const now = new Set(s.w.guard().map((g) => g.vip));
    const news = [...now].some((v) => !last.has(v));
    last = now;
    return news;
  };
}

test("first in a queue by a predecessor's deletion is news once; a peer's heartbeat is none", async () => {
  const s = setup();
  s.other("a", [V1]);
  await s.w.join(V1);
  s.sync();
  expect(s.w.newHeads()).toBe(false);
  s.etcd.put(heartbeatKey(P, "a"), encodeHeartbeat({ run: "run-a", seq: 2, claims: [V1] }));
  s.watch();
  expect(s.w.newHeads()).toBe(false);
  s.etcd.delete(electionKey(P, V1, "a"));
  s.watch();
  expect(s.w.newHeads()).toBe(true);
  expect(s.w.newHeads()).toBe(false);
});

test("a release that fails gives its VIP back to guard(): news, though nothing about that VIP came through the view", async () => {
  const s = setup();
  s.other("a", [V2]);
  await s.w.join(V1);
  await s.w.join(V2);
  s.sync();
  expect(s.w.newHeads()).toBe(true);
  // While the release is in flight, the view changes elsewhere (V2) and is looked at: V1 is being let go.
  s.etcd.beforeTxn = () => {
    s.etcd.delete(electionKey(P, V2, "a"));
    s.watch();
    expect(s.w.newHeads()).toBe(true);
    expect(s.w.guard().map((g) => g.vip)).toEqual([V2]);
    throw new Error("etcd request timed out");
  };
  await expect(s.w.release([V1])).rejects.toThrow("etcd request timed out");
  s.etcd.beforeTxn = null;
  // Nothing in the view changed for V1; a look that read only the view's changes would miss it.
  expect(s.view.takeChanges().vips.has(V1)).toBe(false);
  expect(s.w.guard().map((g) => g.vip).sort()).toEqual([V1, V2]);
  expect(s.w.newHeads()).toBe(true);
  expect(s.w.newHeads()).toBe(false);
});

test("the slots taking the view's changes takes none from newHeads", async () => {
  const s = setup();
  s.other("a", [V1]);
  await s.w.join(V1);
  s.sync();
  expect(s.w.newHeads()).toBe(false);
  s.etcd.delete(electionKey(P, V1, "a"));
  s.watch();
  s.view.takeChanges();
  expect(s.w.newHeads()).toBe(true);
});

test("over random joins, leaves, heartbeats, releases (some failing, some looked at mid-flight) and re-reads, newHeads says what a scan of every VIP says", async () => {
  const rand = prng(18);
  const rnd = (n: number) => int(rand, n);
  const vips = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5", "2001:db8::1"];
  const s = setup();
  s.other("a", []);
  s.other("c", []);
  s.sync();
  const ref = reference(s);
  const look = () => {
    const [got, want] = [s.w.newHeads(), ref()];
    if (got !== want) throw new Error(`in flight: newHeads says ${got}, a scan of every VIP ${want}`);
  };
  let looked = 0;
  let news = 0;
  for (let step = 0; step < 3000; step++) {
    const vip = vips[rnd(vips.length)]!;
    const node = rnd(2) ? "a" : "c";
    switch (rnd(8)) {
      case 0:
        s.etcd.put(electionKey(P, vip, node), `run-${node}`);
        break;
      case 1:
        s.etcd.delete(electionKey(P, vip, node));
        break;
      case 2:
        s.etcd.put(heartbeatKey(P, node), encodeHeartbeat({ run: `run-${node}`, seq: step, claims: [vip] }));
        break;
      case 3:
        if (!s.w.mine(vip)) await s.w.join(vip);
        break;
      case 4: {
        if (!s.w.mine(vip)) break;
        const how = rnd(4);
        // 0: commits; 1: refused, the kernel still answers; 2: fails in flight; 3: commits, looked at in flight.
        if (how === 1) s.serving.add(vip);
        s.etcd.beforeTxn = how >= 2 ? () => {
          s.watch();
          look();
          if (how === 2) throw new Error("timed out");
        } : null;
        await s.w.release([vip]).catch(() => {});
        s.etcd.beforeTxn = null;
        s.serving.delete(vip);
        break;
      }
      case 5:
        if (rnd(10) === 0) s.sync();
        else s.watch();
        break;
      default: {
        s.watch();
        const [got, want] = [s.w.newHeads(), ref()];
        if (got !== want) throw new Error(`step ${step}: newHeads says ${got}, a scan of every VIP ${want}`);
        looked++;
        if (want) news++;
      }
    }
  }
  // The walk met both answers often.
  expect(looked).toBeGreaterThan(500);
  expect(news).toBeGreaterThan(50);
});
