// The request/reply machinery of NetlinkSocket against the real kernel, with
// read-only rtnetlink requests (RTM_GETLINK of the loopback link), so no
// privilege is needed and nothing changes. The clock is faked to make a
// sendto look slow: no test sleeps.
import { afterEach, describe, expect, test } from "bun:test";
import { KernelError } from "./error.ts";
import { NetlinkSocket, type Outgoing, type SlowSends, splitAtMarker } from "./netlink.ts";
import { decodeLink, getLinkRequest, RTM_NEWLINK } from "./wire/link.ts";
import { type NetlinkMessage, NLM_F_ACK, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_ERROR, NLMSG_NOOP } from "./wire/netlink.ts";

const LO = 1;
const NO_SUCH_LINK = 0x7fffff00;

/**
 * A clock read twice for each send (before building, after sendto); the first `times`
 * sends take `slowMs` by it, the rest nothing. `sends` counts the sendto calls.
 */
function slowSends(slowMs: number, times: number) {
  let now = 1000;
  let readings = 0;
  return {
    clock: () => {
      readings++;
      if (readings % 2 === 0 && readings / 2 <= times) now += slowMs;
      return now;
    },
    sends: () => readings / 2,
  };
}

const names = (replies: NetlinkMessage[]) =>
  replies.filter((m) => m.type === RTM_NEWLINK).map((m) => {
    const l = decodeLink(m.payload);
    return l instanceof Error ? l.message : l.name;
  });

let sock: NetlinkSocket | undefined;
afterEach(() => {
  sock?.close();
  sock = undefined;
});

describe("NetlinkSocket.request", () => {
  test("a request built at send time whose sendto was slow is built and sent again at once", async () => {
    const time = slowSends(5, 1);
    const told: SlowSends[] = [];
    sock = NetlinkSocket.open({ clock: time.clock, onSlowSends: (s) => told.push(s) });
    let builds = 0;
    const replies = await sock.request(() => {
      builds++;
      return getLinkRequest({ index: LO });
    }, "looking up link 1");
    expect(builds).toBe(2);
    expect(time.sends()).toBe(2);
    // The resend was fast: nothing counted late, nothing to tell.
    expect(told).toEqual([]);
    // Only the last send's reply is returned, and the first one's was consumed too.
    expect(names(replies)).toEqual(["lo"]);
    expect(sock.drain("checking for leftovers").messages).toEqual([]);
  });

  test("each message of a datagram adds 0.1 ms to what counts as a slow send", async () => {
    // 100 lookups in one datagram: 11 ms is within 2 + 100 × 0.1; 13 ms is not.
    const hundred = () => Array.from({ length: 100 }, () => getLinkRequest({ index: LO }));
    const within = slowSends(11, 1);
    sock = NetlinkSocket.open({ clock: within.clock });
    await sock.request(hundred, "looking up link 1 a hundred times");
    expect(within.sends()).toBe(1);
    sock.close();
    const beyond = slowSends(13, 1);
    sock = NetlinkSocket.open({ clock: beyond.clock });
    await sock.request(hundred, "looking up link 1 a hundred times");
    expect(beyond.sends()).toBe(2);
  });

  test("a message that carries many items (an nftables set's elements) counts each of them, not one", async () => {
    // One message of 100 set elements takes the kernel as long as 100 messages of one:
    // 11 ms is within 2 + 100 × 0.1. Counted as one message it went three times.
    const one = () => [{ ...getLinkRequest({ index: LO }), items: 100 }];
    const within = slowSends(11, 1);
    sock = NetlinkSocket.open({ clock: within.clock });
    await sock.request(one, "looking up link 1 as if it were 100 elements");
    expect(within.sends()).toBe(1);
    sock.close();
    const beyond = slowSends(13, 1);
    sock = NetlinkSocket.open({ clock: beyond.clock });
    await sock.request(one, "looking up link 1 as if it were 100 elements");
    expect(beyond.sends()).toBe(2);
  });

  test("resends are bounded: three sends in all, however slow, and the socket's owner is told the last counted late", async () => {
    const told: SlowSends[] = [];
    sock = NetlinkSocket.open({ clock: slowSends(50, Infinity).clock, onSlowSends: (s) => told.push(s) });
    let builds = 0;
    const replies = await sock.request(() => {
      builds++;
      return getLinkRequest({ index: LO });
    }, "looking up link 1");
    expect(builds).toBe(3);
    expect(told).toEqual([{ operation: "looking up link 1", sends: 3, lastMs: 50, messages: 1 }]);
    expect(names(replies)).toEqual(["lo"]);
    expect(sock.drain("checking for leftovers").messages).toEqual([]);
  });

  test("a fast send is not repeated, and a request given as a value never is", async () => {
    const fast = slowSends(0, 0);
    sock = NetlinkSocket.open({ clock: fast.clock });
    let builds = 0;
    await sock.request(() => {
      builds++;
      return getLinkRequest({ index: LO });
    }, "looking up link 1");
    expect(builds).toBe(1);
    expect(fast.sends()).toBe(1);
    sock.close();
    const slow = slowSends(50, Infinity);
    const told: SlowSends[] = [];
    sock = NetlinkSocket.open({ clock: slow.clock, onSlowSends: (s) => told.push(s) });
    expect(names(await sock.request(getLinkRequest({ index: LO }), "looking up link 1"))).toEqual(["lo"]);
    expect(slow.sends()).toBe(1);
    // Nothing in it was read from the clock: nothing counts late.
    expect(told).toEqual([]);
    expect(sock.drain("checking for leftovers").messages).toEqual([]);
  });

  test("a request that must create what it names (NLM_F_EXCL) is sent once, however slow", async () => {
    const slow = slowSends(50, Infinity);
    const told: SlowSends[] = [];
    sock = NetlinkSocket.open({ clock: slow.clock, onSlowSends: (s) => told.push(s) });
    // Resending an exclusive RTM_NEWADDR would fail with EEXIST after the
    // first one succeeded. A GET stands in for it here, needing no privilege:
    // on a GET the same bit is NLM_F_MATCH, and the kernel answers with a dump
    // (of every link: a dump filtered by index is refused under strict checks).
    const get = getLinkRequest({ index: 0 });
    let builds = 0;
    await sock.request(() => {
      builds++;
      return { ...get, flags: get.flags | NLM_F_EXCL };
    }, "listing links");
    expect(builds).toBe(1);
    expect(slow.sends()).toBe(1);
    // Sent once and late: its owner hears of it as of a request slow three times.
    expect(told).toEqual([{ operation: "listing links", sends: 1, lastMs: 50, messages: 1 }]);
  });

  test("several messages go in one datagram and each gets its answer", async () => {
    sock = NetlinkSocket.open();
    const replies = await sock.request([getLinkRequest({ index: LO }), getLinkRequest({ name: "lo" })], "looking up lo twice");
    expect(names(replies)).toEqual(["lo", "lo"]);
  });

  test("the error of one message of several names that message", async () => {
    sock = NetlinkSocket.open();
    const missing: Outgoing = { ...getLinkRequest({ index: NO_SUCH_LINK }), operation: `looking up link ${NO_SUCH_LINK}` };
    const err = await sock.request([getLinkRequest({ index: LO }), missing], "looking up two links").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KernelError);
    expect((err as KernelError).message).toStartWith(`ENODEV: looking up link ${NO_SUCH_LINK}`);
    // Without a name of its own, a message's error carries the request's.
    const plain = await sock.request([getLinkRequest({ index: NO_SUCH_LINK })], "looking up a link").catch((e: unknown) => e);
    expect((plain as KernelError).message).toStartWith("ENODEV: looking up a link");
    // The socket is usable after an error.
    expect(names(await sock.request(getLinkRequest({ index: LO }), "looking up link 1"))).toEqual(["lo"]);
  });
});

