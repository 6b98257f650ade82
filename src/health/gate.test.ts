// The gate's rule on a fake clock: rise, fall and the anti-flap hold-down to
// the probe, and the scheduling loop on fake timers.
import { describe, expect, test } from "bun:test";
import {
  ApiServerGate, type ApiServerGateOptions, defaultHoldDownMs, type GateChange, type GateRule, type GateState,
  initialGate, NOT_READY_YET, stepGate,
} from "./gate.ts";
import type { ProbeOutcome } from "./probe.ts";
import { FakeTime } from "../fake-time.ts";
import type { Intervals } from "../seams.ts";
import { SharedIntervals } from "../shared-ticks.ts";

const URL = "https://127.0.0.1:6443/readyz";
const OK: ProbeOutcome = { ok: true, detail: `GET ${URL}: 200` };
const E500: ProbeOutcome = { ok: false, detail: `GET ${URL}: 500` };
const RULE: GateRule = { rise: 2, fall: 3, holdDownMs: 10_000 };

/** Applies `pattern` ("+" success, "-" failure), one probe per second from t=1 s; returns the state after each. */
function run(pattern: string, rule = RULE, from: GateState = initialGate(), t0 = 0): GateState[] {
  const out: GateState[] = [];
  let s = from;
  [...pattern].forEach((c, i) => {
    s = stepGate(rule, s, c === "+" ? OK : E500, t0 + (i + 1) * 1000);
    out.push(s);
  });
  return out;
}
const opens = (states: GateState[]) => states.map((s) => (s.open ? "O" : "c")).join("");

describe("stepGate", () => {
  test("starts closed: the API server has not been ready yet", () => {
    expect(initialGate()).toMatchObject({ open: false, reason: NOT_READY_YET, closedAt: null });
    const [s] = run("-");
    expect(s!.reason).toBe(`${NOT_READY_YET}: GET ${URL}: 500`);
  });

  test("opens after exactly rise successes; first opening has no hold-down", () => {
    expect(opens(run("---++"))).toBe("ccccO");
    expect(opens(run("+-+-++"))).toBe("cccccO");
    expect(opens(run("+", { ...RULE, rise: 1 }))).toBe("O");
    expect(run("++").at(-1)!.reason).toBe(`kube-apiserver ready: GET ${URL}: 200`);
  });

  test("closes after exactly fall consecutive failures; fewer are absorbed", () => {
    expect(opens(run("++--+--+---"))).toBe("cOOOOOOOOOc");
    const closed = run("++---").at(-1)!;
    expect(closed.closedAt).toBe(5000);
    expect(closed.reason).toBe(`kube-apiserver not ready: GET ${URL}: 500 (3 failed probes in a row)`);
  });

  test("after a close: reopens only after rise successes AND holdDown without a failure", () => {
    // Closed at t=5 s (the failure at 5 s is the last one); quiet from 5 s, so t=15 s is the first chance.
    const s = run("++---++++++++++++");
    const at = (sec: number) => s[sec - 1]!;
    expect(at(5).open).toBe(false);
    for (let sec = 6; sec <= 14; sec++) expect(at(sec).open).toBe(false);
    expect(at(7).reason).toContain("anti-flap hold-down");
    expect(at(15).open).toBe(true);
    // With rise larger than the hold-down window, rise decides.
    const openGate: GateState = { ...initialGate(), open: true };
    const slow = run("---" + "+".repeat(12), { rise: 12, fall: 3, holdDownMs: 2000 }, openGate);
    expect(opens(slow)).toBe("OOc" + "c".repeat(11) + "O");
  });

  test("a failure during the hold-down restarts it", () => {
    // Close at 5 s, a failure at 9 s: quiet from 9 s, so reopen at 19 s, not 15 s.
    const s = run("++---+++-" + "+".repeat(12));
    expect(s.findIndex((x, i) => i > 5 && x.open) + 1).toBe(19);
  });

  test("flapping every second for 30 s: one close, no reopen within the hold-down", () => {
    // Open and steady, then 30 s of flapping of several shapes, then steady again.
    let closedShapes = 0;
    for (const flap of ["+-", "++--", "+++---", "+----", "-+"]) {
      const pattern = "++++" + flap.repeat(Math.ceil(30 / flap.length)).slice(0, 30) + "+".repeat(15);
      const s = run(pattern);
      const trace = opens(s).slice(1); // open from the second probe on
      expect(trace.startsWith("OOO")).toBe(true);
      const moves = [...trace].filter((c, i) => i > 0 && c !== trace[i - 1]).length;
      const closes = trace.match(/Oc/g)?.length ?? 0;
      expect(closes).toBeLessThanOrEqual(1);
      if (closes === 1) {
        closedShapes++;
        // Closed once, and stays closed through the flapping (≥ the hold-down after the last failure).
        const lastFail = pattern.lastIndexOf("-") + 1;
        const reopen = s.findIndex((x, i) => i >= 4 && x.open && i + 1 > lastFail) + 1;
        expect(reopen).toBe(lastFail + 10);
        expect(moves).toBe(2); // the close, and the reopen after the flapping ended
      } else {
        expect(moves).toBe(0);
      }
    }
    expect(closedShapes).toBe(2); // "+++---" and "+----" reach fall; the others never do
  });

  test("default hold-down is max(10 s, 5 × interval)", () => {
    expect(defaultHoldDownMs(1)).toBe(10_000);
    expect(defaultHoldDownMs(2)).toBe(10_000);
    expect(defaultHoldDownMs(3)).toBe(15_000);
  });
});

