// Capturing frames on a lab host with tcpdump, and reading its pcap files.
// tcpdump is an independent witness: what it records is what went over the
// segment, not what our own codecs believe they sent.
import { readFileSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sh } from "../lab/sh.ts";

export interface CapturedFrame {
  readonly time: number;
  readonly bytes: Uint8Array;
}

/**
 * Reads a classic pcap file (microsecond or nanosecond magic, either byte
 * order). A record cut short by a capture still being written is left out.
 *
 *   global header: magic (4), version major (2), minor (2), thiszone (4),
 *                  sigfigs (4), snaplen (4), linktype (4) — 24 bytes
 *   record:        ts_sec (4), ts_frac (4), incl_len (4), orig_len (4), data
 */
export function readPcap(bytes: Uint8Array): CapturedFrame[] {
  if (bytes.length < 24) return [];
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magics: Record<number, [boolean, number]> = {
    0xa1b2c3d4: [false, 1e6],
    0xd4c3b2a1: [true, 1e6],
    0xa1b23c4d: [false, 1e9],
    0x4d3cb2a1: [true, 1e9],
  };
  const m = magics[v.getUint32(0)];
  if (!m) throw new Error(`not a pcap file: magic 0x${v.getUint32(0).toString(16)}`);
  const [le, frac] = m;
  const linktype = v.getUint32(20, le);
  if (linktype !== 1) throw new Error(`pcap link type ${linktype}, not Ethernet (1)`);
  const out: CapturedFrame[] = [];
  for (let off = 24; off + 16 <= bytes.length; ) {
    const len = v.getUint32(off + 8, le);
    if (off + 16 + len > bytes.length) break;
    out.push({ time: v.getUint32(off, le) + v.getUint32(off + 4, le) / frac, bytes: bytes.slice(off + 16, off + 16 + len) });
    off += 16 + len;
  }
  return out;
}

export class Capture {
  private constructor(
    private readonly proc: Bun.Subprocess<"ignore", "ignore", "pipe">,
    private readonly dir: string,
    readonly file: string,
  ) {}

  /** Starts tcpdump on `link` in namespace `ns` and resolves once it is listening. */
  static async start(ns: string, link: string, filter: string): Promise<Capture> {
    const dir = mkdtempSync(join(tmpdir(), "vipd-cap-"));
    const file = join(dir, "cap.pcap");
    // --immediate-mode: hand each packet over at once; otherwise TPACKET_V3
    // holds a block for up to a second. -U: write each packet as it arrives,
    // so the file can be read while tcpdump runs.
    // -Z root: tcpdump would otherwise drop to a user who cannot write into dir.
    const argv = ["ip", "netns", "exec", ns, "tcpdump", "-i", link, "-n", "--immediate-mode", "-U", "-Z", "root", "-w", file, filter];
    const proc = Bun.spawn(argv, { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
    const cap = new Capture(proc, dir, file);
    const reader = proc.stderr.getReader();
    let text = "";
    const deadline = performance.now() + 5000;
    while (!text.includes("listening on")) {
      const chunk = await Promise.race([reader.read(), Bun.sleep(Math.max(0, deadline - performance.now())).then(() => null)]);
      if (!chunk || chunk.done) {
        await cap.stop();
        throw new Error(`tcpdump in ${ns} did not start: ${text.trim()}`);
      }
      text += new TextDecoder().decode(chunk.value);
    }
    reader.releaseLock();
    return cap;
  }

  frames(): CapturedFrame[] {
    return existsSync(this.file) ? readPcap(new Uint8Array(readFileSync(this.file))) : [];
  }

  /** tcpdump's own reading of the file, verbose enough to report checksums. */
  async verbose(): Promise<string> {
    return sh(["tcpdump", "-r", this.file, "-n", "-e", "-vv"]);
  }

  /** Stops tcpdump by its PID and waits for it; the file stays until dispose(). */
  async stop(): Promise<void> {
    if (this.proc.exitCode === null) this.proc.kill("SIGTERM");
    await this.proc.exited;
  }

  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
