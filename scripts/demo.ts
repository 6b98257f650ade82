// The live demo, README's first command (`npm run demo`, as root):
// installs missing Debian packages, builds vipd, starts a 3-node lab (etcd
// cluster, stand-in kube-apiservers, vipd on every node, a client probing the
// VIP every 10 ms), then stops the VIP holder gracefully, crashes the next one,
// and prints a timeline of each failover. Everything lives in network
// namespaces and is removed on exit, Ctrl-C or failure.
//
//   npm run demo [-- --impl keepalived|ucarp|vipd-source] [--no-build]
import { parseArgs } from "node:util";
import { join } from "node:path";
import { Lab, labNow, REPO_ROOT } from "../test/lab/cluster.ts";
import { FAULTS, type Fault } from "../test/lab/faults.ts";
import { keepalived, ucarp, vipd, vipdAvailable, type VipImplementation } from "../test/lab/implementations.ts";
import { sleep } from "../test/lab/sh.ts";
import { formatMs, type ProbeSample } from "../test/lab/stats.ts";
import { runTrial, steady, type TrialResult, withLabInstruments } from "../test/lab/trial.ts";

const { values: args } = parseArgs({
  options: {
    impl: { type: "string", default: "vipd" },
    "no-build": { type: "boolean", default: false },
  },
});

const tty = process.stdout.isTTY;
const ESC = (code: string) => (s: string) => (tty ? `\x1b[${code}m${s}\x1b[0m` : s);
const bold = ESC("1");
const dim = ESC("2");
const red = ESC("31");
const green = ESC("32");
const yellow = ESC("33");
const cyan = ESC("36");
const NODE_COLOUR: Record<string, (s: string) => string> = { n1: ESC("34"), n2: ESC("35"), n3: ESC("36") };
const node = (n: string) => bold((NODE_COLOUR[n] ?? cyan)(n));

if (process.getuid?.() !== 0) {
  console.error(red("The demo creates network namespaces: run it as root (sudo npm run demo)."));
  process.exit(2);
}

/** A spinner on one line while `work` runs; `step` changes its text. */
async function withSpinner<T>(work: (step: (s: string) => void) => Promise<T>): Promise<T> {
  const frames = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏";
  let text = "";
  let i = 0;
  const started = performance.now();
  let stepStarted = started;
  const draw = () => {
    if (tty) process.stdout.write(`\r\x1b[K${cyan(frames[i++ % frames.length]!)} ${text} ${dim(`${((performance.now() - stepStarted) / 1000).toFixed(1)} s`)}`);
  };
  const timer = setInterval(draw, 80);
  const step = (s: string) => {
    if (text) finish();
    text = s;
    stepStarted = performance.now();
    if (!tty) console.log(`… ${s}`);
    draw();
  };
  const finish = () => {
    if (tty) process.stdout.write(`\r\x1b[K${green("✓")} ${text} ${dim(`${((performance.now() - stepStarted) / 1000).toFixed(1)} s`)}\n`);
  };
  try {
    const out = await work(step);
    finish();
    return out;
  } finally {
    clearInterval(timer);
  }
}

async function run(argv: string[], what: string): Promise<void> {
  const p = Bun.spawn(argv, { cwd: REPO_ROOT, stdout: "inherit", stderr: "inherit", stdin: "ignore" });
  if ((await p.exited) !== 0) throw new Error(`${what} failed (${argv.join(" ")})`);
}

console.log(bold("vipd demo") + dim(" — one floating IP for a 3-node control plane, on a simulated network"));
await run(["bash", join(REPO_ROOT, "scripts", "setup-system.sh")], "installing the Debian packages");

let impl: VipImplementation;
switch (args.impl) {
  case "keepalived": impl = keepalived(); break;
  case "ucarp": impl = ucarp(); break;
  case "vipd-source": impl = vipd(); break;
  case "vipd": {
    const binary = join(REPO_ROOT, "dist", "vipd");
    if (!args["no-build"]) {
      console.log(dim("building dist/vipd …"));
      await run([process.execPath, join(REPO_ROOT, "build.ts"), process.arch === "arm64" ? "arm64" : "x64"], "building vipd");
    }
    if (!vipdAvailable(binary)) throw new Error(`no ${binary}: build it with \`bun build.ts\``);
    impl = vipd({ binary });
    break;
  }
  default:
    console.error(`--impl wants vipd, vipd-source, keepalived or ucarp, not ${args.impl}`);
    process.exit(2);
}

const lab = await withSpinner((step) => Lab.start({ onStep: step }));
const t0 = labNow();
const clock = (t: number) => dim(`${((t - t0) / 1000).toFixed(3).padStart(8)} s`);

