// The shipped binary as deploy/vipd.service runs it: as the unprivileged
// user vipd with CAP_NET_ADMIN and CAP_NET_RAW only, no new privileges, the
// unit's system-call filter and address families, a read-only file system
// (test/lab/unit-sandbox.ts reads all of that from the unit file). On two
// lab nodes it must hold the VIP (the kernel's view), announce it (gratuitous
// ARP, captured by tcpdump in the other node's namespace) and hand it over
// on SIGTERM.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Capture } from "../kernel/capture.ts";
import { REPO_ROOT } from "../lab/cluster.ts";
import type { Host } from "../lab/netns.ts";
import { sh, waitFor } from "../lab/sh.ts";
import { SmallLab } from "../lab/small-lab.ts";
import { capMask, ensureSystemUser, passwdEntry, sandbox, Unit } from "../lab/unit-sandbox.ts";

const VIP = "192.0.2.91";
const unit = Unit.read(join(REPO_ROOT, "deploy", "vipd.service"));
let dir: string;
let bin: string;
let user: Awaited<ReturnType<typeof ensureSystemUser>>;

beforeAll(async () => {
  user = await ensureSystemUser(unit.one("Service", "User")!);
  await sh([join(REPO_ROOT, "node_modules/.bin/bun"), join(REPO_ROOT, "build.ts"), process.arch === "arm64" ? "arm64" : "x64"]);
  dir = mkdtempSync(join(tmpdir(), "vipd-unpriv-"));
  // The service user must reach the binary and its config.
  chmodSync(dir, 0o755);
  bin = join(dir, "vipd");
  copyFileSync(join(REPO_ROOT, "dist", "vipd"), bin);
  chmodSync(bin, 0o755);
}, 120_000);

afterAll(async () => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  await user?.remove();
});

/** Gratuitous ARPs for `ip` from `mac` in captured Ethernet frames. */
function garpsFrom(cap: Capture, mac: string, ip: string): number {
  const hex = (b: Uint8Array, from: number, n: number) => [...b.slice(from, from + n)].map((x) => x.toString(16).padStart(2, "0")).join(":");
  const ipv4 = (b: Uint8Array, from: number) => [...b.slice(from, from + 4)].join(".");
  // Ethernet: dst (6), src (6), type (2) = 0x0806; ARP: htype (2), ptype (2),
  // hlen (1), plen (1), op (2), sender MAC (6) at 22, sender IP (4) at 28,
  // target MAC (6) at 32, target IP (4) at 38 (RFC 826).
  return cap.frames().filter(({ bytes: b }) =>
    b.length >= 42 && b[12] === 0x08 && b[13] === 0x06 && hex(b, 6, 6) === mac && ipv4(b, 28) === ip && ipv4(b, 38) === ip).length;
}

async function macOf(host: Host): Promise<string> {
  const [link] = JSON.parse(await sh(["ip", "-n", host.ns, "-j", "link", "show", "dev", host.link])) as { address: string }[];
  return link!.address;
}

/** One /proc/<pid>/status field, e.g. "CapEff" → "0000000000003000". */
function statusField(pid: number, name: string): string {
  const m = new RegExp(`^${name}:\\s+(.*)$`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`/proc/${pid}/status has no ${name}`);
  return m[1]!.trim();
}