describe("NetlinkSocket.listen's drain marker", () => {
  const change = (seq: number): NetlinkMessage => ({ type: RTM_NEWLINK, flags: 0, seq, pid: 0, payload: new Uint8Array(16) });
  const ack = (seq: number): NetlinkMessage => ({ type: NLMSG_ERROR, flags: 0, seq, pid: 4242, payload: new Uint8Array(20) });

  test.each([
    ["no marker awaited: every change before, late ACKs left out", [change(1), ack(7), change(2)], null, [1, 2], false, []],
    ["an awaited ACK splits the chunk: older changes before the drain, newer after", [change(1), ack(7), change(2)], [7], [1], true, [2]],
    ["the ACK of an earlier loss's marker does not drain this one", [change(1), ack(6), change(2)], [7], [1, 2], false, []],
    ["any of the markers sent since the loss drains it; a second ACK is left out", [ack(8), change(3), ack(9)], [8, 9], [], true, [3]],
  ] as const)("%s", (_name, messages, awaited, before, drained, after) => {
    const split = splitAtMarker(messages, awaited === null ? null : new Set(awaited));
    expect(split.before.map((m) => m.seq)).toEqual([...before]);
    expect(split.drained).toBe(drained);
    expect(split.after.map((m) => m.seq)).toEqual([...after]);
  });

  test("the kernel answers the marker, an NLMSG_NOOP asking for an ACK, and changes nothing", async () => {
    sock = NetlinkSocket.open();
    const replies = await sock.request({ type: NLMSG_NOOP, flags: NLM_F_REQUEST | NLM_F_ACK, payload: new Uint8Array(0) }, "sending a drain marker");
    // The ACK itself is consumed by the request; nothing else came.
    expect(replies).toEqual([]);
    expect(sock.drain("checking for leftovers").messages).toEqual([]);
  });

  test("a listening socket refuses requests: its stream would take their answers for the markers'", async () => {
    sock = NetlinkSocket.open({ kernelOnly: true });
    sock.listen(() => {});
    const err = await sock.request(getLinkRequest({ index: LO }), "looking up link 1").catch((e: unknown) => e);
    expect((err as Error).message).toContain("on a socket that listens for events");
  });
});
