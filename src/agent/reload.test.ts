import { describe, expect, test } from "bun:test";
import { formatIssues, loadSettings, type Settings } from "../config/index.ts";
import { diffSettings } from "./reload.ts";

const vip = (name: string, link = "eth0") => `apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: "${name}"\nlink: "${link}"\n`;
const agent = (body: string) => `apiVersion: v1alpha1\nkind: VIPAgentConfig\n${body}\n`;

function settings(...docs: string[]): Settings {
  const r = loadSettings({ fileText: docs.join("---\n"), fileName: "vipd.yaml", env: {}, flags: {}, hostname: "cp-1", checkFile: () => null });
  if (!r.ok) throw new Error(formatIssues(r.issues));
  return r.settings;
}
const ips = (vs: readonly { ip: string; link: string }[]) => vs.map((v) => `${v.ip}@${v.link}`);

describe("diffSettings: VIPs", () => {
  test("one added, one removed, one kept", () => {
    const d = diffSettings(settings(vip("192.0.2.1"), vip("192.0.2.2")), settings(vip("192.0.2.1"), vip("192.0.2.3")));
    expect(ips(d.added)).toEqual(["192.0.2.3@eth0"]);
    expect(ips(d.removed)).toEqual(["192.0.2.2@eth0"]);
    expect(ips(d.kept)).toEqual(["192.0.2.1@eth0"]);
    expect(d.restart).toEqual([]);
    expect(d.live).toEqual([]);
    expect(ips(d.inForce.vips)).toEqual(["192.0.2.1@eth0", "192.0.2.3@eth0"]);
  });

  test("the same file again changes nothing", () => {
    const s = settings(vip("192.0.2.1"), vip("2001:db8::1", "mv0"), agent("election:\n  holdTime: 3000"));
    const d = diffSettings(s, settings(vip("192.0.2.1"), vip("2001:db8::1", "mv0"), agent("election:\n  holdTime: 3000")));
    expect([d.added, d.removed, d.restart, d.live]).toEqual([[], [], [], []]);
    expect(d.kept).toEqual(s.vips);
  });

  test("a VIP whose link changed is removed from the old link and added on the new one", () => {
    const d = diffSettings(settings(vip("192.0.2.1"), vip("192.0.2.2")), settings(vip("192.0.2.1"), vip("192.0.2.2", "eth1")));
    expect(ips(d.removed)).toEqual(["192.0.2.2@eth0"]);
    expect(ips(d.added)).toEqual(["192.0.2.2@eth1"]);
    expect(ips(d.kept)).toEqual(["192.0.2.1@eth0"]);
  });

  test("a kept VIP stays the object the agent runs, even when its document moved", () => {
    const running = settings(vip("192.0.2.1"));
    const d = diffSettings(running, settings(vip("192.0.2.9"), vip("192.0.2.1")));
    expect(d.kept[0]).toBe(running.vips[0]!);
    expect(d.inForce.vips[1]).toBe(running.vips[0]!);
    expect(ips(d.inForce.vips)).toEqual(["192.0.2.9@eth0", "192.0.2.1@eth0"]);
  });

  test("IPv6 addresses compare in canonical form", () => {
    const d = diffSettings(settings(vip("2001:db8:0::10")), settings(vip("2001:DB8::10")));
    expect(ips(d.kept)).toEqual(["2001:db8::10@eth0"]);
    expect(d.added).toEqual([]);
  });
});

describe("diffSettings: other settings", () => {
  test("settings that need a restart are named by path and keep their running values", () => {
    const running = settings(vip("192.0.2.1"));
    const next = settings(vip("192.0.2.1"), agent([
      "nodeName: cp-9",
      "etcd:\n  endpoints: [http://10.0.0.1:2379]\n  prefix: /other/",
      "election:\n  holdTime: 3000\n  leaseTTL: 20",
      "health:\n  listen: 127.0.0.1:9000",
      "announce:\n  burst: 5",
    ].join("\n")));
    const d = diffSettings(running, next);
    expect(d.restart).toEqual(["nodeName", "etcd.endpoints", "etcd.prefix", "election.holdTime", "election.leaseTTL", "health.listen", "announce.burst"]);
    expect(d.live).toEqual([]);
    const { vips: _a, ...rest } = d.inForce;
    const { vips: _b, ...was } = running;
    expect(rest).toEqual(was);
  });

  test("the gate turned on or off is one change, named by its section", () => {
    const off = settings(vip("192.0.2.1"));
    const on = settings(vip("192.0.2.1"), agent("apiServer:\n  url: https://127.0.0.1:6443/readyz\n  rise: 3"));
    expect(diffSettings(off, on).restart).toEqual(["apiServer"]);
    expect(diffSettings(on, off).restart).toEqual(["apiServer"]);
    expect(diffSettings(off, on).inForce.apiServer).toBeUndefined();
    const rise4 = settings(vip("192.0.2.1"), agent("apiServer:\n  url: https://127.0.0.1:6443/readyz\n  rise: 4"));
    expect(diffSettings(on, rise4).restart).toEqual(["apiServer.rise"]);
  });

  test("the log level and format apply live", () => {
    const running = settings(vip("192.0.2.1"));
    const d = diffSettings(running, settings(vip("192.0.2.1"), agent("log:\n  level: debug\n  format: pretty\nelection:\n  holdTime: 4000")));
    expect(d.live).toEqual(["log.format", "log.level"]);
    expect(d.restart).toEqual(["election.holdTime"]);
    expect(d.inForce.log).toEqual({ format: "pretty", level: "debug" });
    expect(d.inForce.election).toEqual(running.election);
    expect(Object.isFrozen(d.inForce.log)).toBe(true);
  });

  test("hooks apply live", () => {
    const running = settings(vip("192.0.2.1"));
    const d = diffSettings(running, settings(vip("192.0.2.1"), agent("hooks:\n  acquired: [/usr/local/sbin/up]\n  timeout: 3")));
    expect(d.live).toEqual(["hooks.acquired", "hooks.timeout"]);
    expect(d.restart).toEqual([]);
    expect(d.inForce.hooks.acquired).toEqual(["/usr/local/sbin/up"]);
    expect(d.inForce.hooks.timeout).toBe(3);
  });
});
