// Usage text and the one error class for mistakes a user can fix by changing
// their command line or config (exit code 2, no stack trace).
import { flagHelp } from "../config/index.ts";

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export function usage(): string {
  return `vipd — floating virtual IP agent for highly available control planes

Usage:
  vipd run --config FILE [flags]   hold and announce the VIPs this node wins
  vipd validate FILE               check a config file: exit 0 and a summary, or 2 and the errors
  vipd status [--json] [flags]     who holds each VIP and who waits, read from etcd
  vipd version                     print the version

Flags (each also read from the environment variable shown):
${flagHelp()}

Exit codes: 0 clean stop, 2 bad usage or configuration, 1 anything else.
`;
}
