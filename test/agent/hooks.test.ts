// State-change hooks in the lab, against real etcd and the kernel's view:
// - acquired: the hook sees the right VIPD_* values and the address already
//   on its link, and a slow hook never holds the address back;
// - fenced: the holder cut off from etcd (its etcd member frozen) loses its
//   proof and runs its fenced hook, and the node that takes over runs its
//   acquired hook;
// - released: on SIGTERM the released hook runs, after the address is gone,
//   and completes before vipd exits.
// Hooks are given as flags and variables (JSON argv lists), as an operator
// on the command line or in a systemd drop-in would.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Host } from "../lab/netns.ts";
import { waitFor } from "../lab/sh.ts";
import { readLog, SmallLab, stopVipd } from "../lab/small-lab.ts";

const VIP = "192.0.2.170";
let lab: SmallLab;
let n1: Host;
let n2: Host;
let config: string;
let hook: string;

// Records one run: its variables, the link's addresses when it started (each
// file complete when it appears: written aside, then renamed), one line in
// "events", then sleeps $2 seconds and marks itself done.
const HOOK = `#!/bin/sh
rec="$1/$VIPD_NODE.$VIPD_EVENT.$$"
printf 'EVENT=%s\\nVIP=%s\\nLINK=%s\\nNODE=%s\\nREASON=%s\\n' "$VIPD_EVENT" "$VIPD_VIP" "$VIPD_LINK" "$VIPD_NODE" "$VIPD_REASON" > "$rec.tmp"
mv "$rec.tmp" "$rec.env"
ip -o addr show dev "$VIPD_LINK" > "$rec.tmp"
mv "$rec.tmp" "$rec.addr"
echo "$VIPD_NODE $VIPD_EVENT" >> "$1/events"
sleep "$2"
touch "$rec.done"
`;

beforeAll(async () => {
  lab = await SmallLab.start(["n1", "n2", "n3"]);
  [n1, n2] = [lab.host("n1"), lab.host("n2")];
  config = lab.vipConfig("vip.yaml", VIP);
  hook = lab.write("hook.sh", HOOK);
  chmodSync(hook, 0o755);
}, 60_000);

afterAll(() => lab?.close(), 30_000);

/** A fresh directory for one test's records. */
function records(name: string): string {
  const dir = join(lab.dir, name);
  mkdirSync(dir);
  return dir;
}

/** The runs a node made of an event, as "<dir>/<node>.<event>.<pid>" prefixes. */
function runsOf(dir: string, node: string, event: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.startsWith(`${node}.${event}.`) && f.endsWith(".env"))
    .map((f) => join(dir, f.slice(0, -".env".length)));
}

