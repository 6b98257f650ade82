// The configuration loader, case by case: files, VIPD_* and ETCDCTL_*
// variables, flags, and every refusal's wording. Long because it is a list of
// cases an operator can meet, each read on its own.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { apiServerName, etcdTls, formatIssues, loadSettings, summarize, type LoadInput, type LoadResult, type Settings } from "./index.ts";

const VIP = "apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: 192.168.0.15\nlink: enp0s2\n";
const vip = (name: string, link = "enp0s2") => `apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: "${name}"\nlink: "${link}"\n`;
const agent = (body: string) => `apiVersion: v1alpha1\nkind: VIPAgentConfig\n${body}\n`;
const docs = (...d: string[]) => d.join("---\n");

function load(fileText: string, over: Partial<LoadInput> = {}): LoadResult {
  return loadSettings({ fileText, fileName: "vipd.yaml", env: {}, flags: {}, hostname: "cp-1", checkFile: () => null, ...over });
}
function settings(fileText: string, over: Partial<LoadInput> = {}): Settings {
  const r = load(fileText, over);
  if (!r.ok) throw new Error(formatIssues(r.issues));
  return r.settings;
}
function messages(fileText: string, over: Partial<LoadInput> = {}): string[] {
  const r = load(fileText, over);
  if (r.ok) throw new Error("expected issues, got settings");
  return r.issues.map((i) => i.message);
}

const TOO_SHORT_2 = "expected a whole number of seconds from 3 to 300, received 2";

describe("defaults and documents", () => {
  test("one Layer2VIPConfig and nothing else gives every default", () => {
    expect(settings(VIP)).toEqual({
      nodeName: "cp-1",
      vips: [{ ip: "192.168.0.15", family: 4, link: "enp0s2", document: 0 }],
      etcd: { endpoints: ["https://127.0.0.1:2379"], prefix: "/vipd/" },
      election: { holdTime: 2500, leaseTTL: 10 },
      health: { listen: { host: "127.0.0.1", port: 8099 } },
      announce: { burst: 3, burstInterval: 0.05, refresh: 10, probeInterval: 60 },
      hooks: { timeout: 10 },
      log: { format: "json", level: "info" },
    });
  });

  test("log format defaults to pretty on a terminal", () => {
    expect(settings(VIP, { isTTY: true }).log.format).toBe("pretty");
  });

  test("a whole Talos machine config without a VIP: skipped but for its VIPs (none), and its Layer2VIPConfig used", () => {
    const talos = `version: v1alpha1
debug: false
persist: true
machine:
  type: controlplane
  token: abcdef.0123456789abcdef
  ca:
    crt: LS0tLS1CRUdJTi
    key: LS0tLS1CRUdJTi
  certSANs: []
  kubelet:
    image: ghcr.io/siderolabs/kubelet:v1.31.0
    defaultRuntimeSeccompProfileEnabled: true
  network:
    hostname: cp-1
  install:
    disk: /dev/sda
    image: ghcr.io/siderolabs/installer:v1.8.0
    wipe: false
cluster:
  id: 3bkq5Ej2sQvY
  secret: c2VjcmV0
  controlPlane:
    endpoint: https://192.168.0.15:6443
  clusterName: lab
  network:
    dnsDomain: cluster.local
    podSubnets: [10.244.0.0/16]
    serviceSubnets: [10.96.0.0/12]
  etcd:
    ca:
      crt: LS0tLS1CRUdJTi
      key: LS0tLS1CRUdJTi
`;
    const hostname = "apiVersion: v1alpha1\nkind: HostnameConfig\nhostname: cp-1\n";
    const r = load(docs(talos, VIP, hostname, "\n"));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.skipped).toEqual([{ index: 2, kind: "HostnameConfig", known: true }]);
    expect(r.machineConfigs).toEqual([{ index: 0, vips: 0 }]);
    expect(r.settings.vips).toEqual([{ ip: "192.168.0.15", family: 4, link: "enp0s2", document: 1 }]);
  });

  test("IPv6 VIPs are stored in canonical form, mixed with IPv4", () => {
    const s = settings(docs(vip("2001:DB8:0:0::15", "br0"), vip("10.0.0.5", "bond0.100"), vip("2001:db8::A:192.0.2.1")));
    expect(s.vips).toEqual([
      { ip: "2001:db8::15", family: 6, link: "br0", document: 0 },
      { ip: "10.0.0.5", family: 4, link: "bond0.100", document: 1 },
      { ip: "2001:db8::a:c000:201", family: 6, link: "enp0s2", document: 2 },
    ]);
  });

  test("a full VIPAgentConfig is read", () => {
    const s = settings(
      docs(
        VIP,
        agent(`nodeName: cp-2
etcd:
  endpoints: [https://10.0.0.1:2379, "HTTPS://[fd00::1]:2379/"]
  caFile: /pki/ca.crt
  certFile: /pki/c.crt
  keyFile: /pki/c.key
  prefix: /lab/vipd/
election: { holdTime: 4000, leaseTTL: 5 }
health: { listen: "[::1]:9000" }
apiServer:
  url: https://127.0.0.1:6443/readyz
  caFile: /pki/k.crt
  insecureSkipVerify: true
  interval: 0.5
  timeout: 0.25
  rise: 1
  fall: 2
announce: { burst: 5, burstInterval: 0, refresh: 0, probeInterval: 0 }
hooks:
  acquired: [/usr/local/sbin/vip-up, "--table", "100", "a b;c"]
  released: [/usr/local/sbin/vip-down]
  fenced: []
  timeout: 2.5
log: { format: pretty, level: debug }`),
      ),
    );
    expect(s).toEqual({
      nodeName: "cp-2",
      vips: [{ ip: "192.168.0.15", family: 4, link: "enp0s2", document: 0 }],
      etcd: {
        endpoints: ["https://10.0.0.1:2379", "https://[fd00::1]:2379"],
        prefix: "/lab/vipd/",
        caFile: "/pki/ca.crt",
        certFile: "/pki/c.crt",
        keyFile: "/pki/c.key",
      },
      election: { holdTime: 4000, leaseTTL: 5 },
      health: { listen: { host: "::1", port: 9000 } },
      apiServer: { url: "https://127.0.0.1:6443/readyz", caFile: "/pki/k.crt", insecureSkipVerify: true, interval: 0.5, timeout: 0.25, rise: 1, fall: 2 },
      announce: { burst: 5, burstInterval: 0, refresh: 0, probeInterval: 0 },
      hooks: { acquired: ["/usr/local/sbin/vip-up", "--table", "100", "a b;c"], released: ["/usr/local/sbin/vip-down"], fenced: [], timeout: 2.5 },
      log: { format: "pretty", level: "debug" },
    });
  });

  test("apiServer.url turns the gate on, with defaults for the rest; no url, no gate", () => {
    expect(settings(docs(VIP, agent("apiServer: { url: https://127.0.0.1:6443/readyz }"))).apiServer).toEqual({
      url: "https://127.0.0.1:6443/readyz",
      insecureSkipVerify: false,
      interval: 1,
      timeout: 2,
      rise: 2,
      fall: 3,
    });
    expect(settings(VIP).apiServer).toBeUndefined();
    expect(settings(VIP, { flags: { "apiserver-url": "https://10.0.0.1:6443/readyz" } }).apiServer?.url).toBe("https://10.0.0.1:6443/readyz");
  });

  test("the gate checks kubeadm's name for an IP URL, the URL's host otherwise, and serverName when set", () => {
    const gate = (body: string, over: Partial<LoadInput> = {}) => apiServerName(settings(docs(VIP, agent(body)), over).apiServer!);
    expect(gate("apiServer: { url: 'https://127.0.0.1:6443/readyz' }")).toBe("kubernetes");
    expect(gate("apiServer: { url: 'https://[::1]:6443/readyz' }")).toBe("kubernetes");
    expect(gate("apiServer: { url: 'https://cp-1.example.internal:6443/readyz' }")).toBe("cp-1.example.internal");
    expect(gate("apiServer: { url: 'https://127.0.0.1:6443/readyz', serverName: cp-1 }")).toBe("cp-1");
    expect(gate("apiServer: { url: 'https://127.0.0.1:6443/readyz' }", { env: { VIPD_APISERVER_SERVER_NAME: "kubernetes.default.svc" } })).toBe("kubernetes.default.svc");
    expect(gate("apiServer: { url: 'https://127.0.0.1:6443/readyz' }", { flags: { "apiserver-server-name": "cp-2" } })).toBe("cp-2");
    expect(gate("apiServer: { url: 'https://127.0.0.1:6443/readyz', serverName: '2001:DB8:0::1' }")).toBe("2001:db8::1");
    expect(messages(docs(VIP, agent("apiServer: { url: 'https://127.0.0.1:6443/readyz', serverName: 127.0.0.1:6443 }")))).toEqual([
      'document 1 (VIPAgentConfig): apiServer.serverName: expected a DNS name: labels of letters, digits and \'-\', separated by \'.\', or an IP address, received "127.0.0.1:6443"',
    ]);
  });

  test("the result is deeply frozen", () => {
    const s = settings(docs(VIP, agent("etcd: { caFile: /ca }")));
    expect(Object.isFrozen(s)).toBe(true);
    expect(Object.isFrozen(s.vips)).toBe(true);
    expect(Object.isFrozen(s.vips[0])).toBe(true);
    expect(Object.isFrozen(s.etcd.endpoints)).toBe(true);
    expect(Object.isFrozen(s.etcd)).toBe(true);
    expect(Object.isFrozen(s.health.listen)).toBe(true);
    expect(() => {
      (s.election as { leaseTTL: number }).leaseTTL = 1;
    }).toThrow();
    expect(() => (s.vips as unknown as unknown[]).push({})).toThrow();
  });
});

