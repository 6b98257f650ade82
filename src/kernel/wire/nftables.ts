// nf_tables messages over nfnetlink (linux/netfilter/nfnetlink.h,
// linux/netfilter/nf_tables.h): the batch frame, tables, base chains, sets,
// rules built from a handful of expressions, set elements with timeouts, and
// the set element dump. Pure encode/decode; no syscalls.
//
// Two byte orders meet here. The netlink header and attribute headers are in
// host order, like all of netlink; nfgenmsg's res_id and every nf_tables
// attribute value (u32, u64) are big-endian (NLA_BE32/NLA_BE64 in the
// kernel's policies); packet data (protocol numbers, addresses) is compared
// as the packet carries it, in network order.
//
// Longer than most files here (about 500 lines) and kept whole: it is one
// wire format, nf_tables' own, whose ten message kinds share the byte-order
// helpers, the attribute numbers and the expression encoder; split by
// message, each piece would re-import them all and the byte-order rule
// above would hold in several files. It reads top to bottom like the header
// it follows.
import type { Request } from "./link.ts";
import {
  type Attr,
  attrMap,
  attrString,
  encodeAttrs,
  NLA_F_NESTED,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_REQUEST,
  parseAttrs,
  readString,
  view,
} from "./netlink.ts";
import { WireError } from "./error.ts";

export const NFNL_SUBSYS_NFTABLES = 10;
/** NLMSG_MIN_TYPE and the next one: the frame around a transaction. */
export const NFNL_MSG_BATCH_BEGIN = 0x10;
export const NFNL_MSG_BATCH_END = 0x11;

// enum nf_tables_msg_types; on the wire, nlmsg_type = NFNL_SUBSYS_NFTABLES << 8 | msg.
export const NFT_MSG_NEWTABLE = 0;
export const NFT_MSG_DELTABLE = 2;
export const NFT_MSG_NEWCHAIN = 3;
export const NFT_MSG_GETCHAIN = 4;
export const NFT_MSG_DELCHAIN = 5;
export const NFT_MSG_NEWRULE = 6;
export const NFT_MSG_GETRULE = 7;
export const NFT_MSG_NEWSET = 9;
export const NFT_MSG_NEWSETELEM = 12;
export const NFT_MSG_GETSETELEM = 13;
export const NFT_MSG_DELSETELEM = 14;

/** The nlmsg_type of an nf_tables message. */
export const nftType = (msg: number) => (NFNL_SUBSYS_NFTABLES << 8) | msg;

/** NEWRULE: add at the end of the chain (linux/netlink.h, a NEW request flag). */
export const NLM_F_APPEND = 0x800;

export const AF_UNSPEC = 0;

// The table families vipd uses (enum nfproto, linux/netfilter.h), and the
// hooks of each that its chains attach to.
/** IPv4 and IPv6 in one table; `meta nfproto` tells them apart. */
export const NFPROTO_INET = 1;
/** ARP, as arp_rcv and arp_xmit hand it to netfilter. */
export const NFPROTO_ARP = 3;
/** `meta nfproto` values in an inet table. */
export const NFPROTO_IPV4 = 2;
export const NFPROTO_IPV6 = 10;
/** enum nf_inet_hooks: delivered to a local socket, and sent by the local stack. */
export const NF_INET_LOCAL_IN = 1;
export const NF_INET_LOCAL_OUT = 3;
/** linux/netfilter_arp.h: ARP received (arp_rcv), and ARP sent (arp_xmit). */
export const NF_ARP_IN = 0;
export const NF_ARP_OUT = 1;
/**
 * Per device: where vipd before 0.3 kept its table (netdev ingress and, from
 * Linux 5.16, egress). Only read for what such a table names, then deleted.
 */
export const NFPROTO_NETDEV = 5;
export type Family = typeof NFPROTO_INET | typeof NFPROTO_ARP | typeof NFPROTO_NETDEV;

export const NF_DROP = 0;
export const NF_ACCEPT = 1;

