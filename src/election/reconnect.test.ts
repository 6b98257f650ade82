// When silence gets a new connection: only where one can help, never twice
// within a hold time on one endpoint (reconnect.ts), and what EtcdConnection
// does with the answer, on an injected clock and kernel.
import { expect, test } from "bun:test";
import { EtcdConnection } from "./connection.ts";
import { decideReconnect, type ReconnectFacts, stallAfter, type TcpLiveness } from "./reconnect.ts";

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
  ["three endpoints: another member may answer", facts({ endpoints: 3 }), true],
  ["three endpoints, reconnected 1 s ago: the next member", facts({ endpoints: 3, lastResetAt: 9000 }), true],
] as const)("%s", (_name, f, reset) => {
  const d = decideReconnect(f);
  expect(d.reset).toBe(reset);
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

test("the stall threshold moves to another member within half a hold time", () => {
  expect(stallAfter(2500, 250)).toBe(1000);
  expect(stallAfter(30_000, 250)).toBe(1000);
  expect(stallAfter(1000, 250)).toBe(250);
  for (const h of [1000, 1500, 2000, 2500, 5000, 30_000]) expect(stallAfter(h, 250)).toBeLessThanOrEqual(h / 2);
});

function connection(endpoints: string[], tcp: () => TcpLiveness) {
  let now = 0;
  const conn = new EtcdConnection({ endpoints, holdMs: H, clock: () => now, tcp, drainMs: 0 });
  let told = 0;
  conn.onReset(() => told++);
  return { conn, told: () => told, at: (t: number) => void (now = t) };
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

test("EtcdConnection.stalled: with several endpoints every stall moves on", () => {
  const c = connection(["http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"], () => "alive");
  for (const t of [1000, 2000, 3000]) {
    c.at(t);
    expect(c.conn.stalled(1000).reset).toBe(true);
  }
  expect(c.conn.resets).toBe(3);
  c.conn.close();
});
