// The words a VIP's ownership changes are reported in to the operator: the
// hook's event (VIPD_EVENT, one program per event) and how a hook run ended.
// The runner (agent/hooks.ts) and the vipd_hook_runs_total counter
// (health/vipd-metrics.ts) share them; declared here, below both, so that
// the metrics need not import the agent.

/** acquired: this node took the VIP; released: it gave it up; fenced: it lost it (agent/hooks.ts hookEvent). */
export const HOOK_EVENTS = ["acquired", "released", "fenced"] as const;
export type HookEvent = (typeof HOOK_EVENTS)[number];

/** How a run ended, for vipd_hook_runs_total: fixed tokens. "missing": the program could not be started at all. */
export const HOOK_RESULTS = ["ok", "failed", "timeout", "missing"] as const;
export type HookResult = (typeof HOOK_RESULTS)[number];