describe("precedence: flags > environment > file > defaults", () => {
  const file = docs(VIP, agent("nodeName: from-file\nelection: { leaseTTL: 10 }\netcd: { endpoints: [https://file:2379] }\nlog: { level: warn }"));
  test("file over defaults", () => {
    const s = settings(file);
    expect([s.nodeName, s.election.leaseTTL, s.etcd.endpoints, s.log.level]).toEqual(["from-file", 10, ["https://file:2379"], "warn"]);
  });
  test("environment over file", () => {
    const env = { VIPD_NODE_NAME: "from-env", VIPD_LEASE_TTL: "20", VIPD_ETCD_ENDPOINTS: "https://e1:2379, https://e2:2379", VIPD_LOG_LEVEL: "" };
    const s = settings(file, { env });
    expect([s.nodeName, s.election.leaseTTL, s.etcd.endpoints, s.log.level]).toEqual(["from-env", 20, ["https://e1:2379", "https://e2:2379"], "warn"]);
  });
  test("VIPD_RUNTIME_ENV, vipd run's own restart marker (empty: skip the restart), is no unknown variable", () => {
    for (const value of ["", "MIMALLOC_PURGE_DELAY"]) expect(settings(file, { env: { VIPD_RUNTIME_ENV: value } }).nodeName).toBe("from-file");
  });
  test("flags over environment", () => {
    const env = { VIPD_NODE_NAME: "from-env", VIPD_LEASE_TTL: "20", VIPD_LOG_FORMAT: "pretty" };
    const flags = { "node-name": "from-flag", "lease-ttl": "30", "log-format": "json", "apiserver-url": "https://127.0.0.1:6443/readyz", "apiserver-insecure-skip-verify": true };
    const s = settings(file, { env, flags });
    expect([s.nodeName, s.election.leaseTTL, s.log.format, s.apiServer?.insecureSkipVerify]).toEqual(["from-flag", 30, "json", true]);
  });
  test("a valid override does not excuse an invalid value below it", () => {
    expect(messages(docs(VIP, agent("election: { leaseTTL: 2 }")), { flags: { "lease-ttl": "5" } })).toEqual([
      `document 1 (VIPAgentConfig): election.leaseTTL: ${TOO_SHORT_2}`,
    ]);
  });
  test("certificate from the file, key from a flag", () => {
    const s = settings(docs(VIP, agent("etcd: { certFile: /c.crt }")), { flags: { "etcd-key": "/c.key" } });
    expect(etcdTls(s.etcd)).toEqual({ certFile: "/c.crt", keyFile: "/c.key" });
  });
});

