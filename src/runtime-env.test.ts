import { expect, test } from "bun:test";
import { basename, join } from "node:path";
import { QUIET_RUNTIME, quietRuntime } from "./runtime-env.ts";

const NAMES = Object.keys(QUIET_RUNTIME);

// Prints what the re-executed image got: its environment as the kernel handed
// it over, and process.env after quietRuntime. (Whether the runtime's threads
// then stay quiet is measured by npm run bench:idle, not here: they start
// lazily, after this probe has printed.)
const PROBE = `
import { readFileSync } from "node:fs";
import { quietRuntime } from ${JSON.stringify(join(import.meta.dir, "runtime-env.ts"))};
quietRuntime();
const environ = readFileSync("/proc/self/environ", "utf8").split("\\0");
const comm = readFileSync("/proc/self/comm", "utf8").trim();
console.log(JSON.stringify({ pid: process.pid, comm, environ, env: process.env }));
`;

async function probe(env: Record<string, string>) {
  const p = Bun.spawn([process.execPath, "-e", PROBE], { env, stdout: "pipe", stderr: "inherit" });
  const out = await new Response(p.stdout).text();
  expect(await p.exited).toBe(0);
  return { spawned: p.pid, ...(JSON.parse(out) as { pid: number; comm: string; environ: string[]; env: Record<string, string> }) };
}

test("re-executes itself, as the same process, with the settings; hands none of them on", async () => {
  const r = await probe({ PATH: process.env.PATH ?? "", KEEP: "1" });
  expect(r.pid).toBe(r.spawned);
  // The same file again, so the same name as the binary started with.
  expect(r.comm).toBe(basename(process.execPath).slice(0, 15));
  for (const name of NAMES) {
    expect(r.environ).toContain(`${name}=${QUIET_RUNTIME[name]}`);
    expect(r.env[name]).toBeUndefined();
  }
  expect(r.env.VIPD_RUNTIME_ENV).toBeUndefined();
  expect(r.env.KEEP).toBe("1");
});

test("an operator's own value stays, and is handed on", async () => {
  const r = await probe({ PATH: process.env.PATH ?? "", BUN_JSC_useConcurrentJIT: "1" });
  expect(r.environ).toContain("BUN_JSC_useConcurrentJIT=1");
  expect(r.env.BUN_JSC_useConcurrentJIT).toBe("1");
  for (const name of NAMES.filter((n) => n !== "BUN_JSC_useConcurrentJIT")) expect(r.env[name]).toBeUndefined();
});

test("nothing to add: no exec, the environment untouched", () => {
  const env: Record<string, string | undefined> = { ...QUIET_RUNTIME };
  quietRuntime(env);
  expect(env).toEqual({ ...QUIET_RUNTIME });
});
