// /healthz's heartbeat rule at either pace (design.md §3, "Heartbeat by
// role"): etcd may hold the agent's heartbeats back for a hold less one
// interval before it fails, for a standby as for a holder.
import { expect, test } from "bun:test";
import type { Session } from "../election/session.ts";
import type { LoopWatch } from "./loop-watch.ts";
import { type AgentView, Surfaces } from "./surfaces.ts";

const HOLD = 2500;

function surfaces(lastCommitAt: number, paceMs: number, now: number): Surfaces {
  const session = { ready: true, lastHeartbeatAt: lastCommitAt, heartbeatPaceMs: paceMs, lastHeartbeatError: "deadline exceeded" } as unknown as Session;
  const view = {
    clock: () => now,
    loop: { problem: () => "" } as unknown as LoopWatch,
    gate: null,
    session: () => session,
    slots: () => [],
    holdMs: () => HOLD,
    stopping: () => false,
  } as unknown as AgentView;
  return new Surfaces(view);
}

test("a holder (250 ms pace) fails once no heartbeat committed for a hold", () => {
  expect(surfaces(0, 250, 2500).health()).toEqual({ ok: true, reason: "" });
  expect(surfaces(0, 250, 2501).health()).toEqual({ ok: false, reason: "etcd heartbeat: none committed for 2501 ms: deadline exceeded" });
});

test("a standby (1250 ms pace) is given its longer pace: the same 2.25 s of etcd silence after an on-time commit, not 1.25 s", () => {
  // Its next heartbeat was due 1250 ms after the last commit; etcd may hold
  // it back as long as a holder's.
  expect(surfaces(0, 1250, 3000).health()).toEqual({ ok: true, reason: "" });
  expect(surfaces(0, 1250, 3500).health()).toEqual({ ok: true, reason: "" });
  expect(surfaces(0, 1250, 3501).health()).toEqual({ ok: false, reason: "etcd heartbeat: none committed for 3501 ms: deadline exceeded" });
});
