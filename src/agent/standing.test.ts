import { describe, expect, test } from "bun:test";
import { type CandidacyFacts, decideCandidacy } from "../vip/decision.ts";
import { describeStanding, type StandingFacts, standing } from "./standing.ts";

const ready: CandidacyFacts = { link: "up", gateOpen: true, stopping: false, withdrawn: null, removed: false, drained: null, conflict: null, yielding: null };
const queued: StandingFacts = {
  link: "enp0s2", linkState: "up", candidacy: decideCandidacy(ready), sessionReady: true, held: false, ahead: [], pending: "joining the queue",
};

describe("standing", () => {
  test("in the queue or holding: standing, and as what", () => {
    expect(standing(queued)).toEqual({ standing: true, detail: "first in the queue" });
    expect(standing({ ...queued, ahead: ["cp-1", "cp-2"] })).toEqual({ standing: true, detail: "waiting behind cp-1, cp-2" });
    expect(standing({ ...queued, held: true })).toEqual({ standing: true, detail: "holding" });
    // A holder rides out a short etcd outage on its proof: still standing.
    expect(standing({ ...queued, held: true, sessionReady: false })).toEqual({ standing: true, detail: "holding" });
  });

  test("a missing or down link is a fault that names the link", () => {
    const absent = { ...queued, linkState: "absent", candidacy: decideCandidacy({ ...ready, link: "absent" }), ahead: null } as const;
    expect(standing(absent)).toEqual({ standing: false, reason: "link enp0s2 missing", fault: true });
    expect(describeStanding(standing(absent))).toBe("not standing: link enp0s2 missing");
    const down = { ...queued, linkState: "down", candidacy: decideCandidacy({ ...ready, link: "down" }), ahead: null } as const;
    expect(standing(down)).toEqual({ standing: false, reason: "link enp0s2 down", fault: true });
    // Still in the queue while the withdrawal is under way, or still holding: not standing all the same.
    expect(standing({ ...down, ahead: [], held: true })).toEqual({ standing: false, reason: "link enp0s2 down", fault: true });
  });

  test("other reasons not to stand are named, and are not this check's fault", () => {
    const cases: [Partial<CandidacyFacts>, string][] = [
      [{ gateOpen: false }, "kube-apiserver gate closed"],
      [{ drained: "drained by ops@admin" }, "drained by ops@admin"],
      [{ conflict: "address conflict: 02:00:00:00:00:99 answers" }, "address conflict: 02:00:00:00:00:99 answers"],
      [{ withdrawn: "the kernel refused the address 3 times" }, "the kernel refused the address 3 times"],
      [{ yielding: "handing over to cp-2" }, "handing over to cp-2"],
      [{ stopping: true }, "shutting down"],
      [{ removed: true }, "removed from the configuration"],
    ];
    for (const [change, reason] of cases) {
      expect(standing({ ...queued, candidacy: decideCandidacy({ ...ready, ...change }) })).toEqual({ standing: false, reason, fault: false });
    }
    // Shutting down comes before the link: a stopping node's missing link is no news.
    const stopping = decideCandidacy({ ...ready, stopping: true, link: "absent" });
    expect(standing({ ...queued, linkState: "absent", candidacy: stopping })).toEqual({ standing: false, reason: "shutting down", fault: false });
  });

  test("ready but not queued yet, or no etcd session: not standing, no fault", () => {
    expect(standing({ ...queued, ahead: null })).toEqual({ standing: false, reason: "joining the queue", fault: false });
    expect(standing({ ...queued, ahead: null, pending: "probing for another machine that uses the address before standing" }))
      .toEqual({ standing: false, reason: "probing for another machine that uses the address before standing", fault: false });
    expect(standing({ ...queued, sessionReady: false })).toEqual({ standing: false, reason: "etcd session not established", fault: false });
    expect(describeStanding(standing({ ...queued, ahead: null }))).toBe("not standing: joining the queue");
    expect(describeStanding(standing(queued))).toBe("first in the queue");
  });
});
