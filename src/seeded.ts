// Seeded randomness for the fuzz tests: a failure names a seed, and the same
// seed gives the same inputs on every machine. In src/ because src/'s own
// fuzz tests and the wire fuzz driver (kernel/wire/fuzz-decoders.ts, run in a
// worker) use it, and src/ imports nothing from test/; vipd itself never does.

export type Rand = () => number;

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
export function prng(seed: number): Rand {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** A whole number in [0, n). */
export const int = (rand: Rand, n: number): number => Math.floor(rand() * n);
export const pick = <T>(rand: Rand, xs: readonly T[]): T => xs[int(rand, xs.length)]!;
export const bytes = (rand: Rand, n: number): Uint8Array => Uint8Array.from({ length: n }, () => int(rand, 256));
