// `vipd wait`: polls this node's own /healthz or /status until vipd is
// healthy, stands for every VIP (in its queue or holding it) or holds a VIP,
// for cloud-init and scripts that must not go on before it (a kubeadm join
// against the VIP, say). A vipd that is not listening yet is waited for
// too: it may still be starting.
import { formatHostPort, type HostPort } from "../config/fields.ts";

export type WaitFor = "healthy" | "standing" | "holding";

/** One VIP of /status, as far as wait reads it; `standing` is absent from a vipd older than `--for standing`. */
interface StatusVip {
  ip: string;
  owner: boolean;
  standing?: boolean;
  standingReason?: string;
}

const POLL_MS = 250;
const REQUEST_MS = 1000;

/** Resolves when the condition holds, or after timeoutMs with the last thing it saw. */
export async function waitFor(what: WaitFor, listen: HostPort, timeoutMs: number): Promise<{ ok: boolean; detail: string }> {
  const base = `http://${formatHostPort(listen)}`;
  const end = performance.now() + timeoutMs;
  let last = "no answer yet";
  for (;;) {
    try {
      if (what === "healthy") {
        const res = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(REQUEST_MS) });
        const body = (await res.text()).trim();
        if (res.status === 200) return { ok: true, detail: "healthy" };
        last = `/healthz answered ${res.status}: ${body}`;
      } else if (what === "standing") {
        const res = await fetch(`${base}/status`, { signal: AbortSignal.timeout(REQUEST_MS) });
        const r = judgeStanding(((await res.json()) as { vips?: StatusVip[] }).vips ?? []);
        if (r.ok) return r;
        last = r.detail;
      } else {
        const res = await fetch(`${base}/status`, { signal: AbortSignal.timeout(REQUEST_MS) });
        const s = (await res.json()) as { vips?: StatusVip[] };
        const held = (s.vips ?? []).filter((v) => v.owner).map((v) => v.ip);
        if (held.length) return { ok: true, detail: `holding ${held.join(", ")}` };
        last = `holds none of ${(s.vips ?? []).map((v) => v.ip).join(", ") || "its VIPs"}`;
      }
    } catch (err) {
      last = `no answer on ${base}: ${err instanceof Error ? err.message : String(err)}`;
    }
    const left = end - performance.now();
    if (left <= 0) return { ok: false, detail: last };
    await new Promise((r) => setTimeout(r, Math.min(POLL_MS, left)));
  }
}

/** Every VIP standing: done, saying as what; otherwise each VIP that is not, and why. */
export function judgeStanding(vips: readonly StatusVip[]): { ok: boolean; detail: string } {
  // Before the agent has its VIPs there is nothing to stand for yet, which is not "standing".
  if (vips.length === 0) return { ok: false, detail: "/status lists no VIPs yet" };
  const not = vips.filter((v) => v.standing !== true);
  if (not.length === 0) return { ok: true, detail: `standing for ${vips.map((v) => `${v.ip} (${v.standingReason})`).join(", ")}` };
  return {
    ok: false,
    detail: not.map((v) => `${v.ip} ${v.standing === false ? v.standingReason : "not standing: this vipd does not report standing (older than vipd wait --for standing)"}`).join("; "),
  };
}