// Attribute numbers, each enum from nf_tables.h.
const NFTA_TABLE_NAME = 1;
const NFTA_TABLE_FLAGS = 2;
const NFTA_CHAIN_TABLE = 1;
const NFTA_CHAIN_NAME = 3;
const NFTA_CHAIN_HOOK = 4;
const NFTA_CHAIN_POLICY = 5;
const NFTA_CHAIN_TYPE = 7;
const NFTA_HOOK_HOOKNUM = 1;
/** The one device a netdev base chain hooks. */
const NFTA_HOOK_DEV = 3;
const NFTA_HOOK_PRIORITY = 2;
const NFTA_SET_TABLE = 1;
const NFTA_SET_NAME = 2;
const NFTA_SET_FLAGS = 3;
const NFTA_SET_KEY_TYPE = 4;
const NFTA_SET_KEY_LEN = 5;
const NFTA_SET_ID = 10;
const NFTA_SET_ELEM_LIST_TABLE = 1;
const NFTA_SET_ELEM_LIST_SET = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS = 3;
const NFTA_SET_ELEM_LIST_SET_ID = 4;
const NFTA_LIST_ELEM = 1;
const NFTA_SET_ELEM_KEY = 1;
const NFTA_SET_ELEM_TIMEOUT = 4;
const NFTA_SET_ELEM_EXPIRATION = 5;
const NFTA_DATA_VALUE = 1;
const NFTA_DATA_VERDICT = 2;
const NFTA_VERDICT_CODE = 1;
const NFTA_RULE_TABLE = 1;
const NFTA_RULE_CHAIN = 2;
const NFTA_RULE_EXPRESSIONS = 4;
const NFTA_EXPR_NAME = 1;
const NFTA_EXPR_DATA = 2;
const NFTA_META_DREG = 1;
const NFTA_META_KEY = 2;
const NFTA_CMP_SREG = 1;
const NFTA_CMP_OP = 2;
const NFTA_CMP_DATA = 3;
const NFTA_PAYLOAD_DREG = 1;
const NFTA_PAYLOAD_BASE = 2;
const NFTA_PAYLOAD_OFFSET = 3;
const NFTA_PAYLOAD_LEN = 4;
const NFTA_LOOKUP_SET = 1;
const NFTA_LOOKUP_SREG = 2;
const NFTA_LOOKUP_SET_ID = 4;
const NFTA_LOOKUP_FLAGS = 5;
const NFTA_IMMEDIATE_DREG = 1;
const NFTA_IMMEDIATE_DATA = 2;

// enum nft_set_flags
export const NFT_SET_CONSTANT = 0x2;
export const NFT_SET_TIMEOUT = 0x10;
/** enum nft_lookup_flags: match when the key is NOT in the set. */
export const NFT_LOOKUP_F_INV = 0x1;

// enum nft_registers: the verdict register, and the first 16-byte data register.
export const NFT_REG_VERDICT = 0;
export const NFT_REG_1 = 1;

// enum nft_meta_keys
export const NFT_META_NFPROTO = 15;
export const NFT_META_L4PROTO = 16;

// enum nft_payload_bases
export const NFT_PAYLOAD_NETWORK_HEADER = 1;
export const NFT_PAYLOAD_TRANSPORT_HEADER = 2;

// enum nft_cmp_ops
export const NFT_CMP_EQ = 0;
export const NFT_CMP_NEQ = 1;

/**
 * The key types nft prints sets with (its datatype numbers, TYPE_IPADDR and
 * TYPE_IP6ADDR). The kernel stores NFTA_SET_KEY_TYPE for listings only and
 * matches keys by length.
 */
export const KEY_TYPES = {
  ipv4_addr: { type: 7, len: 4 },
  ipv6_addr: { type: 8, len: 16 },
} as const;
export type KeyType = keyof typeof KEY_TYPES;

export const NFGENMSG_LEN = 4;

function be32(value: number): Uint8Array {
  const out = new Uint8Array(4);
  view(out).setUint32(0, value >>> 0);
  return out;
}

function be64(value: number): Uint8Array {
  const out = new Uint8Array(8);
  view(out).setBigUint64(0, BigInt(value));
  return out;
}

const attrBe32 = (type: number, value: number): Attr => ({ type, data: be32(value) });
const attrBe64 = (type: number, value: number): Attr => ({ type, data: be64(value) });
const nested = (type: number, attrs: readonly Attr[]): Attr => ({ type: type | NLA_F_NESTED, data: encodeAttrs(attrs) });

/**
 * struct nfgenmsg, 4 bytes:
 *   u8   nfgen_family   NFPROTO_* (AF_UNSPEC in the batch frame)
 *   u8   version        NFNETLINK_V0
 *   be16 res_id         the subsystem in the batch frame; 0 in requests,
 *                       the ruleset generation (low 16 bits) in replies
 */
