import { describe, expect, test } from "bun:test";
import { drainReason, yieldReason } from "./handover.ts";
import { drainKey, electionKey, encodeDrain, encodeHandover, handoverKey } from "./keys.ts";
import { ClusterView, type Kv } from "./view.ts";

const P = "/vipd/";
const VIP = "192.0.2.10";
const kv = (key: string, value: string, revision: number): Kv => ({ key: Buffer.from(key), value: Buffer.from(value), create_revision: String(revision), mod_revision: String(revision) });
const ASKED = { by: "ops@admin", at: "2026-11-26T10:00:00.000Z" };
const me = (node: string) => ({ node, run: `run-${node}` });

/** A queue a(10) b(20) c(30) d(40), and a request for `to` at its key's revision. */
function cluster(to: string | null, toRevision?: string): ClusterView {
  const v = new ClusterView(P);
  const keys = ["a", "b", "c", "d"].map((n, i) => kv(electionKey(P, VIP, n), `run-${n}`, (i + 1) * 10));
  const revisions: Record<string, string> = { a: "10", b: "20", c: "30", d: "40" };
  const request = to ? [kv(handoverKey(P, VIP), encodeHandover({ to, toRevision: toRevision ?? revisions[to] ?? "99", ...ASKED }), 50)] : [];
  v.load([...keys, ...request], "60", 0);
  return v;
}

describe("yieldReason", () => {
  test("nobody moves without a request", () => {
    const v = cluster(null);
    for (const n of ["a", "b", "c", "d"]) expect(yieldReason(v, VIP, me(n))).toBeNull();
  });

  test("to the next in line: the holder steps back at once, nobody else moves", () => {
    const v = cluster("b");
    expect(yieldReason(v, VIP, me("a"))).toBe(`handing over to b (asked by ops@admin at ${ASKED.at})`);
    for (const n of ["b", "c", "d"]) expect(yieldReason(v, VIP, me(n))).toBeNull();
  });

  test("to a later node: those between step back first, and the holder waits for them", () => {
    const v = cluster("d");
    expect(yieldReason(v, VIP, me("a"))).toBeNull();
    expect(yieldReason(v, VIP, me("b"))).toBe(`stepping back behind d for a hand-over (asked by ops@admin at ${ASKED.at})`);
    expect(yieldReason(v, VIP, me("c"))).toBe(`stepping back behind d for a hand-over (asked by ops@admin at ${ASKED.at})`);
    expect(yieldReason(v, VIP, me("d"))).toBeNull();
    // b and c leave and join again behind d: now the holder goes.
    v.apply([{ type: "delete", kv: kv(electionKey(P, VIP, "b"), "", 61) }, { type: "delete", kv: kv(electionKey(P, VIP, "c"), "", 62) }], 1);
    v.apply([{ type: "put", kv: kv(electionKey(P, VIP, "b"), "run-b", 63) }, { type: "put", kv: kv(electionKey(P, VIP, "c"), "run-c", 64) }], 2);
    expect(v.queue(VIP).map((c) => c.node)).toEqual(["a", "d", "b", "c"]);
    expect(yieldReason(v, VIP, me("a"))).toBe(`handing over to d (asked by ops@admin at ${ASKED.at})`);
    for (const n of ["b", "c", "d"]) expect(yieldReason(v, VIP, me(n))).toBeNull();
  });

  test("a key that stepped back is behind the target and does not step back again", () => {
    const v = cluster("b");
    v.apply([{ type: "delete", kv: kv(electionKey(P, VIP, "a"), "", 61) }, { type: "put", kv: kv(electionKey(P, VIP, "a"), "run-a", 62) }], 1);
    expect(v.queue(VIP).map((c) => c.node)).toEqual(["b", "c", "d", "a"]);
    for (const n of ["a", "b", "c", "d"]) expect(yieldReason(v, VIP, me(n))).toBeNull();
  });

  test("a request for a key that is no longer there (the target restarted or left) moves nobody", () => {
    const v = cluster("c", "25");
    for (const n of ["a", "b", "c", "d"]) expect(yieldReason(v, VIP, me(n))).toBeNull();
  });

  test("another run of the same node name is not this run's key", () => {
    const v = cluster("b");
    expect(yieldReason(v, VIP, { node: "a", run: "run-other" })).toBeNull();
  });

  test("an unreadable request moves nobody", () => {
    const v = cluster(null);
    v.apply([{ type: "put", kv: kv(handoverKey(P, VIP), "to b please", 70) }], 1);
    expect(yieldReason(v, VIP, me("a"))).toBeNull();
  });
});

describe("drainReason", () => {
  test("says who drained the node, when, and why", () => {
    const v = new ClusterView(P);
    v.load([kv(drainKey(P, "a"), encodeDrain({ ...ASKED, reason: "kernel upgrade" }), 5), kv(drainKey(P, "b"), encodeDrain({ ...ASKED, reason: "" }), 6)], "6", 0);
    expect(drainReason(v, "a")).toBe(`drained by ops@admin at ${ASKED.at}: kernel upgrade`);
    expect(drainReason(v, "b")).toBe(`drained by ops@admin at ${ASKED.at}`);
    expect(drainReason(v, "c")).toBeNull();
  });

  test("a drain record vipd cannot read still drains the node", () => {
    const foreign: string[] = [];
    const v = new ClusterView(P, (k) => foreign.push(k));
    v.load([kv(drainKey(P, "a"), "yes", 5)], "5", 0);
    expect(drainReason(v, "a")).toBe("drained (its drain record is not one vipd wrote; `vipd undrain` clears it)");
    expect(foreign).toEqual([drainKey(P, "a")]);
    v.apply([{ type: "delete", kv: kv(drainKey(P, "a"), "", 6) }], 1);
    expect(drainReason(v, "a")).toBeNull();
  });
});
