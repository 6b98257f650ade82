// When silence gets a new connection: only where one can help, never twice
// within a hold time (reconnect.ts), and what EtcdConnection does with the
// answer, on an injected clock, kernel and members.
import { expect, test } from "bun:test";
import { EtcdConnection } from "./connection.ts";
import { decideMove, decideReconnect, type ProbeAnswer, probeMs, type ReconnectFacts, stallAfter, type TcpLiveness } from "./reconnect.ts";

const H = 2500;
const facts = (f: Partial<Omit<ReconnectFacts, "tcp">> & { tcp?: TcpLiveness }): ReconnectFacts => ({
  now: 10_000, endpoints: 1, lastResetAt: null, holdMs: H, silentMs: 1000, ...f, tcp: () => f.tcp ?? "alive",
});

test.each([
  ["one endpoint, TCP alive (a frozen or leaderless member)", facts({ tcp: "alive" }), false],
  ["one endpoint, TCP alive, silent for longer than a hold", facts({ tcp: "alive", silentMs: 5000 }), false],
  ["one endpoint, TCP dead (unacknowledged retransmits)", facts({ tcp: "dead" }), true],
  ["one endpoint, TCP dead, but reconnected 2 s ago", facts({ tcp: "dead", lastResetAt: 8000 }), false],
  ["one endpoint, TCP dead, reconnected a hold ago", facts({ tcp: "dead", lastResetAt: 7500 }), true],
  ["one endpoint, the kernel cannot tell, silent 1 s", facts({ tcp: "unknown" }), false],
  ["one endpoint, the kernel cannot tell, silent a hold", facts({ tcp: "unknown", silentMs: H }), true],
] as const)("%s", (_name, f, reset) => {
  const d = decideReconnect(f);
  expect(d.reset).toBe(reset);
  expect(d.probe).toBeUndefined();
  expect(d.why).not.toBe("");
});

// With several endpoints silence never replaces the connection by itself:
// it asks the members, at most once per probeEvery, never within a hold of a move.
test.each([
  ["three endpoints: ask the members", facts({ endpoints: 3 }), true],
  ["three endpoints, TCP dead: still ask (another member decides, not the kernel)", facts({ endpoints: 3, tcp: "dead" }), true],
  ["three endpoints, silent a hold: still ask", facts({ endpoints: 3, silentMs: 5000 }), true],
  ["three endpoints, asking now", facts({ endpoints: 3, probing: true }), false],
  ["three endpoints, asked 400 ms ago", facts({ endpoints: 3, lastProbeAt: 9600 }), false],
  ["three endpoints, asked 500 ms ago", facts({ endpoints: 3, lastProbeAt: 9500 }), true],
  ["three endpoints, moved 1 s ago", facts({ endpoints: 3, lastResetAt: 9000 }), false],
  ["three endpoints, moved a hold ago", facts({ endpoints: 3, lastResetAt: 7500 }), true],
] as const)("%s", (_name, f, probe) => {
  const d = decideReconnect(f);
  expect(d.reset).toBe(false);
  expect(d.probe ?? false).toBe(probe);
  expect(d.why).not.toBe("");
});

const A = "http://10.0.0.1:2379", B = "http://10.0.0.2:2379", C = "http://10.0.0.3:2379";
const probed = (answers: Record<string, ProbeAnswer>, inUse = [A, B, C]) =>
  [A, B, C].map((endpoint) => ({ endpoint, answer: answers[endpoint]!, inUse: inUse.includes(endpoint) }));

test.each([
  ["one member frozen or partitioned, the others answer: move to them", probed({ [A]: "silent", [B]: "answers", [C]: "answers" }), [B, C]],
  ["the leader frozen, the others elected a new one: move to them", probed({ [A]: "silent", [B]: "answers", [C]: "silent" }), [B]],
  ["whole cluster silent (an election, no quorum): stay", probed({ [A]: "silent", [B]: "silent", [C]: "silent" }), null],
  ["the leader killed, the others still electing: stay", probed({ [A]: "fails", [B]: "silent", [C]: "silent" }), null],
  ["the leader killed, the others elected: stay (calls to the dead one fail at once)", probed({ [A]: "fails", [B]: "answers", [C]: "answers" }), null],
  ["every member answers: the silence is over, stay", probed({ [A]: "answers", [B]: "answers", [C]: "answers" }), null],
  ["moved to B and C earlier, B now frozen: move to A and C", probed({ [A]: "answers", [B]: "silent", [C]: "answers" }, [B, C]), [A, C]],
  ["moved to B and C earlier, A (not in use) silent: stay", probed({ [A]: "silent", [B]: "answers", [C]: "answers" }, [B, C]), null],
  ["moved to B alone earlier, B now dead, A answers: move", probed({ [A]: "answers", [B]: "fails", [C]: "fails" }, [B]), [A]],
  ["nothing answers, one fails: stay", probed({ [A]: "fails", [B]: "fails", [C]: "fails" }), null],
] as const)("after asking: %s", (_name, members, to) => {
  const d = decideMove(members);
  expect(d.reset ? d.endpoints : null).toEqual(to === null ? null : [...to]);
  expect(d.why).not.toBe("");
});

