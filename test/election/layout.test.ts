// The layout version against a real etcd (design.md §2, "Versions side by
// side"): a session writes its layout in its record, runs beside a record of
// vipd 0.2.0 (no layout) and of a newer minor, and refuses to start beside a
// record of a higher layout major, with a sentence and nothing written.
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Etcd3 } from "etcd3";
import { connectEtcd, EtcdConnection } from "../../src/election/connection.ts";
import { currentIncarnation, encodeIncarnation } from "../../src/election/incarnation.ts";
import { agentKey } from "../../src/election/keys.ts";
import { LAYOUT, LAYOUT_TEXT } from "../../src/election/layout.ts";
import { monotonicClock } from "../../src/seams.ts";
import { Session, type SessionEvents } from "../../src/election/session.ts";
import { type EtcdServer, startEtcd } from "../lab/etcd.ts";
import { waitFor } from "../lab/sh.ts";

let etcd: EtcdServer;
let admin: Etcd3;
const quiet = { error() {}, warn() {}, info() {}, debug() {} };

beforeAll(async () => {
  etcd = await startEtcd();
  admin = connectEtcd({ endpoints: etcd.endpoints });
});
afterAll(async () => {
  admin?.close();
  await etcd?.stop();
});

async function session(prefix: string, node: string) {
  const conn = new EtcdConnection({ endpoints: etcd.endpoints });
  const s = new Session({
    settings: { endpoints: etcd.endpoints, prefix, node, holdMs: 1000, leaseTtlS: 5 },
    conn,
    identity: currentIncarnation({ holdMs: 1000, version: "0.3.0" }),
    clock: monotonicClock,
    log: quiet,
    serving: () => [],
  });
  const fatal: SessionEvents["fatal"][] = [];
  s.on("fatal", (e) => fatal.push(e));
  s.start();
  return { s, fatal, close: async () => { await s.stop(300).catch(() => {}); conn.close(); } };
}

/** Another node's record, by hand, with the given fields over a 0.2.0-like record. */
async function record(prefix: string, node: string, fields: Record<string, unknown>) {
  const { layout: _, ...v020 } = { ...currentIncarnation({ holdMs: 1000, version: "0.2.0" }), boot: "another-boot" };
  await admin.put(agentKey(prefix, node)).value(JSON.stringify({ ...v020, ...fields }));
}

test("beside vipd 0.2.0 and a newer minor the session registers, its record saying its layout", async () => {
  const P = "/vipd-layout-ok/";
  await record(P, "cp-2", {});
  await record(P, "cp-3", { version: "0.4.0", layout: `${LAYOUT.major}.${LAYOUT.minor + 1}`, somethingNew: [1, 2] });
  const a = await session(P, "cp-1");
  try {
    await waitFor("cp-1 ready", () => a.s.ready, 5000);
    const mine = JSON.parse((await admin.get(agentKey(P, "cp-1")).string())!) as Record<string, unknown>;
    expect(mine.layout).toBe(LAYOUT_TEXT);
    expect(mine.version).toBe("0.3.0");
    expect(a.fatal).toEqual([]);
  } finally {
    await a.close();
    await admin.delete().prefix(P);
  }
});

test("a record of a higher layout major stops the session before it writes anything", async () => {
  const P = "/vipd-layout-newer/";
  await record(P, "cp-2", { version: "1.0.0", layout: `${LAYOUT.major + 1}.0` });
  const a = await session(P, "cp-1");
  try {
    await waitFor("fatal", () => a.fatal[0], 5000);
    expect(a.fatal[0]!.reason).toContain(`node "cp-2", written by vipd 1.0.0 in layout ${LAYOUT.major + 1}.0; vipd 0.3.0 speaks layout ${LAYOUT.major}.x`);
    expect(a.s.ready).toBe(false);
    expect(await admin.get(agentKey(P, "cp-1")).string()).toBeNull();
  } finally {
    await a.close();
    await admin.delete().prefix(P);
  }
});
