import { describe, expect, test } from "bun:test";
import { formatIp, isUnusableAsVip, parseIp, parseMac, formatMac } from "./ip.ts";

describe("parseIp", () => {
  const good: [string, string, number[]][] = [
    ["192.0.2.15", "192.0.2.15", [192, 0, 2, 15]],
    ["0.0.0.0", "0.0.0.0", [0, 0, 0, 0]],
    ["2001:db8::1", "2001:db8::1", [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]],
    ["2001:DB8:0:0:0:0:0:1", "2001:db8::1", [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]],
    ["::", "::", Array(16).fill(0)],
    ["::ffff:192.0.2.1", "::ffff:c000:201", [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1]],
    ["1:0:0:2:0:0:0:3", "1:0:0:2::3", [0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3]],
    ["1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8", [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8]],
  ];
  for (const [input, canon, bytes] of good) {
    test(`accepts ${input}`, () => {
      const ip = parseIp(input);
      expect(ip).not.toBeNull();
      expect(ip!.text).toBe(canon);
      expect(Array.from(ip!.bytes)).toEqual(bytes);
      expect(ip!.family).toBe(bytes.length === 4 ? 4 : 6);
    });
  }
  const bad = ["", "192.0.2", "192.0.2.256", "192.0.2.015", "1.2.3.4.5", "192.0.2.1/32", "fe80::1%eth0",
    "1::2::3", "1:2:3:4:5:6:7:8:9", "12345::", "g::1", "1:2:3:4:5:6:7", "host.example", " 192.0.2.1"];
  for (const input of bad) test(`rejects ${JSON.stringify(input)}`, () => expect(parseIp(input)).toBeNull());
});

test("formatIp compresses the longest zero run, first on ties (RFC 5952)", () => {
  expect(formatIp(parseIp("1:0:0:1:0:0:0:1")!.bytes)).toBe("1:0:0:1::1");
  expect(formatIp(parseIp("1:0:0:1:0:0:1:1")!.bytes)).toBe("1::1:0:0:1:1");
  expect(formatIp(parseIp("1:0:1:1:1:1:1:1")!.bytes)).toBe("1:0:1:1:1:1:1:1");
});

test("addresses no host may own are recognised", () => {
  for (const s of ["0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255", "169.254.1.1", "::", "::1", "ff02::1", "fe80::1"]) {
    expect(isUnusableAsVip(parseIp(s)!)).toBe(true);
  }
  for (const s of ["192.0.2.15", "10.0.0.1", "2001:db8::15", "fd00::1"]) expect(isUnusableAsVip(parseIp(s)!)).toBe(false);
});

test("MAC round trip", () => {
  expect(formatMac(parseMac("02:AB:cd:00:01:ff")!)).toBe("02:ab:cd:00:01:ff");
  expect(parseMac("02:ab:cd:00:01")).toBeNull();
});
