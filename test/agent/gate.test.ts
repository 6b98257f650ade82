// The kube-apiserver gate on the lab: each node's vipd probes its own
// stand-in API server (vipd() runs with --apiserver-url). A node whose API
// server fails lets the VIP go to a healthy node; a flapping API server moves
// the VIP at most once; with no healthy node nobody holds the VIP.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { type Lab, Lab as LabClass, labNow } from "../lab/cluster.ts";
import { vipd } from "../lab/implementations.ts";
import { OwnershipRecorder } from "../lab/recorder.ts";
import { sleep, waitFor } from "../lab/sh.ts";
import { overlap } from "../lab/stats.ts";

let lab: Lab;
let rec: OwnershipRecorder;
let t0: number;

beforeAll(async () => {
  lab = await LabClass.start();
  rec = await OwnershipRecorder.start(lab);
  t0 = labNow();
  await lab.startVipEverywhere(vipd());
}, 120_000);

afterAll(async () => {
  await rec?.close();
  await lab?.destroy();
}, 60_000);

const holder = (timeoutMs = 20_000) =>
  waitFor("exactly one holder", () => {
    const h = rec.holders();
    return h.length === 1 ? lab.node(h[0]!) : null;
  }, timeoutMs);

const logOf = (name: string) => lab.node(name).vip!.logTail(400);

test("the holder's API server fails: the VIP moves to a healthy node, and does not move back when it recovers", async () => {
  const h = await holder();
  lab.setApiserverReady(h, false);
  const next = await waitFor("a new holder", () => rec.holders().find((n) => n !== h.name), 10_000);
  expect(rec.isHeld(h.name)).toBe(false);
  expect(logOf(h.name)).toContain("kube-apiserver gate closed");
  lab.setApiserverReady(h, true);
  // Past rise and the hold-down (10 s): the node stands again, but behind the holder.
  await sleep(13_000);
  expect(rec.holders()).toEqual([next]);
  expect(logOf(h.name)).toContain("kube-apiserver gate opened");
  expect(overlap(rec.intervals(t0, labNow())).intervals).toEqual([]);
}, 60_000);

test("the holder's API server alone flapping for 30 s (down 3.5 s, up 1.5 s): the VIP moves once, to a healthy node, and never back", async () => {
  const h = await holder();
  const from = labNow();
  const end = from + 30_000;
  try {
    while (labNow() < end) {
      lab.setApiserverReady(h, false);
      await sleep(3500);
      lab.setApiserverReady(h, true);
      await sleep(1500);
    }
  } finally {
    lab.setApiserverReady(h, true);
  }
  // One acquisition in the whole flapping, by another node, which still holds it.
  const gained = rec.edges.filter((e) => e.held && e.t >= from);
  expect(gained.map((e) => e.node)).toHaveLength(1);
  expect(gained[0]!.node).not.toBe(h.name);
  expect(rec.holders()).toEqual([gained[0]!.node]);
  expect(rec.edges.filter((e) => e.t >= from && e.node === h.name && e.held)).toEqual([]);
  expect(overlap(rec.intervals(t0, labNow())).intervals).toEqual([]);
}, 80_000);

test("API servers flapping together for 30 s (down 3.5 s, up 1.5 s): once their gates have closed, nobody holds the VIP until they are steady", async () => {
  // Only the hold-down can pass this: without it every up phase (rise 2)
  // would reopen the gates and elect a holder, and every down phase would
  // take the VIP away again. During the first down phase the gates close one
  // by one as each node's third probe fails, so a node may hold the VIP for a
  // few ms before its own gate closes; from then on, no one may.
  await holder();
  const from = labNow();
  const end = from + 30_000;
  while (labNow() < end) {
    for (const n of lab.nodes) lab.setApiserverReady(n, false);
    await sleep(3500);
    for (const n of lab.nodes) lab.setApiserverReady(n, true);
    await sleep(1500);
  }
  const settled = from + 4000;
  const held = [...rec.intervals(settled, end).values()].flat();
  expect(held).toEqual([]);
  expect(rec.edges.filter((e) => e.held && e.t >= settled && e.t < end)).toEqual([]);
  // Steady now: a holder again once the hold-down has passed.
  await holder(20_000);
  expect(overlap(rec.intervals(t0, labNow())).intervals).toEqual([]);
}, 80_000);

test("no healthy API server: nobody holds the VIP and /healthz says why; one recovers and holds it", async () => {
  await holder();
  for (const n of lab.nodes) lab.setApiserverReady(n, false);
  await waitFor("no holder", () => rec.holders().length === 0, 10_000);
  await sleep(1000);
  expect(rec.holders()).toEqual([]);
  for (const n of lab.nodes) {
    const h = await lab.seg.exec(n.host, ["curl", "-s", "-w", " %{http_code}", "http://127.0.0.1:8099/healthz"]);
    expect(h).toMatch(/^kube-apiserver gate closed: .* 503$/s);
  }
  const lucky = lab.nodes[1]!;
  lab.setApiserverReady(lucky, true);
  // Rise plus the hold-down of a gate that has closed before.
  await waitFor("the recovered node holds the VIP", () => rec.holders().join() === lucky.name, 20_000);
  expect(overlap(rec.intervals(t0, labNow())).intervals).toEqual([]);
}, 60_000);
