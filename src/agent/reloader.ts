// Runs a new configuration's VIPs in a running agent (`vipd reload`):
// reload.ts says what changed, this makes it so. Removed VIPs are released
// and leave their queues, the kernel first (invariant I4); added ones stand;
// kept ones are not touched: no release, no announcement. Other settings
// stay as they are, except those reload.ts lists as live, which the caller
// applies (and the hooks, applied here).
import type { Settings, VipSettings } from "../config/index.ts";
import type { VipdMetrics } from "../health/vipd-metrics.ts";
import { describeError, type Logger } from "../log.ts";
import type { HookRunner } from "./hooks.ts";
import type { LinkWatch } from "./links.ts";
import { diffSettings, type SettingsDiff } from "./reload.ts";
import type { Slots } from "./slots.ts";

/** How long a reload waits for removed VIPs to be released before it answers; they finish later if need be. */
const RELOAD_WAIT_MS = 5000;

/** What a reload changed; `leaving` names removed VIPs whose release was still under way when it answered. */
export interface ReloadOutcome extends SettingsDiff {
  readonly leaving: readonly string[];
}

/** The hook runner's settings from vipd's. */
export function hookSettings(s: Settings) {
  return { ...s.hooks, timeoutMs: s.hooks.timeout * 1000 };
}

/** The agent's parts a reload changes. */
export interface ReloadDeps {
  readonly log: Logger;
  readonly links: LinkWatch;
  readonly hooks: HookRunner;
  /** Removes a VIP from a link; false when it was not there. */
  readonly deleteAddress: (link: string, ip: string) => Promise<boolean>;
  /** The settings in force, and the way to replace them. */
  settings(): Settings;
  setSettings(s: Settings): void;
  readonly slots: Slots;
  readonly metrics: VipdMetrics;
  /** Rebuilds the fence for every VIP configured or still leaving; logs its own failure. */
  configureFence(): Promise<void>;
  stopping(): boolean;
}

export class Reloader {
  readonly #d: ReloadDeps;
  /** Removed VIPs not yet released, by address: the same address on another link waits for them. */
  readonly #leaving = new Map<string, Promise<void>>();
  #reloading: Promise<unknown> = Promise.resolve();

  constructor(deps: ReloadDeps) {
    this.#d = deps;
  }

  /**
   * Runs `next`, one reload at a time. Resolves once the removed VIPs are
   * released, or after RELOAD_WAIT_MS with those still under way in
   * `leaving` (etcd unreachable, say): they finish on their own. Rejects,
   * changing nothing, when the fence cannot guard the new VIPs.
   */
  reload(next: Settings): Promise<ReloadOutcome> {
    const run = this.#reloading.then(() => this.#reload(next));
    this.#reloading = run.catch(() => {});
    return run;
  }

  async #reload(next: Settings): Promise<ReloadOutcome> {
    const d = this.#d;
    if (d.stopping()) throw new Error("vipd is shutting down");
    const diff = diffSettings(d.settings(), next);
    const links = d.links;
    const learned: string[] = [];
    for (const link of new Set(diff.added.map((v) => v.link))) {
      if (links.names().includes(link)) continue;
      await links.watch(link);
      learned.push(link);
      const state = links.state(link);
      if (state !== "up") d.log.warn(`link ${link} is ${state === "absent" ? "missing" : state}; its VIPs wait for it`, { link });
    }
    const before = d.settings();
    d.setSettings(diff.inForce);
    if (diff.live.some((path) => path.startsWith("hooks."))) {
      // For the runs that start from now on; a run under way keeps its own.
      d.hooks.configure(hookSettings(diff.inForce));
      d.hooks.checkPrograms();
    }
    try {
      // Old and new VIPs alike are guarded while they change hands: guarding more is always safe.
      await d.configureFence();
    } catch (err) {
      d.setSettings(before);
      for (const link of learned) links.forget(link);
      throw new Error(`the nftables fence cannot guard the new VIPs (${describeError(err)}); nothing changed`);
    }
    const leaving = new Set(diff.removed.map((v) => v.ip));
    const removed = Promise.all(diff.removed.map((v) => this.#remove(v).then(() => leaving.delete(v.ip))));
    for (const v of diff.added) {
      this.#add(v).catch((err) => d.log.error("standing for an added VIP failed", { vip: v.ip, link: v.link, error: describeError(err) }));
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([removed, new Promise((r) => (timer = setTimeout(r, RELOAD_WAIT_MS)))]);
    clearTimeout(timer);
    return { ...diff, leaving: [...leaving] };
  }

  /** Releases a VIP that left the configuration, then forgets it: slot, metrics, link, fence guard. */
  #remove(vip: VipSettings): Promise<void> {
    const d = this.#d;
    const slot = d.slots.all.find((s) => s.vip === vip);
    // Added by an earlier reload and not standing yet: #add finds it unwanted.
    if (!slot) return Promise.resolve();
    d.log.info("VIP removed from the configuration; releasing it", { vip: vip.ip, link: vip.link });
    const done = slot.remove().then(async () => {
      d.slots.drop(slot);
      d.metrics.forgetVip(vip.ip, vip.link);
      this.#forgetUnusedLinks();
      d.log.info("VIP released and out of its queue", { vip: vip.ip, link: vip.link });
      // Only now that nothing of it is left does the fence stop guarding it. Logged inside.
      await d.configureFence().catch(() => {});
    });
    this.#leaving.set(vip.ip, done);
    void done.finally(() => {
      if (this.#leaving.get(vip.ip) === done) this.#leaving.delete(vip.ip);
    });
    return done;
  }

  /**
   * Stands for a VIP a reload added, once the removed VIPs are released:
   * the same address on another link (a VIP that moved) must be gone first,
   * and a heartbeat guards no more keys than the configuration allows VIPs
   * (one etcd transaction). Without etcd neither could proceed anyway.
   */
  async #add(vip: VipSettings): Promise<void> {
    const d = this.#d;
    await Promise.all(this.#leaving.values());
    const wanted = () => !d.stopping() && d.settings().vips.includes(vip) && !d.slots.all.some((s) => s.vip.ip === vip.ip);
    if (!wanted()) return;
    // As at start (invariant I6): an address this run did not put there goes before the node stands.
    if (d.links.state(vip.link) !== "absent" && (await d.deleteAddress(vip.link, vip.ip))) {
      d.log.warn("removed the VIP from the link, where this run had not put it", { vip: vip.ip, link: vip.link });
    }
    if (!wanted()) return;
    const slot = d.slots.add(vip);
    d.log.info("VIP added to the configuration; standing for it", { vip: vip.ip, link: vip.link });
    slot.update();
  }

  #forgetUnusedLinks(): void {
    const links = this.#d.links;
    const used = new Set([...this.#d.settings().vips, ...this.#d.slots.all.map((s) => s.vip)].map((v) => v.link));
    for (const name of links.names()) if (!used.has(name)) links.forget(name);
  }
}
