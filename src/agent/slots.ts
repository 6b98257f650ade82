// The agent's slots, one per VIP, as a set: what reaches all of them at
// once (a fence that cannot be made whole, the gate, a stop), the election's
// news, which concerns the VIPs it names, and the kernel events that concern
// one of them. Each slot still decides for itself (slot.ts); this only says
// who should look again. Work is proportional to change (design.md §8): a
// batch of etcd events steps the slots whose queue, hand-over or claims it
// changed, a heartbeat of ours those that follow its proofs, and a heartbeat
// of another agent that claims what it did steps none.
import type { VipSettings } from "../config/index.ts";
import type { Logger } from "../log.ts";
import { type Timed, untimed } from "../seams.ts";
import type { ElectionNews } from "./election-port.ts";
import type { LinkWatchEvents } from "./links.ts";
import type { Slot } from "./slot.ts";

export interface SlotsDeps {
  /** One VIP's slot, not yet started. */
  readonly make: (vip: VipSettings) => Slot;
  readonly log: Logger;
  /** Runs before each batched update. */
  readonly beforeUpdate?: () => void;
  /** Measures each batched update (the agent's loop watch). */
  readonly timed?: Timed;
  /** What changed in the election since the last look (election-port.ts sessionNews); absent or null: every batch is news to all. */
  readonly news?: () => ElectionNews | null;
}

/** The slot's part of the set: what a batch steps, and what it asks of it. */
type Member = Pick<Slot, "vip" | "update" | "followsProofs">;

export class Slots {
  readonly #d: SlotsDeps;
  #list: Slot[] = [];
  #updateQueued = false;
  /** This batch steps every slot (not only those the election's news names). */
  #all = false;
  /** Slots stepped by batches so far: for tests and benchmarks. */
  updates = 0;

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

  /** A fact every slot reads changed (the gate, the start): each decides again, once per tick. */
  updateAll(): void {
    this.#all = true;
    this.#batch();
  }

  /** The election changed (a watch response, a heartbeat of ours, the session's state): the slots it concerns decide again, once per tick. */
  electionChanged(): void {
    this.#batch();
  }

  #batch(): void {
    if (this.#updateQueued) return;
    this.#updateQueued = true;
    queueMicrotask(() => {
      this.#updateQueued = false;
      this.#d.beforeUpdate?.();
      const n = this.#d.news?.();
      const all = this.#all || !n || n.all;
      this.#all = false;
      if (!all && n.vips.size === 0 && !n.proofs) return;
      const list = this.#list;
      const concerned = all ? () => true : (s: Member) => n.vips.has(s.vip.ip) || (n.proofs && s.followsProofs);
      (this.#d.timed ?? untimed)("slots update", () => this.#step(list, concerned), all ? `${list.length} VIPs` : `of ${list.length} VIPs`);
    });
  }

  #step(list: readonly Member[], concerned: (s: Member) => boolean): void {
    for (const s of list) {
      if (!concerned(s)) continue;
      this.updates++;
      s.update();
    }
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
