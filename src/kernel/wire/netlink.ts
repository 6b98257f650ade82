// Netlink framing (linux/netlink.h): message headers, attributes, error
// replies and the socket address. Pure encode/decode; no syscalls.
//
// Netlink integers are in host byte order. vipd runs on x86_64 and arm64, both
// little-endian, so the fixtures in the tests are little-endian; the codecs
// follow the host whatever it is.
import { WireError } from "./error.ts";

export const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// Message types below NLMSG_MIN_TYPE (0x10) are netlink's own.
export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLMSG_OVERRUN = 4;

// nlmsg_flags. The same bits mean different things for GET and NEW requests.
export const NLM_F_REQUEST = 0x01;
export const NLM_F_MULTI = 0x02;
export const NLM_F_ACK = 0x04;
export const NLM_F_ECHO = 0x08;
export const NLM_F_DUMP_INTR = 0x10;
export const NLM_F_ROOT = 0x100; // GET
export const NLM_F_MATCH = 0x200; // GET
export const NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH;
export const NLM_F_REPLACE = 0x100; // NEW
export const NLM_F_EXCL = 0x200; // NEW
export const NLM_F_CREATE = 0x400; // NEW
// Flags on an NLMSG_ERROR reply (extended ACK).
export const NLM_F_CAPPED = 0x100;
export const NLM_F_ACK_TLVS = 0x200;

// Attributes of an extended ACK (enum nlmsgerr_attrs).
export const NLMSGERR_ATTR_MSG = 1;
export const NLMSGERR_ATTR_OFFS = 2;

// nla_type carries two flag bits above the type proper.
export const NLA_F_NESTED = 0x8000;
export const NLA_F_NET_BYTEORDER = 0x4000;
export const NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff;

export const NLMSG_HDRLEN = 16;
export const RTA_HDRLEN = 4;
export const SOCKADDR_NL_LEN = 12;

/** NLMSG_ALIGN / RTA_ALIGN: both round up to 4 bytes. */
export const align4 = (n: number) => (n + 3) & ~3;

export interface NetlinkMessage {
  readonly type: number;
  readonly flags: number;
  readonly seq: number;
  /** Sender's port id; 0 is the kernel. */
  readonly pid: number;
  /** The bytes after the header, up to nlmsg_len (without trailing padding). */
  readonly payload: Uint8Array;
}

export interface Attr {
  /** nla_type without NLA_F_NESTED / NLA_F_NET_BYTEORDER. */
  readonly type: number;
  readonly data: Uint8Array;
}

export const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

/**
 * nlmsghdr, 16 bytes, then the payload padded to NLMSG_ALIGN:
 *   u32 nlmsg_len    header + payload, without the final padding
 *   u16 nlmsg_type
 *   u16 nlmsg_flags
 *   u32 nlmsg_seq
 *   u32 nlmsg_pid
 */
export function encodeMessage(m: NetlinkMessage): Uint8Array {
  const len = NLMSG_HDRLEN + m.payload.byteLength;
  const out = new Uint8Array(align4(len));
  const v = view(out);
  v.setUint32(0, len, HOST_LE);
  v.setUint16(4, m.type, HOST_LE);
  v.setUint16(6, m.flags, HOST_LE);
  v.setUint32(8, m.seq, HOST_LE);
  v.setUint32(12, m.pid, HOST_LE);
  out.set(m.payload, NLMSG_HDRLEN);
  return out;
}

/** Splits one datagram into its messages (a dump packs many into one datagram). */
export function parseMessages(buf: Uint8Array): NetlinkMessage[] | WireError {
  const out: NetlinkMessage[] = [];
  const v = view(buf);
  let off = 0;
  while (off < buf.byteLength) {
    if (buf.byteLength - off < NLMSG_HDRLEN) {
      return new WireError(`netlink header truncated: ${buf.byteLength - off} bytes at offset ${off}, need ${NLMSG_HDRLEN}`);
    }
    const len = v.getUint32(off, HOST_LE);
    if (len < NLMSG_HDRLEN || len > buf.byteLength - off) {
      return new WireError(`netlink message length ${len} at offset ${off} does not fit in ${buf.byteLength - off} bytes`);
    }
    out.push({
      type: v.getUint16(off + 4, HOST_LE),
      flags: v.getUint16(off + 6, HOST_LE),
      seq: v.getUint32(off + 8, HOST_LE),
      pid: v.getUint32(off + 12, HOST_LE),
      payload: buf.subarray(off + NLMSG_HDRLEN, off + len),
    });
    // The last message of a datagram may lack its padding.
    off += Math.min(align4(len), buf.byteLength - off);
  }
  return out;
}

/**
 * rtattr / nlattr, 4 bytes, then the data padded to RTA_ALIGN:
 *   u16 rta_len      header + data, without padding
 *   u16 rta_type
 */
export function encodeAttrs(attrs: readonly Attr[]): Uint8Array {
  const size = attrs.reduce((n, a) => n + align4(RTA_HDRLEN + a.data.byteLength), 0);
  const out = new Uint8Array(size);
  const v = view(out);
  let off = 0;
  for (const a of attrs) {
    v.setUint16(off, RTA_HDRLEN + a.data.byteLength, HOST_LE);
    v.setUint16(off + 2, a.type, HOST_LE);
    out.set(a.data, off + RTA_HDRLEN);
    off += align4(RTA_HDRLEN + a.data.byteLength);
  }
  return out;
}