describe("errors name the document, the field and what was wanted", () => {
  const cases: [string, string, Partial<LoadInput>, string[]][] = [
    ["malformed IPv4", vip("192.168.0.300"), {}, ['document 0 (Layer2VIPConfig): name: expected an IPv4 or IPv6 address, received "192.168.0.300"']],
    ["a number as name", "apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: 15\nlink: eth0\n", {}, ["document 0 (Layer2VIPConfig): name: expected an IPv4 or IPv6 address, received 15"]],
    [
      "loopback VIP",
      vip("127.0.0.1"),
      {},
      ['document 0 (Layer2VIPConfig): name: expected an address a host may own (not unspecified, loopback, multicast, broadcast or link-local), received "127.0.0.1"'],
    ],
    [
      "link-local IPv6 VIP",
      vip("fe80::1"),
      {},
      ['document 0 (Layer2VIPConfig): name: expected an address a host may own (not unspecified, loopback, multicast, broadcast or link-local), received "fe80::1"'],
    ],
    ...["abcdefghijklmnop", "a/b", "..", "eth 0", "eth0:1", ""].map((link): [string, string, Partial<LoadInput>, string[]] => [
      `link name ${JSON.stringify(link)}`,
      vip("10.0.0.5", link),
      {},
      [`document 0 (Layer2VIPConfig): link: expected a link name: 1 to 15 bytes, no '/', ':' or whitespace, not "." or "..", received ${JSON.stringify(link)}`],
    ]),
    ["missing link", "apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: 10.0.0.5\n", {}, ["document 0 (Layer2VIPConfig): link: required field is missing"]],
    [
      "typo in a Layer2VIPConfig",
      "apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: 10.0.0.5\nlink: eth0\nlnik: eth1\n",
      {},
      ["document 0 (Layer2VIPConfig): lnik: unknown field; known fields here: apiVersion, kind, name, link"],
    ],
    ["wrong apiVersion", "apiVersion: v1alpha2\nkind: Layer2VIPConfig\nname: 10.0.0.5\nlink: eth0\n", {}, ['document 0 (Layer2VIPConfig): apiVersion: expected "v1alpha1", received "v1alpha2"']],
    [
      "duplicate VIP in two spellings",
      docs(vip("2001:db8::15"), vip("2001:DB8:0::15", "eth1")),
      {},
      ["document 1 (Layer2VIPConfig): name: 2001:db8::15 is already declared by document 0 (Layer2VIPConfig)"],
    ],
    ["no Layer2VIPConfig", agent("nodeName: cp-1"), {}, ["vipd.yaml: expected at least one Layer2VIPConfig document (apiVersion, kind, name, link), or a Talos machine config with a VIP, found none"]],
    ["empty file", "", {}, ["vipd.yaml: expected at least one Layer2VIPConfig document (apiVersion, kind, name, link), or a Talos machine config with a VIP, found none"]],
    [
      "two VIPAgentConfigs",
      docs(VIP, agent("nodeName: a"), agent("nodeName: b")),
      {},
      ["document 2 (VIPAgentConfig): only one VIPAgentConfig document is allowed, and document 1 (VIPAgentConfig) is one already"],
    ],
    ["YAML syntax", docs(VIP, "kind: VIPAgentConfig\netcd: [a, b\n"), {}, ["document 1: YAML syntax error at line 8, column 1: Flow sequence in block collection must be sufficiently indented and end with a ]"]],
    ["duplicate YAML key", docs(VIP, "kind: X\nkind: Y\n"), {}, ["document 1: YAML syntax error at line 7, column 1: Map keys must be unique"]],
    ["a scalar document", docs(VIP, "hello\n"), {}, ['document 1: expected a mapping with apiVersion and kind, received "hello"']],
    ["a list document", docs(VIP, "- a\n- b\n"), {}, ["document 1: expected a mapping with apiVersion and kind, received a list of 2"]],
    ["TTL 2", docs(VIP, agent("election: { leaseTTL: 2 }")), {}, [`document 1 (VIPAgentConfig): election.leaseTTL: ${TOO_SHORT_2}`]],
    [
      "101 VIPs",
      docs(...Array.from({ length: 101 }, (_, i) => vip(`10.0.${Math.floor(i / 200)}.${(i % 200) + 1}`))),
      {},
      ["document 100 (Layer2VIPConfig): one agent serves at most 100 VIPs: each heartbeat is one etcd transaction that guards the key of every VIP the agent holds, and etcd allows 128 operations in a transaction (--max-txn-ops)"],
    ],
    ["hold 999 ms", docs(VIP, agent("election: { holdTime: 999 }")), {}, ["document 1 (VIPAgentConfig): election.holdTime: expected a whole number of milliseconds from 1000 to 30000, received 999"]],
    ["hold 2.5 s written as seconds", docs(VIP, agent("election: { holdTime: 2.5 }")), {}, ["document 1 (VIPAgentConfig): election.holdTime: expected a whole number of milliseconds from 1000 to 30000, received 2.5"]],
    ["hold 30001 ms", VIP, { flags: { "hold-time": "30001" } }, ["flag --hold-time: expected a whole number of milliseconds from 1000 to 30000, received 30001"]],
    [
      "a lease shorter than the hold",
      docs(VIP, agent("election: { holdTime: 5000, leaseTTL: 4 }")),
      {},
      ["document 1 (VIPAgentConfig): election.leaseTTL: leaseTTL 4 s is shorter than holdTime 5000 ms plus 500 ms: etcd would delete this agent's keys during an etcd stall that its heartbeats survive, and every VIP would move. Use a leaseTTL of at least 6 s"],
    ],
    [
      "a hold longer than the default lease, set by flag",
      VIP,
      { flags: { "hold-time": "20000" } },
      ["flag --hold-time: leaseTTL 10 s is shorter than holdTime 20000 ms plus 500 ms: etcd would delete this agent's keys during an etcd stall that its heartbeats survive, and every VIP would move. Use a leaseTTL of at least 21 s"],
    ],
    ["TTL 2.5", docs(VIP, agent("election: { leaseTTL: 2.5 }")), {}, ["document 1 (VIPAgentConfig): election.leaseTTL: expected a whole number of seconds from 3 to 300, received 2.5"]],
    ["TTL 301", docs(VIP, agent("election: { leaseTTL: 301 }")), {}, ["document 1 (VIPAgentConfig): election.leaseTTL: expected a whole number of seconds from 3 to 300, received 301"]],
    ["TTL as text", docs(VIP, agent('election: { leaseTTL: "3" }')), {}, ['document 1 (VIPAgentConfig): election.leaseTTL: expected a whole number of seconds from 3 to 300, received "3"']],
    [
      "endpoint with a path",
      docs(VIP, agent("etcd: { endpoints: [https://a:2379, https://b:2379/v3, https://c] }")),
      {},
      [
        'document 1 (VIPAgentConfig): etcd.endpoints[1]: expected an http:// or https:// URL with a host and a port and no path, received "https://b:2379/v3"',
        'document 1 (VIPAgentConfig): etcd.endpoints[2]: expected an http:// or https:// URL with a host and a port and no path, received "https://c"',
      ],
    ],
    ["no endpoints", docs(VIP, agent("etcd: { endpoints: [] }")), {}, ["document 1 (VIPAgentConfig): etcd.endpoints: expected at least one etcd URL, received a list of 0"]],
    ["prefix", docs(VIP, agent("etcd: { prefix: /vipd }")), {}, ['document 1 (VIPAgentConfig): etcd.prefix: expected a key prefix that starts and ends with "/" and has no whitespace, received "/vipd"']],
    [
      "unbracketed IPv6 listen",
      docs(VIP, agent('health: { listen: "::1:8099" }')),
      {},
      ['document 1 (VIPAgentConfig): health.listen: expected HOST:PORT with a port from 1 to 65535, an IPv6 host in brackets ([::1]:8099), received "::1:8099"'],
    ],
    [
      "typo in a nested field",
      docs(VIP, agent("etcd: { endpionts: [https://a:2379] }")),
      {},
      ["document 1 (VIPAgentConfig): etcd.endpionts: unknown field; known fields here: endpoints, caFile, certFile, keyFile, serverName, prefix"],
    ],
    [
      "certificate without key",
      docs(VIP, agent("etcd: { certFile: /c.crt }")),
      {},
      ["document 1 (VIPAgentConfig): etcd.certFile: a client certificate needs its key: set etcd.keyFile, VIPD_ETCD_KEY or --etcd-key as well"],
    ],
    [
      "key without certificate, from the environment",
      VIP,
      { env: { VIPD_ETCD_KEY: "/c.key" } },
      ["environment VIPD_ETCD_KEY: a client key needs its certificate: set etcd.certFile, VIPD_ETCD_CERT or --etcd-cert as well"],
    ],
    [
      "TLS files with an http endpoint",
      docs(VIP, agent("etcd: { caFile: /ca, endpoints: [https://a:2379, http://b:2379] }")),
      {},
      ['document 1 (VIPAgentConfig): etcd.endpoints[1]: expected an https:// URL, because etcd TLS files are set, received "http://b:2379"'],
    ],
    ["rise 0", docs(VIP, agent("apiServer: { url: https://127.0.0.1:6443/readyz, rise: 0 }")), {}, ["document 1 (VIPAgentConfig): apiServer.rise: expected a whole number from 1 to 100, received 0"]],
    [
      "a probe interval under a second",
      docs(VIP, agent("announce: { probeInterval: 0.5 }")),
      {},
      ["document 1 (VIPAgentConfig): announce.probeInterval: expected a number of seconds: 0 (no conflict detection) or from 1 to 3600, received 0.5"],
    ],
    ["a negative probe interval by flag", VIP, { flags: { "announce-probe-interval": "-1" } }, ["flag --announce-probe-interval: expected a number of seconds: 0 (no conflict detection) or from 1 to 3600, received -1"]],
    ["boolean as text", docs(VIP, agent('apiServer: { url: https://127.0.0.1:6443/readyz, insecureSkipVerify: "yes" }')), {}, ['document 1 (VIPAgentConfig): apiServer.insecureSkipVerify: expected true or false, received "yes"']],
    ["section not a mapping", docs(VIP, agent("etcd: https://a:2379")), {}, ['document 1 (VIPAgentConfig): etcd: expected a mapping of fields, received "https://a:2379"']],
    ["environment TTL 2", VIP, { env: { VIPD_LEASE_TTL: "2" } }, [`environment VIPD_LEASE_TTL: ${TOO_SHORT_2}`]],
    ["environment TTL text", VIP, { env: { VIPD_LEASE_TTL: "3s" } }, ['environment VIPD_LEASE_TTL: expected a whole number of seconds from 3 to 300, received "3s"']],
    ["unknown environment variable", VIP, { env: { VIPD_LEASE_TT: "5", HOME: "/root" } }, ['environment VIPD_LEASE_TT: unknown variable; "vipd run --help" lists the VIPD_ variables']],
    ["flag TTL", VIP, { flags: { "lease-ttl": "x" } }, ['flag --lease-ttl: expected a whole number of seconds from 3 to 300, received "x"']],
    [
      "flag endpoint list",
      VIP,
      { flags: { "etcd-endpoints": "https://a:2379,,https://b" } },
      [
        'flag --etcd-endpoints: [1]: expected an http:// or https:// URL with a host and a port and no path, received ""',
        'flag --etcd-endpoints: [2]: expected an http:// or https:// URL with a host and a port and no path, received "https://b"',
      ],
    ],
    ["flag log level", VIP, { flags: { "log-level": "verbose" } }, ['flag --log-level: expected one of "silent", "error", "warn", "info", "debug", "trace", received "verbose"']],
    ["unknown flag in the record", VIP, { flags: { "lease-tll": "5" } }, ['flag --lease-tll: unknown flag; "vipd run --help" lists them']],
    [
      "bad hostname as default node name",
      VIP,
      { hostname: "cp 1" },
      ['hostname (the default nodeName; set nodeName, VIPD_NODE_NAME or --node-name): expected a node name: letters, digits, \'.\', \'-\' or \'_\', starting and ending with a letter or digit, at most 253 characters, received "cp 1"'],
    ],
  ];
  for (const [name, text, over, expected] of cases) {
    test(name, () => expect(messages(text, over)).toEqual(expected));
  }

  test("every issue is collected, not just the first", () => {
    const text = docs(vip("10.0.0.300"), agent("election: { leaseTTL: 1 }\netcd: { prefix: x, bogus: 1 }"), "42\n");
    const issues = messages(text, { env: { VIPD_HEALTH_LISTEN: "nope" }, flags: { "log-format": "xml" } });
    expect(issues).toHaveLength(7);
  });

  test("issues carry their parts separately", () => {
    const r = load(vip("192.168.0.300"));
    expect(r.ok ? [] : r.issues).toEqual([
      {
        document: "document 0 (Layer2VIPConfig)",
        path: "name",
        expected: "an IPv4 or IPv6 address",
        received: '"192.168.0.300"',
        message: 'document 0 (Layer2VIPConfig): name: expected an IPv4 or IPv6 address, received "192.168.0.300"',
        file: "vipd.yaml",
        line: 3,
      },
    ]);
  });

  test("formatIssues lists them", () => {
    const r = load(docs(vip("10.0.0.300"), vip("10.0.0.5", "a/b")));
    expect(r.ok ? "" : formatIssues(r.issues)).toBe(
      "2 configuration problems:\n" +
        '  - vipd.yaml:3: document 0 (Layer2VIPConfig): name: expected an IPv4 or IPv6 address, received "10.0.0.300"\n' +
        "  - vipd.yaml:9: document 1 (Layer2VIPConfig): link: expected a link name: 1 to 15 bytes, no '/', ':' or whitespace, not \".\" or \"..\", received \"a/b\"",
    );
  });
});

