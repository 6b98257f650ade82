// Issue 9's "done when": `npm run release`'s artifacts, unpacked on a clean
// lab node by deploy/cloud-init.yaml's own commands, bring up a holder that
// `vipd wait` reports, running as the unprivileged user.
//
// The node is a SmallLab namespace set up as kubeadm leaves a control-plane
// node: kubeadm's PKI (lab/certs.ts: the VIP as controlPlaneEndpoint, keys
// root-only 0600, the etcd CA apart from the cluster CA) in
// etc/kubernetes/pki under a scratch root, its etcd member on 127.0.0.1:2379
// with etcd/server.crt and client certificates required, and a stand-in
// kube-apiserver on 127.0.0.1:6443 serving apiserver.crt, which does not
// name 127.0.0.1: the gate opens by the name kubernetes. cloud-init's write_files and its
// install step run against that root, with a systemctl that only records;
// the test then starts the service as systemd would, from the installed unit
// (its ExecStart, LoadCredential= and sandbox: test/lab/unit-sandbox.ts), and
// runs runcmd's own `vipd wait` in the node's namespace.
//
// Then an upgrade of the running service (README, "Upgrading"): a second
// agent, n2, stands for the VIP too, and vipd-install runs again over an
// older binary with a systemctl stand-in that says the service is active and
// lets the test do the restart. It must drain n1 (the VIP moves to n2 before
// the restart), restart, wait, undrain, and leave n1 standing again.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { type KubeadmNodePki, type KubeadmPki, makeKubeadmPki } from "../lab/certs.ts";
import { REPO_ROOT } from "../lab/cluster.ts";
import { sh, waitFor } from "../lab/sh.ts";
import { SmallLab, stopVipd } from "../lab/small-lab.ts";
import { ensureSystemUser, passwdEntry, sandbox, Unit } from "../lab/unit-sandbox.ts";
import { applyWriteFiles, readCloudConfig, recordingSystemctl, seedAccounts, underRoot } from "./cloud-config.ts";
import { releaseDir } from "./release-artifacts.ts";

const VIP = "192.0.2.93";
/** cloud-init.yaml's members, the operator's to fill in. */
const EXAMPLE_ENDPOINTS = "endpoints: [https://192.168.0.11:2379, https://192.168.0.12:2379, https://192.168.0.13:2379]";
let user: Awaited<ReturnType<typeof ensureSystemUser>>;
let release: string;

beforeAll(async () => {
  user = await ensureSystemUser("vipd");
  release = await releaseDir();
}, 240_000);

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

/**
 * systemctl on a node where vipd.service runs: records each call, says the
 * service is active, and holds `restart` until the test has restarted it
 * (touched `${dir}/restarted`).
 */
function runningSystemctl(dir: string): { path: string; calls: () => string[]; restartAsked: () => boolean; restarted: () => void } {
  const path = join(dir, "systemctl");
  const log = join(dir, "systemctl.log");
  const done = join(dir, "restarted");
  writeFileSync(log, "");
  writeFileSync(path, [
    "#!/bin/sh",
    `echo "$*" >> '${log}'`,
    "case \"$1\" in",
    "  is-active) exit 0 ;;",
    `  restart) n=0; while [ ! -e '${done}' ]; do sleep 0.05; n=$((n + 1)); [ $n -lt 1200 ] || exit 1; done ;;`,
    "esac",
    "",
  ].join("\n"));
  chmodSync(path, 0o755);
  const calls = () => readFileSync(log, "utf8").split("\n").filter(Boolean);
  return { path, calls, restartAsked: () => calls().includes("restart vipd.service"), restarted: () => writeFileSync(done, "") };
}

