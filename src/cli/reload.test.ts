import { describe, expect, test } from "bun:test";
import type { ReloadOutcome } from "../agent.ts";
import { diffSettings } from "../agent/reload.ts";
import { formatIssues, loadSettings, type Settings } from "../config/index.ts";
import { parseReloadAnswer, type ReloadAnswer, Reloader, type ReloaderDeps, reloadExitCode, renderReloadAnswer, type Reread } from "./reload.ts";

const vip = (name: string, link = "eth0") => `apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: "${name}"\nlink: "${link}"\n`;
function settings(...docs: string[]): Settings {
  const r = loadSettings({ fileText: docs.join("---\n"), fileName: "vipd.yaml", env: {}, flags: {}, hostname: "cp-1", checkFile: () => null });
  if (!r.ok) throw new Error(formatIssues(r.issues));
  return r.settings;
}
const RUNNING = settings(vip("192.0.2.1"), vip("192.0.2.2"));
const NEXT = settings(vip("192.0.2.1"), vip("192.0.2.3"), "apiVersion: v1alpha1\nkind: VIPAgentConfig\nlog:\n  level: debug\n");

interface Fake {
  reloader: Reloader;
  lines: string[];
  counted: string[];
  live: Settings[];
  applied: Settings[];
  reads: () => number;
}

function fake(over: Partial<ReloaderDeps> & { reread?: () => Reread } = {}): Fake {
  const lines: string[] = [];
  const counted: string[] = [];
  const live: Settings[] = [];
  const applied: Settings[] = [];
  let reads = 0;
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) => void lines.push(`${level} ${msg}${fields ? ` ${JSON.stringify(fields)}` : ""}`);
  const reloader = new Reloader({
    apply: async (s) => {
      applied.push(s);
      return { ...diffSettings(RUNNING, s), leaving: [] } satisfies ReloadOutcome;
    },
    applyLive: (s) => void live.push(s),
    counted: (r) => void counted.push(r),
    log: { error: at("error"), warn: at("warn"), info: at("info"), debug: at("debug") },
    config: "/etc/vipd/vipd.yaml",
    pid: 812,
    ...over,
    reread: () => {
      reads++;
      return (over.reread ?? (() => ({ ok: true, settings: NEXT })))();
    },
  });
  return { reloader, lines, counted, live, applied, reads: () => reads };
}

describe("Reloader", () => {
  test("a valid file: applied, live settings handed over, the outcome logged, counted and answered", async () => {
    const f = fake();
    const a = await f.reloader.request("SIGHUP");
    expect(a).toEqual({
      result: "reloaded", pid: 812, config: "/etc/vipd/vipd.yaml",
      added: [{ ip: "192.0.2.3", link: "eth0" }], removed: [{ ip: "192.0.2.2", link: "eth0" }], kept: [{ ip: "192.0.2.1", link: "eth0" }],
      leaving: [], live: ["log.level"], restart: [],
    });
    expect(f.applied).toEqual([NEXT]);
    expect(f.live.map((s) => s.log.level)).toEqual(["debug"]);
    expect(f.counted).toEqual(["reloaded"]);
    expect(f.lines).toEqual([
      'info configuration reloaded {"trigger":"SIGHUP","config":"/etc/vipd/vipd.yaml","added":"192.0.2.3@eth0","removed":"192.0.2.2@eth0","kept":1,"live":"log.level"}',
    ]);
  });

  test("an invalid file: nothing applied, the problems logged and answered", async () => {
    const problems = ["1 configuration problem:", '  - document 0 (Layer2VIPConfig): name: expected an IPv4 or IPv6 address, received "192.0.2.300"'];
    const f = fake({ reread: () => ({ ok: false, problems }) });
    const a = await f.reloader.request("vipd reload");
    expect(a).toEqual({ result: "invalid", pid: 812, config: "/etc/vipd/vipd.yaml", problems });
    expect(f.applied).toEqual([]);
    expect(f.counted).toEqual(["invalid"]);
    expect(f.lines).toHaveLength(1);
    expect(f.lines[0]).toStartWith("error configuration not reloaded: it is not valid; running as before");
    expect(f.lines[0]).toContain("received \\\"192.0.2.300\\\"");
  });

  test("a file the agent cannot apply: a failure, named, and nothing else", async () => {
    const f = fake({ apply: () => Promise.reject(new Error("the nftables fence cannot guard the new VIPs (ENOMEM); nothing changed")) });
    const a = await f.reloader.request("SIGHUP");
    expect(a).toEqual({ result: "failed", pid: 812, config: "/etc/vipd/vipd.yaml", error: "the nftables fence cannot guard the new VIPs (ENOMEM); nothing changed" });
    expect(f.live).toEqual([]);
    expect(f.counted).toEqual(["failed"]);
  });

  test("settings that need a restart, and releases still under way, are warned about", async () => {
    const held = settings(vip("192.0.2.1"), "apiVersion: v1alpha1\nkind: VIPAgentConfig\nelection:\n  holdTime: 4000\n");
    const f = fake({
      reread: () => ({ ok: true, settings: held }),
      apply: async (s) => ({ ...diffSettings(RUNNING, s), leaving: ["192.0.2.2"] }),
    });
    const a = await f.reloader.request("SIGHUP");
    expect(a.result === "reloaded" && [a.restart, a.leaving]).toEqual([["election.holdTime"], ["192.0.2.2"]]);
    expect(f.lines.slice(1).map((l) => l.split(" {")[0])).toEqual([
      "warn changed settings need a restart to apply; running with their old values: election.holdTime",
      "warn removed VIPs are still being released (etcd slow or unreachable?); that goes on in the background",
    ]);
  });

  test("requests during a reload share the one reload after it, which reads the file afresh", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const f = fake({
      apply: async (s) => {
        await gate;
        return { ...diffSettings(RUNNING, s), leaving: [] };
      },
    });
    const first = f.reloader.request("SIGHUP");
    const more = [f.reloader.request("vipd reload"), f.reloader.request("SIGHUP"), f.reloader.request("vipd reload")];
    expect(f.reads()).toBe(1);
    release();
    const [a, ...rest] = await Promise.all([first, ...more]);
    expect(f.reads()).toBe(2);
    expect(rest[0]).toBe(rest[1]!);
    expect(rest[1]).toBe(rest[2]!);
    expect(rest[0]).not.toBe(a);
    expect(f.counted).toEqual(["reloaded", "reloaded"]);
    // And the next one after that starts on its own.
    await f.reloader.request("SIGHUP");
    expect(f.reads()).toBe(3);
  });

  test("the socket takes one request, by name", async () => {
    const f = fake();
    expect(parseReloadAnswer(await f.reloader.answer("reload"))).toMatchObject({ result: "reloaded", pid: 812 });
    expect(JSON.parse(await f.reloader.answer("restart"))).toEqual({ error: 'unknown request "restart"; this vipd takes "reload"' });
    expect(f.reads()).toBe(1);
  });
});

