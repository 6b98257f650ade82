import { describe, expect, test } from "bun:test";
import { currentIncarnation, decodeIncarnation, encodeIncarnation, type Incarnation, judge, type ProcReader, processAlive, startTimeOf } from "./incarnation.ts";

// A /proc/<pid>/stat line whose command name holds a space and a parenthesis.
const stat = (state: string, start: string) => `4242 (vi pd) ) ${state} 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 5 0 ${start} 123 456`;

function fakeProc(files: Record<string, string>, links: Record<string, string> = {}): ProcReader {
  return {
    read: (p) => {
      if (!(p in files)) throw Object.assign(new Error(`ENOENT ${p}`), { code: "ENOENT" });
      return files[p]!;
    },
    link: (p) => {
      if (!(p in links)) throw new Error(`ENOENT ${p}`);
      return links[p]!;
    },
  };
}

test("startTimeOf counts fields after the last ')'", () => {
  expect(startTimeOf(stat("S", "987654"))).toBe("987654");
  expect(startTimeOf("garbage")).toBeNull();
});

describe("currentIncarnation", () => {
  const proc = fakeProc(
    { "/etc/machine-id": "0123456789abcdef\n", "/proc/sys/kernel/random/boot_id": "b00t\n", "/proc/4242/stat": stat("S", "5555") },
    { "/proc/self/ns/net": "net:[1]", "/proc/self/ns/pid": "pid:[2]" },
  );
  const me = currentIncarnation({ holdMs: 2500, version: "0.2.0", proc, pid: 4242 });
  test("reads the machine, the boot, the namespaces and the start time", () => {
    expect(me).toMatchObject({ machine: "0123456789abcdef", boot: "b00t", netns: "net:[1]", pidns: "pid:[2]", pid: 4242, start: "5555", holdMs: 2500 });
    expect(me.run).toMatch(/^[0-9a-f]{16}$/);
  });
  test("two runs get different run ids", () => {
    expect(currentIncarnation({ holdMs: 2500, version: "x", proc, pid: 4242 }).run).not.toBe(me.run);
  });
  test("missing files give empty fields, not errors", () => {
    const bare = currentIncarnation({ holdMs: 2500, version: "x", proc: fakeProc({}), pid: 1 });
    expect(bare).toMatchObject({ machine: "", boot: "", netns: "", pidns: "", start: "" });
  });
  test("encodes and decodes", () => expect(decodeIncarnation(encodeIncarnation(me))).toEqual(me));
  for (const bad of ["{}", "x", JSON.stringify({ ...me, pid: "1" }), JSON.stringify({ ...me, holdMs: 0 }), JSON.stringify({ ...me, run: "" })]) {
    test(`rejects ${bad.slice(0, 40)}`, () => expect(decodeIncarnation(bad)).toBeNull());
  }
});

describe("judge", () => {
  const base: Incarnation = {
    run: "a", host: "cp-1", machine: "m", boot: "b", netns: "net:[1]", pidns: "pid:[1]", pid: 10, start: "100", holdMs: 2500, version: "x", startedAt: "t",
  };
  const other = { ...base, run: "b", pid: 11, start: "200" };
  test("same kernel, PID and network namespace, process gone: dead, and here", () => expect(judge(base, other, () => false)).toEqual({ kind: "dead", here: true }));
  test("process gone from another network namespace: dead, but not here (its fence is out of our reach)", () => {
    expect(judge(base, { ...other, netns: "net:[9]" }, () => false)).toEqual({ kind: "dead", here: false });
  });
  test("same kernel and PID namespace, process there: alive", () => expect(judge(base, other, () => true)).toEqual({ kind: "alive" }));
  test("a second network namespace on the same kernel is still checked by PID", () => {
    expect(judge(base, { ...other, netns: "net:[9]" }, () => true)).toEqual({ kind: "alive" });
  });
  test("another boot: only heartbeats can tell", () => expect(judge(base, { ...other, boot: "c" }, () => true)).toEqual({ kind: "elsewhere" }));
  test("another PID namespace: only heartbeats can tell", () => expect(judge(base, { ...other, pidns: "pid:[2]" }, () => false)).toEqual({ kind: "elsewhere" }));
  test("unknown boot id never counts as the same kernel", () => expect(judge({ ...base, boot: "" }, { ...other, boot: "" }, () => false)).toEqual({ kind: "elsewhere" }));
});

describe("processAlive", () => {
  test("the same PID with the same start time", () => expect(processAlive(4242, "5555", fakeProc({ "/proc/4242/stat": stat("S", "5555") }))).toBe(true));
  test("a frozen process is alive", () => expect(processAlive(4242, "5555", fakeProc({ "/proc/4242/stat": stat("T", "5555") }))).toBe(true));
  test("a reused PID (other start time) is not", () => expect(processAlive(4242, "5555", fakeProc({ "/proc/4242/stat": stat("S", "6666") }))).toBe(false));
  test("a zombie is not", () => expect(processAlive(4242, "5555", fakeProc({ "/proc/4242/stat": stat("Z", "5555") }))).toBe(false));
  test("no such PID is not", () => expect(processAlive(4242, "5555", fakeProc({}))).toBe(false));
  test("this very process is", () => {
    const start = startTimeOf(require("node:fs").readFileSync(`/proc/${process.pid}/stat`, "utf8"))!;
    expect(processAlive(process.pid, start)).toBe(true);
  });
});