describe("hooks: argv lists, never a command line for a shell", () => {
  const ARGV = `expected an argv list: strings, the program's absolute path first, e.g. [/usr/local/sbin/vip-up, --quiet] (in a flag or variable, a JSON array: ["/usr/local/sbin/vip-up","--quiet"]); [] for none`;
  const PROGRAM = "expected the program's absolute path (vipd runs no shell and searches no PATH)";
  const ARGUMENT = "expected an argument as text, without NUL bytes (quote numbers and booleans in YAML)";

  test("a JSON array in a variable or flag keeps commas, spaces and quotes inside arguments", () => {
    const s = settings(VIP, {
      env: { VIPD_HOOK_ACQUIRED: '["/usr/local/sbin/vip-up", "a,b", "c d", "\\"$x\\""]', VIPD_HOOK_TIMEOUT: "0.5" },
      flags: { "hook-fenced": '["/bin/fenced"]' },
    });
    expect(s.hooks).toEqual({ acquired: ["/usr/local/sbin/vip-up", "a,b", "c d", '"$x"'], fenced: ["/bin/fenced"], timeout: 0.5 });
  });
  test("a flag overrides the file's hook, and [] turns it off", () => {
    const file = docs(VIP, agent("hooks: { acquired: [/bin/a], released: [/bin/r] }"));
    expect(settings(file, { flags: { "hook-acquired": '["/bin/b","x"]', "hook-released": "[]" } }).hooks).toEqual({ acquired: ["/bin/b", "x"], released: [], timeout: 10 });
  });

  const cases: [string, string, Partial<LoadInput>, string[]][] = [
    ["a command line as one string", docs(VIP, agent("hooks: { acquired: /usr/local/sbin/vip-up --quiet }")), {}, [`document 1 (VIPAgentConfig): hooks.acquired: ${ARGV}, received "/usr/local/sbin/vip-up --quiet"`]],
    ["a relative program", docs(VIP, agent("hooks: { released: [vip-down, now] }")), {}, [`document 1 (VIPAgentConfig): hooks.released[0]: ${PROGRAM}, received "vip-down"`]],
    [
      "numbers and booleans as arguments",
      docs(VIP, agent("hooks: { fenced: [/bin/f, 100, true] }")),
      {},
      [`document 1 (VIPAgentConfig): hooks.fenced[1]: ${ARGUMENT}, received 100`, `document 1 (VIPAgentConfig): hooks.fenced[2]: ${ARGUMENT}, received true`],
    ],
    ["a NUL byte in an argument", docs(VIP, agent('hooks: { acquired: ["/bin/a", "x\\0y"] }')), {}, [`document 1 (VIPAgentConfig): hooks.acquired[1]: ${ARGUMENT}, received "x\\u0000y"`]],
    ["a flag that is not JSON", VIP, { flags: { "hook-acquired": "[/bin/a, x]" } }, [`flag --hook-acquired: ${ARGV}, received "[/bin/a, x]"`]],
    ["a variable with a command line", VIP, { env: { VIPD_HOOK_RELEASED: "/bin/r --now" } }, [`environment VIPD_HOOK_RELEASED: ${ARGV}, received "/bin/r --now"`]],
    ["a variable with a JSON string", VIP, { env: { VIPD_HOOK_FENCED: '"/bin/f"' } }, [`environment VIPD_HOOK_FENCED: ${ARGV}, received "/bin/f"`]],
    ["a JSON object", VIP, { flags: { "hook-fenced": '{"argv":["/bin/f"]}' } }, [`flag --hook-fenced: ${ARGV}, received a mapping`]],
    ["timeout 0", docs(VIP, agent("hooks: { timeout: 0 }")), {}, ["document 1 (VIPAgentConfig): hooks.timeout: expected a number of seconds greater than 0 and at most 300, received 0"]],
    ["timeout 301 by flag", VIP, { flags: { "hook-timeout": "301" } }, ["flag --hook-timeout: expected a number of seconds greater than 0 and at most 300, received 301"]],
    [
      "a typo in the section",
      docs(VIP, agent("hooks: { aquired: [/bin/a] }")),
      {},
      ["document 1 (VIPAgentConfig): hooks.aquired: unknown field; known fields here: acquired, released, fenced, timeout"],
    ],
  ];
  for (const [name, text, over, expected] of cases) {
    test(name, () => expect(messages(text, over)).toEqual(expected));
  }
});

