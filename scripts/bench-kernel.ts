// Kernel-layer benchmark: how long vipd takes to add+announce, refresh and
// delete a VIP, against doing the same with `ip` and `arping` as separate
// processes. Runs as root in a lab segment it creates and always removes.
//
//   bun scripts/bench-kernel.ts            print the results
//   bun scripts/bench-kernel.ts --record   also write them into BENCHMARKS.md
import { Announcer } from "../src/kernel/announce.ts";
import { Rtnl } from "../src/kernel/rtnl.ts";
import { type Latency, latency, machine, ms, recordSection, timed } from "./lib/bench.ts";
import { type Host, inNetns, Segment } from "../test/lab/netns.ts";

const ROUNDS = 1000;
/** Discarded rounds first, so JIT compilation and cold caches are not measured. */
const WARMUP = 20;
/**
 * iputils arping has no way to exit right after sending: -c1 waits out its 1 s
 * interval, -i 0 never exits, and -w and -i take whole seconds only. Each
 * reference add+announce therefore costs about a second, and 100 rounds is
 * what fits in a run.
 */
const ARPING_ROUNDS = 100;
const LIFETIME = 5;
/** The same lifetime for the `ip` reference. */
const IP_LIFETIME = ["valid_lft", `${LIFETIME}`, "preferred_lft", `${LIFETIME}`];
const LINK = "eth0";
const VIPS = [
  { family: "IPv4", ip: "192.0.2.15", prefix: 32, extra: [] as string[] },
  // nodad, as vipd's IFA_F_NODAD: the address is usable at once.
  { family: "IPv6", ip: "2001:db8::15", prefix: 128, extra: ["nodad"] },
] as const;
type Vip = (typeof VIPS)[number];
const COMMAND = "npm run bench:kernel -- --record";
const BENCHMARKS_MD = new URL("../BENCHMARKS.md", import.meta.url).pathname;

interface Ops {
  addAnnounce: number[];
  refresh: number[];
  remove: number[];
}

interface Row {
  operation: string;
  vipd: Latency;
  reference: string;
  ref: Latency;
}

async function main(): Promise<void> {
  const record = process.argv.includes("--record");
  const seg = await Segment.create(["a", "b"]);
  try {
    const rows = await measure(seg, seg.host("a"));
    const report = await render(rows);
    console.log(report);
    if (record) await recordSection(BENCHMARKS_MD, "kernel", report);
  } finally {
    await seg.destroy();
  }
}

async function measure(seg: Segment, host: Host): Promise<Row[]> {
  const rtnl = inNetns(host.ns, () => Rtnl.open());
  try {
    const link = await rtnl.link(LINK);
    const announcer = inNetns(host.ns, () => Announcer.open(link));
    const rows: Row[] = [];
    try {
      for (const vip of VIPS) {
        log(`vipd ${vip.family}: ${ROUNDS} rounds`);
        const mine = await rounds(ROUNDS, (ops) => vipdRound(rtnl, announcer, vip, ops));
        log(`ip ${vip.family}: ${ROUNDS} rounds`);
        const theirs = await rounds(ROUNDS, (ops) => ipRound(seg, host, vip, ops));
        const ipAdd = `\`ip addr add ${vip.ip}/${vip.prefix}\`${vip.family === "IPv6" ? " (no NA: arping is IPv4 only)" : " alone"}`;
        if (vip.family === "IPv4") {
          log(`ip + arping: ${ARPING_ROUNDS} rounds`);
          const arping = await rounds(ARPING_ROUNDS, (ops) => arpingRound(seg, host, vip, ops));
          rows.push(row(`add+announce ${vip.family}`, mine.addAnnounce, `\`ip addr add\` + \`arping -U -c1\` (${ARPING_ROUNDS} rounds)`, arping.addAnnounce));
        }
        rows.push(
          row(`add+announce ${vip.family}`, mine.addAnnounce, ipAdd, theirs.addAnnounce),
          row(`refresh ${vip.family}`, mine.refresh, "`ip addr change … valid_lft 5 preferred_lft 5`", theirs.refresh),
          row(`delete ${vip.family}`, mine.remove, "`ip addr del`", theirs.remove),
        );
      }
    } finally {
      announcer.close();
    }
    return rows;
  } finally {
    rtnl.close();
  }
}