/** Repeating timers on the fake clock, as the runtime's; `armed` counts the intervals set. */
function runtimeIntervals(time: FakeTime): Intervals & { armed: number } {
  return {
    armed: 0,
    setInterval(fn, ms) {
      this.armed++;
      const h = { t: null as unknown };
      const again = () => {
        h.t = time.setTimeout(() => {
          again();
          fn();
        }, ms);
      };
      again();
      return h;
    },
    clearInterval: (h) => time.clearTimeout((h as { t: unknown }).t),
  };
}

/** A gate whose probes each take 1500 ms (`takes` spends them, on the fake clock), run for 4 s: when each probe started, and the most in flight at once. */
async function slowProbes(time: FakeTime, takes: () => void | Promise<void>, ticks?: SharedIntervals): Promise<{ starts: number[]; maxInFlight: number }> {
  let inFlight = 0;
  let maxInFlight = 0;
  const starts: number[] = [];
  const gate = new ApiServerGate(OPTS, {
    clock: time.clock,
    timers: time,
    ...(ticks ? { ticks } : {}),
    probe: async () => {
      starts.push(time.now);
      maxInFlight = Math.max(maxInFlight, ++inFlight);
      await takes();
      inFlight--;
      return OK;
    },
  });
  gate.start();
  await time.advance(4000);
  gate.stop();
  return { starts, maxInFlight };
}

const OPTS: ApiServerGateOptions = { url: URL, insecureSkipVerify: false, interval: 1, timeout: 2, rise: 2, fall: 3 };