describe("TLS files are checked at load time", () => {
  let dir = "";
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "vipd-config-"));
    for (const f of ["ca.crt", "c.crt", "c.key"]) writeFileSync(join(dir, f), "x");
    writeFileSync(join(dir, "locked.key"), "x");
    chmodSync(join(dir, "locked.key"), 0o000);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const real = (over: Partial<LoadInput>) => ({ checkFile: undefined, ...over });

  test("existing files pass", () => {
    const text = docs(VIP, agent(`etcd: { caFile: ${dir}/ca.crt, certFile: ${dir}/c.crt, keyFile: ${dir}/c.key }`));
    expect(etcdTls(settings(text, real({})).etcd)).toEqual({ caFile: `${dir}/ca.crt`, certFile: `${dir}/c.crt`, keyFile: `${dir}/c.key` });
  });
  test("missing files and directories are named by source", () => {
    const text = docs(VIP, agent(`etcd: { caFile: ${dir}/nope.crt }`));
    expect(messages(text, real({ flags: { "apiserver-url": "https://127.0.0.1:6443/readyz", "apiserver-ca": dir } }))).toEqual([
      `document 1 (VIPAgentConfig): etcd.caFile: expected a readable file, received "${dir}/nope.crt": it does not exist (ENOENT)`,
      `flag --apiserver-ca: expected a readable file, received "${dir}": it is a directory, not a file (EISDIR)`,
    ]);
  });
  test("for a check only, a file that may yet appear is a warning; a directory stays an error", () => {
    const text = docs(VIP, agent(`etcd: { caFile: ${dir}/nope.crt }`));
    const r = load(text, real({ unreadableFiles: "warning" }));
    expect(r.ok).toBe(true);
    expect(r.warnings.map((w) => w.message)).toEqual([
      `document 1 (VIPAgentConfig): etcd.caFile: expected a readable file, received "${dir}/nope.crt": it does not exist (ENOENT); vipd run will refuse it until vipd's user can read it`,
    ]);
    expect(messages(docs(VIP, agent(`etcd: { caFile: ${dir} }`)), real({ unreadableFiles: "warning" }))).toEqual([
      `document 1 (VIPAgentConfig): etcd.caFile: expected a readable file, received "${dir}": it is a directory, not a file (EISDIR)`,
    ]);
  });
  test("unreadable files fail", async () => {
    const text = docs(VIP, agent(`etcd: { certFile: ${dir}/c.crt, keyFile: ${dir}/locked.key }`));
    const expected = [`document 1 (VIPAgentConfig): etcd.keyFile: expected a readable file, received "${dir}/locked.key": this user may not read it (EACCES)`];
    if (process.getuid?.() !== 0) {
      expect(messages(text, real({}))).toEqual(expected);
      return;
    }
    // Root reads any file (CAP_DAC_OVERRIDE), and the tests run as root. So
    // the load runs in a child that stays uid 0 (the checkout stays readable)
    // but has neither DAC capability: what vipd meets as the unit's own user.
    const script = join(dir, "load-child.ts");
    writeFileSync(script, [
      `import { loadSettings } from ${JSON.stringify(join(import.meta.dir, "index.ts"))};`,
      `const r = loadSettings({ fileText: process.env.TEXT ?? "", fileName: "vipd.yaml", env: {}, flags: {}, hostname: "cp-1" });`,
      `console.log(JSON.stringify(r.ok ? "accepted" : r.issues.map((i) => i.message)));`,
    ].join("\n"));
    const drop = "-dac_override,-dac_read_search";
    const child = Bun.spawn(["setpriv", `--inh-caps=${drop}`, `--bounding-set=${drop}`, process.execPath, script], {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", TEXT: text }, stdout: "pipe", stderr: "pipe",
    });
    const [out, err, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
    expect({ code, err }).toEqual({ code: 0, err: "" });
    expect(JSON.parse(out)).toEqual(expected);
  });
});

describe("summarize", () => {
  test("names node, etcd, hold and lease, each VIP, health and gate", () => {
    const s = settings(docs(VIP, vip("2001:db8::15"), agent("etcd: { caFile: /ca }\nhealth: { listen: '[::1]:8099' }\napiServer: { url: https://127.0.0.1:6443/readyz }")));
    expect(summarize(s)).toBe(
      [
        "node:      cp-1",
        "etcd:      https://127.0.0.1:2379 (TLS: yes), prefix /vipd/",
        "election:  hold 2500 ms, cleanup lease TTL 10 s",
        "VIP:       192.168.0.15 (IPv4) on enp0s2",
        "VIP:       2001:db8::15 (IPv6) on enp0s2",
        "health:    [::1]:8099",
        "gate:      https://127.0.0.1:6443/readyz every 1 s, timeout 2 s, rise 2, fall 3, certificate checked for kubernetes",
        "announce:  burst of 3 every 0.05 s, refresh every 10 s, conflict probe every 60 s",
        "hooks:     none",
        "log:       json, info",
      ].join("\n"),
    );
  });
  test("no conflict detection", () => {
    expect(summarize(settings(VIP, { flags: { "announce-probe-interval": "0" } }))).toContain("refresh every 10 s, no conflict detection");
  });
  test("plain etcd and no gate", () => {
    const text = summarize(settings(VIP, { flags: { "etcd-endpoints": "http://10.0.0.1:2379" } }));
    expect(text).toContain("etcd:      http://10.0.0.1:2379 (TLS: no), prefix /vipd/");
    expect(text).toContain("gate:      none");
  });
  test("hooks: each configured one with its argv, and the timeout", () => {
    const text = summarize(settings(docs(VIP, agent("hooks: { acquired: [/bin/up, a b], fenced: [], timeout: 3 }"))));
    expect(text).toContain('hooks:     acquired ["/bin/up","a b"], timeout 3 s');
  });
});

