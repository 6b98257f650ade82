// A Debian 12 root tree for booting systemd in a container (container.ts):
// debootstrap's minbase with systemd, dbus and curl, built once per machine
// and kept under /var/cache/vipd-lab/, named by a hash of the recipe, so a
// changed recipe builds a new tree instead of reusing a stale one. The
// container boots it with --volatile=overlay: every write goes to a tmpfs
// and the cached tree never changes.
//
// Why not the host's own /usr under --volatile=yes (measured on the lab
// machine, a Debian 12 VM on 2 cores shared with other work): the
// container then starts from an empty /etc, so systemd treats it as a
// first boot: it waits on the console for systemd-firstboot's questions
// (still booting after 75 s) and enables every unit the host has installed
// (preset-all: etcd, keepalived, PostgreSQL, cloud-init, systemd-networkd
// in the lab's namespace). With both switched off (systemd.firstboot=off,
// a "disable *" preset) it reached "running" in 1.7-2.3 s (3.8 s under
// load), against 1.2 s for this tree, because it first creates its
// accounts and /etc and loads every unit file the host has; and what it
// holds is whatever the host happens to have installed. This tree costs one
// debootstrap per machine (65 s on an idle machine, 110-140 s under load)
// and 250 MB.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { onExit } from "./exit.ts";
import { sh } from "./sh.ts";

const CACHE = "/var/cache/vipd-lab";

/** Everything the tree is made from; its hash names the cached tree. */
const RECIPE = {
  suite: "bookworm",
  variant: "minbase",
  // systemd as PID 1, dbus for systemctl's and systemd-analyze's queries,
  // curl for vipd-install (file:// here); minbase has the rest it uses
  // (useradd, sha256sum, tar, awk, cmp).
  include: ["systemd", "systemd-sysv", "dbus", "curl"],
  mirror: "http://deb.debian.org/debian",
  // debootstrap copies these from the machine that builds the tree; the
  // container's systemd would take the builder's host name from the first
  // instead of the one nspawn gives it.
  remove: ["etc/hostname", "etc/resolv.conf"],
} as const;

/** Written last into a finished tree: a tree without it is a build that died half-way. */
const STAMP = ".vipd-lab-recipe.json";

export interface DebianTree {
  readonly dir: string;
  /** Whether this call built it (false: it was in the cache). */
  readonly built: boolean;
  readonly buildMs: number;
}

/** The cached tree for this machine's architecture, built first when missing. */
export async function debianTree(): Promise<DebianTree> {
  const arch = (await sh(["dpkg", "--print-architecture"])).trim();
  const recipe = JSON.stringify({ ...RECIPE, arch });
  const key = createHash("sha256").update(recipe).digest("hex").slice(0, 12);
  const dir = join(CACHE, `debian-${RECIPE.suite}-${arch}-${key}`);
  if (existsSync(join(dir, STAMP)) && readFileSync(join(dir, STAMP), "utf8") === recipe) return { dir, built: false, buildMs: 0 };

  const t0 = performance.now();
  mkdirSync(CACHE, { recursive: true });
  // A tree of our own beside the final one, renamed into place when whole:
  // another process never sees a half-built tree under the final name.
  const building = `${dir}.building-${process.pid}`;
  const unregister = onExit(() => rmSync(building, { recursive: true, force: true }));
  try {
    rmSync(building, { recursive: true, force: true });
    await sh(["debootstrap", `--variant=${RECIPE.variant}`, `--include=${RECIPE.include.join(",")}`, `--arch=${arch}`, RECIPE.suite, building, RECIPE.mirror]);
    // The downloaded packages are not needed to boot it.
    await sh(["find", join(building, "var/cache/apt/archives"), "-name", "*.deb", "-delete"]);
    for (const f of RECIPE.remove) rmSync(join(building, f), { force: true });
    writeFileSync(join(building, STAMP), recipe);
    rmSync(dir, { recursive: true, force: true });
    renameSync(building, dir);
  } finally {
    rmSync(building, { recursive: true, force: true });
    unregister();
  }
  return { dir, built: true, buildMs: performance.now() - t0 };
}
