import { describe, expect, test } from "bun:test";
import { CONFLICT_RETRY_MS, type Conflict, ConflictWatch, type SlotState } from "./conflict.ts";

const AGENT = "02:00:00:00:00:0a";
const STRANGER = "02:00:00:00:00:99";
const OTHER_STRANGER = "02:00:00:00:00:98";
/** A second link of this node on the VIP's segment (not published in etcd). */
const OWN_LINK = "02:00:00:00:00:0b";
const INTERVAL = 60_000;

/** A clock and timers that move only when told to. */
class FakeTime {
  now = 1_000;
  #timers = new Map<number, { at: number; fn: () => void }>();
  #next = 1;
  readonly timers = {
    setTimeout: (fn: () => void, ms: number) => {
      const id = this.#next++;
      this.#timers.set(id, { at: this.now + ms, fn });
      return id;
    },
    clearTimeout: (id: unknown) => void this.#timers.delete(id as number),
  };
  get pending(): number {
    return this.#timers.size;
  }
  /** Moves the clock forward, firing due timers in order. */
  advance(ms: number): void {
    const end = this.now + ms;
    for (;;) {
      const due = [...this.#timers.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.#timers.delete(due[0]);
      this.now = Math.max(this.now, due[1].at);
      due[1].fn();
    }
    this.now = end;
  }
}

/** A probe the test answers by hand, and the watch under test. */
function setup(opts: { intervalMs?: number } = {}) {
  const time = new FakeTime();
  const probes: { at: number; answer: (macs: string[]) => Promise<void>; fail: (e: Error) => Promise<void> }[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const changes: (Conflict | null)[] = [];
  const agents = new Set([AGENT]);
  const own = new Set([OWN_LINK]);
  const failures: unknown[] = [];
  const watch = new ConflictWatch({
    vip: "192.0.2.10",
    link: "eth0",
    intervalMs: opts.intervalMs ?? INTERVAL,
    probe: () =>
      new Promise<readonly string[]>((resolve, reject) => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        // Settling lets the watch's continuation run before the test goes on.
        const settle = async (f: () => void) => {
          inFlight--;
          f();
          for (let i = 0; i < 5; i++) await Promise.resolve();
        };
        probes.push({ at: time.now, answer: (macs) => settle(() => resolve(macs)), fail: (e) => settle(() => reject(e)) });
      }),
    agentMacs: () => new Set(agents),
    ownMacs: () => new Set(own),
    clock: () => time.now,
    timers: time.timers,
    onChange: (c) => changes.push(c),
    onProbeFailed: (e) => failures.push(e),
  });
  const last = () => probes[probes.length - 1]!;
  return { time, probes, last, watch, changes, failures, agents, own, maxInFlight: () => maxInFlight };
}

const WANTS: SlotState = { wantsToStand: true, held: false };
const HOLDS: SlotState = { wantsToStand: true, held: true };
const IDLE: SlotState = { wantsToStand: false, held: false };

describe("ConflictWatch", () => {
  test("probes once before the node first stands, and lets it stand when only agents answer", async () => {
    const t = setup();
    expect(t.watch.clearToStand()).toBe(false);
    t.watch.update(WANTS);
    t.watch.update(WANTS);
    t.watch.update(WANTS);
    expect(t.probes).toHaveLength(1);
    expect(t.watch.probing).toBe(true);
    expect(t.watch.clearToStand()).toBe(false);
    await t.last().answer([AGENT]);
    expect(t.watch.clearToStand()).toBe(true);
    expect(t.watch.conflict).toBeNull();
    expect(t.changes).toEqual([]);
  });

  test("a node that does not want to stand never probes", () => {
    const t = setup();
    t.watch.update(IDLE);
    t.time.advance(10 * INTERVAL);
    expect(t.probes).toHaveLength(0);
    expect(t.time.pending).toBe(0);
  });

  test("a stranger's answer is a conflict, reported once, with a sentence naming the VIP, link and MAC", async () => {
    const t = setup();
    t.watch.update(WANTS);
    await t.last().answer([AGENT, STRANGER]);
    const c = t.watch.conflict!;
    expect(c.macs).toEqual([STRANGER]);
    expect(c.reason).toBe(`address conflict: 192.0.2.10 on eth0 is answered by ${STRANGER}, which is not a vipd agent`);
    expect(t.changes).toEqual([c]);
    expect(t.watch.clearToStand()).toBe(false);
    // Still there at the next probe: no second report.
    t.time.advance(CONFLICT_RETRY_MS);
    await t.last().answer([STRANGER]);
    expect(t.changes).toHaveLength(1);
  });

  test("an agent that answered and then left (its MACs gone from etcd before the probe ends) is no stranger", async () => {
    const t = setup();
    t.watch.update(WANTS);
    t.agents.delete(AGENT);
    await t.last().answer([AGENT]);
    expect(t.watch.conflict).toBeNull();
    // ...nor one that joined while the probe ran.
    t.time.advance(INTERVAL);
    t.watch.update(WANTS);
    t.agents.add(OTHER_STRANGER);
    await t.last().answer([OTHER_STRANGER]);
    expect(t.watch.conflict).toBeNull();
    // A MAC no agent had at either end is a stranger's.
    t.time.advance(INTERVAL);
    t.watch.update(WANTS);
    await t.last().answer([AGENT]);
    expect(t.watch.conflict?.macs).toEqual([AGENT]);
  });

  test("this node's own links answering (a second link on the segment, arp_ignore=0) are no stranger, though etcd does not list them", async () => {
    const t = setup();
    t.watch.update(HOLDS);
    await t.last().answer([OWN_LINK]);
    expect(t.watch.conflict).toBeNull();
    expect(t.watch.clearToStand()).toBe(true);
    // A link of ours that goes away while the probe runs answered as ours.
    t.time.advance(INTERVAL);
    t.own.delete(OWN_LINK);
    await t.last().answer([OWN_LINK]);
    expect(t.watch.conflict).toBeNull();
    // A stranger beside our own link is still one, and named alone.
    t.own.add(OWN_LINK);
    t.time.advance(INTERVAL);
    await t.last().answer([OWN_LINK, STRANGER]);
    expect(t.watch.conflict?.macs).toEqual([STRANGER]);
    expect(t.changes).toEqual([t.watch.conflict]);
  });

  test("several strangers are all named, sorted, once each", async () => {
    const t = setup();
    t.watch.update(WANTS);
    await t.last().answer([STRANGER, OTHER_STRANGER, STRANGER]);
    expect(t.watch.conflict!.macs).toEqual([OTHER_STRANGER, STRANGER]);
    expect(t.watch.conflict!.reason).toEndWith(`answered by ${OTHER_STRANGER}, ${STRANGER}, which are not vipd agents`);
  });

  test("in conflict it probes every CONFLICT_RETRY_MS, and the conflict clears when only agents answer", async () => {
    const t = setup();
    t.watch.update(WANTS);
    await t.last().answer([STRANGER]);
    const found = t.watch.conflict!;
    t.time.advance(CONFLICT_RETRY_MS - 1);
    expect(t.probes).toHaveLength(1);
    t.time.advance(1);
    expect(t.probes).toHaveLength(2);
    await t.last().answer([STRANGER]);
    t.time.advance(CONFLICT_RETRY_MS);
    expect(t.probes).toHaveLength(3);
    await t.last().answer([AGENT]);
    expect(t.watch.conflict).toBeNull();
    expect(t.changes).toEqual([found, null]);
    expect(t.watch.clearToStand()).toBe(true);
    expect(t.probes.map((p) => p.at)).toEqual([1_000, 1_000 + CONFLICT_RETRY_MS, 1_000 + 2 * CONFLICT_RETRY_MS]);
  });

  test("a short interval shortens the retry in conflict too", async () => {
    const t = setup({ intervalMs: 1_000 });
    t.watch.update(WANTS);
    await t.last().answer([STRANGER]);
    t.time.advance(1_000);
    expect(t.probes).toHaveLength(2);
  });

  test("other strangers than before update the sentence without a second report", async () => {
    const t = setup();
    t.watch.update(WANTS);
    await t.last().answer([STRANGER]);
    t.time.advance(CONFLICT_RETRY_MS);
    await t.last().answer([OTHER_STRANGER]);
    expect(t.changes).toHaveLength(1);
    expect(t.watch.conflict!.macs).toEqual([OTHER_STRANGER]);
    expect(t.watch.conflict!.since).toBe(1_000);
  });

  test("while holding: a probe right after taking the VIP, then one per interval", async () => {
    const t = setup();
    t.watch.update(WANTS);
    await t.last().answer([]);
    t.time.advance(5_000);
    t.watch.update(HOLDS);
    expect(t.probes).toHaveLength(2);
    await t.last().answer([AGENT]);
    t.time.advance(INTERVAL - 1);
    expect(t.probes).toHaveLength(2);
    t.time.advance(1);
    expect(t.probes).toHaveLength(3);
    await t.last().answer([]);
    t.time.advance(INTERVAL);
    expect(t.probes).toHaveLength(4);
    expect(t.probes.map((p) => p.at)).toEqual([1_000, 6_000, 6_000 + INTERVAL, 6_000 + 2 * INTERVAL]);
  });

  test("a node standing behind the holder probes once per interval too", async () => {
    const t = setup();
    t.watch.update(WANTS);
    await t.last().answer([]);
    t.time.advance(INTERVAL);
    expect(t.probes).toHaveLength(2);
    await t.last().answer([]);
    // Waiting in the queue is not holding: no probe "right after".
    t.time.advance(INTERVAL - 1);
    expect(t.probes).toHaveLength(2);
  });

  test("a holder that finds a stranger reports a conflict; the slot's release then keeps the retries going", async () => {
    const t = setup();
    t.watch.update(HOLDS);
    await t.last().answer([]);
    t.time.advance(INTERVAL);
    await t.last().answer([STRANGER]);
    expect(t.watch.conflict?.macs).toEqual([STRANGER]);
    // The slot releases the VIP and would stand again but for the conflict.
    t.watch.update(WANTS);
    t.time.advance(CONFLICT_RETRY_MS);
    expect(t.probes).toHaveLength(3);
  });

  test("taking the VIP while a probe is in flight probes again once it ends", async () => {
    const t = setup();
    t.watch.update(WANTS);
    t.time.advance(10);
    t.watch.update(HOLDS);
    expect(t.probes).toHaveLength(1);
    await t.last().answer([]);
    expect(t.probes).toHaveLength(2);
    expect(t.maxInFlight()).toBe(1);
  });

  test("never two probes at once, however often the slot decides", async () => {
    const t = setup({ intervalMs: 1_000 });
    t.watch.update(HOLDS);
    for (let i = 0; i < 50; i++) {
      t.time.advance(700);
      t.watch.update(i % 2 ? HOLDS : WANTS);
      t.watch.update(HOLDS);
    }
    expect(t.probes).toHaveLength(1);
    await t.last().answer([STRANGER]);
    for (let i = 0; i < 20; i++) {
      t.time.advance(1_000);
      t.watch.update(WANTS);
      if (t.watch.probing) await t.last().answer([STRANGER]);
    }
    expect(t.maxInFlight()).toBe(1);
  });

  test("a clear probe lets the node stand for one interval; after that it probes again first", async () => {
    const t = setup();
    t.watch.update(WANTS);
    await t.last().answer([]);
    // The node left the queue for another reason (a closed gate) and comes back late.
    t.watch.update(IDLE);
    t.time.advance(INTERVAL - 1);
    expect(t.watch.clearToStand()).toBe(true);
    t.time.advance(1);
    expect(t.watch.clearToStand()).toBe(false);
    expect(t.probes).toHaveLength(1);
    t.watch.update(WANTS);
    expect(t.probes).toHaveLength(2);
  });

  test("a node that neither stands nor holds stops retrying in conflict, and resumes when it would stand", async () => {
    const t = setup();
    t.watch.update(WANTS);
    await t.last().answer([STRANGER]);
    t.watch.update(IDLE);
    t.time.advance(5 * CONFLICT_RETRY_MS);
    expect(t.probes).toHaveLength(1);
    t.watch.update(WANTS);
    expect(t.probes).toHaveLength(2);
  });

  test("a failed probe is reported and lets the node stand, but never ends a conflict", async () => {
    const t = setup();
    t.watch.update(WANTS);
    await t.last().fail(new Error("ENETDOWN: probing 192.0.2.10 on eth0"));
    expect(t.failures).toHaveLength(1);
    expect(t.watch.clearToStand()).toBe(true);
    expect(t.watch.conflict).toBeNull();

    t.time.advance(INTERVAL);
    await t.last().answer([STRANGER]);
    t.time.advance(CONFLICT_RETRY_MS);
    await t.last().fail(new Error("ENETDOWN"));
    expect(t.watch.conflict?.macs).toEqual([STRANGER]);
    expect(t.watch.clearToStand()).toBe(false);
    expect(t.changes).toHaveLength(1);
    t.time.advance(CONFLICT_RETRY_MS);
    expect(t.probes).toHaveLength(4);
  });

  test("an interval of 0 turns detection off: no probe, always clear to stand", () => {
    const t = setup({ intervalMs: 0 });
    expect(t.watch.enabled).toBe(false);
    t.watch.update(WANTS);
    t.watch.update(HOLDS);
    t.time.advance(10 * INTERVAL);
    expect(t.probes).toHaveLength(0);
    expect(t.watch.clearToStand()).toBe(true);
    expect(t.watch.conflict).toBeNull();
  });

  test("after stop(), no probe starts and an answer in flight is ignored", async () => {
    const t = setup();
    t.watch.update(WANTS);
    t.watch.stop();
    await t.last().answer([STRANGER]);
    expect(t.watch.conflict).toBeNull();
    expect(t.changes).toEqual([]);
    t.watch.update(HOLDS);
    t.time.advance(10 * INTERVAL);
    expect(t.probes).toHaveLength(1);
    expect(t.time.pending).toBe(0);
  });

  test("refuses a negative interval", () => {
    expect(() => setup({ intervalMs: -1 })).toThrow("probe interval -1 ms is not a non-negative number");
  });
});
