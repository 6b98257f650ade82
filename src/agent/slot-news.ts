// What a slot tells the world when its VIP changes hands or a stranger
// answers for it: the log, the metrics and the hooks. Nothing here decides.
import type { VipSettings } from "../config/index.ts";
import type { VipdMetrics } from "../health/vipd-metrics.ts";
import type { Logger } from "../log.ts";
import type { OwnershipChange } from "../vip/controller.ts";
import type { Conflict } from "./conflict.ts";
import type { HookSink } from "./hooks.ts";

export type SlotMetrics = Pick<VipdMetrics, "declareVip" | "ownership" | "failover" | "handover" | "announced" | "tookOver" | "addressConflict">;

export interface NewsDeps {
  readonly vip: VipSettings;
  readonly node: string;
  readonly log: Logger;
  readonly metrics: SlotMetrics;
  readonly hooks: HookSink;
}

/** Releases an operator (or the configuration) asked for. */
const PLANNED: ReadonlySet<string> = new Set(["shutdown", "removed", "drained", "handover"]);

/** The controller acquired or released the VIP; `handoverTo`: the target of a hand-over asked for it, if any. */
export function ownershipNews(d: NewsDeps, c: OwnershipChange, handoverTo: string | null): void {
  const { vip, node, log, metrics } = d;
  const fields = { vip: c.ip, link: c.link, node, reason: c.reason };
  metrics.ownership(c.ip, c.link, c.held, c.code);
  if (c.held) {
    log.info("acquired VIP", fields);
    if (handoverTo === node) metrics.handover(vip.ip, "in");
  } else {
    // An operator's or the config's doing is news, not trouble.
    if (PLANNED.has(c.code)) log.info("released VIP", fields);
    else log.warn("released VIP", fields);
    if (c.code === "handover") metrics.handover(vip.ip, "out");
  }
}

/** Told the hooks last, after the slot noted the change. */
export function hookNews(d: NewsDeps, c: OwnershipChange): void {
  d.hooks.changed({ vip: c.ip, link: c.link, node: d.node, held: c.held, code: c.code, reason: c.reason });
}

/** Said once when a stranger is found and once when it is gone; the decision does the rest. */
export function conflictNews(d: NewsDeps, c: Conflict | null, before: Conflict | null): void {
  const { vip, log, metrics } = d;
  metrics.addressConflict(vip.ip, c !== null);
  if (c) {
    log.error("address conflict: a machine that is not a vipd agent answers for the VIP; neither standing for it nor holding it until that stops", {
      vip: vip.ip, link: vip.link, macs: c.macs.join(", "), reason: c.reason,
    });
  } else {
    log.info("address conflict cleared: only vipd agents answer for the VIP; standing for it again", { vip: vip.ip, link: vip.link, was: before?.macs.join(", ") });
  }
}