export function encodeNfgenmsg(family: number, resId: number): Uint8Array {
  const out = new Uint8Array(NFGENMSG_LEN);
  const v = view(out);
  v.setUint8(0, family);
  v.setUint16(2, resId);
  return out;
}

/** A table: nf_tables names tables per family, so `inet vipd` and `arp vipd` are two. */
export interface TableRef {
  readonly family: Family;
  readonly name: string;
}

/** An nf_tables request: nfgenmsg for the table's family, then the attributes. */
function message(family: Family, msg: number, flags: number, attrs: readonly Attr[]): Request {
  const hdr = encodeNfgenmsg(family, 0);
  const body = encodeAttrs(attrs);
  const payload = new Uint8Array(hdr.byteLength + body.byteLength);
  payload.set(hdr);
  payload.set(body, hdr.byteLength);
  return { type: nftType(msg), flags, payload };
}

// Every change asks for an ACK: inside a batch the kernel answers each
// message that asked, after the commit, and an error names its message by seq.
const CHANGE = NLM_F_REQUEST | NLM_F_ACK;

/**
 * The messages of one transaction travel between these two, in one datagram;
 * the kernel applies all of them or none. Without BATCH_END it checks each
 * message, answers, and then aborts: a dry run (what `nft --check` does).
 */
export const batchBegin = (): Request => ({
  type: NFNL_MSG_BATCH_BEGIN,
  flags: NLM_F_REQUEST,
  payload: encodeNfgenmsg(AF_UNSPEC, NFNL_SUBSYS_NFTABLES),
});

export const batchEnd = (): Request => ({
  type: NFNL_MSG_BATCH_END,
  flags: NLM_F_REQUEST,
  payload: encodeNfgenmsg(AF_UNSPEC, NFNL_SUBSYS_NFTABLES),
});

/**
 * NEWTABLE with no flags: creates the table, or leaves an existing one as it
 * is (no NLM_F_EXCL). Never NFT_TABLE_F_OWNER: an owned table dies with the
 * socket that made it, and the fence must outlive a killed process.
 */
export const newTable = (t: TableRef): Request =>
  message(t.family, NFT_MSG_NEWTABLE, CHANGE, [attrString(NFTA_TABLE_NAME, t.name), attrBe32(NFTA_TABLE_FLAGS, 0)]);

/** DELTABLE: the table with all its chains, rules and sets. ENOENT if absent. */
export const deleteTable = (t: TableRef): Request => message(t.family, NFT_MSG_DELTABLE, CHANGE, [attrString(NFTA_TABLE_NAME, t.name)]);

export interface BaseChain {
  readonly table: TableRef;
  readonly name: string;
  /** A hook of the table's family: NF_INET_* for inet, NF_ARP_* for arp. */
  readonly hook: number;
  /** Lower runs first; a signed 32-bit number. */
  readonly priority: number;
  readonly policy: typeof NF_ACCEPT | typeof NF_DROP;
}

/**
 * NEWCHAIN for a filter base chain; the hook is nested (enum
 * nft_hook_attributes). The inet and arp hooks are not per device, so
 * there is no NFTA_HOOK_DEV.
 */
export const newChain = (c: BaseChain): Request =>
  message(c.table.family, NFT_MSG_NEWCHAIN, CHANGE | NLM_F_CREATE, [
    attrString(NFTA_CHAIN_TABLE, c.table.name),
    attrString(NFTA_CHAIN_NAME, c.name),
    attrString(NFTA_CHAIN_TYPE, "filter"),
    attrBe32(NFTA_CHAIN_POLICY, c.policy),
    nested(NFTA_CHAIN_HOOK, [attrBe32(NFTA_HOOK_HOOKNUM, c.hook), attrBe32(NFTA_HOOK_PRIORITY, c.priority)]),
  ]);

export const deleteChain = (t: TableRef, name: string): Request =>
  message(t.family, NFT_MSG_DELCHAIN, CHANGE, [attrString(NFTA_CHAIN_TABLE, t.name), attrString(NFTA_CHAIN_NAME, name)]);

export interface SetSpec {
  readonly table: TableRef;
  readonly name: string;
  /** Names the set within the transaction, for messages that refer to it before it exists. */
  readonly id: number;
  readonly key: KeyType;
  /** NFT_SET_* */
  readonly flags: number;
}