describe("Talos v1alpha1 machine configs, as clusters write them", () => {
  const machine = (network: string) => `version: v1alpha1
machine:
  type: controlplane
  network:
    hostname: cp-1
${network.replace(/^/gm, "    ")}
cluster:
  controlPlane:
    endpoint: https://192.168.0.15:6443
`;
  const INTERFACES = `interfaces:
  - interface: eth0
    dhcp: true
    vip:
      ip: 192.168.0.15
  - interface: eth1
    vlans:
      - vlanId: 100
        addresses: [10.0.100.2/24]
        vip:
          ip: 10.0.100.15
      - vlanId: 200
  - interface: eth2
    addresses: [2001:db8::2/64]
    vip:
      ip: "2001:DB8::15"`;

  test("interfaces[].vip and vlans[].vip give VIPs on the interface and on <interface>.<vlanId>", () => {
    const r = load(machine(INTERFACES));
    if (!r.ok) throw new Error(formatIssues(r.issues));
    expect(r.settings.vips).toEqual([
      { ip: "192.168.0.15", family: 4, link: "eth0", document: 0 },
      { ip: "10.0.100.15", family: 4, link: "eth1.100", document: 0 },
      { ip: "2001:db8::15", family: 6, link: "eth2", document: 0 },
    ]);
    expect(r.machineConfigs).toEqual([{ index: 0, vips: 3 }]);
    expect(r.skipped).toEqual([]);
  });

  test("with a VIPAgentConfig beside it, and a VIP in both forms is one VIP too many", () => {
    expect(settings(docs(machine(INTERFACES), agent("nodeName: cp-1"))).nodeName).toBe("cp-1");
    expect(messages(docs(machine(INTERFACES), vip("10.0.100.15", "eth1.100")))).toEqual([
      "document 1 (Layer2VIPConfig): name: 10.0.100.15 is already declared by document 0 (Talos machine config) at machine.network.interfaces[1].vlans[0].vip.ip",
    ]);
  });

  const cases: [string, string, string[]][] = [
    [
      "a deviceSelector interface",
      "interfaces:\n  - deviceSelector:\n      busPath: \"0*\"\n    vip:\n      ip: 192.168.0.15",
      ["document 0 (Talos machine config): machine.network.interfaces[0].deviceSelector: vipd cannot resolve a deviceSelector to a link: name the link instead (interface: eth0), or declare the VIP in a Layer2VIPConfig document with its link"],
    ],
    [
      "a VLAN of a deviceSelector interface",
      "interfaces:\n  - deviceSelector: { hardwareAddr: \"*:f0:ab\" }\n    vlans:\n      - vlanId: 5\n        vip: { ip: 192.168.5.15 }",
      ["document 0 (Talos machine config): machine.network.interfaces[0].deviceSelector: vipd cannot resolve a deviceSelector to a link: name the link instead (interface: eth0), or declare the VIP in a Layer2VIPConfig document with its link"],
    ],
    [
      "a Hetzner Cloud VIP",
      "interfaces:\n  - interface: eth0\n    vip:\n      ip: 192.168.0.15\n      hcloud:\n        apiToken: secret",
      ["document 0 (Talos machine config): machine.network.interfaces[0].vip.hcloud: a VIP announced through Hetzner Cloud's API: vipd announces VIPs on layer 2 (ARP and neighbour discovery) and cannot serve it. Leave this VIP to Talos, or declare it as a Layer2VIPConfig if the nodes share a layer-2 segment"],
    ],
    [
      "an Equinix Metal VIP",
      "interfaces:\n  - interface: eth0\n    vip: { ip: 192.168.0.15, equinixMetal: { apiToken: secret } }",
      ["document 0 (Talos machine config): machine.network.interfaces[0].vip.equinixMetal: a VIP announced through Equinix Metal's API: vipd announces VIPs on layer 2 (ARP and neighbour discovery) and cannot serve it. Leave this VIP to Talos, or declare it as a Layer2VIPConfig if the nodes share a layer-2 segment"],
    ],
    [
      "a bad VIP address",
      "interfaces:\n  - interface: eth0\n    vip: { ip: 192.168.0.300 }",
      ['document 0 (Talos machine config): machine.network.interfaces[0].vip.ip: expected an IPv4 or IPv6 address, received "192.168.0.300"'],
    ],
    [
      "a VLAN id out of range",
      "interfaces:\n  - interface: eth0\n    vlans:\n      - vlanId: 5000\n        vip: { ip: 192.168.0.15 }",
      ["document 0 (Talos machine config): machine.network.interfaces[0].vlans[0].vlanId: expected a VLAN id from 1 to 4094, received 5000"],
    ],
    [
      "a VLAN link too long for Linux",
      "interfaces:\n  - interface: enp0s31f6abcd\n    vlans:\n      - vlanId: 1000\n        vip: { ip: 192.168.0.15 }",
      ['document 0 (Talos machine config): machine.network.interfaces[0].vlans[0].vlanId: the VLAN\'s link "enp0s31f6abcd.1000" is longer than Linux allows (15 bytes)'],
    ],
  ];
  for (const [name, network, want] of cases) test(`${name}: an error naming the document and the field`, () => expect(messages(machine(network))).toEqual(want));

  test("a link named by a Talos LinkAliasConfig is refused with the fix; a link no alias names is taken", () => {
    const alias = (name: string) => `apiVersion: v1alpha1\nkind: LinkAliasConfig\nname: ${name}\nselector:\n  match: link.driver == "e1000"\n`;
    const refused = (doc: number, path: string, link: string, aliasDoc: number) =>
      `document ${doc} (${doc === 0 ? "Talos machine config" : "Layer2VIPConfig"}): ${path}: link "${link}" is a Talos link alias (document ${aliasDoc} (LinkAliasConfig)): Talos picks the link it names with a selector vipd cannot evaluate; name the link as the kernel does ("talosctl get links" or "ip link" shows it, e.g. enp0s2)`;
    expect(messages(docs(alias("mgmt"), vip("192.168.0.16", "mgmt")))).toEqual([refused(1, "link", "mgmt", 0)]);
    // "net%d" names net0, net1, ... (one alias per matched link, by hardware address order).
    expect(messages(docs(vip("192.168.0.16", "net12"), alias("net%d")))).toEqual([refused(0, "link", "net12", 1)].map((m) => m.replace("Talos machine config", "Layer2VIPConfig")));
    expect(messages(docs(machine("interfaces:\n  - interface: net0\n    vip: { ip: 192.168.0.15 }"), alias("net%d"))))
      .toEqual([refused(0, "machine.network.interfaces[0].vip.ip", "net0", 1)]);
    for (const link of ["net", "netx", "enp0s2", "mgmt0"]) {
      expect(settings(docs(alias("net%d"), alias("mgmt"), vip("192.168.0.16", link))).vips.map((x) => x.link)).toEqual([link]);
    }
  });

  test("an HCloudVIPConfig document is an error, not a skipped document", () => {
    const hcloud = "apiVersion: v1alpha1\nkind: HCloudVIPConfig\nname: 192.168.0.15\nlink: enp0s2\napiToken: secret\n";
    expect(messages(docs(VIP, hcloud))).toEqual([
      "document 1 (HCloudVIPConfig): a VIP announced through a cloud API (HCloudVIPConfig): vipd announces VIPs on layer 2 (ARP and neighbour discovery) and cannot serve it. Leave this VIP to Talos, or declare it as a Layer2VIPConfig if the nodes share a layer-2 segment",
    ]);
  });
});

