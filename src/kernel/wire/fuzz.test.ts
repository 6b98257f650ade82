// Seeded fuzzing of every wire decoder (fuzz-decoders.ts lists them): random
// bytes, and valid encodings truncated, bit-flipped, spliced and with length
// fields set to edge values. What comes off a netlink or packet socket is
// read by these, and a packet socket hears anything on the link: a decoder
// may refuse bytes only the way its contract says, never with an accidental
// RangeError or TypeError, and never loop.
//
// Reproducible: each test names its seed. More rounds on demand:
//
//   FUZZ_SCALE=10 node_modules/.bin/bun test src/kernel/wire/fuzz.test.ts
//   FUZZ_SEED=12345 node_modules/.bin/bun test src/kernel/wire/fuzz.test.ts   (another seed)
import { describe, expect, test } from "bun:test";
import { DECODERS, type Report } from "./fuzz-decoders.ts";

const scale = Number(process.env.FUZZ_SCALE);
const SCALE = scale > 0 ? scale : 1;
const SEED = (Number(process.env.FUZZ_SEED) >>> 0) || 0x5eed;
const hex = (n: number) => `0x${n.toString(16)}`;
const ROUNDS = Math.round(20_000 * SCALE);
/** Generous: a whole run takes well under a second; past this the decoder is stuck. */
const DEADLINE_MS = 30_000 * SCALE;
/** One call, however odd its input (at most a few kilobytes). */
const SLOWEST_CALL_MS = 250;

/** Runs one decoder's rounds in a worker, which can be stopped if a call never returns. */
async function runInWorker(name: string, seed: number): Promise<Report> {
  const progress = new SharedArrayBuffer(4);
  const worker = new Worker(new URL("./fuzz-decoders.ts", import.meta.url).href);
  let timer: Timer | undefined;
  try {
    return await new Promise<Report>((resolve, reject) => {
      worker.onmessage = (e: MessageEvent<Report>) => resolve(e.data);
      worker.onerror = (e) => reject(new Error(`worker for ${name}: ${e.message}`));
      timer = setTimeout(() => {
        const round = Atomics.load(new Int32Array(progress), 0);
        reject(new Error(`${name} did not finish in ${DEADLINE_MS} ms: stuck in round ${round} (seed ${hex(seed)})`));
      }, DEADLINE_MS);
      worker.postMessage({ name, seed, rounds: ROUNDS, progress });
    });
  } finally {
    clearTimeout(timer);
    worker.terminate();
  }
}

describe(`wire decoders fuzz (seed ${hex(SEED)}, FUZZ_SCALE=${SCALE})`, () => {
  const reports: Report[] = [];
  for (const [i, d] of DECODERS.entries()) {
    // Each decoder its own seed, so adding one leaves the others' inputs as they were.
    const seed = SEED + i;
    test(`${d.name}: ${ROUNDS} rounds, ${d.contract === "never fails" ? "never fails" : `only ${d.contract}`} (seed ${hex(seed)})`, async () => {
      const r = await runInWorker(d.name, seed);
      reports.push({ ...r, name: `${r.name} (seed ${hex(seed)})` });
      expect(r.failures).toEqual([]);
      expect(r.decoded + r.refused + r.nulls).toBe(ROUNDS);
      expect(r.slowestMs).toBeLessThan(SLOWEST_CALL_MS);
    }, DEADLINE_MS + 5000);
  }

  test("counts", () => {
    // The lines BENCHMARKS.md quotes.
    for (const r of reports) {
      console.log(`wire fuzz: ${r.name}: ${r.rounds} inputs, ${r.decoded} decoded, ${r.refused} refused, ${r.nulls} null, slowest call ${r.slowestMs.toFixed(2)} ms`);
    }
    const total = reports.reduce((n, r) => n + r.rounds, 0);
    console.log(`wire fuzz: ${reports.length} decoders, ${total} inputs (each decoded twice: at offset 0 and inside a larger buffer), seeds from ${hex(SEED)}`);
  });
});
