// The CLI's contract (README, "Exit codes"): exit 0 / 2 / 1, errors as sentences on
// stderr, never a stack trace for a user mistake.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
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

async function cli(argv: string[], env: Record<string, string> = {}, kernelRelease?: string) {
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
    ...(kernelRelease === undefined ? {} : { kernelRelease: () => kernelRelease }),
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
    expect(r.out).toContain("skipping document 2 (HostnameConfig): not a vipd document");
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

  test("a missing file: exit 2 naming the file", async () => {
    const r = await cli(["validate", join(dir, "nope.yaml")]);
    expect(r.code).toBe(2);
    expect(r.err).toContain("nope.yaml");
    expect(r.err).toContain("ENOENT");
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
  test("a kernel older than vipd's minimum: exit 2 naming the kernel and what it lacks", async () => {
    const r = await cli(["run", "--config", file("g6.yaml", GOOD)], {}, "4.4.0-210-generic\n");
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
    expect(wait.out).toContain("--for healthy|holding");
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
    expect(w.err).toBe("");
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