describe("document kinds: a near miss is an error naming the kind meant, never a skipped document", () => {
  const cases: [string, string, string[]][] = [
    ["VIPAgentConfig in the wrong case", docs(VIP, "apiVersion: v1alpha1\nkind: VipAgentConfig\netcd: { endpoints: [https://10.0.0.1:2379] }\n"),
      ['document 1 (VipAgentConfig): kind: unknown kind "VipAgentConfig": did you mean "VIPAgentConfig"? (kinds are case-sensitive)']],
    ["Layer2VIPConfig in the wrong case", docs("apiVersion: v1alpha1\nkind: Layer2VipConfig\nname: 192.168.0.16\nlink: eth0\n", VIP),
      ['document 0 (Layer2VipConfig): kind: unknown kind "Layer2VipConfig": did you mean "Layer2VIPConfig"? (kinds are case-sensitive)']],
    ["layer2VIPConfig, no cloud VIP", docs(VIP, "apiVersion: v1alpha1\nkind: layer2VIPConfig\nname: 192.168.0.16\nlink: eth0\n"),
      ['document 1 (layer2VIPConfig): kind: unknown kind "layer2VIPConfig": did you mean "Layer2VIPConfig"? (kinds are case-sensitive)']],
    ["two letters swapped and one dropped", docs(VIP, "apiVersion: v1alpha1\nkind: VIPAgnetConfg\n"),
      ['document 1 (VIPAgnetConfg): kind: unknown kind "VIPAgnetConfg": did you mean "VIPAgentConfig"?']],
    ["a misspelled Talos kind", docs(VIP, "apiVersion: v1alpha1\nkind: HostnameConfg\nhostname: cp-1\n"),
      ['document 1 (HostnameConfg): kind: unknown kind "HostnameConfg": did you mean "HostnameConfig", a Talos kind vipd skips?']],
    ["a kind nobody has", docs(VIP, "apiVersion: v1alpha1\nkind: VIPDaemon\n"),
      ['document 1 (VIPDaemon): kind: unknown kind "VIPDaemon": vipd reads Layer2VIPConfig and VIPAgentConfig documents and skips Talos\'s own kinds (and, in a file with a Talos machine config, any other kind); fix the kind, or remove the document']],
    ["a document without a kind", docs(VIP, "etcd: { endpoints: [https://10.0.0.1:2379] }\n"),
      ["document 1: kind: no kind: vipd reads Layer2VIPConfig and VIPAgentConfig documents and skips Talos's own kinds (and, in a file with a Talos machine config, any other kind); give the document its kind, or remove it"]],
    ["a VIP kind vipd does not know, even beside a machine config", docs("version: v1alpha1\nmachine: { type: controlplane }\n", VIP, "kind: EquinixMetalVIPConfig\nname: 192.0.2.9\n"),
      ["document 2 (EquinixMetalVIPConfig): kind: a VIP document of a kind vipd does not know (EquinixMetalVIPConfig): vipd serves Layer2VIPConfig documents only; write this VIP as one, or leave it to Talos"]],
  ];
  for (const [name, text, expected] of cases) test(name, () => expect(messages(text)).toEqual(expected));

  test("Talos's own kinds are skipped, each by name; near misses of each other are not confused (DHCPv4Config, DHCPv6Config)", () => {
    const talosDoc = (kind: string) => `apiVersion: v1alpha1\nkind: ${kind}\n`;
    const r = load(docs(VIP, talosDoc("DHCPv4Config"), talosDoc("DHCPv6Config"), talosDoc("KubeSpanConfig")));
    expect(r.ok && r.skipped).toEqual([
      { index: 1, kind: "DHCPv4Config", known: true },
      { index: 2, kind: "DHCPv6Config", known: true },
      { index: 3, kind: "KubeSpanConfig", known: true },
    ]);
  });

  test("in a file with a Talos machine config, a kind vipd does not know (a newer Talos's) is skipped, a near miss is not", () => {
    const machine = "version: v1alpha1\nmachine:\n  type: controlplane\n";
    const r = load(docs(machine, VIP, "apiVersion: v1alpha1\nkind: FancyNewConfig\n", "untyped: true\n"));
    expect(r.ok && r.skipped).toEqual([{ index: 2, kind: "FancyNewConfig", known: false }, { index: 3, kind: "untyped", known: false }]);
    expect(messages(docs(machine, VIP, "apiVersion: v1alpha1\nkind: VIPAgentconfig\n"))).toEqual([
      'document 2 (VIPAgentconfig): kind: unknown kind "VIPAgentconfig": did you mean "VIPAgentConfig"? (kinds are case-sensitive)',
    ]);
  });
});

describe("issues about the file carry its name and the line of the field", () => {
  test("the line of the key, of a list item, of an unknown field; a missing field's is its mapping's; in the file's order, then the rest", () => {
    const text = docs(VIP, agent("etcd:\n  endpoints:\n    - https://10.0.0.1:2379\n    - http://x/y\n  bogus: 1\napiServer: {}"), "apiVersion: v1alpha1\nkind: Layer2VIPConfig\nlink: eth0\n");
    const r = load(text, { env: { VIPD_LEASE_TTL: "x" } });
    expect(r.ok ? [] : r.issues.map((i) => [i.file, i.line, i.path])).toEqual([
      ["vipd.yaml", 11, "etcd.endpoints[1]"],
      ["vipd.yaml", 12, "etcd.bogus"],
      ["vipd.yaml", 13, "apiServer"],
      ["vipd.yaml", 15, "name"],
      [undefined, undefined, ""],
    ]);
    expect(formatIssues(r.ok ? [] : r.issues).split("\n")[4]).toBe("  - vipd.yaml:15: document 2 (Layer2VIPConfig): name: required field is missing");
  });

  test("a YAML syntax error keeps the parser's line", () => {
    const r = load(docs(VIP, "apiVersion: v1alpha1\nkind: [\n"));
    expect(r.ok ? [] : r.issues.map((i) => [i.line, i.message.match(/at line (\d+)/)?.[1]])).toEqual([[8, "8"]]);
  });
});

