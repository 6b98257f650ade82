// Linux errno numbers and their symbolic names (asm-generic/errno-base.h and
// asm-generic/errno.h; identical on x86_64 and arm64). Users see the name, never
// the bare number.
const NAMES: Record<number, string> = {
  1: "EPERM", 2: "ENOENT", 3: "ESRCH", 4: "EINTR", 5: "EIO", 6: "ENXIO", 7: "E2BIG",
  9: "EBADF", 11: "EAGAIN", 12: "ENOMEM", 13: "EACCES", 14: "EFAULT", 16: "EBUSY",
  17: "EEXIST", 19: "ENODEV", 20: "ENOTDIR", 22: "EINVAL", 23: "ENFILE", 24: "EMFILE",
  28: "ENOSPC", 32: "EPIPE", 34: "ERANGE", 38: "ENOSYS", 61: "ENODATA", 71: "EPROTO",
  74: "EBADMSG", 75: "EOVERFLOW", 88: "ENOTSOCK", 90: "EMSGSIZE", 92: "ENOPROTOOPT",
  93: "EPROTONOSUPPORT", 95: "EOPNOTSUPP", 97: "EAFNOSUPPORT", 98: "EADDRINUSE",
  99: "EADDRNOTAVAIL", 100: "ENETDOWN", 101: "ENETUNREACH", 105: "ENOBUFS",
  110: "ETIMEDOUT", 111: "ECONNREFUSED", 113: "EHOSTUNREACH",
};

export const EPERM = 1;
export const ENOENT = 2;
export const EINTR = 4;
export const EIO = 5;
export const EBADF = 9;
export const EAGAIN = 11;
export const EEXIST = 17;
export const ENODEV = 19;
export const EINVAL = 22;
export const EPROTONOSUPPORT = 93;
export const EOPNOTSUPP = 95;
export const EAFNOSUPPORT = 97;
export const EADDRNOTAVAIL = 99;
export const ENETDOWN = 100;
export const ENOBUFS = 105;
export const EBADMSG = 74;
export const EMSGSIZE = 90;
export const ETIMEDOUT = 110;

export function errnoName(errno: number): string {
  return NAMES[Math.abs(errno)] ?? `errno ${Math.abs(errno)}`;
}
