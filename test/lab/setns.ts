// The lab's own way into a network namespace for the calling thread. vipd
// itself never changes namespace, so open(2) and setns(2) are bound here
// rather than in src/kernel/ffi/libc.ts, which binds only what vipd calls.
// Same convention as there: -errno on failure, errno read right after the call.
import { dlopen, FFIType, read, type Pointer } from "bun:ffi";

const { i32, ptr } = FFIType;

const lib = dlopen("libc.so.6", {
  open: { args: [ptr, i32], returns: i32 },
  setns: { args: [i32, i32], returns: i32 },
  __errno_location: { args: [], returns: ptr },
});

const O_RDONLY = 0;
const O_CLOEXEC = 0o2000000;
const CLONE_NEWNET = 0x40000000;

function result(r: number): number {
  if (r >= 0) return r;
  const p = lib.symbols.__errno_location() as Pointer | null;
  return p === null ? -1 : -read.i32(p, 0);
}

/** Opens a namespace file (/proc/thread-self/ns/net, /run/netns/NAME) read-only; the fd or -errno. */
export function openNetns(path: string): number {
  return result(lib.symbols.open(new TextEncoder().encode(`${path}\0`), O_RDONLY | O_CLOEXEC));
}

/** Moves the calling thread into the network namespace of fd; 0 or -errno. */
export function enterNetns(fd: number): number {
  return result(lib.symbols.setns(fd, CLONE_NEWNET));
}