describe("what vipd reload prints, and its exit code", () => {
  const base = { pid: 812, config: "/etc/vipd/vipd.yaml" } as const;
  const reloaded = (o: Partial<Extract<ReloadAnswer, { result: "reloaded" }>>): ReloadAnswer => ({
    result: "reloaded", ...base, added: [], removed: [], kept: [{ ip: "192.0.2.1", link: "eth0" }], leaving: [], live: [], restart: [], ...o,
  });

  test("all applied: exit 0, one line per VIP", () => {
    const a = reloaded({ added: [{ ip: "192.0.2.3", link: "eth1" }], removed: [{ ip: "192.0.2.2", link: "eth0" }], live: ["log.level"] });
    expect(renderReloadAnswer(a)).toBe([
      "vipd (pid 812) reloaded /etc/vipd/vipd.yaml:",
      "  removed  192.0.2.2 on eth0 (released, out of its queue)",
      "  added    192.0.2.3 on eth1 (standing for it)",
      "  kept     192.0.2.1 on eth0 (untouched)",
      "  applied  log.level",
    ].join("\n"));
    expect(reloadExitCode(a)).toBe(0);
  });

  test("nothing changed: exit 0", () => {
    const a = reloaded({});
    expect(renderReloadAnswer(a)).toBe("vipd (pid 812) reloaded /etc/vipd/vipd.yaml: nothing changed.\n  kept     192.0.2.1 on eth0 (untouched)");
    expect(reloadExitCode(a)).toBe(0);
  });

  test("a setting that needs a restart, or a release still under way: exit 1, saying so", () => {
    const restart = reloaded({ restart: ["election.holdTime", "etcd.endpoints"] });
    expect(renderReloadAnswer(restart)).toEndWith(
      "Not applied: election.holdTime, etcd.endpoints changed, and take effect only when vipd restarts (systemctl restart vipd); it runs with the old values until then.",
    );
    expect(reloadExitCode(restart)).toBe(1);
    const slow = reloaded({ removed: [{ ip: "192.0.2.2", link: "eth0" }], leaving: ["192.0.2.2"] });
    expect(renderReloadAnswer(slow)).toContain("  removed  192.0.2.2 on eth0 (still being released: it finishes in the background)");
    expect(reloadExitCode(slow)).toBe(1);
  });

  test("an invalid file: exit 2 with every problem; a failure: exit 1", () => {
    const invalid: ReloadAnswer = { result: "invalid", ...base, problems: ["1 configuration problem:", "  - document 0 (Layer2VIPConfig): link: expected a link name"] };
    expect(renderReloadAnswer(invalid)).toBe([
      "vipd (pid 812) did not reload /etc/vipd/vipd.yaml: it is not valid. Nothing changed; vipd runs as before.",
      "1 configuration problem:",
      "  - document 0 (Layer2VIPConfig): link: expected a link name",
    ].join("\n"));
    expect(reloadExitCode(invalid)).toBe(2);
    const failed: ReloadAnswer = { result: "failed", ...base, error: "vipd is shutting down" };
    expect(renderReloadAnswer(failed)).toBe("vipd (pid 812) did not reload /etc/vipd/vipd.yaml: vipd is shutting down. Nothing changed; vipd runs as before.");
    expect(reloadExitCode(failed)).toBe(1);
  });

  test("an answer that is not one is recognised as such", () => {
    expect(parseReloadAnswer("")).toBeNull();
    expect(parseReloadAnswer("ok")).toBeNull();
    expect(parseReloadAnswer('{"result":"maybe"}')).toBeNull();
    expect(parseReloadAnswer('{"error":"unknown request"}')).toEqual({ error: "unknown request" });
  });
});
