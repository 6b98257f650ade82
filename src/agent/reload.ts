// What a reload changes: the running settings against those just read from
// the same file, flags and environment. Pure; the agent applies the VIP part
// (Agent.reload) and the CLI the log part.
//
// VIPs are compared by address and link. A VIP whose link changed is a
// removal on the old link and an addition on the new one: the address, its
// fence element and its place in etcd's queue all belong to one link at a
// time. Every other setting either applies live (marked live in the table of
// settings, config/table.ts) or is left as it was until a restart: the etcd
// session, the node name, the hold time, the health listener and the gate
// are built once, at start, and the safety
// argument (docs/design.md) assumes a run keeps them (a hold time published
// in the agent record, I8). A setting the table gains later needs a restart
// until someone marks it live.
import { isDeepStrictEqual } from "node:util";
import { LEAVES, LIVE, OPTIONAL_SECTIONS } from "../config/table.ts";
import { deepFreeze, type Settings, type VipSettings } from "../config/settings.ts";

export interface SettingsDiff {
  /** VIPs the new configuration adds, or moves to another link (as found in the new settings). */
  readonly added: readonly VipSettings[];
  /** VIPs it no longer has, or has on another link (as the agent runs them now). */
  readonly removed: readonly VipSettings[];
  /** VIPs on the same link in both (as the agent runs them now: their slots stay as they are). */
  readonly kept: readonly VipSettings[];
  /** Settings that changed and apply now, by path ("log.level"). */
  readonly live: readonly string[];
  /**
   * Settings that changed and wait for a restart, by path
   * ("election.holdTime"), or a section's name when the section itself came
   * or went ("apiServer": the gate turned on or off).
   */
  readonly restart: readonly string[];
  /** What the agent runs with afterwards: the new VIPs and live settings, everything else as before. */
  readonly inForce: Settings;
}

export function diffSettings(running: Settings, next: Settings): SettingsDiff {
  const before = new Map(running.vips.map((v) => [v.ip, v]));
  const after = new Map(next.vips.map((v) => [v.ip, v]));
  const same = (a: VipSettings | undefined, b: VipSettings | undefined) => a !== undefined && b !== undefined && a.link === b.link;
  const added = next.vips.filter((v) => !same(before.get(v.ip), v));
  const removed = running.vips.filter((v) => !same(v, after.get(v.ip)));
  const kept = running.vips.filter((v) => same(v, after.get(v.ip)));

  const live: string[] = [];
  const restart: string[] = [];
  const sectionsChanged = OPTIONAL_SECTIONS.filter((s) => (at(running, s) === undefined) !== (at(next, s) === undefined));
  restart.push(...sectionsChanged);
  for (const leaf of LEAVES) {
    if (sectionsChanged.some((s) => leaf.path.startsWith(`${s}.`))) continue;
    if (isDeepStrictEqual(at(running, leaf.path), at(next, leaf.path))) continue;
    (LIVE.has(leaf.path) ? live : restart).push(leaf.path);
  }

  // The new order, with each kept VIP as the agent runs it.
  const vips = next.vips.map((v) => (same(before.get(v.ip), v) ? before.get(v.ip)! : v));
  let inForce: Settings = { ...running, vips };
  for (const path of live) inForce = withValue(inForce, path, at(next, path));
  return { added, removed, kept, live, restart, inForce: deepFreeze(inForce) };
}

/** The value at a dotted path ("etcd.endpoints"); undefined when a section on the way is absent. */
function at(s: Settings, path: string): unknown {
  let v: unknown = s;
  for (const k of path.split(".")) v = (v as Record<string, unknown> | undefined)?.[k];
  return v;
}

/** A copy of s with one value replaced (its section copied, the rest shared). */
function withValue(s: Settings, path: string, value: unknown): Settings {
  const [section, name] = path.split(".") as [string, string | undefined];
  if (name === undefined) return { ...s, [section]: value } as Settings;
  const inner = (s as unknown as Record<string, Record<string, unknown> | undefined>)[section] ?? {};
  return { ...s, [section]: { ...inner, [name]: value } } as Settings;
}
