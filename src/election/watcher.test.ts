// The watch's progress check against a stand-in connection: our own
// committed writes must come back through the watch within progressMs, or
// the connection is replaced. The stand-in speaks just enough of etcd's
// watch protocol for the Watcher: "created" at a revision, then events.
import { EventEmitter } from "node:events";
import { expect, test } from "bun:test";
import type { EtcdConnection } from "./connection.ts";
import { ClusterView } from "./view.ts";
import { Watcher } from "./watcher.ts";

const P = "/vipd/";

function standIn() {
  let resets = 0;
  let stream: (EventEmitter & { write(r: unknown): void; cancel(): void }) | null = null;
  const conn = {
    onReset: () => () => {},
    stalled: () => {
      resets++;
      return { reset: true, why: "stand-in" };
    },
    watch: async () => {
      const s = Object.assign(new EventEmitter(), {
        write: () => queueMicrotask(() => s.emit("data", { created: true, canceled: false, events: [], header: { revision: "10" } })),
        cancel: () => {},
      });
      stream = s;
      return s;
    },
    client: { kv: { range: async () => ({ kvs: [] }) } },
  } as unknown as EtcdConnection;
  const deliver = (revision: number) =>
    stream!.emit("data", {
      created: false, canceled: false, header: { revision: String(revision) },
      events: [{ type: "Put", kv: { key: Buffer.from(`${P}heartbeats/a`), value: Buffer.from("x"), create_revision: "5", mod_revision: String(revision) } }],
    });
  const cancel = () => stream!.emit("data", { created: false, canceled: true, cancel_reason: "etcdserver: no leader", events: [], header: { revision: "10" } });
  return { conn, deliver, cancel, resets: () => resets };
}

async function started(progressMs: number) {
  const s = standIn();
  const warnings: string[] = [];
  const w = new Watcher({ conn: s.conn, view: new ClusterView(P, () => {}), clock: () => performance.now(), changed: () => {}, warn: (r) => warnings.push(r), progressMs });
  await w.start();
  expect(w.synced).toBe(true);
  return { ...s, w, warnings };
}

test("writes the watch delivers in time never replace the connection", async () => {
  const { w, deliver, resets, warnings } = await started(200);
  for (let r = 11; r <= 20; r++) w.expect(String(r));
  deliver(15);
  await Bun.sleep(20);
  deliver(20);
  await Bun.sleep(400);
  expect(resets()).toBe(0);
  expect(warnings).toEqual([]);
  w.close();
});

test("a write the watch does not deliver within progressMs replaces the connection, once", async () => {
  const { w, deliver, resets, warnings } = await started(50);
  w.expect("11");
  w.expect("12");
  deliver(11);
  await Bun.sleep(120);
  expect(resets()).toBe(1);
  expect(warnings).toEqual(["watch did not deliver revision 12 within 50 ms; reconnecting: stand-in"]);
  w.close();
});

test("the check follows the oldest write: a later one is judged from its own commit", async () => {
  const { w, deliver, resets } = await started(300);
  w.expect("11");
  await Bun.sleep(150);
  w.expect("12");
  deliver(11);
  // 11 came in time; 12 has 300 ms from its own expect, not from 11's.
  await Bun.sleep(150);
  expect(resets()).toBe(0);
  await Bun.sleep(300);
  expect(resets()).toBe(1);
  w.close();
});

test("writes already seen, and a closed watcher, expect nothing", async () => {
  const { w, deliver, resets } = await started(30);
  deliver(12);
  w.expect("11");
  w.expect("12");
  w.expect("13");
  w.close();
  await Bun.sleep(80);
  expect(resets()).toBe(0);
});

test("a stalled watch the connection will not replace is read again on the same connection", async () => {
  const s = standIn();
  let asked = 0;
  (s.conn as unknown as { stalled: () => unknown }).stalled = () => {
    asked++;
    return { reset: false, why: "one endpoint, alive" };
  };
  const warnings: string[] = [];
  const w = new Watcher({ conn: s.conn, view: new ClusterView(P, () => {}), clock: () => performance.now(), changed: () => {}, warn: (r) => warnings.push(r), progressMs: 30 });
  await w.start();
  w.expect("11");
  await Bun.sleep(60);
  expect(asked).toBe(1);
  expect(warnings[0]).toBe("watch did not deliver revision 11 within 30 ms; same connection: one endpoint, alive; reading the view again in 100 ms");
  expect(w.synced).toBe(false);
  await Bun.sleep(150);
  expect(w.synced).toBe(true);
  w.close();
});

test("a committed heartbeat ends the re-read's backoff: the view is read at once", async () => {
  const s = standIn();
  let failing = false;
  (s.conn as unknown as { client: unknown }).client = {
    kv: { range: async () => {
      if (failing) throw new Error("etcdserver: no leader");
      return { kvs: [] };
    } },
  };
  (s.conn as unknown as { stalled: () => unknown }).stalled = () => ({ reset: false, why: "alive" });
  const warnings: string[] = [];
  const w = new Watcher({ conn: s.conn, view: new ClusterView(P, () => {}), clock: () => performance.now(), changed: () => {}, warn: (r) => warnings.push(r) });
  await w.start();
  failing = true;
  s.cancel();
  // Canceled, then reads that fail: 100, 200 and 400 ms of backoff, then 800.
  await Bun.sleep(100 + 200 + 400 + 60);
  expect(warnings.at(-1)).toEndWith("reading the view again in 800 ms");
  expect(w.synced).toBe(false);
  failing = false;
  w.etcdAnswered();
  await Bun.sleep(20);
  expect(w.synced).toBe(true);
  w.close();
});