describe("ApiServerGate", () => {
  test("probes every interval, reports latency, counts and changes", async () => {
    const time = new FakeTime();
    const script = "--++---";
    let i = 0;
    const gate = new ApiServerGate(OPTS, {
      clock: time.clock,
      timers: time,
      probe: async () => {
        time.now += 30; // each probe takes 30 ms
        return script[i++] === "+" ? OK : E500;
      },
    });
    const changes: GateChange[] = [];
    gate.onChange((c) => changes.push(c));
    expect(gate.open).toBe(false);
    expect(gate.reason).toBe(NOT_READY_YET);
    gate.start();
    await time.advance(0);
    expect(i).toBe(1);
    expect(gate.lastProbe).toEqual({ ok: false, detail: E500.detail, latencyMs: 30, at: 30 });
    await time.advance(970); // next probe at t=1000: one interval after the previous *start*
    expect(i).toBe(2);
    await time.advance(2000);
    expect(i).toBe(4);
    expect(gate.open).toBe(true);
    await time.advance(3000);
    expect(i).toBe(7);
    expect(gate.open).toBe(false);
    expect(gate.counts).toEqual({ probes: 7, successes: 2, failures: 5, consecutiveSuccesses: 0, consecutiveFailures: 3 });
    expect(changes.map((c) => c.kind)).toEqual(["reason", "opened", "closed"]);
    expect(changes[0]!.reason).toBe(`${NOT_READY_YET}: ${E500.detail}`);
    gate.stop();
    expect(time.pending).toBe(0);
    await time.advance(5000);
    expect(i).toBe(7);
  });

  test("a probe slower than the interval: the next starts when it ends, never overlapping", async () => {
    const time = new FakeTime();
    const { starts, maxInFlight } = await slowProbes(time, () => void (time.now += 1500));
    expect(maxInFlight).toBe(1);
    expect(starts).toEqual([0, 1500, 3000, 4500]);
  });

  test("a rejecting probe counts as a failure; a throwing listener does not stop probing", async () => {
    const time = new FakeTime();
    let n = 0;
    const gate = new ApiServerGate({ ...OPTS, rise: 1 }, {
      clock: time.clock,
      timers: time,
      probe: () => (n++ === 0 ? Promise.reject(new Error("boom")) : Promise.resolve(OK)),
    });
    const origError = console.error;
    console.error = () => {};
    gate.onChange(() => {
      throw new Error("listener bug");
    });
    try {
      gate.start();
      await time.advance(0);
      expect(gate.reason).toBe(`${NOT_READY_YET}: probe failed: Error: boom`);
      await time.advance(2000);
      expect(n).toBe(3);
      expect(gate.open).toBe(true);
    } finally {
      console.error = origError;
      gate.stop();
    }
  });

  test("on shared ticks: probes start at each tick with the agent's other tasks, one runtime timer for all", async () => {
    const time = new FakeTime();
    const runtime = runtimeIntervals(time);
    const ticks = new SharedIntervals(runtime);
    const loopTicks: number[] = [];
    ticks.setInterval(() => loopTicks.push(time.now), 1000);
    await time.advance(400);
    const starts: number[] = [];
    const gate = new ApiServerGate(OPTS, {
      clock: time.clock,
      timers: time,
      ticks,
      probe: async () => {
        starts.push(time.now);
        time.now += 30;
        return OK;
      },
    });
    gate.start();
    await time.advance(3600);
    // Started at 400, then with the other task at every tick.
    expect(starts).toEqual([400, 1000, 2000, 3000, 4000]);
    expect(loopTicks).toEqual([1000, 2000, 3000, 4000]);
    expect(runtime.armed).toBe(1);
    gate.stop();
    expect(ticks.timers).toBe(1);
    await time.advance(2000);
    expect(starts.length).toBe(5);
  });

  test("on shared ticks, a probe slower than the interval: the next starts when it ends, never overlapping", async () => {
    const time = new FakeTime();
    const ticks = new SharedIntervals(runtimeIntervals(time));
    const { starts, maxInFlight } = await slowProbes(time, () => new Promise<void>((r) => time.setTimeout(r, 1500)), ticks);
    expect(maxInFlight).toBe(1);
    expect(starts).toEqual([0, 1500, 3000]);
    expect(ticks.timers).toBe(0);
  });

  test("holdDown option overrides the default; bad counts are refused", () => {
    expect(new ApiServerGate({ ...OPTS, holdDown: 4 }, { probe: async () => OK }).rule.holdDownMs).toBe(4000);
    expect(new ApiServerGate({ ...OPTS, interval: 3 }, { probe: async () => OK }).rule.holdDownMs).toBe(15_000);
    expect(() => new ApiServerGate({ ...OPTS, rise: 0 })).toThrow("rise and fall must be at least 1");
  });
});