export const newSet = (s: SetSpec): Request =>
  message(s.table.family, NFT_MSG_NEWSET, CHANGE | NLM_F_CREATE, [
    attrString(NFTA_SET_TABLE, s.table.name),
    attrString(NFTA_SET_NAME, s.name),
    attrBe32(NFTA_SET_FLAGS, s.flags),
    attrBe32(NFTA_SET_KEY_TYPE, KEY_TYPES[s.key].type),
    attrBe32(NFTA_SET_KEY_LEN, KEY_TYPES[s.key].len),
    attrBe32(NFTA_SET_ID, s.id),
  ]);

/** The expressions vipd's rules are made of. All data goes through NFT_REG_1. */
export type Expr =
  /** Load a packet property (NFT_META_*) into the register. */
  | { readonly kind: "meta"; readonly key: number }
  /** Compare the register with bytes, as they are in the packet. */
  | { readonly kind: "cmp"; readonly op: typeof NFT_CMP_EQ | typeof NFT_CMP_NEQ; readonly data: Uint8Array }
  /** Load `len` bytes at `offset` from a header (NFT_PAYLOAD_*_HEADER). */
  | { readonly kind: "payload"; readonly base: number; readonly offset: number; readonly len: number }
  /** Continue only if the register's bytes are (or, inverted, are not) in the set. */
  | { readonly kind: "lookup"; readonly set: string; readonly setId: number; readonly invert: boolean }
  /** A verdict (NF_DROP, NF_ACCEPT) into the verdict register. */
  | { readonly kind: "verdict"; readonly code: number };

/**
 * Each expression is an NFTA_LIST_ELEM holding NFTA_EXPR_NAME (the kernel's
 * name for it) and NFTA_EXPR_DATA (its own attributes, in nft's order).
 */
function encodeExpr(e: Expr): Attr {
  const expr = (name: string, attrs: Attr[]) =>
    nested(NFTA_LIST_ELEM, [attrString(NFTA_EXPR_NAME, name), nested(NFTA_EXPR_DATA, attrs)]);
  switch (e.kind) {
    case "meta":
      return expr("meta", [attrBe32(NFTA_META_KEY, e.key), attrBe32(NFTA_META_DREG, NFT_REG_1)]);
    case "cmp":
      return expr("cmp", [
        attrBe32(NFTA_CMP_SREG, NFT_REG_1),
        attrBe32(NFTA_CMP_OP, e.op),
        nested(NFTA_CMP_DATA, [{ type: NFTA_DATA_VALUE, data: e.data }]),
      ]);
    case "payload":
      return expr("payload", [
        attrBe32(NFTA_PAYLOAD_DREG, NFT_REG_1),
        attrBe32(NFTA_PAYLOAD_BASE, e.base),
        attrBe32(NFTA_PAYLOAD_OFFSET, e.offset),
        attrBe32(NFTA_PAYLOAD_LEN, e.len),
      ]);
    case "lookup":
      return expr("lookup", [
        attrBe32(NFTA_LOOKUP_SREG, NFT_REG_1),
        attrString(NFTA_LOOKUP_SET, e.set),
        attrBe32(NFTA_LOOKUP_SET_ID, e.setId),
        ...(e.invert ? [attrBe32(NFTA_LOOKUP_FLAGS, NFT_LOOKUP_F_INV)] : []),
      ]);
    case "verdict":
      return expr("immediate", [
        attrBe32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT),
        nested(NFTA_IMMEDIATE_DATA, [nested(NFTA_DATA_VERDICT, [attrBe32(NFTA_VERDICT_CODE, e.code)])]),
      ]);
  }
}

/** NEWRULE appended to the chain: the expressions run in order until one does not match. */
export const newRule = (t: TableRef, chain: string, exprs: readonly Expr[]): Request =>
  message(t.family, NFT_MSG_NEWRULE, CHANGE | NLM_F_CREATE | NLM_F_APPEND, [
    attrString(NFTA_RULE_TABLE, t.name),
    attrString(NFTA_RULE_CHAIN, chain),
    nested(NFTA_RULE_EXPRESSIONS, exprs.map(encodeExpr)),
  ]);

export interface SetElement {
  /** The key as the packet carries it: an address in network order. */
  readonly key: Uint8Array;
  /** NFTA_SET_ELEM_TIMEOUT: the element's lifetime, whole milliseconds. */
  readonly timeoutMs?: number;
  /**
   * NFTA_SET_ELEM_EXPIRATION: milliseconds until it expires. In a reply, what
   * is left; in a request, where to start the countdown (at most timeoutMs).
   */
  readonly expirationMs?: number;
}