describe("VIP addresses: what a host can own, as an address and nothing more", () => {
  const cases: [string, string, string[]][] = [
    ["an address with a prefix length, as ip address add takes it", vip("192.168.0.10/24"),
      ['document 0 (Layer2VIPConfig): name: expected an address without a prefix length (vipd adds each VIP as a /32 or /128 of its own): drop the "/24" and write "192.168.0.10", received "192.168.0.10/24"']],
    ["an IPv6 one", vip("2001:db8::15/64"),
      ['document 0 (Layer2VIPConfig): name: expected an address without a prefix length (vipd adds each VIP as a /32 or /128 of its own): drop the "/64" and write "2001:db8::15", received "2001:db8::15/64"']],
    ["an IPv4-mapped IPv6 address", vip("::ffff:10.0.0.5"),
      ['document 0 (Layer2VIPConfig): name: expected an IPv4 or IPv6 address, not an IPv4-mapped IPv6 one (it stands for the IPv4 address, which no link can hold as IPv6): write 10.0.0.5, received "::ffff:10.0.0.5"']],
    ["an IPv4-mapped loopback: one problem, not two", vip("::FFFF:7f00:1"),
      ['document 0 (Layer2VIPConfig): name: expected an IPv4 or IPv6 address, not an IPv4-mapped IPv6 one (it stands for the IPv4 address, which no link can hold as IPv6): write 127.0.0.1, received "::FFFF:7f00:1"']],
  ];
  for (const [name, text, expected] of cases) test(name, () => expect(messages(text)).toEqual(expected));
});

describe("the kube-apiserver gate is on only with apiServer.url", () => {
  const FIX = "the kube-apiserver gate is off without apiServer.url: set apiServer.url (VIPD_APISERVER_URL or --apiserver-url), e.g. https://127.0.0.1:6443/readyz, to turn it on";
  test("another apiServer setting without it, from the file, a variable or a flag, is an error naming the fix", () => {
    expect(messages(docs(VIP, agent("apiServer: { caFile: /pki/ca.crt }")), { env: { VIPD_APISERVER_RISE: "3" }, flags: { "apiserver-insecure-skip-verify": true } })).toEqual([
      `document 1 (VIPAgentConfig): apiServer.caFile: ${FIX}, or remove this setting`,
      `flag --apiserver-insecure-skip-verify: ${FIX}, or remove this setting`,
      `environment VIPD_APISERVER_RISE: ${FIX}, or remove this setting`,
    ]);
  });
  test("an empty section is an error too", () => {
    expect(messages(docs(VIP, agent("apiServer: {}")))).toEqual([`document 1 (VIPAgentConfig): apiServer: ${FIX}, or remove the section`]);
  });
  test("the URL from a variable turns on a gate the file sets up", () => {
    const s = settings(docs(VIP, agent("apiServer: { caFile: /pki/ca.crt, rise: 4 }")), { env: { VIPD_APISERVER_URL: "https://10.0.0.1:6443/readyz" } });
    expect(s.apiServer).toMatchObject({ url: "https://10.0.0.1:6443/readyz", caFile: "/pki/ca.crt", rise: 4 });
  });
});

describe("unknown VIPD_ variables", () => {
  test("an error by default (vipd run), a warning when asked for; either way named", () => {
    const named = 'environment VIPD_HOLD_TIM: unknown variable; "vipd run --help" lists the VIPD_ variables';
    expect(messages(VIP, { env: { VIPD_HOLD_TIM: "3000" } })).toEqual([named]);
    const r = load(VIP, { env: { VIPD_HOLD_TIM: "3000" }, unknownVariables: "warning" });
    expect(r.ok).toBe(true);
    expect(r.warnings.map((w) => w.message)).toEqual([named]);
  });
});

describe("the day-2 commands: flags > VIPD_ > ETCDCTL_ > file > kubeadm's files", () => {
  const KUBEADM = { caFile: "/k/ca.crt", certFile: "/k/hc.crt", keyFile: "/k/hc.key" };
  const day2 = (over: Partial<LoadInput> = {}) => ({ etcdClient: { tlsFallback: KUBEADM, fallbackSource: "kubeadm's etcd client files" }, ...over });
  const ETCDCTL = { ETCDCTL_ENDPOINTS: "10.0.0.1:2379,https://10.0.0.2:2379", ETCDCTL_CACERT: "/e/ca", ETCDCTL_CERT: "/e/c", ETCDCTL_KEY: "/e/k" };

  test("etcdctl's variables alone; a bare endpoint speaks TLS when a TLS file is given, as etcdctl's does", () => {
    const e = settings(VIP, day2({ env: ETCDCTL })).etcd;
    expect(e.endpoints).toEqual(["https://10.0.0.1:2379", "https://10.0.0.2:2379"]);
    expect([e.caFile, e.certFile, e.keyFile]).toEqual(["/e/ca", "/e/c", "/e/k"]);
    expect(settings(VIP, day2({ env: { ETCDCTL_ENDPOINTS: "10.0.0.1:2379" } })).etcd.endpoints).toEqual(["http://10.0.0.1:2379"]);
  });

  test("VIPD_ and flags above ETCDCTL_, ETCDCTL_ above the file, field by field", () => {
    const file = docs(VIP, agent("etcd: { endpoints: [https://10.9.9.9:2379], caFile: /f/ca, certFile: /f/c, keyFile: /f/k, prefix: /p/ }"));
    const e = settings(file, day2({ env: { ...ETCDCTL, VIPD_ETCD_CA: "/v/ca" }, flags: { "etcd-endpoints": "https://10.1.1.1:2379" } })).etcd;
    expect(e.endpoints).toEqual(["https://10.1.1.1:2379"]);
    expect([e.caFile, e.certFile, e.keyFile, e.prefix]).toEqual(["/v/ca", "/e/c", "/e/k", "/p/"]);
    expect(settings(file, day2()).etcd.caFile).toBe("/f/ca");
  });

  test("kubeadm's files only when nothing names any etcd TLS file and no endpoint is http://", () => {
    expect(settings(VIP, day2()).etcd).toMatchObject(KUBEADM);
    // One TLS file from anywhere, and none of kubeadm's is mixed in.
    const onlyCa = settings(VIP, day2({ env: { ETCDCTL_CACERT: "/e/ca" } })).etcd;
    expect([onlyCa.caFile, onlyCa.certFile, onlyCa.keyFile]).toEqual(["/e/ca", undefined, undefined]);
    expect(settings(docs(VIP, agent("etcd: { caFile: /f/ca }")), day2()).etcd.certFile).toBeUndefined();
    const plain = settings(VIP, day2({ flags: { "etcd-endpoints": "http://10.0.0.1:2379" } })).etcd;
    expect([plain.caFile, plain.certFile, plain.keyFile]).toEqual([undefined, undefined, undefined]);
  });

  test("not for vipd run: without etcdClient, ETCDCTL_ is not read and no file is guessed", () => {
    const e = settings(VIP, { env: ETCDCTL }).etcd;
    expect(e.endpoints).toEqual(["https://127.0.0.1:2379"]);
    expect(e.caFile).toBeUndefined();
  });

  test("a bad ETCDCTL_ value is named as that variable", () => {
    expect(messages(VIP, day2({ env: { ETCDCTL_ENDPOINTS: "ftp://x" } }))[0]).toStartWith("environment ETCDCTL_ENDPOINTS:");
  });

  test("VIPD_TEST_ROOT is no unknown variable", () => {
    expect(settings(VIP, { env: { VIPD_TEST_ROOT: "/tmp/x" }, unknownVariables: "error" }).nodeName).toBe("cp-1");
  });
});
