// Issue 19's "done when": README's install block, taken from README.md itself
// (the fenced block after the install-block marker), run as it stands on a
// bare node ends in a held VIP that a client on the segment reaches.
//
// The node is a container (test/lab/container.ts: systemd-nspawn booting a
// cached Debian 12 tree, systemd as its PID 1) in the network namespace of
// lab node n1, whose etcd member listens on 127.0.0.1:2379 with kubeadm's
// PKI (lab/certs.ts: client certificates required, keys root-only 0600) and
// whose stand-in kube-apiserver serves kubeadm's apiserver.crt, which does
// not name 127.0.0.1. The block runs under `sh -e` with four edits, each
// one an operator makes or a step the test stands in for:
//   - the first line's VIP and link: the lab's;
//   - RELEASE_URL: `npm run release`'s files behind a file:// URL;
//   - the kubeadm comment: kubeadm's PKI copied to /etc/kubernetes/pki, as
//     `kubeadm init` writes it, owners and modes kept;
//   - `vipd wait`'s 15 minutes: a test-sized timeout.
// Everything else (download, checksum, the example edited into
// /etc/vipd/vipd.yaml, vipd-install from the tarball, the wait) is README's.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type KubeadmPki, makeKubeadmPki } from "../lab/certs.ts";
import { REPO_ROOT } from "../lab/cluster.ts";
import { Container } from "../lab/container.ts";
import { type DebianTree, debianTree } from "../lab/debian-tree.ts";
import { type EtcdCluster, startEtcdCluster } from "../lab/etcd.ts";
import { Segment } from "../lab/netns.ts";
import { sh } from "../lab/sh.ts";
import { HOST_ARCH, releaseDir, VERSION } from "./release-artifacts.ts";

const VIP = "192.0.2.97";
const UNIT = "vipd.service";
/** Where the container sees the release directory and kubeadm's PKI. */
const RELEASE_IN = "/srv/vipd-release";
const KUBEADM_IN = "/srv/kubeadm-pki";
const MARKER = "<!-- install-block:";

let tree: DebianTree;
let release: string;

beforeAll(async () => {
  [tree, release] = await Promise.all([debianTree(), releaseDir()]);
  console.log(tree.built ? `built ${tree.dir} in ${Math.round(tree.buildMs)} ms` : `using the cached ${tree.dir}`);
}, 600_000);

/** The fenced sh block right after README's install-block marker line, as an operator copies it. */
function installBlock(readme: string): string {
  const at = readme.indexOf(MARKER);
  if (at < 0) throw new Error(`README.md has no ${MARKER} marker`);
  const m = /^[^\n]*\n```sh\n([\s\S]*?)\n```\n/.exec(readme.slice(at));
  if (!m) throw new Error("README.md: the install-block marker is not followed by a ```sh block");
  return `${m[1]}\n`;
}

/** `text` with the one line that starts with `prefix` replaced by `line`; throws unless exactly one does. */
function replaceLine(text: string, prefix: string, line: string): string {
  const lines = text.split("\n");
  const at = lines.flatMap((l, i) => (l.startsWith(prefix) ? [i] : []));
  if (at.length !== 1) throw new Error(`the install block has ${at.length} lines starting with ${JSON.stringify(prefix)}, expected 1`);
  lines[at[0]!] = line;
  return lines.join("\n");
}

let seg: Segment | null = null;
let etcd: EtcdCluster | null = null;
let pki: KubeadmPki | null = null;
let node: Container | null = null;
let dir: string | null = null;

