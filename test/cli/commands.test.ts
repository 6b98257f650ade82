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

async function cli(argv: string[], env: Record<string, string> = {}) {
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

  test("a whole Talos machine config: its machine document is skipped by name", async () => {
    const talos = `version: v1alpha1\nmachine:\n  type: controlplane\ncluster:\n  clusterName: demo\n---\n${GOOD}`;
    const r = await cli(["validate", file("talos.yaml", talos)]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("skipping document 0 (untyped)");
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
  test("config file from VIPD_CONFIG, with a bad VIP", async () => {
    const r = await cli(["run"], { VIPD_CONFIG: file("g5.yaml", GOOD.replace("192.0.2.15", "224.0.0.1")) });
    expect(r.code).toBe(2);
    expect(r.err).toContain("224.0.0.1");
  });
});

describe("other commands", () => {
  test("version", async () => {
    expect(await cli(["version"])).toEqual({ code: 0, out: `vipd ${VERSION}\n`, err: "" });
  });
  test("help goes to stdout with exit 0; no command is a usage error", async () => {
    const h = await cli(["--help"]);
    expect(h.code).toBe(0);
    expect(h.out).toContain("vipd run --config FILE");
    expect(h.out).toContain("VIPD_LEASE_TTL");
    const none = await cli([]);
    expect(none.code).toBe(2);
  });
  test("unknown command", async () => {
    const r = await cli(["serve"]);
    expect(r.code).toBe(2);
    expect(r.err).toContain('unknown command "serve"');
  });
});