test("as user vipd with two capabilities under the unit's sandbox, the binary holds, announces and hands over the VIP", async () => {
  const lab = await SmallLab.start(["n1", "n2"]);
  const captures: Capture[] = [];
  try {
    chmodSync(lab.dir, 0o755);
    const config = lab.vipConfig("vip.yaml", VIP);
    const [n1, n2] = [lab.host("n1"), lab.host("n2")];
    const [mac1, mac2] = [await macOf(n1), await macOf(n2)];
    const fromN2 = await Capture.start(n2.ns, "eth0", "arp");
    const fromN1 = await Capture.start(n1.ns, "eth0", "arp");
    captures.push(fromN2, fromN1);

    const start = async (host: Host) => {
      const own = mkdtempSync(join(lab.dir, `${host.name}-`));
      chmodSync(own, 0o755);
      const s = await sandbox(unit, {
        dir: own,
        loadCredentials: false,
        argv: [bin, "run", "--config", config, "--node-name", host.name, "--etcd-endpoints", "http://127.0.0.1:2379", "--log-format", "json"],
      });
      return { s, p: lab.spawn(host, s.argv), log: () => readFileSync(s.logFile, "utf8") };
    };

    const a = await start(n1);
    await waitFor("the VIP on n1 (ip -j addr)", () => lab.seg.has(n1, VIP), 15_000).catch((e) => {
      throw new Error(`${(e as Error).message}\nn1's log:\n${a.log()}`);
    });
    // The running process is exactly what the unit asks for.
    const pw = passwdEntry(unit.one("Service", "User")!)!;
    const caps = capMask(unit.words("Service", "AmbientCapabilities")).toString(16).padStart(16, "0");
    expect(statusField(a.p.pid, "Uid").split(/\s+/)).toEqual(Array(4).fill(String(pw.uid)));
    expect(statusField(a.p.pid, "Gid").split(/\s+/)).toEqual(Array(4).fill(String(pw.gid)));
    for (const set of ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]) expect([set, statusField(a.p.pid, set)]).toEqual([set, caps]);
    expect(statusField(a.p.pid, "NoNewPrivs")).toBe("1");
    expect(statusField(a.p.pid, "Seccomp")).toBe("2");
    await waitFor("n1's gratuitous ARPs, seen from n2", () => garpsFrom(fromN2, mac1, VIP) >= 2, 5000);

    const b = await start(n2);
    await waitFor("n2 waiting in the queue", async () => {
      const status = await sh(["ip", "netns", "exec", n2.ns, "curl", "-s", "-m", "1", "http://127.0.0.1:8099/status"], { allowFail: true });
      return status.includes('"role":"waiting"');
    }, 15_000);

    a.p.kill("SIGTERM");
    expect(await a.p.exited).toBe(0);
    expect(await lab.seg.has(n1, VIP)).toBe(false);
    await waitFor("the VIP on n2", () => lab.seg.has(n2, VIP), 3000);
    await waitFor("n2's gratuitous ARPs, seen from n1", () => garpsFrom(fromN1, mac2, VIP) >= 2, 5000);

    const events = (log: string) => log.trim().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as { msg: string; reason?: string });
    expect(events(a.log()).find((e) => e.msg === "acquired VIP")).toBeDefined();
    expect(events(a.log()).find((e) => e.msg === "released VIP")?.reason).toBe("shutting down");
    expect(events(b.log()).find((e) => e.msg === "acquired VIP")).toBeDefined();
    // Nothing in either run hit the filter or the read-only file system.
    for (const log of [a.log(), b.log()]) expect(log).not.toMatch(/EPERM|EACCES|EROFS|EAFNOSUPPORT|Operation not permitted/);
  } finally {
    for (const c of captures) {
      await c.stop();
      c.dispose();
    }
    await lab.close();
  }
}, 90_000);

test("with MemoryDenyWriteExecute=yes added to the unit, the binary cannot start: why the unit leaves it out", async () => {
  const text = readFileSync(join(REPO_ROOT, "deploy", "vipd.service"), "utf8").replace("[Service]\n", "[Service]\nMemoryDenyWriteExecute=yes\n");
  const strict = Unit.parse("vipd.service with MemoryDenyWriteExecute=yes", text);
  const own = mkdtempSync(join(dir, "mdwe-"));
  chmodSync(own, 0o755);
  const s = await sandbox(strict, { dir: own, loadCredentials: false, argv: [bin, "version"] });
  expect(s.policy.denyWriteExecute).toBe(true);
  const p = Bun.spawn(s.argv, { stdout: "ignore", stderr: "ignore" });
  expect(await p.exited).not.toBe(0);
  expect(readFileSync(s.logFile, "utf8")).toContain("requires the JIT");
  // The same sandbox without it runs the binary.
  const plain = await sandbox(unit, { dir: own, loadCredentials: false, argv: [bin, "version"] });
  const q = Bun.spawn(plain.argv, { stdout: "ignore", stderr: "ignore" });
  expect(await q.exited).toBe(0);
  expect(readFileSync(plain.logFile, "utf8")).toStartWith("vipd ");
}, 30_000);