afterAll(async () => {
  await node?.stop();
  await etcd?.stopAll();
  await seg?.destroy();
  pki?.remove();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("README's install block, as it stands, takes a bare node under systemd to a held VIP that a client on the segment reaches", async () => {
  const block = installBlock(readFileSync(join(REPO_ROOT, "README.md"), "utf8"));
  // The block names the release this checkout makes, and the example's VIP and link.
  const first = block.split("\n")[0]!;
  expect(first).toStartWith(`VERSION=${VERSION} VIP=192.168.0.15 LINK=enp0s2 `);
  let script = replaceLine(block, "VERSION=", first.replace("VIP=192.168.0.15 LINK=enp0s2", `VIP=${VIP} LINK=eth0`));
  script = replaceLine(script, "RELEASE_URL=https://", `RELEASE_URL=file://${RELEASE_IN}`);
  script = replaceLine(script, "# kubeadm init", `mkdir -p /etc/kubernetes && cp -a ${KUBEADM_IN} /etc/kubernetes/pki`);
  expect(script.split("\n").filter((l) => l.includes("--timeout 900"))).toHaveLength(1);
  script = script.replace("--timeout 900", "--timeout 60");

  seg = await Segment.create(["n1", "client"]);
  const n1 = seg.host("n1");
  const client = seg.host("client");
  // `kubeadm init` on n1 with the VIP as its controlPlaneEndpoint.
  pki = await makeKubeadmPki([{ name: "n1", ip: n1.ip4 }], { controlPlaneEndpoint: VIP });
  const n1pki = pki.node("n1");
  expect(await sh(["stat", "-c", "%a %U", n1pki.path("etcd/healthcheck-client.key")])).toBe("600 root\n");
  etcd = await startEtcdCluster([{ name: "n1", ns: n1.ns, ip: n1.ip4 }], { tls: n1pki.etcdServing });
  dir = mkdtempSync(join(tmpdir(), "vipd-readme-install-"));
  const apiserver = Bun.spawn(["ip", "netns", "exec", n1.ns, process.execPath, join(REPO_ROOT, "test/lab/stand-in-apiserver.ts"), "n1", "6443",
    n1pki.apiserver.certFile, n1pki.apiserver.keyFile], { stdout: "ignore", stderr: "inherit" });
  try {
    const booted = await Container.boot({
      tree: tree.dir, netns: n1.ns, hostname: "n1",
      bindReadOnly: { [release]: RELEASE_IN, [n1pki.dir]: KUBEADM_IN },
      logFile: join(dir, "n1-container.log"),
    });
    node = booted.container;
    const c = node;
    console.log(`container booted in ${Math.round(booted.bootMs)} ms`);
    expect(await c.exec(["test", "-e", "/etc/vipd"])).toMatchObject({ code: 1 });

    const t0 = performance.now();
    const ran = await c.exec(["sh", "-e", "-c", script], { timeoutMs: 120_000 });
    const journal = ran.code ? (await c.exec(["journalctl", "--no-pager", "-u", UNIT, "-n", "40"])).out : "";
    expect({ code: ran.code, journal }).toEqual({ code: 0, journal: "" });
    console.log(`README's block ran in ${Math.round(performance.now() - t0)} ms`);
    expect(ran.out).toContain(`vipd-${VERSION}-linux-${HOST_ARCH}.tar.gz: OK`);
    expect(ran.err).toContain(`installed vipd ${VERSION}`);

    // What the block left: the example with the operator's VIP and link and the gate on, valid.
    const config = await c.run(["cat", "/etc/vipd/vipd.yaml"]);
    expect(config).toContain(`name: ${VIP} #`);
    expect(config).toContain("link: eth0 #");
    expect(config).toMatch(/^apiServer:\n {2}# [^\n]*\n {2}url: https:\/\/127\.0\.0\.1:6443\/readyz$/m);
    expect((await c.run(["systemctl", "is-enabled", UNIT])).trim()).toBe("enabled");
    expect((await c.run(["systemctl", "show", UNIT, "-p", "User", "--value"])).trim()).toBe("vipd");

    // The VIP: held by n1's vipd, on n1's link, and answered by n1 for a client on the segment.
    const holding = await c.exec(["vipd", "wait", "--for", "holding", "--timeout", "15", "--config", "/etc/vipd/vipd.yaml"], { timeoutMs: 20_000 });
    expect(holding.code).toBe(0);
    expect(await seg.has(n1, VIP)).toBe(true);
    const status = JSON.parse(await c.run(["curl", "-sf", "-m", "2", "http://127.0.0.1:8099/status"])) as { gate: { open: boolean } | null };
    expect(status.gate?.open).toBe(true);
    const answer = await sh(["ip", "netns", "exec", client.ns, "curl", "-sk", "-m", "3", `https://${VIP}:6443/`]);
    expect(answer).toBe("n1");
  } finally {
    apiserver.kill("SIGTERM");
    await apiserver.exited;
  }
}, 300_000);
