// The CLI's contract (README, "Exit codes"): exit 0 / 2 / 1, errors as sentences on
// stderr, never a stack trace for a user mistake.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type CliIO, runCli, VERSION } from "../../src/cli/commands.ts";

let dir: string;
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "vipd-cli-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function cli(argv: string[], env: Record<string, string> = {}, stdin?: string, more: Partial<CliIO> = {}) {
  let out = "";
  let err = "";
  const io: CliIO = {
    argv,
    env,
    hostname: "cp-test",
    isTTY: false,
    out: (t) => void (out += t),
    err: (t) => void (err += t),
    stopRequested: new Promise(() => {}),
    ...(stdin === undefined ? {} : { readStdin: async () => stdin }),
    ...more,
  };
  const code = await runCli(io);
  return { code, out, err };
}

const GOOD = "apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: 192.0.2.15\nlink: eth0\n";

describe("vipd validate", () => {
  test("a good file: exit 0 and a summary naming node, VIP and link", async () => {
    const r = await cli(["validate", file("good.yaml", GOOD)]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("192.0.2.15");
    expect(r.out).toContain("eth0");
    expect(r.out).toContain("cp-test");
    expect(r.err).toBe("");
  });

  test("a whole Talos machine config: read for its VIPs, other documents skipped by name", async () => {
    const talos = `version: v1alpha1\nmachine:\n  type: controlplane\n  network:\n    interfaces:\n      - interface: eth0\n        vip:\n          ip: 192.0.2.16\ncluster:\n  clusterName: demo\n---\n${GOOD}---\nkind: HostnameConfig\nhostname: cp-1\n`;
    const r = await cli(["validate", file("talos.yaml", talos)]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("reading document 0 (Talos machine config) for its VIPs (1 found); the rest of it is not vipd's");
    expect(r.out).toContain("skipping document 2 (HostnameConfig): a Talos document, not vipd's");
    expect(r.out).toContain("VIP:       192.0.2.16 (IPv4) on eth0");
    expect(r.out).toContain("VIP:       192.0.2.15 (IPv4) on eth0");
  });

  test("a VIP document vipd cannot serve: exit 2 naming the document", async () => {
    const r = await cli(["validate", file("hcloud.yaml", `${GOOD}---\napiVersion: v1alpha1\nkind: HCloudVIPConfig\nname: 192.0.2.20\nlink: eth0\napiToken: x\n`)]);
    expect(r.code).toBe(2);
    expect(r.err).toContain("document 1 (HCloudVIPConfig): a VIP announced through a cloud API");
  });

  const bad: [string, string, string][] = [
    ["malformed VIP", GOOD.replace("192.0.2.15", "192.0.2.300"), 'name: expected an IPv4 or IPv6 address, received "192.0.2.300"'],
    ["typo in a field", `${GOOD}---\napiVersion: v1alpha1\nkind: VIPAgentConfig\nnodeNmae: x\n`, "nodeNmae"],
    ["TTL too short", `${GOOD}---\napiVersion: v1alpha1\nkind: VIPAgentConfig\nelection:\n  leaseTTL: 2\n`, "leaseTTL"],
    ["no VIP at all", "apiVersion: v1alpha1\nkind: VIPAgentConfig\n", "Layer2VIPConfig"],
    ["duplicate VIP", `${GOOD}---\n${GOOD}`, "192.0.2.15"],
  ];
  for (const [name, text, needle] of bad) {
    test(`${name}: exit 2 and the problem named, no stack trace`, async () => {
      const r = await cli(["validate", file(`${name.replaceAll(" ", "-")}.yaml`, text)]);
      expect(r.code).toBe(2);
      expect(r.err).toContain(needle);
      expect(r.err).toContain("document");
      expect(r.err).not.toMatch(/\n\s+at /);
    });
  }

  test("a missing file, a directory: exit 2 naming the file and saying why in words", async () => {
    const r = await cli(["validate", join(dir, "nope.yaml")]);
    expect(r).toMatchObject({ code: 2, out: "" });
    expect(r.err).toBe(`1 configuration problem:\n  - ${join(dir, "nope.yaml")}: cannot read the configuration file: it does not exist (ENOENT)\n`);
    const d = await cli(["validate", dir]);
    expect(d.err).toBe(`1 configuration problem:\n  - ${dir}: cannot read the configuration file: it is a directory, not a file (EISDIR)\n`);
  });

  test("a misspelled kind: exit 2 naming the kind meant, with the file and line", async () => {
    const p = file("kind.yaml", `${GOOD}---\napiVersion: v1alpha1\nkind: VipAgentConfig\netcd:\n  endpoints: [https://10.0.0.1:2379]\n`);
    const r = await cli(["validate", p]);
    expect(r).toMatchObject({ code: 2, out: "" });
    expect(r.err).toBe(`1 configuration problem:\n  - ${p}:7: document 1 (VipAgentConfig): kind: unknown kind "VipAgentConfig": did you mean "VIPAgentConfig"? (kinds are case-sensitive)\n`);
  });

  test('"-" reads standard input, named (stdin) in problems', async () => {
    const ok = await cli(["validate", "-"], {}, GOOD);
    expect(ok).toMatchObject({ code: 0, err: "" });
    expect(ok.out).toContain("VIP:       192.0.2.15 (IPv4) on eth0");
    const bad = await cli(["validate", "-"], {}, GOOD.replace("192.0.2.15", "192.0.2.15/24"));
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('(stdin):3: document 0 (Layer2VIPConfig): name: expected an address without a prefix length');
  });

  test("warnings on stderr, exit 0: TLS files kubeadm has not written yet, a VIPD_ variable of this shell", async () => {
    const text = `${GOOD}---\napiVersion: v1alpha1\nkind: VIPAgentConfig\netcd:\n  caFile: ${join(dir, "not-yet", "ca.crt")}\n`;
    const p = file("later.yaml", text);
    const r = await cli(["validate", p], { VIPD_HOLD_TIM: "3000" });
    expect(r.code).toBe(0);
    expect(r.err).toBe([
      "2 configuration warnings:",
      `  - ${p}:9: document 1 (VIPAgentConfig): etcd.caFile: expected a readable file, received "${join(dir, "not-yet", "ca.crt")}": it does not exist (ENOENT); vipd run will refuse it until vipd's user can read it`,
      '  - environment VIPD_HOLD_TIM: unknown variable; "vipd run --help" lists the VIPD_ variables',
      "",
    ].join("\n"));
    expect(r.out).toContain("VIP:       192.0.2.15 (IPv4) on eth0");
    // run refuses both.
    const run = await cli(["run", "--config", p], { VIPD_HOLD_TIM: "3000" });
    expect(run.code).toBe(2);
    expect(run.err).toContain("2 configuration problems:");
    expect(run.err).toContain("etcd.caFile: expected a readable file");
    expect(run.err).toContain("environment VIPD_HOLD_TIM: unknown variable");
  });

  test("about this machine: a VIP's link that is not here, a hook that cannot run; warnings after the file's, exit 0", async () => {
    const hook = file("hook.sh", "#!/bin/sh\n"); // not executable
    const text = `${GOOD}---\n${GOOD.replace("192.0.2.15", "192.0.2.16").replace("eth0", "vlan7")}---\napiVersion: v1alpha1\nkind: VIPAgentConfig\nhooks:\n  acquired: [${hook}]\n  fenced: [${join(dir, "nope")}]\n`;
    const asked: string[][] = [];
    const links = async (names: readonly string[]) => {
      asked.push([...names]);
      return new Map(names.map((n) => [n, n === "eth0" ? null : "ENODEV"]));
    };
    const r = await cli(["validate", file("machine.yaml", text)], { VIPD_X: "1" }, undefined, { links });
    expect(r.code).toBe(0);
    expect(asked).toEqual([["eth0", "vlan7"]]);
    expect(r.err).toBe([
      "1 configuration warning:",
      '  - environment VIPD_X: unknown variable; "vipd run --help" lists the VIPD_ variables',
      "3 warnings about this machine:",
      '  - document 1: link: expected a link of this network namespace, received "vlan7", which is not here: vipd stands for 192.0.2.16 only once it appears (a typo, or a link set up later?)',
      `  - setting hooks.acquired: expected a program vipd can run, received "${hook}": it is not executable (chmod +x); each acquired hook run fails (and is logged) until it can run`,
      `  - setting hooks.fenced: expected a program vipd can run, received "${join(dir, "nope")}": it does not exist; each fenced hook run fails (and is logged) until it can run`,
      "",
    ].join("\n"));
    expect(r.out).toContain("VIP:       192.0.2.16 (IPv4) on vlan7");
  });

  test("the real lookup finds this namespace's loopback and not a made-up link", async () => {
    const { kernelLinks } = await import("../../src/cli/preflight.ts");
    expect(await kernelLinks(["lo", "vipd-nope0"])).toEqual(new Map([["lo", null], ["vipd-nope0", "ENODEV"]]));
  });

  test("README's configuration example validates before kubeadm has written its certificates", async () => {
    const readme = readFileSync(join(import.meta.dir, "../../README.md"), "utf8");
    const section = readme.slice(readme.indexOf("\n## Configuration\n"));
    const example = /```yaml\n([\s\S]*?)```/.exec(section)?.[1];
    expect(example).toContain("kind: VIPAgentConfig");
    const r = await cli(["validate", file("readme.yaml", example!)]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("VIP:       192.168.0.15 (IPv4) on enp0s2");
    expect(r.out).toContain("gate:      https://127.0.0.1:6443/readyz");
    // Only warnings: kubeadm's certificates not written yet (where kubeadm has
    // run there are none of these), and the example's hook program.
    for (const line of r.err.split("\n").filter((l) => l.startsWith("  - "))) {
      expect(line).toMatch(/\/etc\/kubernetes\/pki\/.*it does not exist \(ENOENT\); vipd run will refuse it|setting hooks\.acquired: .*vipd-hook/);
    }
  });
});

describe("vipd run: bad usage exits 2 before touching anything", () => {
  test("no config", async () => {
    const r = await cli(["run"]);
    expect(r.code).toBe(2);
    expect(r.err).toContain("--config FILE or set VIPD_CONFIG");
  });
  test("unknown flag", async () => {
    const r = await cli(["run", "--config", file("g2.yaml", GOOD), "--lease-tll", "5"]);
    expect(r.code).toBe(2);
    expect(r.err).toContain("--lease-tll");
  });
  test("flag value out of range", async () => {
    const r = await cli(["run", "--config", file("g3.yaml", GOOD), "--lease-ttl", "1"]);
    expect(r.code).toBe(2);
    expect(r.err).toContain("--lease-ttl");
  });
  test("bad environment variable", async () => {
    const r = await cli(["run", "--config", file("g4.yaml", GOOD)], { VIPD_LEASE_TTL: "soon" });
    expect(r.code).toBe(2);
    expect(r.err).toContain("VIPD_LEASE_TTL");
  });
  test("apiServer settings without apiServer.url: the gate is not turned on silently", async () => {
    const r = await cli(["run", "--config", file("g6.yaml", GOOD), "--apiserver-insecure-skip-verify"]);
    expect(r.code).toBe(2);
    expect(r.err).toContain("flag --apiserver-insecure-skip-verify: the kube-apiserver gate is off without apiServer.url: set apiServer.url (VIPD_APISERVER_URL or --apiserver-url)");
  });
  test("a kernel older than vipd's minimum: exit 2 naming the kernel and what it lacks", async () => {
    const r = await cli(["run", "--config", file("g6.yaml", GOOD)], {}, undefined, { kernelRelease: () => "4.4.0-210-generic\n" });
    expect(r.code).toBe(2);
    expect(r.err).toContain("vipd: Linux 4.4.0-210-generic is older than 4.8, the oldest kernel vipd runs on (its nftables fence needs inverted set lookups, Linux 4.8)\n");
    expect(r.err).not.toContain("starting vipd");
  });
  test("config file from VIPD_CONFIG, with a bad VIP", async () => {
    const r = await cli(["run"], { VIPD_CONFIG: file("g5.yaml", GOOD.replace("192.0.2.15", "224.0.0.1")) });
    expect(r.code).toBe(2);
    expect(r.err).toContain("224.0.0.1");
  });
});

describe("other commands", () => {
  test("version: the version, the commit, Bun's version and the target", async () => {
    const r = await cli(["version"]);
    expect(r.code).toBe(0);
    expect(r.out).toBe(`vipd ${VERSION} (commit source, Bun ${Bun.version}, ${process.platform}-${process.arch} (from source))\n`);
    expect(await cli(["--version"])).toEqual(r);
  });
  test("help goes to stdout with exit 0 and lists every command; no command is a usage error", async () => {
    const h = await cli(["--help"]);
    expect(h.code).toBe(0);
    for (const c of ["run", "validate", "status", "wait", "config example", "version"]) expect(h.out).toMatch(new RegExp(`^  ${c} +\\S`, "m"));
    const none = await cli([]);
    expect(none.code).toBe(2);
  });
  test("each command has its own --help, with its flags and their variables", async () => {
    const run = await cli(["run", "--help"]);
    expect(run.code).toBe(0);
    expect(run.out).toStartWith("vipd run --config FILE [flags]");
    expect(run.out).toContain("--lease-ttl SECONDS");
    expect(run.out).toContain("[VIPD_LEASE_TTL]");
    const status = await cli(["status", "--help"]);
    expect(status.out).toContain("--json");
    expect(status.out).toContain("--etcd-endpoints URL,URL");
    expect(status.out).not.toContain("--hold-time");
    const wait = await cli(["wait", "-h"]);
    expect(wait.out).toContain("--for healthy|standing|holding");
    expect(wait.out).toContain("Exit codes: 0 done; 1 timed out");
    expect((await cli(["config", "example", "--help"])).out).toStartWith("vipd config example");
    // A flag of another command is an error that points at the right help.
    const wrong = await cli(["status", "--hold-time", "3000"]);
    expect(wrong.code).toBe(2);
    expect(wrong.err).toContain('Run "vipd status --help"');
  });
  test("config example: every setting, and a file validate accepts as it is", async () => {
    const r = await cli(["config", "example"]);
    expect(r.code).toBe(0);
    for (const setting of ["endpoints:", "holdTime: 2500", "leaseTTL: 10", "listen: 127.0.0.1:8099", "# apiServer:", "  # url: https://127.0.0.1:6443/readyz", "burstInterval: 0.05", "  # acquired: [/usr/local/sbin/vipd-hook, acquired]", "  timeout: 10", "level: info"]) {
      expect(r.out).toContain(setting);
    }
    const v = await cli(["validate", file("example.yaml", r.out)]);
    expect(v).toMatchObject({ code: 0, err: "" });
    expect(v.out).toContain("election:  hold 2500 ms, cleanup lease TTL 10 s");
    // Uncommented, the optional parts are valid too (file settings aside, which must exist).
    const all = r.out.replace(/^(\s*)# (?!.*File:)([a-zA-Z]+:)/gm, "$1$2");
    const w = await cli(["validate", file("example-all.yaml", all)]);
    // The example's hook program is not installed here: a warning about this machine, not about the file.
    expect(w.code).toBe(0);
    expect(w.err).toBe([
      "3 warnings about this machine:",
      ...["acquired", "released", "fenced"].map((e) => `  - setting hooks.${e}: expected a program vipd can run, received "/usr/local/sbin/vipd-hook": it does not exist; each ${e} hook run fails (and is logged) until it can run`),
      "",
    ].join("\n"));
    expect(w.out).toContain("gate:      https://127.0.0.1:6443/readyz every 1 s");
    expect(w.out).toContain('hooks:     acquired ["/usr/local/sbin/vipd-hook","acquired"], released ["/usr/local/sbin/vipd-hook","released"], fenced ["/usr/local/sbin/vipd-hook","fenced"], timeout 10 s');
  });
  test("unknown command", async () => {
    const r = await cli(["serve"]);
    expect(r.code).toBe(2);
    expect(r.err).toContain('unknown command "serve"');
    expect((await cli(["config", "show"])).err).toContain('did you mean "vipd config example"?');
  });
});

describe("the day-2 commands on a node (its files under VIPD_TEST_ROOT)", () => {
  test("the node's own vipd.yaml is read without --config: a bad one is exit 2 naming it; --config wins over it", async () => {
    const root = join(dir, "node-root");
    mkdirSync(join(root, "etc", "vipd"), { recursive: true });
    const own = join(root, "etc", "vipd", "vipd.yaml");
    writeFileSync(own, `${GOOD}---\napiVersion: v1alpha1\nkind: VIPAgentConfig\netcd: { endpoints: [ftp://10.0.0.1:2379] }\n`);
    for (const argv of [["status"], ["undrain", "cp-1"], ["drain", "cp-1"], ["handover", "192.0.2.15"]]) {
      const r = await cli(argv, { VIPD_TEST_ROOT: root });
      expect(r.code, argv.join(" ")).toBe(2);
      expect(r.err).toContain(`${own}:`);
      expect(r.err).toContain("ftp://10.0.0.1:2379");
    }
    // An explicit file is read instead, so the node's bad one is not reached; no etcd answers on this port.
    const r = await cli(["status", "--config", file("other.yaml", GOOD), "--etcd-endpoints", "http://127.0.0.1:1"], { VIPD_TEST_ROOT: root });
    expect(r.code).toBe(1);
    expect(r.err).not.toContain(own);
  });
});

describe("vipd wait", () => {
  test("bad usage: exit 2", async () => {
    expect((await cli(["wait", "--for", "ready"])).code).toBe(2);
    expect((await cli(["wait", "--timeout", "0"])).err).toContain("--timeout wants a number of seconds");
  });
  test("healthy and holding, against a stand-in agent; a timeout names the last answer", async () => {
    let health = { status: 503, body: "etcd session not established: connecting" };
    let owner = false;
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch(req) {
        const { pathname } = new URL(req.url);
        if (pathname === "/healthz") return new Response(`${health.body}\n`, { status: health.status });
        return Response.json({ vips: [{ ip: "192.0.2.15", owner }] });
      },
    });
    try {
      const listen = `127.0.0.1:${server.port}`;
      const slow = await cli(["wait", "--health-listen", listen, "--timeout", "0.6"]);
      expect(slow.code).toBe(1);
      expect(slow.err).toBe("vipd wait: not healthy after 0.6 s: /healthz answered 503: etcd session not established: connecting\n");
      setTimeout(() => (health = { status: 200, body: "ok" }), 300);
      const ok = await cli(["wait", "--health-listen", listen, "--timeout", "5"]);
      expect(ok).toEqual({ code: 0, out: `vipd on ${listen}: healthy\n`, err: "" });
      setTimeout(() => (owner = true), 300);
      const holding = await cli(["wait", "--for", "holding", "--health-listen", listen, "--timeout", "5"]);
      expect(holding).toEqual({ code: 0, out: `vipd on ${listen}: holding 192.0.2.15\n`, err: "" });
    } finally {
      server.stop(true);
    }
    // Nobody listening: it keeps trying until the timeout, and says so.
    const gone = await cli(["wait", "--health-listen", "127.0.0.1:1", "--timeout", "0.3"]);
    expect(gone.code).toBe(1);
    expect(gone.err).toContain("no answer on http://127.0.0.1:1");
  });
  test("standing: every VIP in its queue or held, against a stand-in agent; a timeout names each VIP that is not, and why", async () => {
    let vips: { ip: string; owner: boolean; standing?: boolean; standingReason?: string }[] = [];
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => Response.json({ vips }) });
    try {
      const listen = `127.0.0.1:${server.port}`;
      const wait = (timeout: string) => cli(["wait", "--for", "standing", "--health-listen", listen, "--timeout", timeout]);
      expect(await wait("0.3")).toEqual({ code: 1, out: "", err: "vipd wait: not standing after 0.3 s: /status lists no VIPs yet\n" });
      vips = [
        { ip: "192.0.2.15", owner: false, standing: false, standingReason: "not standing: link enp0s2 missing" },
        { ip: "192.0.2.16", owner: false, standing: true, standingReason: "first in the queue" },
        { ip: "192.0.2.17", owner: false, standing: false, standingReason: "not standing: kube-apiserver gate closed" },
      ];
      expect(await wait("0.3")).toEqual({
        code: 1,
        out: "",
        err: "vipd wait: not standing after 0.3 s: 192.0.2.15 not standing: link enp0s2 missing; 192.0.2.17 not standing: kube-apiserver gate closed\n",
      });
      // A vipd older than this wait has no `standing`: never taken for standing.
      vips = [{ ip: "192.0.2.15", owner: true }];
      expect((await wait("0.3")).err).toBe("vipd wait: not standing after 0.3 s: 192.0.2.15 not standing: this vipd does not report standing (older than vipd wait --for standing)\n");
      vips = [{ ip: "192.0.2.15", owner: false, standing: false, standingReason: "not standing: link enp0s2 missing" }];
      setTimeout(() => {
        vips = [
          { ip: "192.0.2.15", owner: true, standing: true, standingReason: "holding" },
          { ip: "192.0.2.16", owner: false, standing: true, standingReason: "waiting behind cp-1" },
        ];
      }, 300);
      expect(await wait("5")).toEqual({ code: 0, out: `vipd on ${listen}: standing for 192.0.2.15 (holding), 192.0.2.16 (waiting behind cp-1)\n`, err: "" });
    } finally {
      server.stop(true);
    }
  });
});

describe("vipd reload", () => {
  test("bad usage exits 2 without asking anyone; --help lists the exit codes", async () => {
    const extra = await cli(["reload", "/etc/vipd/vipd.yaml"]);
    expect(extra.code).toBe(2);
    expect(extra.err).toContain('vipd reload: unexpected "/etc/vipd/vipd.yaml": it takes no arguments (the running vipd re-reads its own --config)');
    const flag = await cli(["reload", "--config", "x.yaml"]);
    expect(flag.code).toBe(2);
    const help = await cli(["reload", "--help"]);
    expect(help.code).toBe(0);
    expect(help.out).toContain("Exit codes: 0 reloaded, all of it applied; 1 applied only in part");
  });
});
