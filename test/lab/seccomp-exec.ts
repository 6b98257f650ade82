// Loads a seccomp filter the way systemd would for a unit's
// SystemCallFilter=, SystemCallErrorNumber= and RestrictAddressFamilies=, then
// execs a program under it. The lab runs this as the unit's user (after
// setpriv), so the program meets the same syscall restrictions it would meet
// under systemd, which the lab cannot run as PID 1.
//
//   bun seccomp-exec.ts POLICY.json PROGRAM [ARGS...]
//
// POLICY.json: { "allow": ["read", ...], "errno": 1, "families": [1, 2, ...], "denyWriteExecute": true }
// - allow: the system calls the filter lets through (unit-sandbox.ts expands
//   the unit's @groups with systemd-analyze); everything else fails with
//   errno, as with SystemCallErrorNumber=. Names this architecture lacks are
//   skipped. Calls from another architecture kill the process (libseccomp's
//   default, as SystemCallArchitectures=native).
// - families: socket() with any other address family fails with
//   EAFNOSUPPORT, as RestrictAddressFamilies= does; absent: no restriction.
// - denyWriteExecute: MemoryDenyWriteExecute=, as systemd builds it: mmap()
//   of memory both writable and executable, and mprotect()/pkey_mprotect()
//   to executable, fail with EPERM.
//
// libseccomp through bun:ffi keeps this independent of a C compiler; the
// filter is loaded on this thread and execve(2) follows on the same thread,
// so the new program inherits it (and other threads die with the exec).
import { dlopen, FFIType, ptr, read } from "bun:ffi";
import { readFileSync } from "node:fs";

const { i32, u32, ptr: pointer } = FFIType;

interface Policy {
  allow: string[];
  errno: number;
  families?: number[];
  denyWriteExecute?: boolean;
}

const seccomp = dlopen("libseccomp.so.2", {
  seccomp_init: { args: [u32], returns: pointer },
  seccomp_syscall_resolve_name: { args: [pointer], returns: i32 },
  seccomp_rule_add_array: { args: [pointer, u32, i32, u32, pointer], returns: i32 },
  seccomp_load: { args: [pointer], returns: i32 },
}).symbols;
const libc = dlopen("libc.so.6", {
  execve: { args: [pointer, pointer, pointer], returns: i32 },
  __errno_location: { args: [], returns: pointer },
}).symbols;

// seccomp.h
const SCMP_ACT_ALLOW = 0x7fff0000;
const SCMP_ACT_ERRNO = (e: number) => (0x00050000 | (e & 0xffff)) >>> 0;
const SCMP_CMP_EQ = 4;
const SCMP_CMP_GE = 5;
const SCMP_CMP_MASKED_EQ = 7;
// sys/mman.h
const PROT_WRITE = 0x2;
const PROT_EXEC = 0x4;
const EAFNOSUPPORT = 97;
/** AF_MAX in linux/socket.h (6.x): every family number is below it. */
const AF_MAX = 46;

const cstr = (s: string) => Buffer.from(`${s}\0`);

function resolve(name: string): number {
  return seccomp.seccomp_syscall_resolve_name(ptr(cstr(name)));
}

/**
 * struct scmp_arg_cmp, 24 bytes:
 *   arg (u32), op (u32, enum scmp_compare), datum_a (u64), datum_b (u64)
 * For SCMP_CMP_MASKED_EQ, datum_a is the mask and datum_b the value.
 */
function argCmp(arg: number, op: number, a: number, b = 0): Buffer {
  const out = Buffer.alloc(24);
  out.writeUInt32LE(arg, 0);
  out.writeUInt32LE(op, 4);
  out.writeBigUInt64LE(BigInt(a), 8);
  out.writeBigUInt64LE(BigInt(b), 16);
  return out;
}

function check(what: string, r: number): void {
  // -EEXIST: the same rule twice (a call listed in two groups) is harmless.
  if (r < 0 && r !== -17) throw new Error(`seccomp: ${what}: error ${-r}`);
}

function loadAllowList(policy: Policy): void {
  const ctx = seccomp.seccomp_init(SCMP_ACT_ERRNO(policy.errno));
  if (!ctx) throw new Error("seccomp_init failed");
  for (const name of new Set(policy.allow)) {
    const nr = resolve(name);
    if (nr < 0) continue; // not a system call on this architecture
    check(`allowing ${name}`, seccomp.seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, 0, null));
  }
  check("loading the allow list", seccomp.seccomp_load(ctx));
}

function loadFamilies(families: readonly number[]): void {
  const ctx = seccomp.seccomp_init(SCMP_ACT_ALLOW);
  if (!ctx) throw new Error("seccomp_init failed");
  const socket = resolve("socket");
  const refuse = SCMP_ACT_ERRNO(EAFNOSUPPORT);
  for (let family = 0; family < AF_MAX; family++) {
    if (families.includes(family)) continue;
    check(`refusing family ${family}`, seccomp.seccomp_rule_add_array(ctx, refuse, socket, 1, ptr(argCmp(0, SCMP_CMP_EQ, family))));
  }
  check("refusing families >= AF_MAX", seccomp.seccomp_rule_add_array(ctx, refuse, socket, 1, ptr(argCmp(0, SCMP_CMP_GE, AF_MAX))));
  check("loading the address family filter", seccomp.seccomp_load(ctx));
}

function loadDenyWriteExecute(): void {
  const ctx = seccomp.seccomp_init(SCMP_ACT_ALLOW);
  if (!ctx) throw new Error("seccomp_init failed");
  const refuse = SCMP_ACT_ERRNO(1);
  const wx = PROT_WRITE | PROT_EXEC;
  // mmap(addr, len, prot, ...): prot is argument 2; mprotect(addr, len, prot) too; pkey_mprotect likewise.
  check("refusing W+X mmap", seccomp.seccomp_rule_add_array(ctx, refuse, resolve("mmap"), 1, ptr(argCmp(2, SCMP_CMP_MASKED_EQ, wx, wx))));
  for (const call of ["mprotect", "pkey_mprotect"]) {
    check(`refusing ${call} to executable`, seccomp.seccomp_rule_add_array(ctx, refuse, resolve(call), 1, ptr(argCmp(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC))));
  }
  check("loading the write-execute filter", seccomp.seccomp_load(ctx));
}

/** A NULL-terminated char *[]; `keep` holds the strings so they outlive the call. */
function cArray(items: readonly string[], keep: Buffer[]): BigUint64Array {
  const out = new BigUint64Array(items.length + 1);
  items.forEach((s, i) => {
    const b = cstr(s);
    keep.push(b);
    out[i] = BigInt(ptr(b));
  });
  return out;
}

const [policyFile, program, ...args] = process.argv.slice(2);
if (!policyFile || !program) {
  console.error("usage: bun seccomp-exec.ts POLICY.json PROGRAM [ARGS...]");
  process.exit(2);
}
const policy = JSON.parse(readFileSync(policyFile, "utf8")) as Policy;
const keep: Buffer[] = [];
const path = cstr(program);
const argv = cArray([program, ...args], keep);
const envp = cArray(Object.entries(process.env).map(([k, v]) => `${k}=${v}`), keep);
if (policy.families) loadFamilies(policy.families);
if (policy.denyWriteExecute) loadDenyWriteExecute();
loadAllowList(policy);
libc.execve(ptr(path), ptr(argv), ptr(envp));
const errnoPtr = libc.__errno_location();
console.error(`seccomp-exec: execve ${program}: errno ${errnoPtr ? read.i32(errnoPtr, 0) : "?"}`);
process.exit(127);
