// The only module in vipd that imports bun:ffi. Every other part of the kernel
// layer talks to libc through the small, typed functions exported here.
//
// Convention: like the kernel's own syscall ABI, each function returns a
// non-negative result on success and -errno on failure. errno is read through
// __errno_location() immediately after the failing call, in the same
// synchronous stretch of JavaScript, so no other call on this thread can
// overwrite it in between.
import { CString, dlopen, FFIType, ptr as addressOf, read, type Pointer } from "bun:ffi";

const { i32, u32, i64_fast, ptr, u64_fast } = FFIType;

const lib = dlopen("libc.so.6", {
  socket: { args: [i32, i32, i32], returns: i32 },
  bind: { args: [i32, ptr, u32], returns: i32 },
  connect: { args: [i32, ptr, u32], returns: i32 },
  close: { args: [i32], returns: i32 },
  sendto: { args: [i32, ptr, u64_fast, i32, ptr, u32], returns: i64_fast },
  recvfrom: { args: [i32, ptr, u64_fast, i32, ptr, ptr], returns: i64_fast },
  setsockopt: { args: [i32, i32, i32, ptr, u32], returns: i32 },
  getsockname: { args: [i32, ptr, ptr], returns: i32 },
  execve: { args: [ptr, ptr, ptr], returns: i32 },
  getauxval: { args: [u64_fast], returns: ptr },
  __errno_location: { args: [], returns: ptr },
});

const s = lib.symbols;

function errno(): number {
  const p = s.__errno_location() as Pointer | null;
  return p === null ? 0 : read.i32(p, 0);
}

/** Turns a libc "-1 and errno" result into "-errno"; passes other results through. */
function result(r: number | bigint): number {
  const n = Number(r);
  return n < 0 ? -errno() : n;
}

export type Bytes = Uint8Array;

export function socket(domain: number, type: number, protocol: number): number {
  return result(s.socket(domain, type, protocol));
}

export function bind(fd: number, addr: Bytes): number {
  return result(s.bind(fd, addr, addr.byteLength));
}

export function connect(fd: number, addr: Bytes): number {
  return result(s.connect(fd, addr, addr.byteLength));
}

export function close(fd: number): number {
  return result(s.close(fd));
}

export function sendto(fd: number, buf: Bytes, flags: number, addr: Bytes | null): number {
  return result(s.sendto(fd, buf, buf.byteLength, flags, addr, addr?.byteLength ?? 0));
}

/**
 * Receives one datagram into buf. When `from` is given it receives the sender's
 * address; the returned length is the datagram's full length (MSG_TRUNC semantics
 * are the caller's choice through flags).
 */
export function recvfrom(fd: number, buf: Bytes, flags: number, from: Bytes | null): number {
  if (from === null) return result(s.recvfrom(fd, buf, buf.byteLength, flags, null, null));
  const len = new Uint32Array([from.byteLength]);
  return result(s.recvfrom(fd, buf, buf.byteLength, flags, from, len));
}

export function setsockopt(fd: number, level: number, name: number, value: Bytes): number {
  return result(s.setsockopt(fd, level, name, value, value.byteLength));
}

export function setsockoptInt(fd: number, level: number, name: number, value: number): number {
  return setsockopt(fd, level, name, new Uint8Array(new Int32Array([value]).buffer));
}

/**
 * Attaches a classic BPF program (encoded struct sock_filter array) to a
 * socket: SO_ATTACH_FILTER with a struct sock_fprog that points at it.
 *
 *   struct sock_fprog (64-bit): 0  2 bytes  len (instructions)
 *                               2  6 bytes  padding
 *                               8  8 bytes  filter (pointer)
 *
 * The kernel copies the program during the call, so `program` need only live
 * until it returns.
 */
export function attachFilter(fd: number, program: Bytes): number {
  const fprog = new Uint8Array(16);
  const v = new DataView(fprog.buffer);
  v.setUint16(0, program.byteLength / 8, true);
  v.setBigUint64(8, BigInt(addressOf(program)), true);
  return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, fprog);
}

/** Fills addr with the socket's local address; returns the address length. */
export function getsockname(fd: number, addr: Bytes): number {
  const len = new Uint32Array([addr.byteLength]);
  const r = result(s.getsockname(fd, addr, len));
  return r < 0 ? r : (len[0] ?? 0);
}

/**
 * Replaces this process's image with `path`, run with argv and env; returns
 * -errno only when that failed (on success it does not return). The strings
 * and pointer arrays need only live until the call: the kernel copies them.
 */
export function execve(path: string, argv: readonly string[], env: readonly string[]): number {
  const cstr = (t: string) => Buffer.from(`${t}\0`);
  const keep = [argv, env].map((list) => list.map(cstr));
  const [argvPtrs, envPtrs] = keep.map((bufs) => {
    const a = new BigUint64Array(bufs.length + 1);
    bufs.forEach((b, i) => (a[i] = BigInt(addressOf(b))));
    return a;
  });
  return result(s.execve(cstr(path), argvPtrs!, envPtrs!));
}

const AT_EXECFN = 31;

/**
 * The file name this process was started with, as its execve got it
 * (relative, or through a symbolic link, as the case may be); null if unknown.
 */
export function execFileName(): string | null {
  const p = s.getauxval(AT_EXECFN) as Pointer | null;
  return p === null ? null : new CString(p).toString();
}

// Constants from <sys/socket.h>, <linux/netlink.h>, <linux/if_ether.h>. They are
// the same on x86_64 and arm64 (both use the generic Linux ABI for these).
export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const AF_NETLINK = 16;
export const AF_PACKET = 17;
export const SOCK_DGRAM = 2;
export const SOCK_RAW = 3;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SO_RCVBUF = 8;
export const SO_SNDBUF = 7;
export const SO_RCVBUFFORCE = 33;
export const SO_ATTACH_FILTER = 26;
export const SOL_NETLINK = 270;
export const NETLINK_ADD_MEMBERSHIP = 1;
export const NETLINK_EXT_ACK = 11;
export const NETLINK_GET_STRICT_CHK = 12;
export const NETLINK_ROUTE = 0;
export const NETLINK_NETFILTER = 12;
export const MSG_PEEK = 0x2;
export const MSG_DONTWAIT = 0x40;
export const MSG_TRUNC = 0x20;
