import { describe, expect, test } from "bun:test";
import { nearestKind, TALOS_KINDS } from "./kinds.ts";

const KNOWN = ["Layer2VIPConfig", "VIPAgentConfig", ...[...TALOS_KINDS].filter((k) => k !== "Layer2VIPConfig")];

describe("nearestKind", () => {
  test("a known kind is nobody's misspelling", () => {
    for (const k of KNOWN) expect(nearestKind(k, KNOWN)).toBeNull();
  });

  test("every known kind in another case is taken for itself, never for a neighbour", () => {
    for (const k of KNOWN) {
      expect(nearestKind(k.toLowerCase(), KNOWN)).toBe(k);
      expect(nearestKind(k.toUpperCase(), KNOWN)).toBe(k);
    }
  });

  test("one or two edits in a long kind, one in a short one; more is no near miss", () => {
    const cases: [string, string | null][] = [
      ["VIPAgentConfg", "VIPAgentConfig"], // a letter dropped
      ["VIPAgnetConfig", "VIPAgentConfig"], // two letters swapped: one edit
      ["VIPAgntConfg", "VIPAgentConfig"], // two dropped
      ["Layer2VIPConfigs", "Layer2VIPConfig"],
      ["Layer3VIPConfig", "Layer2VIPConfig"],
      ["DHCPv5Config", "DHCPv4Config"], // as near DHCPv6Config: the first in the list
      ["OOMConfg", "OOMConfig"],
      ["OOMConf", null], // two edits in a short kind
      ["VIPAgtConf", null],
      ["VIPConfig", null],
      ["AgentConfig", null],
    ];
    for (const [kind, meant] of cases) expect([kind, nearestKind(kind, KNOWN)]).toEqual([kind, meant]);
  });
});