/**
 * A set element (enum nft_set_elem_attributes), inside NFTA_LIST_ELEM:
 *   NFTA_SET_ELEM_TIMEOUT      be64 ms
 *   NFTA_SET_ELEM_EXPIRATION   be64 ms
 *   NFTA_SET_ELEM_KEY          nested NFTA_DATA_VALUE, the key's bytes
 */
function encodeElement(e: SetElement): Attr {
  return nested(NFTA_LIST_ELEM, [
    ...(e.timeoutMs === undefined ? [] : [attrBe64(NFTA_SET_ELEM_TIMEOUT, e.timeoutMs)]),
    ...(e.expirationMs === undefined ? [] : [attrBe64(NFTA_SET_ELEM_EXPIRATION, e.expirationMs)]),
    nested(NFTA_SET_ELEM_KEY, [{ type: NFTA_DATA_VALUE, data: e.key }]),
  ]);
}

function elementList(msg: number, flags: number, t: TableRef, set: string, elements: readonly SetElement[], setId?: number): Request {
  return message(t.family, msg, flags, [
    attrString(NFTA_SET_ELEM_LIST_TABLE, t.name),
    attrString(NFTA_SET_ELEM_LIST_SET, set),
    ...(setId === undefined ? [] : [attrBe32(NFTA_SET_ELEM_LIST_SET_ID, setId)]),
    nested(NFTA_SET_ELEM_LIST_ELEMENTS, elements.map(encodeElement)),
  ]);
}

/**
 * NEWSETELEM without NLM_F_EXCL: adds the elements; for one already there,
 * kernels since 6.12 take the new timeout and expiration, older ones keep the
 * old ones and answer success all the same. `setId` is for a set created in
 * the same transaction.
 */
export const newSetElements = (t: TableRef, set: string, elements: readonly SetElement[], setId?: number): Request =>
  elementList(NFT_MSG_NEWSETELEM, CHANGE | NLM_F_CREATE, t, set, elements, setId);

/** DELSETELEM: ENOENT (and the whole batch aborted) if one of them is not there. */
export const deleteSetElements = (t: TableRef, set: string, keys: readonly Uint8Array[]): Request =>
  elementList(NFT_MSG_DELSETELEM, CHANGE, t, set, keys.map((key) => ({ key })));

/** GETSETELEM dump: every element of the set, in NEWSETELEM messages, then NLMSG_DONE. */
export const getSetElements = (t: TableRef, set: string): Request =>
  message(t.family, NFT_MSG_GETSETELEM, NLM_F_REQUEST | NLM_F_DUMP, [
    attrString(NFTA_SET_ELEM_LIST_TABLE, t.name),
    attrString(NFTA_SET_ELEM_LIST_SET, set),
  ]);

export interface SetElements {
  readonly table: string;
  readonly set: string;
  readonly elements: SetElement[];
}

function readBe64(data: Uint8Array, what: string): number | WireError {
  if (data.byteLength < 8) return new WireError(`${what}: ${data.byteLength} bytes, need 8`);
  return Number(view(data).getBigUint64(0));
}

/**
 * The payload of a NEWSETELEM (a dump reply, an event, or our own request):
 * nfgenmsg, then the element list. The kernel's replies carry no NLA_F_NESTED
 * bits; parseAttrs ignores them either way.
 */
export function decodeSetElements(payload: Uint8Array): SetElements | WireError {
  if (payload.byteLength < NFGENMSG_LEN) return new WireError(`nfgenmsg truncated: ${payload.byteLength} bytes, need ${NFGENMSG_LEN}`);
  const attrs = parseAttrs(payload.subarray(NFGENMSG_LEN));
  if (attrs instanceof WireError) return attrs;
  const a = attrMap(attrs);
  const table = a.get(NFTA_SET_ELEM_LIST_TABLE);
  const set = a.get(NFTA_SET_ELEM_LIST_SET);
  if (!table || !set) return new WireError("set element list without NFTA_SET_ELEM_LIST_TABLE or _SET");
  const list = parseAttrs(a.get(NFTA_SET_ELEM_LIST_ELEMENTS) ?? new Uint8Array());
  if (list instanceof WireError) return list;
  const elements: SetElement[] = [];
  for (const item of list) {
    if (item.type !== NFTA_LIST_ELEM) continue;
    const e = decodeElement(item.data);
    if (e instanceof WireError) return e;
    elements.push(e);
  }
  return { table: readString(table), set: readString(set), elements };
}

