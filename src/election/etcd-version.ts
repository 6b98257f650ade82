// etcd versions with a bug vipd's operators should hear about at start.
//
// Before 3.4.31 and 3.5.13 a leader stuck on a slow disk or a busy CPU could,
// after losing leadership without noticing, revoke every lease in the
// cluster (etcd issue 15247). For vipd that deletes the agents' keys: every
// queue empties and each VIP moves (never to two holders: the heartbeats'
// claims still fence it, design.md §4). Upgrading etcd is the fix.

const FIXED: Record<string, number> = { "3.4": 31, "3.5": 13 };

/** A warning for this etcd version, or null. Unparsable versions get none. */
export function etcdVersionWarning(version: string): string | null {
  const m = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (!m) return null;
  const [major, minor, patch] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const fixedIn = FIXED[`${major}.${minor}`];
  const before = major < 3 || (major === 3 && minor < 4) || (fixedIn !== undefined && patch < fixedIn);
  if (!before) return null;
  return (
    `etcd ${version} can revoke every lease when a slow leader steps down unnoticed (etcd issue 15247, fixed in 3.4.31 and 3.5.13): ` +
    "each VIP would then move once. Upgrade etcd"
  );
}
