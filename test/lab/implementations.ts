// The VIP implementations the lab can run on its nodes, each configured the way
// its users typically do: vipd with its defaults, keepalived as in the kubeadm
// HA guide, ucarp with its defaults and `ip` up/down scripts. start() writes
// the node's config into its private directory and spawns the program inside
// the node's namespace; stopping and faults go through the returned process.
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_HOLD_MS } from "../../src/election/proof.ts";
import { type LabProcess, type NodeContext, REPO_ROOT } from "./cluster.ts";

export type ImplementationId = "vipd" | "keepalived" | "ucarp";

export interface VipImplementation {
  readonly id: ImplementationId;
  /** One line for tables and the demo: what runs and with which settings. */
  readonly description: string;
  /** vipd's hold time in ms, from which its bounds follow (bounds.ts); null for the others. */
  readonly holdMs: number | null;
  start(node: NodeContext): Promise<LabProcess>;
  /**
   * Starts a second instance on `node` under another node's name (a cloned
   * VM that kept its host name), for the fault that checks it is refused.
   * Only implementations with node names have it.
   */
  startUnderName?(node: NodeContext, name: string, opts: { healthPort: number }): LabProcess;
  /** The program to run its commands (`vipd drain …`), for the planned-move faults. Only vipd has it. */
  readonly command?: readonly string[];
}

export interface VipdOptions {
  /** Run the compiled binary at this path instead of `bun src/main.ts`. */
  binary?: string;
  /** --hold-time in ms; vipd's default when absent. */
  holdMs?: number;
}

export function vipd(opts: VipdOptions = {}): VipImplementation {
  const holdMs = opts.holdMs ?? DEFAULT_HOLD_MS;
  const program = opts.binary ? [opts.binary] : [process.execPath, join(REPO_ROOT, "src", "main.ts")];
  const argv = (node: NodeContext, name: string, port: number) => {
    const config = join(node.dir, "vipd.yaml");
    writeFileSync(config, `apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: ${node.vip}\nlink: ${node.host.link}\n`);
    return [
      ...program, "run",
      "--config", config,
      "--node-name", name,
      "--etcd-endpoints", node.etcdEndpoint,
      "--health-listen", `127.0.0.1:${port}`,
      "--log-format", "json",
      "--apiserver-url", node.apiserverUrl,
      ...(opts.holdMs ? ["--hold-time", String(opts.holdMs)] : []),
    ];
  };
  return {
    id: "vipd",
    description: `vipd (${opts.binary ? "binary" : "from source"}), hold time ${holdMs} ms${opts.holdMs ? "" : " (default)"}, local etcd member, apiserver gate`,
    holdMs,
    command: program,
    async start(node) {
      return node.spawn("vipd", argv(node, node.name, 8099));
    },
    startUnderName(node, name, { healthPort }) {
      return node.spawn(`vipd-as-${name}`, argv(node, name, healthPort));
    },
  };
}

/** Whether vipd can run from this checkout (the agent's entry point exists). */
export function vipdAvailable(binary?: string): boolean {
  return existsSync(binary ?? join(REPO_ROOT, "src", "main.ts"));
}

export interface KeepalivedOptions {
  /** VRRP over unicast to the peers' addresses instead of multicast (224.0.0.18). */
  unicast?: boolean;
}

/**
 * keepalived as in kubeadm's "Options for software load balancing" guide:
 * one VRRP instance, n1 MASTER priority 101, the others BACKUP priority 100,
 * advert_int 1 (the default), PASS authentication, and a check_apiserver
 * script (interval 3, weight -2, fall 10, rise 2) probing the local apiserver.
 */
