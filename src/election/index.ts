export { connectEtcd, type EtcdConnectOptions, type EtcdTlsFiles } from "./client.ts";
export { type Candidate, type ElectionEvents, type ElectionState, VipElection, type VipElectionOptions } from "./election.ts";
export {
  type AckOutcome, checkLeaseTtl, type Clock, DEFAULT_MARGIN_MS, Fence, fenceDeadline, KERNEL_SLACK_MS,
  kernelLifetime, minimumTtl, monotonicClock,
} from "./fence.ts";
export { AgentLease, type AgentLeaseOptions, type LeaseEvents, leaseHex } from "./lease.ts";
