import { errnoName } from "./errno.ts";

/**
 * A failed kernel operation, named so an operator can act on it:
 * "EEXIST: adding 10.0.0.5/32 to eth0". `operation` is a gerund phrase with its
 * subject ("adding 10.0.0.5/32 to eth0"); `errno` is positive; `code` is its name.
 */
export class KernelError extends Error {
  readonly code: string;
  constructor(
    readonly operation: string,
    readonly errno: number,
    detail?: string,
  ) {
    const code = errno > 0 ? errnoName(errno) : "EINVAL";
    super(`${code}: ${operation}${detail ? ` (${detail})` : ""}`);
    this.name = "KernelError";
    this.code = code;
  }
}

/** Input rejected before any syscall: a bad address, family or lifetime. */
export class KernelInputError extends Error {
  constructor(
    readonly operation: string,
    readonly problem: string,
  ) {
    super(`${operation}: ${problem}`);
    this.name = "KernelInputError";
  }
}
