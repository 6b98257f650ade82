// Issue 9's "done when": `npm run release`'s artifacts, unpacked on a clean
// lab node by deploy/cloud-init.yaml's own commands, bring up a holder that
// `vipd wait` reports, running as the unprivileged user.
//
// The node is a SmallLab namespace with a kubeadm-like setup: its etcd member
// on 127.0.0.1:2379 over mutual TLS, a stand-in kube-apiserver over HTTPS on
// 127.0.0.1:6443, and kubeadm's certificate files (the etcd client key
// root-only, 0600) under a scratch root. cloud-init's write_files and its
// install step run against that root, with a systemctl that only records;
// the test then starts the service as systemd would, from the installed unit
// (its ExecStart, LoadCredential= and sandbox: test/lab/unit-sandbox.ts), and
// runs runcmd's own `vipd wait` in the node's namespace.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { kubeadmEtcdNames, makeCerts, type TestCerts } from "../lab/certs.ts";
import { REPO_ROOT } from "../lab/cluster.ts";
import { sh, waitFor } from "../lab/sh.ts";
import { SmallLab } from "../lab/small-lab.ts";
import { ensureSystemUser, passwdEntry, sandbox, Unit } from "../lab/unit-sandbox.ts";
import { applyWriteFiles, readCloudConfig, recordingSystemctl, seedAccounts, underRoot } from "./cloud-config.ts";
import { releaseDir } from "./release-artifacts.ts";

const VIP = "192.0.2.93";
let user: Awaited<ReturnType<typeof ensureSystemUser>>;
let release: string;

beforeAll(async () => {
  user = await ensureSystemUser("vipd");
  release = await releaseDir();
}, 120_000);

afterAll(async () => {
  await user?.remove();
});

/** Runs argv in the node's namespace; kills it by PID if it outlives timeoutMs. */
async function inNode(ns: string, argv: readonly string[], env: Record<string, string>, timeoutMs: number) {
  const p = Bun.spawn(["ip", "netns", "exec", ns, ...argv], { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env }, stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
  try {
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    return { code, out, err };
  } finally {
    clearTimeout(timer);
  }
}

test("cloud-init's commands turn a bare lab node into a VIP holder, running as user vipd, that vipd wait reports", async () => {
  const pkis: TestCerts[] = [];
  let lab: SmallLab | null = null;
  const root = mkdtempSync(join(tmpdir(), "vipd-node-"));
  const state = mkdtempSync(join(tmpdir(), "vipd-service-"));
  try {
    const clusterPki = await makeCerts();
    pkis.push(clusterPki);
    lab = await SmallLab.start(["n1"], async ([host]) => {
      // etcd's server certificate carries the names kubeadm gives it.
      const pki = await makeCerts({ server: kubeadmEtcdNames(host!.name, host!.ip4) });
      pkis.push(pki);
      return { tls: { caFile: pki.caFile, certFile: pki.serverCertFile, keyFile: pki.serverKeyFile, clientCertAuth: true, probe: { certFile: pki.clientCertFile, keyFile: pki.clientKeyFile } } };
    });
    const etcdPki = pkis[1]!;
    const n1 = lab.host("n1");
    lab.spawn(n1, [process.execPath, join(REPO_ROOT, "test/lab/stand-in-apiserver.ts"), "n1", "6443", clusterPki.serverCertFile, clusterPki.serverKeyFile]);

    // The node as kubeadm leaves it: its PKI, the etcd client key for root alone.
    chmodSync(root, 0o755);
    chmodSync(state, 0o755);
    seedAccounts(root);
    const kubeadm: [string, string, number][] = [
      ["etc/kubernetes/pki/etcd/ca.crt", etcdPki.caFile, 0o644],
      ["etc/kubernetes/pki/etcd/healthcheck-client.crt", etcdPki.clientCertFile, 0o644],
      ["etc/kubernetes/pki/etcd/healthcheck-client.key", etcdPki.clientKeyFile, 0o600],
      ["etc/kubernetes/pki/ca.crt", clusterPki.caFile, 0o644],
    ];
    for (const [path, from, mode] of kubeadm) {
      mkdirSync(dirname(join(root, path)), { recursive: true });
      copyFileSync(from, join(root, path));
      chmodSync(join(root, path), mode);
    }

    // cloud-init: write_files (the operator's VIP and link filled in), then runcmd's install step.
    const config = await readCloudConfig();
    applyWriteFiles(root, config.writeFiles, (f) => {
      if (f.path !== "/etc/vipd/vipd.yaml") return f.content;
      expect(f.content).toContain("name: 192.168.0.15\n");
      expect(f.content).toContain("link: enp0s2\n");
      return f.content.replace("name: 192.168.0.15\n", `name: ${VIP}\n`).replace("link: enp0s2\n", "link: eth0\n");
    });
    const [installStep, waitStep] = config.runcmd as [string[], string[]];
    const systemctl = recordingSystemctl(state);
    const installed = await inNode(n1.ns, underRoot(root, installStep), { ROOT: root, SYSTEMCTL: systemctl.path, RELEASE_URL: `file://${release}` }, 60_000);
    expect(installed.err).toContain("installed vipd");
    expect(installed.code).toBe(0);
    expect(systemctl.calls()).toEqual(["daemon-reload", "enable vipd.service", "start --no-block vipd.service"]);

    // systemd's part of `start`: the installed unit's service, as its user, in its sandbox.
    const unit = Unit.read(join(root, "etc/systemd/system/vipd.service"));
    const service = await sandbox(unit, { dir: state, root });
    expect(service.command[0]).toBe(join(root, "usr/local/bin/vipd"));
    const vipd = lab.spawn(n1, service.argv);
    const log = () => readFileSync(service.logFile, "utf8");

    // runcmd's wait, as written but with a test-sized timeout instead of 15 minutes.
    const wait = waitStep.map((w, i) => (waitStep[i - 1] === "--timeout" ? "30" : w));
    const healthy = await inNode(n1.ns, underRoot(root, wait), {}, 40_000);
    expect({ code: healthy.code, err: healthy.err, log: healthy.code ? log() : "" }).toEqual({ code: 0, err: "", log: "" });
    const holding = await inNode(n1.ns, underRoot(root, ["/usr/local/bin/vipd", "wait", "--for", "holding", "--timeout", "15", "--config", "/etc/vipd/vipd.yaml"]), {}, 20_000);
    expect(holding.code).toBe(0);
    expect(holding.out + holding.err).toContain(VIP);
    expect(await lab.seg.has(n1, VIP)).toBe(true);

    // Who holds it: the vipd user, with the credentials systemd would have handed over.
    const uid = readFileSync(`/proc/${vipd.pid}/status`, "utf8").match(/^Uid:\s+(\d+)/m)![1];
    expect(Number(uid)).toBe(passwdEntry("vipd")!.uid);
    expect(readFileSync(`/proc/${vipd.pid}/cmdline`, "utf8").split("\0")).toContain(join(service.credentialsDir!, "etcd-key"));

    vipd.kill("SIGTERM");
    expect(await vipd.exited).toBe(0);
    expect(await lab.seg.has(n1, VIP)).toBe(false);
    await waitFor("the stand-in API server still answering", () => sh(["ip", "netns", "exec", n1.ns, "curl", "-sk", "https://127.0.0.1:6443/readyz"]), 2000);
  } finally {
    await lab?.close();
    for (const pki of pkis) pki.remove();
    rmSync(root, { recursive: true, force: true });
    rmSync(state, { recursive: true, force: true });
  }
}, 120_000);