export function parseAttrs(buf: Uint8Array): Attr[] | WireError {
  const out: Attr[] = [];
  const v = view(buf);
  let off = 0;
  while (off < buf.byteLength) {
    if (buf.byteLength - off < RTA_HDRLEN) {
      return new WireError(`attribute header truncated: ${buf.byteLength - off} bytes at offset ${off}`);
    }
    const len = v.getUint16(off, HOST_LE);
    const type = v.getUint16(off + 2, HOST_LE) & NLA_TYPE_MASK;
    if (len < RTA_HDRLEN || len > buf.byteLength - off) {
      return new WireError(`attribute ${type} length ${len} at offset ${off} overruns ${buf.byteLength - off} bytes`);
    }
    out.push({ type, data: buf.subarray(off + RTA_HDRLEN, off + len) });
    off += Math.min(align4(len), buf.byteLength - off);
  }
  return out;
}

/** First attribute of each type; the kernel never repeats the ones vipd reads. */
export function attrMap(attrs: readonly Attr[]): Map<number, Uint8Array> {
  const m = new Map<number, Uint8Array>();
  for (const a of attrs) if (!m.has(a.type)) m.set(a.type, a.data);
  return m;
}

export const attrU32 = (type: number, value: number): Attr => {
  const data = new Uint8Array(4);
  view(data).setUint32(0, value, HOST_LE);
  return { type, data };
};

/** A NUL-terminated string attribute, as the kernel expects names. */
export const attrString = (type: number, value: string): Attr => ({
  type,
  data: new TextEncoder().encode(`${value}\0`),
});

export function readU32(data: Uint8Array, what: string): number | WireError {
  if (data.byteLength < 4) return new WireError(`${what}: ${data.byteLength} bytes, need 4`);
  return view(data).getUint32(0, HOST_LE);
}

/** Reads a string attribute up to its first NUL (the kernel includes one). */
export function readString(data: Uint8Array): string {
  const nul = data.indexOf(0);
  return new TextDecoder().decode(nul < 0 ? data : data.subarray(0, nul));
}

export interface NetlinkError {
  /** Positive errno; 0 for a plain ACK. */
  readonly errno: number;
  /** Extended ACK text (NLMSGERR_ATTR_MSG), when the kernel gave one. */
  readonly message?: string;
}

/**
 * The payload of NLMSG_ERROR (struct nlmsgerr):
 *   i32 error        0 for an ACK, -errno otherwise
 *   16  msg          the request's nlmsghdr; followed by the rest of the request
 *                    unless NLM_F_CAPPED is set on the reply
 *   ... TLVs         extended ACK attributes, when NLM_F_ACK_TLVS is set
 */
export function decodeError(m: NetlinkMessage): NetlinkError | WireError {
  const p = m.payload;
  if (p.byteLength < 4 + NLMSG_HDRLEN) return new WireError(`nlmsgerr truncated: ${p.byteLength} bytes, need ${4 + NLMSG_HDRLEN}`);
  const v = view(p);
  const errno = -v.getInt32(0, HOST_LE) | 0; // | 0: an ACK is 0, not -0
  if (errno < 0) return new WireError(`nlmsgerr with a positive error ${-errno}`);
  if (!(m.flags & NLM_F_ACK_TLVS)) return { errno };
  const origLen = v.getUint32(4, HOST_LE);
  const tlvStart = 4 + (m.flags & NLM_F_CAPPED ? NLMSG_HDRLEN : align4(origLen));
  if (tlvStart > p.byteLength) return new WireError(`nlmsgerr: echoed request length ${origLen} overruns ${p.byteLength - 4} bytes`);
  const attrs = parseAttrs(p.subarray(tlvStart));
  if (attrs instanceof WireError) return attrs;
  const msg = attrMap(attrs).get(NLMSGERR_ATTR_MSG);
  return msg ? { errno, message: readString(msg) } : { errno };
}

/**
 * sockaddr_nl, 12 bytes:
 *   u16 nl_family    AF_NETLINK (16)
 *   u16 nl_pad
 *   u32 nl_pid       port id; 0 lets the kernel choose on bind, and means the kernel as a peer
 *   u32 nl_groups    multicast group bitmask (RTMGRP_*)
 */
export function encodeSockaddrNl(pid: number, groups: number): Uint8Array {
  const out = new Uint8Array(SOCKADDR_NL_LEN);
  const v = view(out);
  v.setUint16(0, 16, HOST_LE);
  v.setUint32(4, pid, HOST_LE);
  v.setUint32(8, groups >>> 0, HOST_LE);
  return out;
}

export function decodeSockaddrNl(b: Uint8Array): { pid: number; groups: number } | WireError {
  if (b.byteLength < SOCKADDR_NL_LEN) return new WireError(`sockaddr_nl truncated: ${b.byteLength} bytes`);
  const v = view(b);
  if (v.getUint16(0, HOST_LE) !== 16) return new WireError(`sockaddr_nl family ${v.getUint16(0, HOST_LE)}, not AF_NETLINK`);
  return { pid: v.getUint32(4, HOST_LE), groups: v.getUint32(8, HOST_LE) };
}
