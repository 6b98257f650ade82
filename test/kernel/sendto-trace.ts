// The kernel's view of what this process sent: strace attached to the test
// process itself, counting sendto calls on netlink sockets and the netlink
// messages each carried (the nlmsghdrs strace decodes), as bench-scale.ts
// counts a running agent's. vipd sends with sendto only, so this is every
// datagram the kernel received from it.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface NetlinkSend {
  /** "ROUTE", "NETFILTER". */
  readonly protocol: string;
  /** nlmsg_type of each message in the datagram, in order ("RTM_NEWADDR"). */
  readonly types: readonly string[];
}

/**
 * Runs fn while strace watches this process; the netlink datagrams sent
 * meanwhile, in order. `netns`: the namespace the sockets were opened in,
 * where strace must run to name them (-yy asks sock_diag there) and so to
 * decode their messages as rtnetlink or nfnetlink.
 */
export async function traceNetlinkSends<T>(fn: () => Promise<T>, netns?: string): Promise<{ result: T; sends: NetlinkSend[] }> {
  const dir = mkdtempSync(join(tmpdir(), "vipd-strace-"));
  const out = join(dir, "sendto.txt");
  const inNs = netns ? ["ip", "netns", "exec", netns] : [];
  const strace = Bun.spawn([...inNs, "strace", "-f", "-yy", "-s", "65536", "-e", "trace=sendto", "-e", "signal=none", "-o", out, "-p", String(process.pid)], {
    stdout: "ignore",
    stderr: "pipe",
  });
  try {
    // The sends come from the main thread (FFI calls run on it): once strace
    // says it is attached to the process's own id, nothing it sends is missed.
    const reader = strace.stderr.getReader();
    let said = "";
    while (!said.includes(`Process ${process.pid} attached`)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`strace -p ${process.pid} did not attach: ${said.trim()}`);
      said += new TextDecoder().decode(value);
    }
    reader.releaseLock();
    const result = await fn();
    strace.kill("SIGINT");
    await strace.exited;
    const sends = readFileSync(out, "utf8")
      .split("\n")
      .filter((l) => /\bsendto\(\d+<NETLINK:/.test(l))
      .map((l) => ({
        protocol: /<NETLINK:\[([A-Z_]+)/.exec(l)?.[1] ?? "?",
        // strace decodes the whole buffer; padding after the last message shows as one of length 0.
        types: [...l.matchAll(/nlmsg_len=[1-9]\d*, nlmsg_type=([^,}]+)/g)].map((m) => m[1]!),
      }));
    return { result, sends };
  } finally {
    strace.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}
