import { describe, expect, test } from "bun:test";
import { fdKind, metricSum, parseNetTable } from "./soak-sample.ts";

// Lines as the kernel writes them (trailing columns cut where they do not matter).
const TCP = [
  "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
  "   0: 0100007F:2003 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41001 1 0000000000000000 100 0 0 10 0",
  "   1: 0100007F:8F2A 0100007F:094B 01 00000000:00000000 02:000003E8 00000000     0        0 41002 2 0000000000000000 20 4 30 10 -1",
  "   2: 0100007F:094B 0100007F:8F2A 01 00000000:00000000 00:00000000 00000000     0        0 41003 1 0000000000000000 20 4 30 10 -1",
].join("\n");
const NETLINK = [
  "sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode",
  "0000000000000000 0   1234       00000451 0        0        0     2        0        41004",
].join("\n");
const PACKET = [
  "sk               RefCnt Type Proto  Iface R Rmem   User   Inode",
  "0000000000000000 3      3    0806   2     1 0      0      41005",
].join("\n");

describe("parseNetTable", () => {
  test("TCP: ports in hex, state, by inode", () => {
    const t = parseNetTable("tcp", TCP);
    expect(t.get("41001")).toEqual({ proto: "tcp", localPort: 8195, remotePort: 0, state: "0A" });
    expect(t.get("41002")).toEqual({ proto: "tcp", localPort: 36650, remotePort: 2379, state: "01" });
    expect(t.size).toBe(3);
  });
  test("tcp6 counts as tcp; netlink and packet by their own inode columns", () => {
    expect(parseNetTable("tcp6", TCP).get("41003")?.proto).toBe("tcp");
    expect(parseNetTable("netlink", NETLINK).get("41004")).toEqual({ proto: "netlink" });
    expect(parseNetTable("packet", PACKET).get("41005")).toEqual({ proto: "packet" });
  });
  test("an unknown table or an empty one gives nothing", () => {
    expect(parseNetTable("sctp", TCP).size).toBe(0);
    expect(parseNetTable("tcp", "").size).toBe(0);
  });
});

describe("fdKind", () => {
  const sockets = new Map([...parseNetTable("tcp", TCP), ...parseNetTable("netlink", NETLINK)]);
  test.each([
    ["socket:[41001]", "tcp listen"],
    ["socket:[41002]", "tcp→2379"],
    ["socket:[41004]", "netlink"],
    ["socket:[99999]", "socket (unlisted)"],
    ["anon_inode:[eventpoll]", "eventpoll"],
    ["anon_inode:[timerfd]", "timerfd"],
    ["anon_inode:inotify", "inotify"],
    ["pipe:[41010]", "pipe"],
    ["/dev/null", "dev"],
    ["/work/main/src/main.ts", "file"],
  ])("%s is %s", (link, kind) => expect(fdKind(link, sockets)).toBe(kind));
});

describe("metricSum", () => {
  const page = [
    "# HELP grpc_server_started_total Total number of RPCs started on the server.",
    "# TYPE grpc_server_started_total counter",
    'grpc_server_started_total{grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"} 7',
    'grpc_server_started_total{grpc_method="LeaseKeepAlive",grpc_service="etcdserverpb.Lease",grpc_type="bidi_stream"} 5',
    'grpc_server_started_total{grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 100',
    "grpc_server_started_total_extra 1000",
    "etcd_debugging_mvcc_watcher_total 3",
  ].join("\n");
  test("sums the samples whose labels match, and no other family", () => {
    expect(metricSum(page, "grpc_server_started_total", { grpc_type: "bidi_stream" })).toBe(12);
    expect(metricSum(page, "grpc_server_started_total")).toBe(112);
    expect(metricSum(page, "etcd_debugging_mvcc_watcher_total")).toBe(3);
    expect(metricSum(page, "absent_total")).toBe(0);
  });
});
