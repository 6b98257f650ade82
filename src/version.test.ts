import { expect, test } from "bun:test";
import { BUILD } from "./version.ts";

test("from source, the version is package.json's with -dev: agents run from a checkout tell it in etcd (vipd status)", async () => {
  const pkg = (await Bun.file(new URL("../package.json", import.meta.url)).json()) as { version: string };
  expect(BUILD.version).toBe(`${pkg.version}-dev`);
});