test("cloud-init's commands turn a bare lab node into a VIP holder, running as user vipd, that vipd wait reports", async () => {
  let cluster: KubeadmPki | null = null;
  let lab: SmallLab | null = null;
  const root = mkdtempSync(join(tmpdir(), "vipd-node-"));
  const state = mkdtempSync(join(tmpdir(), "vipd-service-"));
  try {
    let pki: KubeadmNodePki | null = null;
    lab = await SmallLab.start(["n1"], async ([host]) => {
      // `kubeadm init` on n1 with the VIP as its controlPlaneEndpoint.
      cluster = await makeKubeadmPki([{ name: host!.name, ip: host!.ip4 }], { controlPlaneEndpoint: VIP });
      pki = cluster.node(host!.name);
      return { tls: pki.etcdServing };
    }, { clients: ["n2"] });
    const n1 = lab.host("n1");
    const { apiserver } = pki!;
    expect(await sh(["openssl", "x509", "-in", apiserver.certFile, "-noout", "-ext", "subjectAltName"])).not.toContain("127.0.0.1");
    lab.spawn(n1, [process.execPath, join(REPO_ROOT, "test/lab/stand-in-apiserver.ts"), "n1", "6443", apiserver.certFile, apiserver.keyFile]);

    // The node as kubeadm leaves it: its whole /etc/kubernetes/pki, owners and modes kept.
    chmodSync(root, 0o755);
    chmodSync(state, 0o755);
    seedAccounts(root);
    mkdirSync(join(root, "etc/kubernetes"), { recursive: true, mode: 0o755 });
    await sh(["cp", "-a", pki!.dir, join(root, "etc/kubernetes/pki")]);
    expect((await sh(["stat", "-c", "%a %U", join(root, "etc/kubernetes/pki/etcd/healthcheck-client.key")])).trim()).toBe("600 root");

    // cloud-init: write_files (the operator's VIP and link filled in), then runcmd's install step.
    const config = await readCloudConfig();
    applyWriteFiles(root, config.writeFiles, (f) => {
      if (f.path !== "/etc/vipd/vipd.yaml") return f.content;
      expect(f.content).toContain("name: 192.168.0.15\n");
      expect(f.content).toContain("link: enp0s2\n");
      expect(f.content).toContain(EXAMPLE_ENDPOINTS);
      // Every member's client URL, as the comment asks: this one-node cluster's only member, by its address.
      return f.content.replace("name: 192.168.0.15\n", `name: ${VIP}\n`).replace("link: enp0s2\n", "link: eth0\n")
        .replace(EXAMPLE_ENDPOINTS, `endpoints: [https://${n1.ip4}:2379]`);
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
    let vipd = lab.spawn(n1, service.argv);
    const log = () => readFileSync(service.logFile, "utf8");

    // runcmd's wait, as written but with a test-sized timeout instead of 15 minutes.
    const wait = waitStep.map((w, i) => (waitStep[i - 1] === "--timeout" ? "30" : w));
    const healthy = await inNode(n1.ns, underRoot(root, wait), {}, 40_000);
    expect({ code: healthy.code, err: healthy.err, log: healthy.code ? log() : "" }).toEqual({ code: 0, err: "", log: "" });
    expect(log()).toContain("kube-apiserver gate opened");
    const holding = await inNode(n1.ns, underRoot(root, ["/usr/local/bin/vipd", "wait", "--for", "holding", "--timeout", "15", "--config", "/etc/vipd/vipd.yaml"]), {}, 20_000);
    expect(holding.code).toBe(0);
    expect(holding.out + holding.err).toContain(VIP);
    expect(await lab.seg.has(n1, VIP)).toBe(true);

    // Who holds it: the vipd user, with the credentials systemd would have handed over.
    const uid = readFileSync(`/proc/${vipd.pid}/status`, "utf8").match(/^Uid:\s+(\d+)/m)![1];
    expect(Number(uid)).toBe(passwdEntry("vipd")!.uid);
    expect(readFileSync(`/proc/${vipd.pid}/cmdline`, "utf8").split("\0")).toContain(join(service.credentialsDir!, "etcd-key"));

    // The upgrade. The service runs under the machine's host name (the unit gives no --node-name).
    const me = hostname();
    // n2 (no etcd member of its own: it uses n1's, with kubeadm's client certificate) stands for the VIP too.
    const n2 = lab.host("n2");
    const n2Config = lab.vipConfig("n2.yaml", VIP, n2.link);
    const { etcd } = pki!;
    const other = lab.vipd(n2, ["--config", n2Config, "--node-name", "n2", "--etcd-endpoints", `https://${n1.ip4}:2379`,
      "--etcd-ca", etcd.ca, "--etcd-cert", etcd.healthcheckClient.certFile, "--etcd-key", etcd.healthcheckClient.keyFile]);
    const n2Standing = await inNode(n2.ns, [join(root, "usr/local/bin/vipd"), "wait", "--for", "standing", "--timeout", "30", "--config", n2Config], {}, 40_000);
    expect(n2Standing.code).toBe(0);
    expect(await lab.seg.has(n1, VIP)).toBe(true);
    // An older binary on disk; the running vipd keeps its own (a new file, not the running one rewritten).
    const binary = join(root, "usr/local/bin/vipd");
    writeFileSync(`${binary}.old`, "#!/bin/sh\n");
    renameSync(`${binary}.old`, binary);
    const running = runningSystemctl(mkdtempSync(join(state, "systemctl-")));
    // The day-2 commands read the node's files under the scratch root (VIPD_TEST_ROOT, as ROOT stands for /).
    const env = { ROOT: root, SYSTEMCTL: running.path, RELEASE_URL: `file://${release}`, VIPD_TEST_ROOT: root, WAIT_TIMEOUT: "30" };
    const upgrading = inNode(n1.ns, underRoot(root, installStep), env, 150_000);
    let ended: Awaited<typeof upgrading> | null = null;
    void upgrading.then((r) => (ended = r));
    await waitFor("vipd-install asking for the restart", () => {
      if (ended) throw new Error(`it ended first, exit ${ended.code}: ${ended.err}`);
      return running.restartAsked();
    }, 60_000, 50).catch((e: unknown) => {
      // Asked or not, the stand-in must not hold vipd-install any longer.
      running.restarted();
      throw e;
    });
    // Drained before the restart: n1 is out and n2 answers for the VIP.
    const before = await inNode(n1.ns, [binary, "status", "--json"], { VIPD_TEST_ROOT: root }, 20_000);
    const report = JSON.parse(before.out) as { drains: { node: string; reason: string }[]; vips: { vip: string; holder: { node: string } | null; claimedBy: string[] }[] };
    expect(report.drains.map((d) => [d.node, d.reason])).toEqual([[me, expect.stringContaining("vipd-install: upgrading to")]]);
    expect(report.vips.find((v) => v.vip === VIP)).toMatchObject({ holder: { node: "n2" }, claimedBy: ["n2"] });
    expect([await lab.seg.has(n1, VIP), await lab.seg.has(n2, VIP)]).toEqual([false, true]);
    // systemd's part of the restart: stop the old vipd, start the installed one.
    vipd.kill("SIGTERM");
    expect(await vipd.exited).toBe(0);
    vipd = lab.spawn(n1, service.argv);
    running.restarted();
    const upgraded = await upgrading;
    expect({ code: upgraded.code, err: upgraded.err }).toEqual({ code: 0, err: expect.stringContaining("installed vipd") });
    expect(running.calls()).toEqual(["daemon-reload", "enable vipd.service", "is-active --quiet vipd.service", "start --no-block vipd.service", "restart vipd.service"]);
    // Drain, restart, undrain, in that order, each said.
    const said = [`drained ${me} `, `${me} is drained: it holds no VIP`, "vipd-install: restarting vipd onto the new binary", `undrained ${me}`, "installed vipd"]
      .map((line) => upgraded.err.indexOf(line));
    expect(said.every((at, i) => at >= 0 && (i === 0 || at > said[i - 1]!))).toBe(true);
    // Undrained and standing again, behind n2, which keeps the VIP (an undrain takes nothing back).
    const after = JSON.parse((await inNode(n1.ns, [binary, "status", "--json"], { VIPD_TEST_ROOT: root }, 20_000)).out) as typeof report & { vips: { vip: string; waiting: { node: string }[] }[] };
    expect(after.drains).toEqual([]);
    expect(after.vips.find((v) => v.vip === VIP)).toMatchObject({ holder: { node: "n2" }, waiting: [{ node: me }] });
    expect((await stopVipd(other)).code).toBe(0);
    await waitFor("n1 holding the VIP again once n2 stopped", () => lab!.seg.has(n1, VIP), 5000, 50);

    vipd.kill("SIGTERM");
    expect(await vipd.exited).toBe(0);
    expect(await lab.seg.has(n1, VIP)).toBe(false);
    await waitFor("the stand-in API server still answering", () => sh(["ip", "netns", "exec", n1.ns, "curl", "-sk", "https://127.0.0.1:6443/readyz"]), 2000);
  } finally {
    await lab?.close();
    (cluster as KubeadmPki | null)?.remove();
    rmSync(root, { recursive: true, force: true });
    rmSync(state, { recursive: true, force: true });
  }
}, 240_000);

test("an upgrade whose drain fails leaves the old vipd running, restarts nothing, and says what to run", async () => {
  const root = mkdtempSync(join(tmpdir(), "vipd-node-"));
  try {
    seedAccounts(root);
    const config = await readCloudConfig();
    // etcd unreachable (nothing listens on port 9): the drain cannot be written.
    applyWriteFiles(root, config.writeFiles, (f) => (f.path === "/etc/vipd/vipd.yaml" ? f.content.replace(EXAMPLE_ENDPOINTS, "endpoints: [https://127.0.0.1:9]") : f.content));
    const installStep = config.runcmd[0]!;
    const fresh = recordingSystemctl(mkdtempSync(join(root, "sc-")));
    const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", ROOT: root, RELEASE_URL: `file://${release}`, VIPD_TEST_ROOT: root };
    const first = Bun.spawnSync(underRoot(root, installStep), { env: { ...env, SYSTEMCTL: fresh.path }, stderr: "pipe" });
    expect(first.exitCode).toBe(0);
    // An older binary under a service that runs.
    writeFileSync(join(root, "usr/local/bin/vipd.old"), "#!/bin/sh\n");
    renameSync(join(root, "usr/local/bin/vipd.old"), join(root, "usr/local/bin/vipd"));
    const running = runningSystemctl(mkdtempSync(join(root, "sc-")));
    const r = Bun.spawnSync(underRoot(root, installStep), { env: { ...env, SYSTEMCTL: running.path, WAIT_TIMEOUT: "5" }, stderr: "pipe" });
    const err = r.stderr.toString();
    expect(r.exitCode).toBe(1);
    expect(err).toContain(`vipd-install: draining ${hostname()} failed (above): vipd.service still runs the old vipd; the new one is installed.`);
    expect(err).toContain('"systemctl restart vipd"');
    expect(running.calls()).toEqual(["daemon-reload", "enable vipd.service", "is-active --quiet vipd.service", "start --no-block vipd.service"]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}, 60_000);
