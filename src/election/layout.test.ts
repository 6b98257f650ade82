import { expect, test } from "bun:test";
import { currentIncarnation, decodeIncarnation, encodeIncarnation } from "./incarnation.ts";
import { LAYOUT, LAYOUT_TEXT, layoutOf, newerLayoutProblem } from "./layout.ts";

/** A record as vipd 0.2.0 (commit bd03bd7) wrote it: every field but the layout. */
const V020_RECORD = JSON.stringify({
  run: "3f2a9c0e5d1b7a64", host: "cp-2", machine: "1a2b3c4d", boot: "b-1", netns: "net:[4026531840]", pidns: "pid:[4026531836]",
  pid: 812, start: "1234", holdMs: 2500, version: "0.2.0", startedAt: "2026-11-26T09:12:03.114Z",
});

/** vipd 0.2.0's decodeIncarnation, as that release has it: what a running 0.2.0 agent makes of our record. */
function decodeAs020(text: string): Record<string, unknown> | null {
  let r: unknown;
  try {
    r = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof r !== "object" || r === null || Array.isArray(r)) return null;
  const o = r as Record<string, unknown>;
  const strings = ["run", "host", "machine", "boot", "netns", "pidns", "start", "version", "startedAt"];
  if (!strings.every((k) => typeof o[k] === "string") || !o.run) return null;
  if (!Number.isSafeInteger(o.pid) || !Number.isFinite(o.holdMs) || (o.holdMs as number) <= 0) return null;
  return o;
}

test("this build's record carries its layout, and vipd 0.2.0's decoder still reads it whole", () => {
  const mine = currentIncarnation({ holdMs: 2500, version: "0.3.0" });
  expect(mine.layout).toBe(LAYOUT_TEXT);
  expect(LAYOUT_TEXT).toBe(`${LAYOUT.major}.${LAYOUT.minor}`);
  const seen = decodeAs020(encodeIncarnation(mine));
  expect(seen).not.toBeNull();
  expect(seen!.holdMs).toBe(2500);
  expect(seen!.run).toBe(mine.run);
});

test("a 0.2.0 record is layout 1.0; a malformed layout is unreadable, not a version", () => {
  const old = decodeIncarnation(V020_RECORD)!;
  expect(old).not.toBeNull();
  expect(layoutOf(old)).toEqual({ major: 1, minor: 0 });
  expect(layoutOf({ layout: "1.1" })).toEqual({ major: 1, minor: 1 });
  expect(layoutOf({ layout: "12.3" })).toEqual({ major: 12, minor: 3 });
  for (const bad of ["1", "1.1.0", "01.1", "v1.1", "", 1.1, null, ["1", "1"]]) expect(layoutOf({ layout: bad })).toBeNull();
});

test("a record of a higher layout major refuses this build, naming the node, its version and what to do", () => {
  const same = [{ node: "cp-1", value: V020_RECORD }, { node: "cp-2", value: encodeIncarnation(currentIncarnation({ holdMs: 2500, version: "0.3.0" })) }];
  expect(newerLayoutProblem(same)).toBeNull();
  // A newer minor of the same major runs beside us: it only added fields.
  const minor = JSON.stringify({ ...JSON.parse(V020_RECORD), version: "0.4.0", layout: `${LAYOUT.major}.${LAYOUT.minor + 7}`, newField: { x: 1 } });
  expect(newerLayoutProblem([...same, { node: "cp-3", value: minor }])).toBeNull();
  // Not vipd's records: the view reports those; they decide nothing here.
  expect(newerLayoutProblem([{ node: "x", value: "junk" }, { node: "y", value: JSON.stringify({ layout: "one" }) }])).toBeNull();

  const major = JSON.stringify({ ...JSON.parse(V020_RECORD), version: "1.0.0", layout: `${LAYOUT.major + 1}.0` });
  const why = newerLayoutProblem([...same, { node: "cp-3", value: major }], LAYOUT, "vipd 0.3.0");
  expect(why).toContain(`node "cp-3", written by vipd 1.0.0 in layout ${LAYOUT.major + 1}.0`);
  expect(why).toContain(`vipd 0.3.0 speaks layout ${LAYOUT.major}.x`);
  expect(why).toContain("Upgrade this node to that version");
  expect(newerLayoutProblem([{ node: "cp-3", value: JSON.stringify({ layout: "9.0" }) }])).toContain("a vipd of unknown version");
});
