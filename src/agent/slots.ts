// The agent's slots, one per VIP, as a set: what reaches all of them at
// once (a batch of etcd facts, a fence that cannot be made whole, a stop)
// and the kernel events that concern one of them. Each slot still decides
// for itself (slot.ts); this only says who should look again.
import type { VipSettings } from "../config/index.ts";
import type { Logger } from "../log.ts";
import { type Timed, untimed } from "../seams.ts";
import type { LinkWatchEvents } from "./links.ts";
import type { Slot } from "./slot.ts";

export interface SlotsDeps {
  /** One VIP's slot, not yet started. */
  readonly make: (vip: VipSettings) => Slot;
  readonly log: Logger;
  /** Runs before each batched update of every slot. */
  readonly beforeUpdate?: () => void;
  /** Measures each batched update of every slot (the agent's loop watch). */
  readonly timed?: Timed;
}

export class Slots {
  readonly #d: SlotsDeps;
  #list: Slot[] = [];
  #updateQueued = false;

  constructor(deps: SlotsDeps) {
    this.#d = deps;
  }

  get all(): readonly Slot[] {
    return this.#list;
  }

  /** Makes and keeps a VIP's slot; the caller starts it (update()). */
  add(vip: VipSettings): Slot {
    const slot = this.#d.make(vip);
    this.#list.push(slot);
    return slot;
  }

  /** Forgets a slot whose VIP is released and out of its queue. */
  drop(slot: Slot): void {
    this.#list = this.#list.filter((s) => s !== slot);
  }

  /** The VIPs whose address this run has put on its link and not yet removed. */
  serving(): string[] {
    return this.#list.filter((s) => s.controller.serving).map((s) => s.vip.ip);
  }

  /** Many facts change at once (a watch response, a heartbeat): decide once per tick. */
  updateAll(): void {
    if (this.#updateQueued) return;
    this.#updateQueued = true;
    queueMicrotask(() => {
      this.#updateQueued = false;
      this.#d.beforeUpdate?.();
      (this.#d.timed ?? untimed)("slots update", () => { for (const s of this.#list) s.update(); }, `${this.#list.length} VIPs`);
    });
  }

  standDown(reason: string, ms: number): void {
    for (const s of this.#list) s.standDown(reason, ms);
  }

  /** Another node took these VIPs over from us (the session saw it in etcd). */
  deposed(vips: readonly string[]): void {
    for (const slot of this.#list) if (vips.includes(slot.vip.ip)) slot.deposed();
  }

  stop(): Promise<unknown> {
    return Promise.all(this.#list.map((s) => s.stop()));
  }

  /** What the link watch reports, sent to the slots it concerns. */
  readonly linkEvents: LinkWatchEvents = {
    link: (name) => {
      for (const s of this.#list) if (s.vip.link === name) s.update();
    },
    address: (name, address, deleted) => {
      // Only news matters: our VIP gone while we hold it, or present while we
      // do not. Every lifetime refresh is an RTM_NEWADDR too; reacting to
      // those would make each refresh trigger the next.
      const slot = this.#list.find((s) => s.vip.link === name && s.vip.ip === address.address);
      if (!slot || deleted !== slot.controller.held) return;
      if (deleted) this.#d.log.warn("VIP disappeared from the link; re-checking", { vip: address.address });
      void slot.controller.kernelChanged();
    },
    overrun: () => {
      for (const s of this.#list) void s.controller.kernelChanged();
    },
  };
}
