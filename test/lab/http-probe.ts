// What the client's probers share: one HTTP request on a fresh connection
// (no keep-alive: a pooled connection would hide a move of the VIP), and a
// cadence of starts that slow requests do not stretch.

/** Epoch ms on the lab clock, comparable across processes. */
export const now = (): number => performance.timeOrigin + performance.now();

export type ProbeAnswer =
  | { t: number; d: number; ok: true; node: string }
  | { t: number; d: number; ok: false; error: string };

/** GETs url; the stand-in API server answers with its node's name. t and d: start and end. */
export async function probeOnce(url: string, timeoutMs: number): Promise<ProbeAnswer> {
  const t = now();
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), keepalive: false, headers: { connection: "close" } });
    const body = (await r.text()).trim();
    return r.ok ? { t, d: now(), ok: true, node: body } : { t, d: now(), ok: false, error: `HTTP ${r.status}` };
  } catch (e) {
    const name = e instanceof Error ? e.name : "";
    const code = (e as { code?: string }).code;
    return { t, d: now(), ok: false, error: name === "TimeoutError" || name === "AbortError" ? "timeout" : code ?? String(e) };
  }
}

/**
 * Starts tick every everyMs, whether or not earlier ticks have finished,
 * scheduled against absolute times so that slow ticks do not stretch the
 * cadence, until done(); then waits for the ticks still running.
 */
export async function atCadence(everyMs: number, done: () => boolean, tick: () => Promise<unknown>): Promise<void> {
  const pending = new Set<Promise<unknown>>();
  let next = now();
  while (!done()) {
    const p = tick();
    pending.add(p);
    void p.finally(() => pending.delete(p));
    next += everyMs;
    const wait = next - now();
    if (wait > 0) await Bun.sleep(wait);
    else next = now();
  }
  await Promise.all(pending);
}