try {
  console.log(`${bold("lab")}: nodes ${lab.nodes.map((n) => `${node(n.name)} ${dim(n.host.ip4)}`).join(", ")}; client ${dim(lab.client.ip4)}; VIP ${bold(lab.vip)}`);
  console.log(`${bold("running")}: ${impl.description}\n`);
  await withLabInstruments(lab, async (env) => {
    // Live: one line per change of VIP ownership and of what the client sees.
    // Probes finish out of order (a timeout reports 300 ms after it started),
    // so events wait in a queue and print in order of when they happened,
    // once nothing earlier can still arrive.
    const queue: { t: number; text: string }[] = [];
    const DELAY_MS = 350;
    let seen: string | null = null;
    let failingSince: number | null = null;
    const pending: ProbeSample[] = [];
    const flush = setInterval(() => {
      const horizon = labNow() - DELAY_MS;
      pending.sort((a, b) => a.t - b.t);
      while (pending.length && pending[0]!.t <= horizon) {
        const s = pending.shift()!;
        if (s.ok) {
          const gap = failingSince !== null ? ` ${yellow(`after ${formatMs(s.d - failingSince)} without an answer`)}` : "";
          if (s.node !== seen || failingSince !== null) queue.push({ t: s.d, text: `client ${green("✓")} answered by ${node(s.node)}${gap}` });
          seen = s.node;
          failingSince = null;
        } else if (failingSince === null) {
          failingSince = s.t;
          queue.push({ t: s.t, text: `client ${red("✗")} no answer (${s.error})` });
        }
      }
      queue.sort((a, b) => a.t - b.t);
      while (queue.length && queue[0]!.t <= horizon) {
        const e = queue.shift()!;
        console.log(`${clock(e.t)}  ${e.text}`);
      }
    }, 50);
    env.recorder.onEdge((e) => {
      const holders = env.recorder.holders();
      const two = holders.length > 1 ? red(`  ⚠ ${holders.length} holders: ${holders.join(", ")}`) : "";
      // A release on a node whose agent is dead was the kernel's doing: the
      // fence element or the address lifetime vipd set ran out with nobody
      // left to refresh it. The fence may cut the node off before the address goes.
      const byKernel = !e.held && !lab.node(e.node).vip?.running
        ? dim(env.recorder.hasAddress(e.node)
          ? " (its agent is dead: its nftables fence expired; the address is still there, fenced)"
          : " (its agent is dead: the kernel let the address expire)")
        : "";
      queue.push({ t: e.t, text: e.held ? `${node(e.node)} ${green("●")} holds ${lab.vip}${two}` : `${node(e.node)} ${dim("○")} released ${lab.vip}${byKernel}${two}` });
    });
    env.prober.onSample((s) => pending.push(s));
    const say = (text: string) => queue.push({ t: labNow(), text });

    const failovers: { fault: Fault; r: TrialResult }[] = [];
    for (const fault of [FAULTS.graceful, { ...FAULTS.crash, holdMs: 10_000 }]) {
      const holder = await steady(env, impl, { timeoutMs: 40_000 });
      say(bold(`▶ ${fault.title} on the holder, ${node(holder.name)}`));
      const r = await runTrial(env, impl, fault, 0);
      failovers.push({ fault, r });
      say(dim(`  ${fault.id}: fault over, ${node(r.victim)} restarted; the cluster settles`));
    }
    await sleep(DELAY_MS + 100);
    clearInterval(flush);

    console.log(`\n${bold("timeline of each failover")}`);
    for (const { fault, r } of failovers) {
      const overlapText = r.overlapMs === 0 ? green("overlap = 0") : red(`overlap = ${formatMs(r.overlapMs)} (two holders!)`);
      console.log(`  ${bold(fault.title)} on ${node(r.victim)}`);
      console.log(`    VIP left ${node(r.victim)}         ${r.victimReleasedMs === null ? red("never (left behind)") : `+${formatMs(r.victimReleasedMs)}`}`);
      console.log(`    new holder          ${r.newHolder ? `${node(r.newHolder)} at +${formatMs(r.newHolderMs)}` : red("none")}`);
      console.log(`    client outage       ${r.outageMs < 100 ? green(formatMs(r.outageMs)) : yellow(formatMs(r.outageMs))}`);
      console.log(`    ${overlapText}`);
    }
  });
} finally {
  await lab.destroy();
  console.log(dim("\nlab removed: namespaces, etcd, apiservers and agents are gone."));
}
process.exit(0);
