// One vipd per network namespace. Two would fight over the same fence table
// and addresses: a second one starting up would rebuild the table and remove
// the first one's VIPs as "left over" (design.md §6, I6) before etcd could
// tell it that the first one is alive.
//
// The lock is an abstract Unix socket, `@vipd`. Abstract socket names belong
// to the network namespace, and the kernel releases one when its process
// ends, however it ends (a SIGKILL, an OOM kill): no stale lock file to clean
// up, and a frozen vipd still holds it.
//
// The same socket is the running agent's control channel (`vipd reload`):
// one line in, one line out, then the agent closes the connection. Any
// process in the network namespace may connect (Bun exposes no
// SO_PEERCRED to check who did). That is safe for what is asked here: a
// request carries no data, the agent only re-reads the file, flags and
// environment it was started with, so a caller can make it apply the
// operator's own configuration now instead of later, as a SIGHUP would, and
// read the outcome (addresses, setting names, validation messages: the
// configuration names TLS files by path and holds no secret). The agent
// coalesces requests, so a flood of them costs one reload at a time.
import type { Socket } from "bun";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

const NAME = "vipd";
/** A request is one short line; anything longer is not one of ours. */
const MAX_REQUEST = 256;
/** A client that says nothing is dropped, so idle connections cannot pile up. */
const IDLE_S = 5;

export type RequestHandler = (request: string) => Promise<string>;

export interface NetnsLock {
  /** Answers requests from now on; those that came earlier wait for this. */
  serve(handler: RequestHandler): void;
  release(): void;
}

interface Conn {
  request: string;
  /** The request is complete (or too long) and being answered: later bytes are ignored. */
  asked: boolean;
  /** Bytes of the answer not written yet. */
  out: Uint8Array | null;
}

/** Claims the lock, or says which process holds it (null when it cannot be found). */
export function claimNetnsLock(): { ok: true; lock: NetnsLock } | { ok: false; holder: number | null } {
  let serve!: (h: RequestHandler) => void;
  const handler = new Promise<RequestHandler>((resolve) => (serve = resolve));
  const answer = async (s: Socket<Conn>, request: string) => {
    let text: string;
    try {
      text = await (await handler)(request);
    } catch (err) {
      text = JSON.stringify({ error: `answering ${JSON.stringify(request)}: ${err instanceof Error ? err.message : String(err)}` });
    }
    s.data.out = new TextEncoder().encode(`${text}\n`);
    flush(s);
  };
  try {
    const server = Bun.listen<Conn>({
      unix: `\0${NAME}`,
      socket: {
        open(s) {
          s.data = { request: "", asked: false, out: null };
          s.timeout(IDLE_S);
        },
        data(s, bytes) {
          if (s.data.asked) return;
          s.data.request += bytes.toString();
          const nl = s.data.request.indexOf("\n");
          if (nl < 0 && s.data.request.length <= MAX_REQUEST) return;
          s.data.asked = true;
          // Answering may take a while (a reload releases VIPs): no idle timeout meanwhile.
          s.timeout(0);
          void answer(s, (nl < 0 ? s.data.request : s.data.request.slice(0, nl)).slice(0, MAX_REQUEST).trim());
        },
        drain: (s) => flush(s),
        // Without this handler Bun keeps the connection despite timeout().
        timeout: (s) => void s.end(),
      },
    });
    return { ok: true, lock: { serve, release: () => server.stop(true) } };
  } catch (err) {
    if ((err as { code?: string }).code !== "EADDRINUSE") throw err;
    return { ok: false, holder: holderOf(`@${NAME}`) };
  }
}

/** Writes what the socket takes now; drain() calls again for the rest. Ends the connection when all is out. */
function flush(s: Socket<Conn>): void {
  const out = s.data.out;
  if (!out) return;
  const n = s.write(out);
  if (n < 0) return;
  s.data.out = out.subarray(n);
  if (s.data.out.length === 0) s.end();
}

/**
 * Sends one request to the vipd of this network namespace and resolves with
 * its one-line answer. Rejects with ECONNREFUSED when no vipd runs here, and
 * with a timeout when it does not answer within timeoutMs.
 */
export function askNetnsLockHolder(request: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    const decoder = new TextDecoder();
    const timer = setTimeout(() => {
      conn.then((s) => s.terminate(), () => {});
      reject(Object.assign(new Error(`no answer from the running vipd within ${timeoutMs / 1000} s`), { code: "ETIMEDOUT" }));
    }, timeoutMs);
    const conn = Bun.connect({
      unix: `\0${NAME}`,
      socket: {
        open: (s) => void s.write(`${request}\n`),
        data: (_s, bytes) => void (text += decoder.decode(bytes, { stream: true })),
        close: () => {
          clearTimeout(timer);
          resolve(text.trim());
        },
        connectError: (_s, err) => {
          clearTimeout(timer);
          reject(err);
        },
      },
    });
    conn.catch(() => {});
  });
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