export function keepalived(opts: KeepalivedOptions = {}): VipImplementation {
  return {
    id: "keepalived",
    description: `keepalived (Debian), kubeadm HA guide config: priorities 101/100/100, advert_int 1, ${opts.unicast ? "unicast" : "multicast"} VRRP`,
    holdMs: null,
    async start(node) {
      const check = join(node.dir, "check_apiserver.sh");
      writeFileSync(check, [
        "#!/bin/sh",
        "errorExit() { echo \"*** $*\" 1>&2; exit 1; }",
        `curl -sfk --max-time 2 ${node.apiserverUrl} -o /dev/null || errorExit "Error GET ${node.apiserverUrl}"`,
        "",
      ].join("\n"), { mode: 0o700 });
      const master = node.index === 0;
      const unicast = opts.unicast
        ? [`    unicast_src_ip ${node.host.ip4}`, "    unicast_peer {", ...node.peers.map((p) => `        ${p.ip4}`), "    }"]
        : [];
      const conf = join(node.dir, "keepalived.conf");
      writeFileSync(conf, [
        "! Configuration File for keepalived (vipd lab, after the kubeadm HA guide)",
        "global_defs {",
        `    router_id ${node.name}`,
        "    enable_script_security",
        "    script_user root",
        "}",
        "vrrp_script check_apiserver {",
        `    script "${check}"`,
        "    interval 3",
        "    weight -2",
        "    fall 10",
        "    rise 2",
        "}",
        "vrrp_instance VI_1 {",
        `    state ${master ? "MASTER" : "BACKUP"}`,
        `    interface ${node.host.link}`,
        "    virtual_router_id 51",
        `    priority ${master ? 101 : 100}`,
        "    advert_int 1",
        ...unicast,
        "    authentication {",
        "        auth_type PASS",
        "        auth_pass 42",
        "    }",
        "    virtual_ipaddress {",
        `        ${node.vip}`,
        "    }",
        "    track_script {",
        "        check_apiserver",
        "    }",
        "}",
        "",
      ].join("\n"));
      // Foreground (-n), log to the console (-l) in detail (-D), VRRP only (-P);
      // own pid files, so instances in several namespaces do not collide.
      return node.spawn("keepalived", [
        "/usr/sbin/keepalived", "-n", "-l", "-D", "-P",
        "-f", conf,
        "-p", join(node.dir, "keepalived.pid"),
        "-r", join(node.dir, "vrrp.pid"),
        "-c", join(node.dir, "checkers.pid"),
      ]);
    },
  };
}

/**
 * ucarp with its defaults (advbase 1, advskew 0, deadratio 3, no preemption),
 * -z so that a graceful stop runs the downscript, and up/down scripts that
 * add or delete the VIP with `ip` (ucarp itself sends the gratuitous ARPs).
 */
export function ucarp(): VipImplementation {
  return {
    id: "ucarp",
    description: "ucarp (Debian), defaults: advbase 1, advskew 0, no preempt; -z; ip addr add/del scripts",
    holdMs: null,
    async start(node) {
      const up = join(node.dir, "vip-up.sh");
      const down = join(node.dir, "vip-down.sh");
      // ucarp calls the scripts with the interface and the VIP as $1 and $2.
      writeFileSync(up, "#!/bin/sh\nexec /usr/sbin/ip addr add \"$2\"/32 dev \"$1\"\n", { mode: 0o700 });
      writeFileSync(down, "#!/bin/sh\nexec /usr/sbin/ip addr del \"$2\"/32 dev \"$1\"\n", { mode: 0o700 });
      return node.spawn("ucarp", [
        "/usr/sbin/ucarp",
        `--interface=${node.host.link}`,
        `--srcip=${node.host.ip4}`,
        "--vhid=42",
        "--pass=vipdlab",
        `--addr=${node.vip}`,
        `--upscript=${up}`,
        `--downscript=${down}`,
        "--shutdown",
      ]);
    },
  };
}

/** Parses `vipd,keepalived,ucarp` into implementations. */
export function implementationsByName(list: string, vipdOpts: VipdOptions = {}): VipImplementation[] {
  return list.split(",").map((s) => s.trim()).filter(Boolean).map((name) => {
    switch (name) {
      case "vipd": return vipd(vipdOpts);
      case "keepalived": return keepalived();
      case "keepalived-unicast": return keepalived({ unicast: true });
      case "ucarp": return ucarp();
      default: throw new Error(`unknown implementation "${name}" (wanted vipd, keepalived, keepalived-unicast or ucarp)`);
    }
  });
}
