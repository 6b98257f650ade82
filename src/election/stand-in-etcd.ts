// A stand-in for etcd at the message level, for the election's unit tests:
// the session's KvCalls (one transaction, one range) evaluated against an
// in-memory key space with etcd's revisions. It speaks just the part of
// etcd vipd's writes use: compares on create and mod revision with Equal,
// puts, single-key deletes, and ranges over one key or a prefix (count_only,
// keys_only). Anything else throws, so a write that starts using more is
// noticed here rather than judged by rules this file does not know.
//
// Only unit tests use it, and it lives beside them because tests in src/
// import nothing from test/. Integration tests use a real etcd
// (test/lab/etcd.ts); this is for the decisions around the writes, which
// need many exact situations fast.
import type { ICompare, IRangeRequest, IRangeResponse, IRequestOp, ITxnRequest, ITxnResponse } from "etcd3";
import type { KvCalls } from "./transactions.ts";
import type { Kv } from "./view.ts";

interface Stored {
  value: Buffer;
  create: number;
  mod: number;
  lease: string;
}

export class StandInEtcd implements KvCalls {
  revision = 1;
  readonly #kvs = new Map<string, Stored>();
  /** Every transaction, in the order it arrived. */
  readonly txns: ITxnRequest[] = [];
  /** Every range outside a transaction. */
  readonly ranges: IRangeRequest[] = [];
  /** Called with each transaction as it arrives, before it is evaluated: a test may change the key space there (someone else's write landing first). */
  beforeTxn: ((req: ITxnRequest) => void) | null = null;

  /** Writes a key as another writer would; returns the revision. */
  put(key: string, value: string, lease = "0"): string {
    this.revision++;
    const had = this.#kvs.get(key);
    this.#kvs.set(key, { value: Buffer.from(value), create: had?.create ?? this.revision, mod: this.revision, lease });
    return String(this.revision);
  }

  delete(key: string): string {
    this.revision++;
    this.#kvs.delete(key);
    return String(this.revision);
  }

  get(key: string): { value: string; createRevision: string; modRevision: string; lease: string } | undefined {
    const s = this.#kvs.get(key);
    return s && { value: s.value.toString(), createRevision: String(s.create), modRevision: String(s.mod), lease: s.lease };
  }

  keys(): string[] {
    return [...this.#kvs.keys()].sort();
  }

  /** Everything, as a view's load() takes it. */
  kvs(): Kv[] {
    return [...this.#kvs].map(([k, s]) => ({ key: Buffer.from(k), value: s.value, create_revision: String(s.create), mod_revision: String(s.mod) }));
  }

  async txn(req: ITxnRequest): Promise<ITxnResponse> {
    this.txns.push(req);
    this.beforeTxn?.(req);
    const succeeded = (req.compare ?? []).every((c) => this.#holds(c));
    const ops = (succeeded ? req.success : req.failure) ?? [];
    const writes = ops.some((op) => op.request_put || op.request_delete_range);
    if (writes) this.revision++;
    const responses = ops.map((op) => this.#op(op));
    return { header: { revision: String(this.revision) }, succeeded, responses } as unknown as ITxnResponse;
  }

  async range(req: IRangeRequest): Promise<IRangeResponse> {
    this.ranges.push(req);
    return this.#range(req);
  }

  #holds(c: ICompare): boolean {
    if (c.result !== "Equal") throw new Error(`stand-in etcd: compare result ${c.result}`);
    const s = this.#kvs.get(String(c.key));
    if (c.target === "Create") return String(s?.create ?? 0) === String(c.create_revision);
    if (c.target === "Mod") return String(s?.mod ?? 0) === String(c.mod_revision);
    throw new Error(`stand-in etcd: compare target ${c.target}`);
  }

  #op(op: IRequestOp) {
    if (op.request_put) {
      const key = String(op.request_put.key);
      const had = this.#kvs.get(key);
      this.#kvs.set(key, { value: Buffer.from(op.request_put.value ?? ""), create: had?.create ?? this.revision, mod: this.revision, lease: String(op.request_put.lease ?? "0") });
      return { response_put: {} };
    }
    if (op.request_delete_range) {
      if (op.request_delete_range.range_end) throw new Error("stand-in etcd: ranged delete");
      this.#kvs.delete(String(op.request_delete_range.key));
      return { response_delete_range: {} };
    }
    if (op.request_range) return { response_range: this.#range(op.request_range) };
    throw new Error("stand-in etcd: nested transaction");
  }

  #range(req: IRangeRequest): IRangeResponse {
    const from = String(req.key);
    const end = req.range_end ? String(req.range_end) : null;
    const hit = [...this.#kvs].filter(([k]) => (end === null ? k === from : k >= from && k < end)).sort(([a], [b]) => (a < b ? -1 : 1));
    const kvs = req.count_only ? [] : hit.map(([k, s]) => ({
      key: Buffer.from(k),
      value: req.keys_only ? Buffer.alloc(0) : s.value,
      create_revision: String(s.create),
      mod_revision: String(s.mod),
      lease: s.lease,
      version: "1",
    }));
    return { header: { revision: String(this.revision) }, kvs, count: String(hit.length), more: false } as unknown as IRangeResponse;
  }
}
