import { describe, expect, test } from "bun:test";
import { FLAGS, flagHelp, parseFlags, type ParsedFlags } from "./flags.ts";

const ok = (r: ParsedFlags) => {
  if (!r.ok) throw new Error(r.issues.map((i) => i.message).join("\n"));
  return r;
};
const problems = (r: ParsedFlags) => (r.ok ? [] : r.issues.map((i) => i.message));

describe("parseFlags", () => {
  test("--name value and --name=value forms, with positionals between", () => {
    const r = ok(parseFlags(["run", "--config", "/etc/vipd.yaml", "--lease-ttl=5", "extra", "--etcd-endpoints=https://a:2379,https://b:2379"]));
    expect(r.flags).toEqual({ config: "/etc/vipd.yaml", "lease-ttl": "5", "etcd-endpoints": "https://a:2379,https://b:2379" });
    expect(r.positionals).toEqual(["run", "extra"]);
  });
  test("a value may contain '=' and may be empty in the = form", () => {
    expect(ok(parseFlags(["--node-name=a=b", "--log-level="])).flags).toEqual({ "node-name": "a=b", "log-level": "" });
  });
  test("booleans: bare, =true, =false", () => {
    expect(ok(parseFlags(["--apiserver-insecure-skip-verify"])).flags).toEqual({ "apiserver-insecure-skip-verify": true });
    expect(ok(parseFlags(["--apiserver-insecure-skip-verify=false"])).flags).toEqual({ "apiserver-insecure-skip-verify": false });
    expect(ok(parseFlags(["--apiserver-insecure-skip-verify=true", "x"])).positionals).toEqual(["x"]);
  });
  test("a boolean does not swallow the next word", () => {
    expect(ok(parseFlags(["--apiserver-insecure-skip-verify", "validate"])).positionals).toEqual(["validate"]);
  });
  test("--help and -h", () => {
    expect(ok(parseFlags(["--help"])).flags).toEqual({ help: true });
    expect(ok(parseFlags(["validate", "-h"])).flags).toEqual({ help: true });
  });
  test("-- ends the flags; a lone - is positional", () => {
    expect(ok(parseFlags(["-", "--", "--lease-ttl", "3"]))).toEqual({ ok: true, flags: {}, positionals: ["-", "--lease-ttl", "3"] });
  });
  test("the later of a repeated flag wins", () => {
    expect(ok(parseFlags(["--lease-ttl", "4", "--lease-ttl", "6"])).flags).toEqual({ "lease-ttl": "6" });
  });
  test("a value that starts with a single dash is a value", () => {
    expect(ok(parseFlags(["--node-name", "-x"])).flags).toEqual({ "node-name": "-x" });
  });
  test("unknown flags are usage issues", () => {
    expect(problems(parseFlags(["--lease-tll", "3", "-v", "--bogus=1"]))).toEqual([
      "flag --lease-tll: unknown flag; see --help",
      "flag -v: unknown flag; see --help",
      "flag --bogus: unknown flag; see --help",
    ]);
  });
  test("a missing value is a usage issue, at the end or before another flag", () => {
    expect(problems(parseFlags(["--lease-ttl"]))).toEqual(["flag --lease-ttl: expected a value (--lease-ttl SECONDS), received nothing"]);
    expect(problems(parseFlags(["--config", "--lease-ttl", "3"]))).toEqual(["flag --config: expected a value (--config FILE), received nothing"]);
  });
  test("a boolean with a non-boolean value is a usage issue", () => {
    expect(problems(parseFlags(["--help=maybe"]))).toEqual(['flag --help: expected true or false, received "maybe"']);
  });
  test("a custom table", () => {
    const spec = [{ name: "x", type: "string", help: "x" }] as const;
    expect(ok(parseFlags(["--x", "1"], spec)).flags).toEqual({ x: "1" });
    expect(problems(parseFlags(["--lease-ttl", "1"], spec))).toEqual(["flag --lease-ttl: unknown flag; see --help"]);
  });
});

describe("FLAGS", () => {
  test("each flag of the external contract reads its VIPD_ variable", () => {
    const env = Object.fromEntries(FLAGS.map((f) => [f.name, f.env]));
    expect(env).toEqual({
      config: "VIPD_CONFIG",
      "node-name": "VIPD_NODE_NAME",
      "etcd-endpoints": "VIPD_ETCD_ENDPOINTS",
      "etcd-ca": "VIPD_ETCD_CA",
      "etcd-cert": "VIPD_ETCD_CERT",
      "etcd-key": "VIPD_ETCD_KEY",
      "etcd-server-name": "VIPD_ETCD_SERVER_NAME",
      "etcd-prefix": "VIPD_ETCD_PREFIX",
      "hold-time": "VIPD_HOLD_TIME",
      "lease-ttl": "VIPD_LEASE_TTL",
      "health-listen": "VIPD_HEALTH_LISTEN",
      "apiserver-url": "VIPD_APISERVER_URL",
      "apiserver-ca": "VIPD_APISERVER_CA",
      "apiserver-server-name": "VIPD_APISERVER_SERVER_NAME",
      "apiserver-cert": "VIPD_APISERVER_CERT",
      "apiserver-key": "VIPD_APISERVER_KEY",
      "apiserver-insecure-skip-verify": "VIPD_APISERVER_INSECURE_SKIP_VERIFY",
      "apiserver-interval": "VIPD_APISERVER_INTERVAL",
      "apiserver-timeout": "VIPD_APISERVER_TIMEOUT",
      "apiserver-rise": "VIPD_APISERVER_RISE",
      "apiserver-fall": "VIPD_APISERVER_FALL",
      "announce-burst": "VIPD_ANNOUNCE_BURST",
      "announce-burst-interval": "VIPD_ANNOUNCE_BURST_INTERVAL",
      "announce-refresh": "VIPD_ANNOUNCE_REFRESH",
      "announce-probe-interval": "VIPD_ANNOUNCE_PROBE_INTERVAL",
      "hook-acquired": "VIPD_HOOK_ACQUIRED",
      "hook-released": "VIPD_HOOK_RELEASED",
      "hook-fenced": "VIPD_HOOK_FENCED",
      "hook-timeout": "VIPD_HOOK_TIMEOUT",
      "log-format": "VIPD_LOG_FORMAT",
      "log-level": "VIPD_LOG_LEVEL",
      help: undefined,
    });
    expect(Object.isFrozen(FLAGS)).toBe(true);
  });
  test("help text has one line a flag, with its variable", () => {
    const help = flagHelp().split("\n");
    expect(help).toHaveLength(FLAGS.length);
    expect(help.find((l) => l.startsWith("  --lease-ttl"))).toBe(
      "  --lease-ttl SECONDS                TTL of the lease that removes a vanished agent's keys, 3 to 300 s, at least the hold time + 0.5 s (default: 10) [VIPD_LEASE_TTL]",
    );
    expect(help.find((l) => l.startsWith("  --hook-acquired"))).toBe(
      '  --hook-acquired JSON               run after this node acquired a VIP: an argv list, no shell (flag or variable: a JSON array, ["/usr/local/sbin/vip-up","--quiet"]) [VIPD_HOOK_ACQUIRED]',
    );
    expect(help.at(-1)).toBe("  --help                             show this help");
  });
});
