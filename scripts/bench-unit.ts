// How much of the system deploy/vipd.service exposes, by systemd's own
// measure (`systemd-analyze security --offline=true`: 0 is fully locked
// down, 10 is a plain root service), against Debian's keepalived unit on the
// same machine, and what vipd's unit still leaves open and why.
//
//   npm run bench:unit [-- --record]
import { join } from "node:path";
import { machine, recordSection } from "./lib/bench.ts";
import { exposure, KEEPALIVED_UNIT } from "../test/lab/systemd-analyze.ts";
import { sh } from "../test/lab/sh.ts";

const ROOT = join(import.meta.dir, "..");
const UNIT = join(ROOT, "deploy", "vipd.service");
const record = process.argv.slice(2).includes("--record");

/** Why each check vipd's unit fails is left open; systemd-analyze's own description otherwise. */
const WHY: Record<string, string> = {
  "PrivateNetwork=": "the VIPs live in the host's network namespace",
  "RestrictAddressFamilies=~AF_(INET|INET6)": "etcd, the API server probe, /healthz",
  "RestrictAddressFamilies=~AF_PACKET": "gratuitous ARP and neighbour advertisements",
  "RestrictAddressFamilies=~AF_NETLINK": "rtnetlink (addresses, links) and nftables (the fence)",
  "RestrictAddressFamilies=~AF_UNIX": "the one-vipd-per-network-namespace lock, which also carries `vipd reload`",
  "CapabilityBoundingSet=~CAP_NET_ADMIN": "adding addresses, the nftables fence",
  "CapabilityBoundingSet=~CAP_NET_(BIND_SERVICE|BROADCAST|RAW)": "CAP_NET_RAW only: packet sockets for ARP/NDP",
  "AmbientCapabilities=": "how an unprivileged user gets those two capabilities",
  "PrivateUsers=": "capabilities in a private user namespace would not reach the host's network",
  "IPAddressDeny=": "etcd may be on other machines (a drop-in can restrict it to localhost)",
  "MemoryDenyWriteExecute=": "Bun's JavaScript JIT writes executable memory",
  "ProcSubset=": "vipd reads /proc/sys/kernel/random/boot_id",
  "DeviceAllow=": "ProtectClock= adds read access to the RTC; PrivateDevices= hides it anyway",
  "RootDirectory=/RootImage=": "ProtectSystem=strict already makes the host's tree read-only, and vipd reads /etc/machine-id from it",
};

/** A Markdown table cell: a | would end it, even inside backticks. */
const cell = (s: string) => s.replaceAll("|", "\\|");

interface Check {
  name: string;
  description: string;
  exposure: number | null;
}

async function main(): Promise<void> {
  const [vipd, keepalived] = [await exposure(UNIT), await exposure(KEEPALIVED_UNIT)];
  const checks = JSON.parse(await sh(["systemd-analyze", "security", "--offline=true", "--json=short", "--no-pager", UNIT])) as Check[];
  const open = checks.filter((c) => (c.exposure ?? 0) > 0).sort((a, b) => b.exposure! - a.exposure! || a.name.localeCompare(b.name));
  const systemd = (await sh(["systemd-analyze", "--version"])).split("\n")[0]!.trim();
  const body = `## The systemd unit

Command: \`npm run bench:unit -- --record\` · ${new Date().toISOString().slice(0, 10)} · ${await machine()} · ${systemd}

\`systemd-analyze security --offline=true\`, overall exposure (0 = locked down, 10 = a root service with no sandbox):

| unit | exposure |
|---|---|
| \`deploy/vipd.service\` (user vipd, CAP_NET_ADMIN + CAP_NET_RAW, sandboxed) | ${vipd.toFixed(1)} |
| Debian's \`keepalived.service\` (root, every capability) | ${keepalived.toFixed(1)} |

What vipd's unit still leaves open (${open.length} of ${checks.length} checks), and why:

| check | weight | why |
|---|---|---|
${open.map((c) => `| \`${cell(c.name)}\` | ${c.exposure} | ${cell(WHY[c.name] ?? c.description)} |`).join("\n")}`;
  console.log(body);
  if (vipd >= keepalived) throw new Error(`vipd's unit (${vipd}) is not less exposed than keepalived's (${keepalived})`);
  if (record) await recordSection(join(ROOT, "BENCHMARKS.md"), "unit", body);
}

await main();
