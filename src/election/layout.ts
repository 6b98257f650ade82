// The version of vipd's layout in etcd, and what an agent does about agents
// of another version (design.md §2, "Versions side by side").
//
// From vipd 0.3 on every agent record (`agents/<node>`) carries
// `"layout": "MAJOR.MINOR"`. It lives in the record because vipd 0.2 reads
// records tolerantly: its decoder checks the fields it needs and keeps the
// rest, so a 0.2 agent beside a 0.3 one neither fails nor misjudges. (A key
// of its own would make every 0.2 agent log "ignoring a key under vipd's
// prefix"; a field in `macs/<node>` would make 0.2 count that agent's MACs
// as a stranger's, an address conflict.) A record without the field is
// vipd 0.2's: layout 1.0.
//
// - MINOR grows with a change older agents of the same MAJOR run beside:
//   new fields in a JSON value, read by the new agents and ignored by the old.
// - MAJOR grows with a change they cannot run beside (0.1 → 0.2 was one,
//   before this field existed): an agent refuses to start while a record of
//   a higher MAJOR exists, since it cannot know what that layout means; the
//   agent of the higher MAJOR must refuse to start beside lower ones.
import { jsonObject } from "./keys.ts";

export interface LayoutVersion {
  readonly major: number;
  readonly minor: number;
}

/** This build's layout: 1.1 adds the layout field itself to vipd 0.2's layout 1.0. */
export const LAYOUT: LayoutVersion = Object.freeze({ major: 1, minor: 1 });

/** vipd 0.2 wrote no layout field: its records are layout 1.0. */
export const UNVERSIONED_LAYOUT: LayoutVersion = Object.freeze({ major: 1, minor: 0 });

export const formatLayout = (l: LayoutVersion): string => `${l.major}.${l.minor}`;

/** The text this build writes into its record. */
export const LAYOUT_TEXT = formatLayout(LAYOUT);

const TEXT = /^(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})$/;

/**
 * The layout of an agent record's fields (a decoded record, or its raw JSON
 * object): 1.0 when absent, null when present but not "MAJOR.MINOR" (a record
 * vipd did not write).
 */
export function layoutOf(record: { readonly layout?: unknown }): LayoutVersion | null {
  if (record.layout === undefined) return UNVERSIONED_LAYOUT;
  const m = typeof record.layout === "string" ? TEXT.exec(record.layout) : null;
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : null;
}

/** One agent record found under the prefix: its node and the raw value. */
export interface RecordText {
  readonly node: string;
  readonly value: string;
}

/**
 * Why this build must not run beside the records given, or null when it may:
 * a record of a higher layout major. Records that are not JSON objects, or
 * carry an unreadable layout, are not vipd's and are left to the view (which
 * reports them).
 */
export function newerLayoutProblem(records: readonly RecordText[], own: LayoutVersion = LAYOUT, ownVersion = "this vipd"): string | null {
  for (const { node, value } of records) {
    const r = jsonObject(value);
    const layout = r ? layoutOf(r) : null;
    if (!r || !layout || layout.major <= own.major) continue;
    const version = typeof r.version === "string" ? `vipd ${r.version}` : "a vipd of unknown version";
    return (
      `etcd holds the record of node "${node}", written by ${version} in layout ${formatLayout(layout)}; ${ownVersion} speaks layout ${own.major}.x ` +
      `and cannot run beside it (a layout major changes only when the two cannot share etcd). Upgrade this node to that version instead; ` +
      `or, to go back to this version, stop every agent of the newer one first (their records leave with their leases, seconds later)`
    );
  }
  return null;
}
