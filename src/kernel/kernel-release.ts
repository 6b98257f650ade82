// The oldest kernel vipd runs on, and the check at start. The fence is what
// sets the bar (nft-ruleset.ts cites the commit of each feature):
//
//   3.13  nf_tables, its batches, and the arp family's input/output hooks
//   3.14  the inet family's input/output hooks, `meta nfproto`/`l4proto`
//   4.1   set element timeouts: the fence deadline itself
//   4.8   inverted set lookups (`!= @proven4`), the newest of them
//
// Everything else vipd asks of the kernel is older (rtnetlink with
// IFA_F_NODAD, packet sockets, classic BPF socket filters on netlink and
// packet sockets) or optional (NETLINK_EXT_ACK 4.12, NETLINK_GET_STRICT_CHK
// 4.20: netlink.ts does without them). A distribution kernel that reports
// an older version may carry backports, but vipd cannot tell which: it
// refuses rather than run a fence it cannot vouch for.
import { readFileSync } from "node:fs";

export interface KernelVersion {
  readonly major: number;
  readonly minor: number;
}

export const MINIMUM_KERNEL: KernelVersion = Object.freeze({ major: 4, minor: 8 });

/** "5.15.0-91-generic" → 5.15; null when the release does not start with MAJOR.MINOR. */
export function parseKernelRelease(release: string): KernelVersion | null {
  const m = /^(\d+)\.(\d+)(?:\D|$)/.exec(release.trim());
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : null;
}

/** Why vipd cannot run on the kernel of this release, or null when it can. */
export function kernelTooOld(release: string, minimum: KernelVersion = MINIMUM_KERNEL): string | null {
  const want = `${minimum.major}.${minimum.minor}`;
  const v = parseKernelRelease(release);
  if (!v) return `cannot tell the kernel's version from its release ${JSON.stringify(release.trim())}; vipd needs Linux ${want} or later`;
  if (v.major > minimum.major || (v.major === minimum.major && v.minor >= minimum.minor)) return null;
  return `Linux ${release.trim()} is older than ${want}, the oldest kernel vipd runs on (its nftables fence needs inverted set lookups, Linux 4.8)`;
}

/** The running kernel's release, as uname -r prints it. */
export function readKernelRelease(): string {
  return readFileSync("/proc/sys/kernel/osrelease", "utf8");
}
