// Classic BPF socket filters (socket(7) SO_ATTACH_FILTER, the cBPF of
// <linux/filter.h>): a few instructions the kernel runs on every frame a
// packet socket (or datagram a netlink socket) would receive, keeping only
// those the program accepts. Pure: instructions to bytes.

/** One instruction, struct sock_filter. */
export interface BpfInstruction {
  readonly code: number;
  /** Instructions to skip when a jump's condition holds / does not. */
  readonly jt: number;
  readonly jf: number;
  readonly k: number;
}

/** Opcodes vipd uses (<linux/bpf_common.h>: class | size | mode, or class | op | source). */
export const Bpf = Object.freeze({
  /** BPF_LD | BPF_B | BPF_ABS: A = the byte at offset k of the frame. */
  LOAD_BYTE: 0x30,
  /** BPF_LD | BPF_W | BPF_ABS: A = the 4 bytes at offset k, read big-endian. */
  LOAD_WORD: 0x20,
  /** BPF_JMP | BPF_JEQ | BPF_K: if A == k skip jt, else skip jf. */
  JUMP_IF_EQUAL: 0x15,
  /** BPF_RET | BPF_K: keep k bytes of the frame (0: drop it). */
  RETURN: 0x06,
});

/** Bytes of one instruction. */
export const INSTRUCTION_LENGTH = 8;

/**
 * struct sock_filter, in host byte order (the kernel reads it as a C struct;
 * vipd runs on little-endian hosts only):
 *
 *   0  2 bytes  code
 *   2  1 byte   jt
 *   3  1 byte   jf
 *   4  4 bytes  k
 */
export function encodeBpf(program: readonly BpfInstruction[]): Uint8Array {
  if (program.length === 0 || program.length > 4096) throw new RangeError(`a BPF program has 1 to 4096 instructions (BPF_MAXINSNS), not ${program.length}`);
  const out = new Uint8Array(program.length * INSTRUCTION_LENGTH);
  const v = new DataView(out.buffer);
  for (const [i, ins] of program.entries()) {
    const at = i * INSTRUCTION_LENGTH;
    v.setUint16(at, ins.code, true);
    v.setUint8(at + 2, ins.jt);
    v.setUint8(at + 3, ins.jf);
    v.setUint32(at + 4, ins.k, true);
  }
  return out;
}

/** Where the IPv6 next header and the ICMPv6 type sit in an Ethernet frame: 14 + 6, 14 + 40. */
const IPV6_NEXT_HEADER_AT = 20;
const ICMPV6_TYPE_AT = 54;

/**
 * Keeps ICMPv6 Neighbor Advertisements (type 136) and drops every other
 * frame, for a socket bound to EtherType IPv6. Without it an IPv6 probe's
 * socket receives all of the link's IPv6 traffic: on a busy node that floods
 * the socket's buffer, which drops the very answer the probe waits for, and
 * keeps the event loop busy decoding. Extension headers are not followed,
 * as the NA decoder does not follow them either.
 */
export function neighborAdvertisementFilter(): BpfInstruction[] {
  return [
    { code: Bpf.LOAD_BYTE, jt: 0, jf: 0, k: IPV6_NEXT_HEADER_AT },
    { code: Bpf.JUMP_IF_EQUAL, jt: 0, jf: 3, k: 58 },
    { code: Bpf.LOAD_BYTE, jt: 0, jf: 0, k: ICMPV6_TYPE_AT },
    { code: Bpf.JUMP_IF_EQUAL, jt: 0, jf: 1, k: 136 },
    { code: Bpf.RETURN, jt: 0, jf: 0, k: 0x40000 },
    { code: Bpf.RETURN, jt: 0, jf: 0, k: 0 },
  ];
}

/** Where nlmsghdr's nlmsg_pid sits: after nlmsg_len (4), nlmsg_type (2), nlmsg_flags (2), nlmsg_seq (4). */
const NLMSG_PID_AT = 12;

/**
 * Drops netlink datagrams whose first message carries `portId` as its
 * nlmsg_pid, for an rtnetlink event socket. The kernel stamps the
 * notifications an rtnetlink request causes with the requesting socket's
 * port ID (IPv4 address changes do; IPv6 ones carry 0), so this keeps a
 * process from waking for the echo of its own changes: vipd refreshes every
 * held IPv4 VIP four times a second, and knows what it did. Notifications
 * are one message per datagram. nlmsg_pid is host-endian (little-endian,
 * the only hosts vipd runs on) and BPF loads words big-endian: the constant
 * is swapped to match.
 */
export function notFromPortFilter(portId: number): BpfInstruction[] {
  const swapped = (((portId & 0xff) << 24) | ((portId & 0xff00) << 8) | ((portId >>> 8) & 0xff00) | (portId >>> 24)) >>> 0;
  return [
    { code: Bpf.LOAD_WORD, jt: 0, jf: 0, k: NLMSG_PID_AT },
    { code: Bpf.JUMP_IF_EQUAL, jt: 1, jf: 0, k: swapped },
    { code: Bpf.RETURN, jt: 0, jf: 0, k: 0xffffffff },
    { code: Bpf.RETURN, jt: 0, jf: 0, k: 0 },
  ];
}
