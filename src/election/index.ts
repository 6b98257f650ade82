export { connectEtcd, EtcdConnection, type EtcdConnectOptions, type EtcdTlsFiles } from "./connection.ts";
export { type Clock, type FenceMode, monotonicClock } from "./proof.ts";
export { Session, type SessionEvents, type SessionOptions, type SessionSettings } from "./session.ts";
