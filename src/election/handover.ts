// Planned moves, decided from the cluster view alone (design.md §11).
//
// A drained node stands for nothing. A hand-over request names the node
// that should hold the VIP next and the create revision of its election key
// when the operator asked. Queues are ordered by create revision, so the
// target is next in line exactly when every key ahead of it, but the
// holder's, has moved behind it. Each agent reads the request and acts on its
// own key only:
//   - a waiting key ahead of the target steps back (leaves the queue and joins
//     again, at the back);
//   - the holder steps back once the target is directly behind it, by the
//     same path as a graceful stop: address first, then etcd (invariant I4),
//     so the target takes over at once;
//   - keys behind the target, and the target itself, do nothing.
// A key that has stepped back is newer than the target's, so nobody steps
// back twice. A request whose target key changed (the target restarted, was
// drained, left) no longer matches any key, and nobody acts on it. Nothing
// here can make two holders: every move is a release, and releases are safe.
import { compareRevisions, type DrainValue } from "./keys.ts";
import type { ClusterView } from "./view.ts";

/** Why the node is drained, for logs and /healthz; null: it is not. */
export function drainReason(view: ClusterView, node: string): string | null {
  const d = view.drain(node);
  if (!d) return null;
  return d.drain ? describeDrain(d.drain) : "drained (its drain record is not one vipd wrote; `vipd undrain` clears it)";
}

export function describeDrain(d: DrainValue): string {
  return `drained by ${d.by} at ${d.at}${d.reason ? `: ${d.reason}` : ""}`;
}

/**
 * Whether this run's key for the VIP must step back for a requested
 * hand-over, and why; null when it stays where it is.
 */
export function yieldReason(view: ClusterView, vip: string, me: { node: string; run: string }): string | null {
  const request = view.handover(vip)?.request;
  if (!request || request.to === me.node) return null;
  const queue = view.queue(vip);
  const target = queue.findIndex((c) => c.node === request.to && c.createRevision === request.toRevision);
  const rank = queue.findIndex((c) => c.node === me.node && c.run === me.run);
  if (target < 0 || rank < 0 || compareRevisions(queue[rank]!.createRevision, queue[target]!.createRevision) > 0) return null;
  const asked = `asked by ${request.by} at ${request.at}`;
  if (rank > 0) return `stepping back behind ${request.to} for a hand-over (${asked})`;
  // The holder goes last: while others still stand between it and the target,
  // stepping back would hand the VIP to one of them.
  return target === 1 ? `handing over to ${request.to} (${asked})` : null;
}
