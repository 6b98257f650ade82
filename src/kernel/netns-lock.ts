// One vipd per network namespace. Two would fight over the same fence table
// and addresses: a second one starting up would rebuild the table and remove
// the first one's VIPs as "left over" (design.md §6, I6) before etcd could
// tell it that the first one is alive.
//
// The lock is an abstract Unix socket, `@vipd`. Abstract socket names belong
// to the network namespace, and the kernel releases one when its process
// ends, however it ends (a SIGKILL, an OOM kill): no stale lock file to clean
// up, and a frozen vipd still holds it.
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

const NAME = "vipd";

export interface NetnsLock {
  release(): void;
}

/** Claims the lock, or says which process holds it (null when it cannot be found). */
export function claimNetnsLock(): { ok: true; lock: NetnsLock } | { ok: false; holder: number | null } {
  try {
    const server = Bun.listen({
      unix: `\0${NAME}`,
      // Nobody has anything to say to the lock: close whoever connects.
      socket: { open: (s) => void s.end(), data() {} },
    });
    return { ok: true, lock: { release: () => server.stop(true) } };
  } catch (err) {
    if ((err as { code?: string }).code !== "EADDRINUSE") throw err;
    return { ok: false, holder: holderOf(`@${NAME}`) };
  }
}

/** The PID whose open files include the abstract socket, by /proc/net/unix and /proc/<pid>/fd. */
function holderOf(path: string): number | null {
  try {
    const inodes = new Set(
      readFileSync("/proc/net/unix", "utf8").split("\n").slice(1)
        .map((l) => l.trim().split(/\s+/))
        .filter((f) => f[7] === path)
        .map((f) => `socket:[${f[6]}]`),
    );
    for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
      let fds: string[];
      try {
        fds = readdirSync(`/proc/${pid}/fd`);
      } catch {
        continue;
      }
      for (const fd of fds) {
        try {
          if (inodes.has(readlinkSync(`/proc/${pid}/fd/${fd}`))) return Number(pid);
        } catch {
          // closed meanwhile
        }
      }
    }
  } catch {
    // /proc unreadable: the message goes without a PID
  }
  return null;
}
