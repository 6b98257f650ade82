export { connectEtcd, EtcdConnection, type EtcdConnectOptions, type EtcdTlsFiles } from "./connection.ts";
export { type Clock, monotonicClock } from "../seams.ts";
export { type FenceMode } from "./proof.ts";
export { Session, type SessionEvents, type SessionOptions, type SessionSettings } from "./session.ts";
