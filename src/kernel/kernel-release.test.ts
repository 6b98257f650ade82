import { describe, expect, test } from "bun:test";
import { kernelTooOld, MINIMUM_KERNEL, parseKernelRelease, readKernelRelease } from "./kernel-release.ts";

describe("parseKernelRelease", () => {
  const cases: [string, { major: number; minor: number } | null][] = [
    ["5.15.0-91-generic", { major: 5, minor: 15 }],
    ["5.10.0-28-amd64\n", { major: 5, minor: 10 }],
    ["4.18.0-513.5.1.el8_9.x86_64", { major: 4, minor: 18 }],
    ["6.18.44-fc-v1272", { major: 6, minor: 18 }],
    ["6.1", { major: 6, minor: 1 }],
    ["10.0-rc1", { major: 10, minor: 0 }],
    ["", null],
    ["linux-5.15", null],
    ["5", null],
    ["5.x", null],
  ];
  for (const [release, want] of cases) test(JSON.stringify(release), () => expect(parseKernelRelease(release)).toEqual(want));
});

describe("kernelTooOld", () => {
  test("the kernels vipd is meant for pass: RHEL 8, Debian 11, Ubuntu 22.04, RHEL 9, newer", () => {
    for (const r of ["4.18.0-513.5.1.el8_9.x86_64", "5.10.0-28-amd64", "5.15.0-91-generic", "5.14.0-362.8.1.el9_3.x86_64", "6.18.44-fc-v1272", "10.0.0"]) {
      expect(kernelTooOld(r)).toBeNull();
    }
  });

  test("the minimum itself passes; the release before it does not", () => {
    expect(MINIMUM_KERNEL).toEqual({ major: 4, minor: 8 });
    expect(kernelTooOld("4.8.0")).toBeNull();
    expect(kernelTooOld("4.7.10")).toBe(
      "Linux 4.7.10 is older than 4.8, the oldest kernel vipd runs on (its nftables fence needs inverted set lookups, Linux 4.8)",
    );
  });

  test("older kernels are refused, whatever the distribution", () => {
    for (const r of ["3.10.0-1160.el7.x86_64", "4.4.0-210-generic", "2.6.32"]) expect(kernelTooOld(r)).toMatch(/^Linux .* is older than 4\.8/);
  });

  test("a release it cannot read is refused, not guessed", () => {
    expect(kernelTooOld("custom\n")).toBe(`cannot tell the kernel's version from its release "custom"; vipd needs Linux 4.8 or later`);
  });

  test("another minimum can be injected", () => {
    expect(kernelTooOld("5.15.0", { major: 5, minor: 16 })).toMatch(/^Linux 5\.15\.0 is older than 5\.16/);
    expect(kernelTooOld("5.16.0", { major: 5, minor: 16 })).toBeNull();
  });

  test("this machine's kernel is read and passes", () => {
    const release = readKernelRelease();
    expect(parseKernelRelease(release)).not.toBeNull();
    expect(kernelTooOld(release)).toBeNull();
  });
});
