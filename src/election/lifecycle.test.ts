// The session's loop with plain fakes for its parts: what it does when
// registration fails for good or for now, when the heartbeat reports a
// deposed key or an evicted record, when the view shows a new head, and how
// it stops. The parts themselves are tested on their own, and the whole
// against a real etcd in test/election/session.test.ts.
import { expect, test } from "bun:test";
import type { Logger } from "../log.ts";
import { Emitter } from "../seams.ts";
import type { HeartbeatEvents } from "./heartbeat.ts";
import type { LeaseEvents } from "./lease.ts";
import { Lifecycle, type SessionParts } from "./lifecycle.ts";
import { SessionFatalError } from "./registration.ts";
import type { SessionEvents } from "./session.ts";
import type { Guarded, Registered } from "./transactions.ts";

const V1 = "192.0.2.10";
const V2 = "192.0.2.11";

class FakeLease extends Emitter<LeaseEvents> {
  readonly id = "63";
  readonly etcdId = "99";
  readonly ttl = 5;
  constructor(private readonly calls: string[]) {
    super();
  }
  async grant(): Promise<void> {
    this.calls.push("grant");
  }
  async revoke(): Promise<void> {
    this.calls.push("revoke");
  }
  close(): void {
    this.calls.push("lease closed");
  }
  fire<K extends keyof LeaseEvents>(e: K, p: LeaseEvents[K]): void {
    this.emit(e, p);
  }
}

class FakeHeartbeat extends Emitter<HeartbeatEvents> {
  readonly lastCommitAt = null;
  readonly paceMs = 250;
  constructor(private readonly calls: string[]) {
    super();
  }
  start(): void {
    this.calls.push("heartbeat started");
  }
  stop(): void {
    this.calls.push("heartbeat stopped");
  }
  beat(): void {
    this.calls.push("beat");
  }
  provenSince(): null {
    return null;
  }
  prove(): void {}
  releasing(): void {}
  gone(): void {}
  putAlongside(): void {}
  fire<K extends keyof HeartbeatEvents>(e: K, p: HeartbeatEvents[K]): void {
    this.emit(e, p);
  }
}

const other = { run: "run-other", host: "h2", machine: "m2", boot: "b", netns: "n", pidns: "p", pid: 7, start: "1", holdMs: 1000, version: "t", startedAt: "2026-12-06T00:00:00Z" };

function harness(claims: (() => Promise<string>)[] = []) {
  const calls: string[] = [];
  const events: { [K in keyof SessionEvents]: SessionEvents[K][] } = { changed: [], deposed: [], lost: [], fatal: [], heartbeat: [] };
  const leases: FakeLease[] = [];
  const beats: FakeHeartbeat[] = [];
  const slept: number[] = [];
  let viewChanged: () => void = () => {};
  let heads: Guarded[] = [];
  /** The heads at the last newHeads() (queue-writer.test.ts tests the real one). */
  let headed = new Set<string>();
  const letGo = new Set<string>();
  const published: Registered[] = [];
  let claimed = 0;
  /** What the latest heartbeat was given to set its pace by. */
  let busy: () => boolean = () => false;
  const parts: SessionParts = {
    lease: () => {
      const l = new FakeLease(calls);
      leases.push(l);
      return l;
    },
    etcdVersion: async () => {
      calls.push("version");
      return "3.5.21";
    },
    watch: (changed) => {
      viewChanged = changed;
      return {
        synced: true,
        start: async () => void calls.push("watch started"),
        close: () => void calls.push("watch closed"),
        expect: (r: string) => void calls.push(`watch expects ${r}`),
        etcdAnswered: () => void calls.push("etcd answered"),
      };
    },
    heartbeat: (h) => {
      calls.push(`heartbeat on lease ${h.lease}, record ${h.agentRevision}`);
      const b = new FakeHeartbeat(calls);
      beats.push(b);
      busy = h.busy;
      return b;
    },
  };
  const quiet = () => {};
  const log: Logger = { error: quiet, warn: quiet, info: quiet, debug: quiet };
  const life = new Lifecycle({
    settings: { endpoints: ["http://etcd:2379"], prefix: "/v/", node: "n1", holdMs: 1000, leaseTtlS: 5 },
    log, clock: () => 0, run: "run-me", parts,
    registration: {
      refuseLegacy: async () => void calls.push("0.1 refused"),
      refuseNewerLayout: async () => void calls.push("newer layout refused"),
      claim: async (lease) => {
        calls.push(`claim on lease ${lease}`);
        const next = claims[claimed++];
        return next ? next() : "7";
      },
      publishMacs: async (reg) => void published.push(reg),
    },
    queues: {
      guard: () => heads, claims: () => heads.map((g) => g.vip), letGo: (g) => letGo.has(g.vip), busy: () => heads.length > 0,
      newHeads: () => {
        const news = heads.some((g) => !headed.has(g.vip));
        headed = new Set(heads.map((g) => g.vip));
        return news;
      },
    },
    emit: (e, p) => void (events[e] as unknown[]).push(p),
    sleep: async (ms) => void slept.push(ms),
  });
  return {
    life, calls, events, leases, beats, slept, letGo, published,
    setHeads: (h: Guarded[]) => void (heads = h),
    viewChanged: () => viewChanged(),
    busy: () => busy(),
    get claimed() {
      return claimed;
    },
  };
}

