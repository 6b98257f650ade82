// Live reload, both ends. In `vipd run`, a Reloader re-reads the
// configuration on SIGHUP or on a request from `vipd reload`, has the agent
// apply it (Agent.reload), logs the outcome and answers it. `vipd reload`
// sends the request over the network namespace's vipd socket
// (kernel/netns-lock.ts) and prints the answer. The answer is one line of
// JSON, so an agent and a newer or older `vipd reload` still understand
// each other.
import type { ReloadOutcome } from "../agent.ts";
import type { Settings, VipSettings } from "../config/index.ts";
import { describeError, type Logger } from "../log.ts";

/** The one request the socket takes. */
export const RELOAD_REQUEST = "reload";

export interface VipRef {
  readonly ip: string;
  readonly link: string;
}

export type ReloadAnswer =
  | {
      readonly result: "reloaded";
      readonly pid: number;
      readonly config: string | null;
      readonly added: readonly VipRef[];
      readonly removed: readonly VipRef[];
      readonly kept: readonly VipRef[];
      /** Removed VIPs still being released when the agent answered. */
      readonly leaving: readonly string[];
      /** Changed settings applied now ("log.level"). */
      readonly live: readonly string[];
      /** Changed settings that wait for a restart ("election.holdTime"). */
      readonly restart: readonly string[];
    }
  /** The configuration did not validate: nothing changed. */
  | { readonly result: "invalid"; readonly pid: number; readonly config: string | null; readonly problems: readonly string[] }
  /** It validated but could not be applied: nothing changed. */
  | { readonly result: "failed"; readonly pid: number; readonly config: string | null; readonly error: string };

export type Reread = { ok: true; settings: Settings } | { ok: false; problems: string[] };

export interface ReloaderDeps {
  /** Reads the file, flags and environment again, through the same validation as at start. */
  readonly reread: () => Reread;
  readonly apply: (settings: Settings) => Promise<ReloadOutcome>;
  /** Called when live settings changed, with the settings now in force. */
  readonly applyLive: (settings: Settings) => void;
  /** Counts each reload by how it ended (vipd_config_reloads_total). */
  readonly counted: (result: ReloadAnswer["result"]) => void;
  readonly log: Logger;
  readonly config: string | null;
  readonly pid: number;
}

/**
 * Reloads one at a time. A request that comes while one runs gets the next
 * reload, which starts after it and reads the file afresh; every request
 * that comes meanwhile shares that one. So a burst of signals or requests
 * costs at most two reloads, and none reads the file before it was asked to.
 */
export class Reloader {
  #running: Promise<ReloadAnswer> | null = null;
  #next: Promise<ReloadAnswer> | null = null;

  constructor(private readonly d: ReloaderDeps) {}

  /** Reloads (`trigger` names who asked, for the log) and resolves with the outcome. */
  request(trigger: string): Promise<ReloadAnswer> {
    if (this.#next) return this.#next;
    if (!this.#running) return this.#start(trigger);
    this.#next = this.#running.then(() => {
      this.#next = null;
      return this.#start(trigger);
    });
    return this.#next;
  }

  /** One request line from the socket, one answer line. */
  async answer(request: string): Promise<string> {
    if (request !== RELOAD_REQUEST) return JSON.stringify({ error: `unknown request ${JSON.stringify(request)}; this vipd takes "${RELOAD_REQUEST}"` });
    return JSON.stringify(await this.request("vipd reload"));
  }

  #start(trigger: string): Promise<ReloadAnswer> {
    const p = this.#reload(trigger).then((a) => {
      this.d.counted(a.result);
      return a;
    }).finally(() => {
      if (this.#running === p) this.#running = null;
    });
    this.#running = p;
    return p;
  }

  async #reload(trigger: string): Promise<ReloadAnswer> {
    const { log, config, pid } = this.d;
    const read = this.d.reread();
    if (!read.ok) {
      log.error("configuration not reloaded: it is not valid; running as before", { trigger, config, problems: read.problems.join(" ") });
      return { result: "invalid", pid, config, problems: read.problems };
    }
    let o: ReloadOutcome;
    try {
      o = await this.d.apply(read.settings);
    } catch (err) {
      log.error("configuration not reloaded; running as before", { trigger, config, error: describeError(err) });
      return { result: "failed", pid, config, error: describeError(err) };
    }
    if (o.live.length) this.d.applyLive(o.inForce);
    const refs = (vs: readonly VipSettings[]) => vs.map((v) => ({ ip: v.ip, link: v.link }));
    const names = (vs: readonly VipSettings[]) => vs.map((v) => `${v.ip}@${v.link}`).join(",") || undefined;
    log.info("configuration reloaded", { trigger, config, added: names(o.added), removed: names(o.removed), kept: o.kept.length, live: o.live.join(",") || undefined });
    if (o.restart.length) log.warn(`changed settings need a restart to apply; running with their old values: ${o.restart.join(", ")}`, { settings: o.restart.join(",") });
    if (o.leaving.length) log.warn("removed VIPs are still being released (etcd slow or unreachable?); that goes on in the background", { vips: o.leaving.join(",") });
    return { result: "reloaded", pid, config, added: refs(o.added), removed: refs(o.removed), kept: refs(o.kept), leaving: o.leaving, live: o.live, restart: o.restart };
  }
}

/** `vipd reload`'s exit code for an answer: 0 all applied, 1 not all of it, 2 an invalid configuration. */
export function reloadExitCode(a: ReloadAnswer): 0 | 1 | 2 {
  if (a.result === "invalid") return 2;
  if (a.result === "failed") return 1;
  return a.restart.length || a.leaving.length ? 1 : 0;
}

/** The answer for people, one fact per line. */
export function renderReloadAnswer(a: ReloadAnswer): string {
  const who = `vipd (pid ${a.pid})`;
  const file = a.config ?? "its configuration";
  if (a.result === "invalid") {
    return [`${who} did not reload ${file}: it is not valid. Nothing changed; vipd runs as before.`, ...a.problems].join("\n");
  }
  if (a.result === "failed") return `${who} did not reload ${file}: ${a.error}. Nothing changed; vipd runs as before.`;
  const changed = a.added.length + a.removed.length + a.live.length + a.restart.length > 0;
  const vip = (word: string, v: VipRef, note = "") => `  ${word.padEnd(8)} ${v.ip} on ${v.link}${note}`;
  const lines = [
    `${who} reloaded ${file}${changed ? ":" : ": nothing changed."}`,
    ...a.removed.map((v) => vip("removed", v, a.leaving.includes(v.ip) ? " (still being released: it finishes in the background)" : " (released, out of its queue)")),
    ...a.added.map((v) => vip("added", v, " (standing for it)")),
    ...a.kept.map((v) => vip("kept", v, " (untouched)")),
  ];
  if (a.live.length) lines.push(`  applied  ${a.live.join(", ")}`);
  if (a.restart.length) lines.push(`Not applied: ${a.restart.join(", ")} changed, and take effect only when vipd restarts (systemctl restart vipd); it runs with the old values until then.`);
  return lines.join("\n");
}

/** Parses the agent's answer line; null when it is not one (an older vipd closes without a word). */
export function parseReloadAnswer(line: string): ReloadAnswer | { error: string } | null {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return null;
  }
  if (!v || typeof v !== "object") return null;
  const o = v as Record<string, unknown>;
  if (typeof o.error === "string") return { error: o.error };
  if (o.result === "reloaded" || o.result === "invalid" || o.result === "failed") return o as unknown as ReloadAnswer;
  return null;
}
