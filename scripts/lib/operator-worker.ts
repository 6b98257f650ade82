// An operator at a terminal, for the soak benchmark: run inside the client
// namespace by operator.ts, it reads one JSON request per line on stdin and
// runs the same code as `vipd handover`, `vipd drain` and `vipd undrain`
// (src/cli/operate.ts) against the etcd endpoint the request names, then
// prints one JSON line with the outcome. One long-lived process instead of
// one `vipd` process per move: starting the CLI costs more than the move.
//   {"op":"handover","endpoint":"http://192.0.2.11:2379"}
//   {"op":"drain","node":"n2","endpoint":"…"}   (waits until n2 holds nothing)
//   → {"outcome":"done","ms":61.2,"out":["…"],"err":[]}
import type { Etcd3 } from "etcd3";
import { connectEtcd } from "../../src/election/connection.ts";
import { type Asker, drain, handover, undrain } from "../../src/cli/operate.ts";

const [vip, prefix = "/vipd/"] = process.argv.slice(2);
if (!vip) {
  console.error("usage: operator-worker.ts VIP [PREFIX]");
  process.exit(2);
}

interface Request {
  op: "handover" | "drain" | "undrain";
  endpoint: string;
  node?: string;
}

/** One client per endpoint, kept for the whole run, as the agents keep theirs. */
const clients = new Map<string, Etcd3>();
const client = (endpoint: string): Etcd3 => {
  let c = clients.get(endpoint);
  if (!c) clients.set(endpoint, (c = connectEtcd({ endpoints: [endpoint] })));
  return c;
};

async function run(req: Request, a: Asker): Promise<string> {
  const c = client(req.endpoint);
  switch (req.op) {
    case "handover":
      return handover(c, prefix, { vip: vip!, to: null, timeoutMs: 10_000 }, a);
    case "drain":
      return drain(c, prefix, { node: req.node!, reason: "soak", force: false, waitMs: 10_000 }, a);
    case "undrain":
      return undrain(c, prefix, req.node!, a);
  }
}

for await (const line of console) {
  if (!line.trim()) continue;
  const out: string[] = [];
  const err: string[] = [];
  const asker: Asker = { by: "soak@lab", now: Date.now, out: (l) => out.push(l), err: (l) => err.push(l) };
  const t0 = performance.now();
  let outcome: string;
  try {
    outcome = await run(JSON.parse(line) as Request, asker);
  } catch (e) {
    outcome = "error";
    err.push(e instanceof Error ? e.message : String(e));
  }
  process.stdout.write(`${JSON.stringify({ outcome, ms: performance.now() - t0, out, err })}\n`);
}
for (const c of clients.values()) c.close();
process.exit(0);