test("the kernel is not asked when the answer does not depend on it", () => {
  let asked = 0;
  const tcp = () => {
    asked++;
    return "dead" as const;
  };
  decideReconnect({ ...facts({ endpoints: 3 }), tcp });
  decideReconnect({ ...facts({ lastResetAt: 9000 }), tcp });
  expect(asked).toBe(0);
});

test("the stall threshold and the members' deadline move to another member within half a hold time", () => {
  expect(stallAfter(2500, 250)).toBe(1000);
  expect(stallAfter(30_000, 250)).toBe(1000);
  expect(stallAfter(1000, 250)).toBe(250);
  expect(probeMs(2500)).toBe(250);
  expect(probeMs(1000)).toBe(250);
  expect(probeMs(30_000)).toBe(500);
  for (const h of [1000, 1500, 2000, 2500, 5000, 30_000]) expect(stallAfter(h, 250) + probeMs(h)).toBeLessThanOrEqual(h / 2);
});

function connection(endpoints: string[], tcp: () => TcpLiveness, probe?: (endpoint: string) => ProbeAnswer) {
  let now = 0;
  const asked: string[] = [];
  const conn = new EtcdConnection({
    endpoints, holdMs: H, clock: () => now, tcp, drainMs: 0,
    ...(probe ? { probe: async (e: string) => (asked.push(e), probe(e)) } : {}),
  });
  let told = 0;
  conn.onReset(() => told++);
  return { conn, told: () => told, asked, at: (t: number) => void (now = t) };
}
test("EtcdConnection.stalled: one endpoint on a live connection keeps it, and its client", () => {
  const c = connection(["http://127.0.0.1:1"], () => "alive");
  const client = c.conn.client;
  expect(c.conn.stalled(1000).reset).toBe(false);
  c.at(60_000);
  expect(c.conn.stalled(60_000).reset).toBe(false);
  expect(c.conn.client).toBe(client);
  expect(c.conn.resets).toBe(0);
  expect(c.told()).toBe(0);
  c.conn.close();
});

test("EtcdConnection.stalled: a dead connection is replaced, then not again within a hold", () => {
  const c = connection(["http://127.0.0.1:1"], () => "dead");
  const client = c.conn.client;
  c.at(1000);
  expect(c.conn.stalled(1000).reset).toBe(true);
  expect(c.conn.client).not.toBe(client);
  c.at(1000 + H - 1);
  expect(c.conn.stalled(1000).reset).toBe(false);
  c.at(1000 + H);
  expect(c.conn.stalled(1000).reset).toBe(true);
  expect(c.conn.resets).toBe(2);
  expect(c.told()).toBe(2);
  c.conn.close();
});

const [E0, E1, E2] = ["http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"] as const;
const E = [E0, E1, E2];

test("EtcdConnection.stalled: with several endpoints a whole-cluster silence never replaces the connection", async () => {
  const c = connection(E, () => "dead", () => "silent");
  const client = c.conn.client;
  for (const t of [1000, 1100, 1500, 2000, 2500, 5000]) {
    c.at(t);
    expect(c.conn.stalled(t).reset).toBe(false);
    await c.conn.probing;
  }
  // Asked at 1000, 1500, 2000, 2500 and 5000 (1100 was under probeEvery): each member each time.
  expect(c.asked.length).toBe(5 * 3);
  expect(c.conn.client).toBe(client);
  expect(c.conn.resets).toBe(0);
  expect(c.told()).toBe(0);
  c.conn.close();
});

test("EtcdConnection.stalled: a silent member while the others answer: moved off it, once, and back at the next move", async () => {
  let frozen: string = E0;
  const c = connection(E, () => "alive", (e) => (e === frozen ? "silent" : "answers"));
  c.at(1000);
  expect(c.conn.stalled(1000)).toMatchObject({ reset: false, probe: true });
  // A second stall while the members are asked starts nothing more.
  expect(c.conn.stalled(1000).probe).toBeUndefined();
  await c.conn.probing;
  expect(c.conn.resets).toBe(1);
  expect(c.told()).toBe(1);
  expect(c.conn.inUse).toEqual([E1, E2]);
  // Within a hold of the move: not even asked.
  c.at(1000 + H - 1);
  expect(c.conn.stalled(1000).probe).toBeUndefined();
  // Later E[1] freezes and E[0] runs again: the move asks every member, E[0] too.
  frozen = E1;
  c.at(1000 + H);
  expect(c.conn.stalled(1000).probe).toBe(true);
  await c.conn.probing;
  expect(c.conn.inUse).toEqual([E0, E2]);
  expect(c.conn.resets).toBe(2);
  c.conn.close();
});

test("EtcdConnection.stalled: a dead member (fails at once) while the others answer: the connection stays", async () => {
  const c = connection(E, () => "alive", (e) => (e === E0 ? "fails" : "answers"));
  c.at(1000);
  c.conn.stalled(1000);
  await c.conn.probing;
  expect(c.conn.resets).toBe(0);
  expect(c.conn.inUse).toEqual(E);
  c.conn.close();
});