function decodeElement(data: Uint8Array): SetElement | WireError {
  const attrs = parseAttrs(data);
  if (attrs instanceof WireError) return attrs;
  const a = attrMap(attrs);
  const keyAttrs = parseAttrs(a.get(NFTA_SET_ELEM_KEY) ?? new Uint8Array());
  if (keyAttrs instanceof WireError) return keyAttrs;
  const key = attrMap(keyAttrs).get(NFTA_DATA_VALUE);
  if (!key) return new WireError("set element without NFTA_SET_ELEM_KEY value");
  const out: { key: Uint8Array; timeoutMs?: number; expirationMs?: number } = { key: key.slice() };
  const timeout = a.get(NFTA_SET_ELEM_TIMEOUT);
  if (timeout) {
    const ms = readBe64(timeout, "NFTA_SET_ELEM_TIMEOUT");
    if (ms instanceof WireError) return ms;
    out.timeoutMs = ms;
  }
  const expiration = a.get(NFTA_SET_ELEM_EXPIRATION);
  if (expiration) {
    const ms = readBe64(expiration, "NFTA_SET_ELEM_EXPIRATION");
    if (ms instanceof WireError) return ms;
    out.expirationMs = ms;
  }
  return out;
}

/**
 * GETCHAIN dump: every chain of one family, in NEWCHAIN messages. Not
 * narrowed to one table: kernels before 5.x ignore a table in a chain dump.
 */
export const getChains = (family: Family): Request => message(family, NFT_MSG_GETCHAIN, NLM_F_REQUEST | NLM_F_DUMP, []);

/** GETRULE dump: every rule of one family, in NEWRULE messages (filtered by the reader, as above). */
export const getRules = (family: Family): Request => message(family, NFT_MSG_GETRULE, NLM_F_REQUEST | NLM_F_DUMP, []);

export interface ChainListing {
  readonly table: string;
  readonly name: string;
  /** The hook number, for a base chain; null for a regular chain. */
  readonly hook: number | null;
  /** The one device a netdev base chain hooks (NFTA_HOOK_DEV); null when none is named. */
  readonly device: string | null;
}

/** The payload of a NEWCHAIN from a dump: nfgenmsg, then the chain's attributes. */
export function decodeChain(payload: Uint8Array): ChainListing | WireError {
  if (payload.byteLength < NFGENMSG_LEN) return new WireError(`nfgenmsg truncated: ${payload.byteLength} bytes, need ${NFGENMSG_LEN}`);
  const attrs = parseAttrs(payload.subarray(NFGENMSG_LEN));
  if (attrs instanceof WireError) return attrs;
  const a = attrMap(attrs);
  const table = a.get(NFTA_CHAIN_TABLE);
  const name = a.get(NFTA_CHAIN_NAME);
  if (!table || !name) return new WireError("chain without NFTA_CHAIN_TABLE or _NAME");
  const hookData = a.get(NFTA_CHAIN_HOOK);
  if (!hookData) return { table: readString(table), name: readString(name), hook: null, device: null };
  const hookAttrs = parseAttrs(hookData);
  if (hookAttrs instanceof WireError) return hookAttrs;
  const h = attrMap(hookAttrs);
  const num = h.get(NFTA_HOOK_HOOKNUM);
  if (!num || num.byteLength < 4) return new WireError("base chain without NFTA_HOOK_HOOKNUM");
  const dev = h.get(NFTA_HOOK_DEV);
  return { table: readString(table), name: readString(name), hook: view(num).getUint32(0), device: dev ? readString(dev) : null };
}

/** The table and chain a NEWRULE from a dump belongs to. */
export function decodeRuleOwner(payload: Uint8Array): { table: string; chain: string } | WireError {
  if (payload.byteLength < NFGENMSG_LEN) return new WireError(`nfgenmsg truncated: ${payload.byteLength} bytes, need ${NFGENMSG_LEN}`);
  const attrs = parseAttrs(payload.subarray(NFGENMSG_LEN));
  if (attrs instanceof WireError) return attrs;
  const a = attrMap(attrs);
  const table = a.get(NFTA_RULE_TABLE);
  const chain = a.get(NFTA_RULE_CHAIN);
  if (!table || !chain) return new WireError("rule without NFTA_RULE_TABLE or _CHAIN");
  return { table: readString(table), chain: readString(chain) };
}
