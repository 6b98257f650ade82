// `vipd wait`: polls this node's own /healthz or /status until vipd is
// healthy or holds a VIP, for cloud-init and scripts that must not go on
// before it (a kubeadm join against the VIP, say). A vipd that is not
// listening yet is waited for too: it may still be starting.
import type { HostPort } from "../config/fields.ts";
import { formatListen } from "../health/server.ts";

export type WaitFor = "healthy" | "holding";

const POLL_MS = 250;
const REQUEST_MS = 1000;

/** Resolves when the condition holds, or after timeoutMs with the last thing it saw. */
export async function waitFor(what: WaitFor, listen: HostPort, timeoutMs: number): Promise<{ ok: boolean; detail: string }> {
  const base = `http://${formatListen(listen)}`;
  const end = performance.now() + timeoutMs;
  let last = "no answer yet";
  for (;;) {
    try {
      if (what === "healthy") {
        const res = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(REQUEST_MS) });
        const body = (await res.text()).trim();
        if (res.status === 200) return { ok: true, detail: "healthy" };
        last = `/healthz answered ${res.status}: ${body}`;
      } else {
        const res = await fetch(`${base}/status`, { signal: AbortSignal.timeout(REQUEST_MS) });
        const s = (await res.json()) as { vips?: { ip: string; owner: boolean }[] };
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