function env(run: string): Record<string, string> {
  return Object.fromEntries(readFileSync(`${run}.env`, "utf8").trim().split("\n").map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
}

const hasVip = (run: string) => readFileSync(`${run}.addr`, "utf8").includes(` ${VIP}/32 `);

/** vipd with hooks: `acquired` sleeps acquiredS; released and fenced return at once. */
function vipd(host: Host, port: number, dir: string, acquiredS: number) {
  const argv = (sleepS: number) => JSON.stringify([hook, dir, String(sleepS)]);
  return lab.vipd(
    host,
    [
      "--config", config, "--node-name", host.name, "--etcd-endpoints", "http://127.0.0.1:2379", "--health-listen", `127.0.0.1:${port}`, "--log-format", "json",
      "--hook-acquired", argv(acquiredS), "--hook-released", argv(1),
    ],
    { env: { ...(process.env as Record<string, string>), VIPD_HOOK_FENCED: argv(0) } },
  );
}

/** Runs body; on failure stops the vipds at once and shows their logs, so the next test starts clean. */
async function guarded(procs: ReturnType<typeof vipd>[], body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (err) {
    for (const p of procs) p.kill("SIGKILL");
    for (const p of procs) console.error(await readLog(p));
    throw err;
  }
}

/** The reason vipd logged for an ownership change ("acquired VIP" / "released VIP"). */
function loggedReason(log: string, msg: string): string | undefined {
  for (const line of log.split("\n")) {
    if (!line.startsWith("{")) continue;
    const o = JSON.parse(line) as { msg?: string; reason?: string };
    if (o.msg === msg) return o.reason;
  }
  return undefined;
}

test("acquired: the hook sees its VIPD_* values and the address already up, and a slow hook holds nothing back; released on SIGTERM completes before vipd exits", async () => {
  const dir = records("acquire-release");
  const p = vipd(n1, 18170, dir, 5);
  let acquiredReason = "";
  await guarded([p], async () => {
    await waitFor("the VIP on n1", () => lab.seg.has(n1, VIP), 15_000);
    // The address is up while the acquired hook (5 s) has not finished, or not even started.
    expect(runsOf(dir, "n1", "acquired").filter((r) => existsSync(`${r}.done`))).toEqual([]);
    const [acquired] = await waitFor("the acquired hook to start", () => {
      const runs = runsOf(dir, "n1", "acquired");
      return runs.length > 0 && existsSync(`${runs[0]}.addr`) ? runs : null;
    }, 5000);
    expect(hasVip(acquired!)).toBe(true);
    const { REASON, ...seen } = env(acquired!);
    expect(seen).toEqual({ EVENT: "acquired", VIP, LINK: "eth0", NODE: "n1" });
    acquiredReason = REASON!;
    await waitFor("the acquired hook to finish", () => existsSync(`${acquired}.done`), 10_000);
  });

  const { code, log } = await stopVipd(p);
  expect(code).toBe(0);
  // The released hook ran after the address was gone, and finished (it sleeps 1 s) before vipd exited.
  const released = runsOf(dir, "n1", "released");
  expect(released).toHaveLength(1);
  expect(existsSync(`${released[0]}.done`)).toBe(true);
  expect(hasVip(released[0]!)).toBe(false);
  expect(env(released[0]!)).toEqual({ EVENT: "released", VIP, LINK: "eth0", NODE: "n1", REASON: loggedReason(log, "released VIP")! });
  expect(acquiredReason).toBe(loggedReason(log, "acquired VIP")!);
  expect(readFileSync(join(dir, "events"), "utf8")).toBe("n1 acquired\nn1 released\n");
  expect(log).toContain('"msg":"the released hook ran"');
}, 40_000);

test("fenced: the holder cut off from etcd runs its fenced hook; the node that takes over runs its acquired hook", async () => {
  const dir = records("fence");
  const a = vipd(n1, 18171, dir, 0);
  const procs = [a];
  await guarded(procs, async () => {
    await waitFor("the VIP on n1", () => lab.seg.has(n1, VIP), 15_000);
    procs.push(vipd(n2, 18172, dir, 0));
    // n2 is queued behind n1 before n1 is cut off.
    await waitFor("n2 queued", async () => (await fetchStatus(n2, 18172))?.vips?.[0]?.role === "waiting", 15_000);
    // n1's vipd talks to its own etcd member only: freezing it leaves n1 unable
    // to prove anything, while n2 and n3 keep a quorum.
    lab.etcd.signal("n1", "SIGSTOP");
    try {
      await waitFor("the VIP on n2", () => lab.seg.has(n2, VIP), 15_000);
      const [fenced] = await waitFor("n1's fenced hook", () => {
        const runs = runsOf(dir, "n1", "fenced").filter((r) => existsSync(`${r}.done`));
        return runs.length ? runs : null;
      }, 10_000);
      expect(hasVip(fenced!)).toBe(false);
      const { REASON: fencedReason, ...f } = env(fenced!);
      expect(f).toEqual({ EVENT: "fenced", VIP, LINK: "eth0", NODE: "n1" });
      expect(fencedReason).not.toBe("");
      const [took] = await waitFor("n2's acquired hook", () => {
        const runs = runsOf(dir, "n2", "acquired").filter((r) => existsSync(`${r}.done`));
        return runs.length ? runs : null;
      }, 10_000);
      expect(hasVip(took!)).toBe(true);
      expect(env(took!)).toMatchObject({ EVENT: "acquired", VIP, NODE: "n2" });
      expect(env(took!).REASON).toStartWith("took over from n1");
      expect(await lab.seg.has(n1, VIP)).toBe(false);
    } finally {
      lab.etcd.signal("n1", "SIGCONT");
    }
  });
  const stoppedA = await stopVipd(a);
  const stoppedB = await stopVipd(procs[1]!);
  expect([stoppedA.code, stoppedB.code]).toEqual([0, 0]);
  // What n1's fenced hook saw is what n1 logged.
  expect(env(runsOf(dir, "n1", "fenced")[0]!).REASON).toBe(loggedReason(stoppedA.log, "released VIP")!);
  // n1 never released the VIP otherwise: it was not holding when it stopped.
  expect(runsOf(dir, "n1", "released")).toEqual([]);
  expect(runsOf(dir, "n2", "released")).toHaveLength(1);
}, 60_000);

async function fetchStatus(host: Host, port: number): Promise<{ vips?: { role?: string }[] } | null> {
  const text = await lab.seg.exec(host, ["curl", "-s", `http://127.0.0.1:${port}/status`], { allowFail: true });
  try {
    return JSON.parse(text) as { vips?: { role?: string }[] };
  } catch {
    return null;
  }
}
