// The hook runner against real processes: small shell scripts written into
// a temporary directory play the operator's hooks.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Fields, Logger } from "../log.ts";
import { type HookChange, hookEvent, HookRunner, type HookSettings, OUTPUT_MAX_BYTES, OUTPUT_MAX_LINE, OUTPUT_MAX_LINES } from "./hooks.ts";
import type { HookEvent, HookResult } from "../vip/hook-events.ts";

let dir = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "vipd-hooks-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Writes an executable /bin/sh script; returns its path. */
function script(name: string, body: string): string {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

interface Line {
  level: "error" | "warn" | "info" | "debug";
  msg: string;
  fields: Fields;
}

function recorder() {
  const lines: Line[] = [];
  const at = (level: Line["level"]) => (msg: string, fields: Fields = {}) => void lines.push({ level, msg, fields });
  const log: Logger = { error: at("error"), warn: at("warn"), info: at("info"), debug: at("debug") };
  const runs: { event: HookEvent; result: HookResult; ms: number }[] = [];
  const metrics = { hookRan: (event: HookEvent, result: HookResult, ms: number) => void runs.push({ event, result, ms }) };
  return { lines, log, runs, metrics };
}

function runner(hooks: Omit<HookSettings, "timeoutMs"> & { timeoutMs?: number }, env: Record<string, string> = { PATH: "/usr/bin:/bin" }) {
  const r = recorder();
  const hr = new HookRunner({ hooks: { timeoutMs: 5000, ...hooks }, log: r.log, metrics: r.metrics, env });
  return { ...r, hr };
}

const VIP = "192.0.2.15";
const change = (held: boolean, code: string, over: Partial<HookChange> = {}): HookChange => ({
  vip: VIP,
  link: "eth0",
  node: "cp-1",
  held,
  code,
  reason: held ? "first in the queue when it joined" : "shutting down",
  ...over,
});
const ACQUIRED = change(true, "elected");
const RELEASED = change(false, "shutdown");
const FENCED = change(false, "fence-expired", { reason: "no committed heartbeat proves our key (etcd unreachable or slow)" });

const read = (path: string) => readFileSync(path, "utf8");
/** A process that is gone, or a zombie nobody has reaped yet: either way it runs no more. */
function gone(pid: number): boolean {
  if (!existsSync(`/proc/${pid}`)) return true;
  try {
    return /^\d+ \(.*\) Z /.test(read(`/proc/${pid}/stat`));
  } catch {
    return true;
  }
}

describe("hookEvent: which event a change is", () => {
  test.each([
    [true, "elected", "acquired"],
    [false, "fence-expired", "fenced"],
    [false, "not-elected", "fenced"],
    ...["shutdown", "removed", "link-down", "gate-closed", "drained", "conflict", "withdrawn", "handover", "claimed"].map((c) => [false, c, "released"] as const),
  ] as const)("held %p, code %p: %p", (held, code, event) => {
    expect(hookEvent(held, code)).toBe(event);
  });
});

describe("HookRunner", () => {
  test("each event runs its own hook with vipd's environment and the change's VIPD_* variables", async () => {
    const dump = script("dump.sh", `out="$1/$VIPD_EVENT.env"\nprintf 'EVENT=%s\\nVIP=%s\\nLINK=%s\\nNODE=%s\\nREASON=%s\\nFROM_VIPD=%s\\nARG2=%s\\n' "$VIPD_EVENT" "$VIPD_VIP" "$VIPD_LINK" "$VIPD_NODE" "$VIPD_REASON" "$FROM_VIPD" "$2" > "$out"`);
    const { hr, runs, lines } = runner(
      { acquired: [dump, dir, "a"], released: [dump, dir, "r"], fenced: [dump, dir, "f"] },
      { PATH: "/usr/bin:/bin", FROM_VIPD: "inherited", VIPD_EVENT: "overridden" },
    );
    for (const c of [ACQUIRED, RELEASED, FENCED]) {
      hr.changed(c);
      await hr.idle();
    }
    const expected = (event: string, reason: string, arg: string) =>
      `EVENT=${event}\nVIP=${VIP}\nLINK=eth0\nNODE=cp-1\nREASON=${reason}\nFROM_VIPD=inherited\nARG2=${arg}\n`;
    expect(read(join(dir, "acquired.env"))).toBe(expected("acquired", "first in the queue when it joined", "a"));
    expect(read(join(dir, "released.env"))).toBe(expected("released", "shutting down", "r"));
    expect(read(join(dir, "fenced.env"))).toBe(expected("fenced", "no committed heartbeat proves our key (etcd unreachable or slow)", "f"));
    expect(runs.map((r) => [r.event, r.result])).toEqual([["acquired", "ok"], ["released", "ok"], ["fenced", "ok"]]);
    expect(lines.filter((l) => l.level === "info").map((l) => [l.msg, l.fields.event, l.fields.vip, l.fields.hook])).toEqual([
      ["the acquired hook ran", "acquired", VIP, dump],
      ["the released hook ran", "released", VIP, dump],
      ["the fenced hook ran", "fenced", VIP, dump],
    ]);
  });

  test("no shell: metacharacters, quotes and spaces arrive as the very arguments given", async () => {
    const args = script("args.sh", `out="$1"; shift\nfor a in "$@"; do printf '<%s>\\n' "$a"; done > "$out"`);
    const out = join(dir, "args.txt");
    const pwned = join(dir, "pwned");
    const odd = [`$(touch ${pwned})`, `; touch ${pwned}`, "`id`", "*", "a b", "'q'", '"dq"', "$HOME", "| cat", ""];
    const { hr, runs } = runner({ acquired: [args, out, ...odd] });
    hr.changed(ACQUIRED);
    await hr.idle();
    expect(read(out)).toBe(odd.map((a) => `<${a}>\n`).join(""));
    expect(existsSync(pwned)).toBe(false);
    expect(runs.map((r) => r.result)).toEqual(["ok"]);
  });

  test("a failing hook is reported with its exit status and last line of output; a signal by name", async () => {
    const fail = script("fail.sh", 'echo "adding route 10.0.0.0/8"\necho "RTNETLINK answers: File exists" >&2\nexit 3');
    const crash = script("crash.sh", "echo dying\nkill -SEGV $$");
    const { hr, runs, lines } = runner({ acquired: [fail], released: [crash] });
    hr.changed(ACQUIRED);
    await hr.idle();
    hr.changed(RELEASED);
    await hr.idle();
    const warned = lines.filter((l) => l.level === "warn");
    expect(warned.map((l) => [l.msg, l.fields.event, l.fields.vip, l.fields.hook, l.fields.lastLine])).toEqual([
      ["the acquired hook failed: exit status 3", "acquired", VIP, fail, "RTNETLINK answers: File exists"],
      ["the released hook failed: killed by SIGSEGV", "released", VIP, crash, "dying"],
    ]);
    expect(runs.map((r) => [r.event, r.result])).toEqual([["acquired", "failed"], ["released", "failed"]]);
  });

  test("output goes to the log line by line, attributed, and bounded per run", async () => {
    const chatty = script("chatty.sh", `echo first\necho err-line >&2\nhead -c ${OUTPUT_MAX_LINE + 500} /dev/zero | tr '\\0' x; echo\ni=0; while [ $i -lt 200 ]; do echo "line $i"; i=$((i+1)); done\necho last`);
    const { hr, lines } = runner({ acquired: [chatty] });
    hr.changed(ACQUIRED);
    await hr.idle();
    const output = lines.filter((l) => l.msg === "hook output");
    expect(output).toHaveLength(OUTPUT_MAX_LINES);
    for (const l of output) expect([l.fields.event, l.fields.vip, l.fields.hook]).toEqual(["acquired", VIP, chatty]);
    const text = output.map((l) => `${l.fields.stream}:${l.fields.line}`);
    expect(text).toContain("stdout:first");
    expect(text).toContain("stderr:err-line");
    expect(text).toContain(`stdout:${"x".repeat(OUTPUT_MAX_LINE)}...`);
    // first, err-line, the long line (logged once, cut), 200 numbered lines, last: 204 lines, 50 logged.
    expect(lines.find((l) => l.msg.startsWith("hook output cut"))?.msg).toBe(
      "hook output cut: 154 more lines not logged (at most 50 lines or 16384 bytes a run)",
    );
    expect(lines.at(-1)?.msg).toBe("the acquired hook ran");
  });

  test("output is bounded in bytes as well as in lines", async () => {
    const wide = script("wide.sh", `i=0; while [ $i -lt 30 ]; do head -c 900 /dev/zero | tr '\\0' y; echo; i=$((i+1)); done`);
    const { hr, lines } = runner({ acquired: [wide] });
    hr.changed(ACQUIRED);
    await hr.idle();
    // 18 lines of 900 bytes fit in 16384; the 19th would not.
    expect(lines.filter((l) => l.msg === "hook output")).toHaveLength(Math.floor(OUTPUT_MAX_BYTES / 900));
    expect(lines.find((l) => l.msg.startsWith("hook output cut"))?.msg).toStartWith(`hook output cut: ${30 - Math.floor(OUTPUT_MAX_BYTES / 900)} more lines`);
  });

  test("new settings apply to the runs that start after them", async () => {
    const out = join(dir, "configure.log");
    const first = script("first.sh", `echo first >> "${out}"`);
    const second = script("second.sh", `echo second >> "${out}"`);
    const { hr } = runner({ acquired: [first] });
    hr.changed(ACQUIRED);
    await hr.idle();
    hr.configure({ acquired: [second], timeoutMs: 5000 });
    hr.changed(ACQUIRED);
    await hr.idle();
    hr.configure({ timeoutMs: 5000 });
    hr.changed(ACQUIRED);
    await hr.idle();
    expect(read(out)).toBe("first\nsecond\n");
  });

  test("a hook that hangs is killed at its timeout with what it started, reported, and the next event still runs", async () => {
    const pids = join(dir, "hang.pids");
    const hang = script("hang.sh", `sleep 600 &\necho "$$ $!" > "${pids}"\necho waiting for a lock\nwait`);
    const done = join(dir, "after-hang");
    const after = script("after.sh", `touch "${done}"`);
    const { hr, runs, lines } = runner({ acquired: [hang], released: [after], timeoutMs: 500 });
    hr.changed(ACQUIRED);
    hr.changed(RELEASED);
    await hr.idle();
    const [shell, child] = read(pids).trim().split(" ").map(Number) as [number, number];
    expect(gone(shell)).toBe(true);
    // The background sleep was in the hook's process group: killed too.
    for (let i = 0; i < 100 && !gone(child); i++) await Bun.sleep(10);
    expect(gone(child)).toBe(true);
    const warned = lines.find((l) => l.level === "warn")!;
    expect([warned.msg, warned.fields.event, warned.fields.lastLine]).toEqual([
      "the acquired hook ran longer than 0.5 s: killed it and its process group",
      "acquired",
      "waiting for a lock",
    ]);
    expect(runs.map((r) => [r.event, r.result])).toEqual([["acquired", "timeout"], ["released", "ok"]]);
    expect(existsSync(done)).toBe(true);
  });

  test("a missing or non-executable program is reported clearly, at start-up and at each run", async () => {
    const plain = join(dir, "not-executable.sh");
    writeFileSync(plain, "#!/bin/sh\nexit 0\n");
    chmodSync(plain, 0o644);
    const good = script("good.sh", "exit 0");
    const missing = join(dir, "nope", "vip-up");
    const { hr, runs, lines } = runner({ acquired: [missing], released: [plain], fenced: [good] });
    hr.checkPrograms();
    expect(lines.map((l) => [l.level, l.msg, l.fields.event, l.fields.hook])).toEqual([
      ["warn", `the acquired hook cannot run: ${missing} does not exist`, "acquired", missing],
      ["warn", `the released hook cannot run: ${plain} is not executable (chmod +x)`, "released", plain],
    ]);
    lines.length = 0;
    hr.changed(ACQUIRED);
    await hr.idle();
    hr.changed(RELEASED);
    await hr.idle();
    expect(lines.map((l) => [l.level, l.msg, l.fields.event, l.fields.vip])).toEqual([
      ["error", `the acquired hook could not start: ${missing} does not exist (or its #! interpreter does not)`, "acquired", VIP],
      ["error", `the released hook could not start: ${plain} is not executable, or a directory on its path may not be searched`, "released", VIP],
    ]);
    expect(runs.map((r) => [r.event, r.result])).toEqual([["acquired", "missing"], ["released", "missing"]]);
  });

  test("a script without #! is not a program: said so", async () => {
    const bare = join(dir, "bare");
    writeFileSync(bare, "echo hi\n");
    chmodSync(bare, 0o755);
    const { hr, runs, lines } = runner({ acquired: [bare] });
    hr.changed(ACQUIRED);
    await hr.idle();
    expect(lines.map((l) => l.msg)).toEqual([`the acquired hook could not start: ${bare} is not a program Linux can run (a script needs a #! line)`]);
    expect(runs.map((r) => r.result)).toEqual(["missing"]);
  });

  describe("a flapping VIP: one run at a time per VIP, one waiting, the newest state last", () => {
    const slow = () => {
      const log = join(dir, `flap-${Math.random().toString(36).slice(2)}.log`);
      // Slow enough that every change below arrives while the first run is still going.
      return { log, argv: [script("slow.sh", `echo "$VIPD_EVENT $VIPD_VIP" >> "$1"\nsleep 0.3`), log] };
    };
    const runsIn = (log: string) => read(log).trim().split("\n");

    test("acquired, released, acquired, fenced: the first runs, the last replaces the two between", async () => {
      const { log, argv } = slow();
      const { hr } = runner({ acquired: argv, released: argv, fenced: argv });
      for (const c of [ACQUIRED, RELEASED, ACQUIRED, FENCED]) hr.changed(c);
      await hr.idle();
      expect(runsIn(log)).toEqual([`acquired ${VIP}`, `fenced ${VIP}`]);
    });

    test("a waiting change with no hook of its own still replaces the stale one", async () => {
      const { log, argv } = slow();
      const { hr } = runner({ acquired: argv });
      for (const c of [ACQUIRED, RELEASED, ACQUIRED, RELEASED]) hr.changed(c);
      await hr.idle();
      expect(runsIn(log)).toEqual([`acquired ${VIP}`]);
      for (const c of [ACQUIRED, RELEASED, ACQUIRED]) hr.changed(c);
      await hr.idle();
      expect(runsIn(log)).toEqual([`acquired ${VIP}`, `acquired ${VIP}`, `acquired ${VIP}`]);
    });

    test("VIPs do not wait for each other", async () => {
      // Each VIP's hook waits for the other's to have started: run one after
      // the other, the first would wait in vain and fail.
      const meeting = mkdtempSync(join(dir, "meet-"));
      const meet = script(
        "meet.sh",
        `touch "$1/$VIPD_VIP"\nfor i in $(seq 100); do\n  for f in "$1"/*; do [ "$f" != "$1/$VIPD_VIP" ] && exit 0; done\n  sleep 0.05\ndone\nexit 1`,
      );
      const { hr, runs } = runner({ acquired: [meet, meeting] });
      hr.changed(ACQUIRED);
      hr.changed(change(true, "elected", { vip: "2001:db8::15" }));
      await hr.idle();
      expect(runs.map((r) => r.result)).toEqual(["ok", "ok"]);
    });
  });

  describe("stop", () => {
    test("waits for the hooks that run and wait, so a released hook of the shutdown completes", async () => {
      const marks = join(dir, "stop.log");
      const argv = [script("mark.sh", `sleep 0.2\necho "$VIPD_EVENT" >> "$1"`), marks];
      const { hr } = runner({ acquired: argv, released: argv });
      hr.changed(ACQUIRED);
      hr.changed(RELEASED);
      await hr.stop();
      expect(read(marks)).toBe("acquired\nreleased\n");
      // Stopped: later changes run nothing.
      hr.changed(ACQUIRED);
      await hr.idle();
      expect(read(marks)).toBe("acquired\nreleased\n");
    });

    test("returns at once when no hook runs", async () => {
      const { hr } = runner({ acquired: [script("never.sh", "exit 0")] });
      const t0 = performance.now();
      await hr.stop();
      // Nothing ran, so nothing can have been waited for: well under the 5 s timeout.
      expect(performance.now() - t0).toBeLessThan(1000);
    });

    test("kills what still runs after one timeout, and drops what waits", async () => {
      const pids = join(dir, "stop-hang.pids");
      const hang = script("stop-hang.sh", `echo $$ >> "${pids}"\nexec sleep 600`);
      const { hr, runs } = runner({ acquired: [hang], released: [hang], timeoutMs: 400 });
      hr.changed(ACQUIRED);
      hr.changed(RELEASED);
      await hr.stop();
      const started = read(pids).trim().split("\n").map(Number);
      for (const pid of started) expect(gone(pid)).toBe(true);
      // The acquired run is killed at its timeout or at the stop deadline, whichever
      // fires first (both 400 ms); the released one never outlives the stop.
      expect(runs[0]).toMatchObject({ event: "acquired", result: "timeout" });
      expect(runs.length === 1 || runs[1]?.result === "timeout").toBe(true);
    });
  });
});