/** Runs `round` WARMUP + n times and keeps the last n samples of each operation. */
async function rounds(n: number, round: (into: Ops) => Promise<void>): Promise<Ops> {
  const ops: Ops = { addAnnounce: [], refresh: [], remove: [] };
  for (let i = 0; i < WARMUP + n; i++) await round(ops);
  return { addAnnounce: ops.addAnnounce.slice(-n), refresh: ops.refresh.slice(-n), remove: ops.remove.slice(-n) };
}

async function vipdRound(rtnl: Rtnl, announcer: Announcer, vip: Vip, into: Ops): Promise<void> {
  into.addAnnounce.push(
    await timed(async () => {
      await rtnl.replaceAddress(LINK, vip.ip, LIFETIME);
      announcer.announceOnce(vip.ip);
    }),
  );
  into.refresh.push(await timed(() => rtnl.replaceAddress(LINK, vip.ip, LIFETIME)));
  let removed = false;
  into.remove.push(await timed(async () => (removed = await rtnl.deleteAddress(LINK, vip.ip))));
  // A delete that found nothing would time a no-op.
  if (!removed) throw new Error(`${vip.ip} was not on ${LINK} when the benchmark deleted it`);
}

async function ipRound(seg: Segment, host: Host, vip: Vip, into: Ops): Promise<void> {
  const cidr = `${vip.ip}/${vip.prefix}`;
  into.addAnnounce.push(await timed(() => seg.ip(host.ns, "addr", "add", cidr, "dev", LINK, ...IP_LIFETIME, ...vip.extra)));
  into.refresh.push(await timed(() => seg.ip(host.ns, "addr", "change", cidr, "dev", LINK, ...IP_LIFETIME, ...vip.extra)));
  into.remove.push(await timed(() => seg.ip(host.ns, "addr", "del", cidr, "dev", LINK)));
}

async function arpingRound(seg: Segment, host: Host, vip: Vip, into: Ops): Promise<void> {
  const cidr = `${vip.ip}/${vip.prefix}`;
  into.addAnnounce.push(
    await timed(async () => {
      await seg.ip(host.ns, "addr", "add", cidr, "dev", LINK, ...IP_LIFETIME);
      // -w 2: arping's own deadline, a guard in case -c1 ever waits longer.
      await seg.exec(host, ["arping", "-q", "-U", "-c1", "-w", "2", "-I", LINK, vip.ip]);
    }),
  );
  await seg.ip(host.ns, "addr", "del", cidr, "dev", LINK);
}

function row(operation: string, vipd: number[], reference: string, ref: number[]): Row {
  return { operation, vipd: latency(vipd), reference, ref: latency(ref) };
}

async function render(rows: Row[]): Promise<string> {
  const cell = (s: Latency) => `${ms(s.median)} / ${ms(s.p99)} / ${ms(s.mean)}`;
  const ratio = (r: Row) => `${(r.ref.median / r.vipd.median).toFixed(r.ref.median / r.vipd.median >= 100 ? 0 : 1)}×`;
  return [
    "## Kernel layer",
    "",
    `Command: \`${COMMAND}\` (as root) · ${new Date().toISOString().slice(0, 10)} · ${await machine()} · Bun ${Bun.version}`,
    "",
    `vipd: ${ROUNDS} rounds per family, in process (\`performance.now()\`), each round`,
    `add+announce (\`replaceAddress\` with a ${LIFETIME} s lifetime, then \`announceOnce\`: GARP request + reply`,
    "for IPv4, one unsolicited NA for IPv6), refresh (`replaceAddress` on the existing address), delete.",
    `Reference: the same with \`ip -n NS addr …\` and \`ip netns exec NS arping\` as separate processes, ${ROUNDS} rounds`,
    `(add carries the same ${LIFETIME} s lifetime). iputils arping cannot exit right after sending — \`-c1\` waits out`,
    "its 1 s interval, `-i 0` never exits, `-w`/`-i` take whole seconds — so the add+announce reference with arping",
    `ran ${ARPING_ROUNDS} rounds and is dominated by that wait. ${WARMUP} warm-up rounds were discarded before each series.`,
    "",
    "| operation | vipd median / p99 / mean (ms) | reference | reference median / p99 / mean (ms) | reference ÷ vipd (median) |",
    "|---|---|---|---|---|",
    ...rows.map((r) => `| ${r.operation} | ${cell(r.vipd)} | ${r.reference} | ${cell(r.ref)} | ${ratio(r)} |`),
  ].join("\n");
}

function log(what: string): void {
  console.error(`bench-kernel: ${what}`);
}

try {
  await main();
} catch (e) {
  console.error(`bench-kernel: ${e instanceof Error ? e.message : String(e)}`);
  process.exitCode = 1;
}
