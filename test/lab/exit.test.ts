// The lab's exit registry, in child processes that exit in each way a test or
// benchmark can: a normal end, an uncaught error, SIGINT and SIGTERM.
import { expect, test } from "bun:test";
import { join } from "node:path";

const EXIT_TS = join(import.meta.dir, "exit.ts");

/**
 * Runs a script that registers cleanups "a", "b", "c" (and unregisters "b"),
 * each printing its name, then ends with `ending`. Returns what it printed
 * and its exit code.
 */
async function run(ending: string): Promise<{ out: string[]; code: number }> {
  const script = `
    import { onExit, runExitCleanups } from ${JSON.stringify(EXIT_TS)};
    onExit(() => console.log("a"));
    const unregisterB = onExit(() => console.log("b"));
    onExit(() => console.log("c"));
    unregisterB();
    console.log("ready");
    ${ending}
  `;
  const p = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "ignore", stdin: "ignore" });
  const text = new Response(p.stdout).text();
  const code = await p.exited;
  return { out: (await text).trim().split("\n"), code };
}

test("cleanups run once at a normal exit, newest first, without the unregistered one", async () => {
  expect(await run("")).toEqual({ out: ["ready", "c", "a"], code: 0 });
});

test("an explicit run does them all, and the exit that follows runs none again", async () => {
  expect(await run(`runExitCleanups(); console.log("after");`)).toEqual({ out: ["ready", "c", "a", "after"], code: 0 });
});

test("an uncaught error still runs them", async () => {
  const r = await run(`throw new Error("boom");`);
  expect(r.out).toEqual(["ready", "c", "a"]);
  expect(r.code).toBe(1);
});

test("a cleanup that throws does not stop the older ones", async () => {
  const r = await run(`onExit(() => { throw new Error("broken"); });`);
  expect(r).toEqual({ out: ["ready", "c", "a"], code: 0 });
});

for (const [sig, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
  test(`${sig} runs them once, then exits ${code} as the signal would have`, async () => {
    // The script signals itself, then stays alive for the handler to act.
    const r = await run(`process.kill(process.pid, ${JSON.stringify(sig)}); setTimeout(() => console.log("survived"), 5000);`);
    expect(r).toEqual({ out: ["ready", "c", "a"], code });
  });
}