const until = async (what: string, ok: () => boolean) => {
  for (let i = 0; i < 400; i++) {
    if (ok()) return;
    await Bun.sleep(2);
  }
  throw new Error(`${what}: not within a second`);
};

test("establishing: lease granted, 0.1 and newer layouts refused and etcd's version read together; then the name claimed on that lease, the watch, the heartbeat under the record", async () => {
  const h = harness();
  h.life.start();
  await until("established", () => h.life.ready);
  expect(h.calls).toEqual(["version", "0.1 refused", "newer layout refused", "grant", "claim on lease 99", "watch started", "heartbeat on lease 99, record 7", "heartbeat started"]);
  expect(h.life.registered()).toEqual({ agentRevision: "7", lease: "99" });
  expect(h.life.lastError).toBeNull();
  expect(h.events.changed.length).toBe(1);
});

test("a registration that can never succeed (another live run, vipd 0.1) stops the loop for good: fatal, no retry", async () => {
  const h = harness([async () => Promise.reject(new SessionFatalError("another vipd already runs as node n1"))]);
  h.life.start();
  await until("fatal", () => h.events.fatal.length > 0);
  expect(h.events.fatal).toEqual([{ reason: "another vipd already runs as node n1" }]);
  expect(h.life.lastError).toBe("another vipd already runs as node n1");
  await Bun.sleep(10);
  expect(h.claimed).toBe(1);
  expect(h.life.established).toBe(false);
  expect(h.calls).toContain("lease closed");
});

test("any other failure is retried, the wait doubling from 250 ms to at most 5 s; etcd's version is read once", async () => {
  const fail = async () => Promise.reject(new Error("etcd: no leader"));
  const h = harness([fail, fail, fail, fail, fail, fail, fail]);
  h.life.start();
  await until("established", () => h.life.ready);
  expect(h.slept).toEqual([250, 500, 1000, 2000, 4000, 5000, 5000]);
  expect(h.claimed).toBe(8);
  expect(h.calls.filter((c) => c === "version")).toHaveLength(1);
  // Each failed attempt's lease was let go.
  expect(h.calls.filter((c) => c === "lease closed")).toHaveLength(7);
});

test("our record replaced by another run of our node name, seen by a heartbeat: fatal, and the session does not register again", async () => {
  const h = harness();
  h.life.start();
  await until("established", () => h.life.ready);
  h.beats[0]!.fire("evicted", { reason: "our agent record was replaced", by: other });
  expect(h.events.fatal[0]!.reason).toContain('node name "n1" was taken over by another vipd (pid 7 on h2');
  expect(h.events.lost).toEqual([]);
  await Bun.sleep(10);
  expect(h.claimed).toBe(1);
  expect(h.calls).toContain("heartbeat stopped");
});

