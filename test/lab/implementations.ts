// The VIP implementations the lab can run on its nodes, each configured the way
// its users typically do: vipd with its defaults, keepalived as in the kubeadm
// HA guide, ucarp with its defaults and `ip` up/down scripts. start() writes
// the node's config into its private directory and spawns the program inside
// the node's namespace; stopping and faults go through the returned process.
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type LabProcess, type NodeContext, REPO_ROOT } from "./cluster.ts";

export type ImplementationId = "vipd" | "keepalived" | "ucarp";

export interface VipImplementation {
  readonly id: ImplementationId;
  /** One line for tables and the demo: what runs and with which settings. */
  readonly description: string;
  /**
   * The kernel-fence promise, for implementations that make one: after its
   * process dies or freezes, the VIP must leave the node within this many ms.
   */
  readonly fenceMs: number | null;
  /** Lease TTL in ms, for the "another node serves within TTL + 1 s" budget. */
  readonly leaseTtlMs: number | null;
  start(node: NodeContext): Promise<LabProcess>;
}

/** vipd's default lease TTL (DESIGN.md, `election.leaseTTL`). */
export const VIPD_DEFAULT_TTL_S = 3;

export interface VipdOptions {
  /** Run the compiled binary at this path instead of `bun src/main.ts`. */
  binary?: string;
  /** --lease-ttl; vipd's default when absent. */
  leaseTtlS?: number;
}

export function vipd(opts: VipdOptions = {}): VipImplementation {
  const ttlS = opts.leaseTtlS ?? VIPD_DEFAULT_TTL_S;
  const program = opts.binary ? [opts.binary] : [process.execPath, join(REPO_ROOT, "src", "main.ts")];
  return {
    id: "vipd",
    description: `vipd (${opts.binary ? "binary" : "from source"}), lease TTL ${ttlS} s${opts.leaseTtlS ? "" : " (default)"}, local etcd member, apiserver gate`,
    // The lease cannot outlive its TTL at the server; the kernel lifetime is
    // whole seconds and expiry may run up to ~1 s late.
    fenceMs: ttlS * 1000 + 1000,
    leaseTtlMs: ttlS * 1000,
    async start(node) {
      const config = join(node.dir, "vipd.yaml");
      writeFileSync(config, `apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: ${node.vip}\nlink: ${node.host.link}\n`);
      return node.spawn("vipd", [
        ...program, "run",
        "--config", config,
        "--node-name", node.name,
        "--etcd-endpoints", node.etcdEndpoint,
        "--health-listen", "127.0.0.1:8099",
        "--log-format", "json",
        "--apiserver-url", node.apiserverUrl,
        ...(opts.leaseTtlS ? ["--lease-ttl", String(opts.leaseTtlS)] : []),
      ]);
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
    fenceMs: null,
    leaseTtlMs: null,
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
    fenceMs: null,
    leaseTtlMs: null,
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