test("our record or lease gone: lost (release everything), and registered again by itself", async () => {
  const h = harness();
  h.life.start();
  await until("established", () => h.life.ready);
  h.beats[0]!.fire("evicted", { reason: "our agent record is gone", by: null });
  expect(h.events.lost).toEqual([{ reason: "our agent record is gone" }]);
  expect(h.life.registered()).toBeNull();
  await until("registered again", () => h.claimed === 2 && h.life.ready);
  h.leases[1]!.fire("lost", { id: "63", reason: "TTL expired" });
  expect(h.events.lost[1]).toEqual({ reason: "etcd lease 63: TTL expired" });
  await until("registered a third time", () => h.claimed === 3 && h.life.ready);
  expect(h.events.fatal).toEqual([]);
});

test("a deposed key is news only when we did not let it go ourselves; the watch must show the deletion", async () => {
  const h = harness();
  h.life.start();
  await until("established", () => h.life.ready);
  h.letGo.add(V1);
  h.beats[0]!.fire("deposed", { keys: [{ vip: V1, createRevision: "10" }, { vip: V2, createRevision: "11" }, { vip: V2, createRevision: "12" }], revision: "40" });
  expect(h.events.deposed).toEqual([{ vips: [V2] }]);
  expect(h.calls).toContain("watch expects 40");
  h.beats[0]!.fire("deposed", { keys: [{ vip: V1, createRevision: "10" }], revision: "41" });
  expect(h.events.deposed).toHaveLength(1);
  expect(h.events.heartbeat).toEqual([{ result: "deposed" }, { result: "deposed" }]);
});

test("a view that shows us first in a new queue asks for a heartbeat at once, and the heartbeat's pace is the holder's from then on; one that does not, waits for the interval", async () => {
  const h = harness();
  h.life.start();
  await until("established", () => h.life.ready);
  const beats = () => h.calls.filter((c) => c === "beat").length;
  h.viewChanged();
  expect(beats()).toBe(0);
  expect(h.busy()).toBe(false);
  h.setHeads([{ vip: V1, createRevision: "10" }]);
  h.viewChanged();
  expect(beats()).toBe(1);
  expect(h.busy()).toBe(true);
  h.viewChanged();
  expect(beats()).toBe(1);
});

test("a committed heartbeat tells the watch that etcd answered and what to expect, and publishes the MACs under this registration", async () => {
  const h = harness();
  h.life.start();
  await until("established", () => h.life.ready);
  h.beats[0]!.fire("committed", { sentAt: 0, revision: "50", guarded: [], rttMs: 3 });
  expect(h.calls.slice(-2)).toEqual(["etcd answered", "watch expects 50"]);
  expect(h.published).toEqual([{ agentRevision: "7", lease: "99" }]);
  expect(h.events.heartbeat).toEqual([{ result: "committed", rttMs: 3 }]);
});

test("stop: the heartbeat first, then leave and revoke the lease; a stop while registering revokes the lease it may have written under", async () => {
  const h = harness();
  h.life.start();
  await until("established", () => h.life.ready);
  const from = h.calls.length;
  await h.life.stop(300, async () => void h.calls.push("left every queue"));
  expect(h.calls.slice(from, from + 3)).toEqual(["heartbeat stopped", "left every queue", "revoke"]);
  // Then the teardown (the loop's own end runs it again; each part's close is idempotent).
  expect(new Set(h.calls.slice(from + 3))).toEqual(new Set(["heartbeat stopped", "watch closed", "lease closed"]));
  expect(h.life.established).toBe(false);

  let release!: (rev: string) => void;
  const g = harness([() => new Promise<string>((r) => (release = r))]);
  g.life.start();
  await until("registering", () => g.claimed === 1);
  const stopped = g.life.stop(300, async () => void g.calls.push("left every queue"));
  release("7");
  await stopped;
  expect(g.calls).not.toContain("left every queue");
  expect(g.calls).toContain("revoke");
  // What the registration started is stopped before the lease goes.
  expect(g.calls.lastIndexOf("heartbeat stopped")).toBeLessThan(g.calls.indexOf("revoke"));
  expect(g.life.established).toBe(false);
});
