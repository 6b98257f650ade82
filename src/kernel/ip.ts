// IP addresses as vipd uses them: parsed once at the edge into a family and
// network-order bytes, formatted back in canonical form (RFC 5952 for IPv6).
// Pure; no syscalls.

export type Family = 4 | 6;

export interface IpAddress {
  readonly family: Family;
  /** Network byte order: 4 or 16 bytes. */
  readonly bytes: Uint8Array;
  /** Canonical text form. */
  readonly text: string;
}

/** Parses an IPv4 or IPv6 address (no prefix length, no zone); null if malformed. */
export function parseIp(text: string): IpAddress | null {
  const bytes = text.includes(":") ? parse6(text) : parse4(text);
  if (!bytes) return null;
  const family: Family = bytes.length === 4 ? 4 : 6;
  return Object.freeze({ family, bytes, text: formatIp(bytes) });
}

export function ipFromBytes(bytes: Uint8Array): IpAddress {
  if (bytes.length !== 4 && bytes.length !== 16) throw new RangeError(`an IP address has 4 or 16 bytes, not ${bytes.length}`);
  const copy = new Uint8Array(bytes);
  return Object.freeze({ family: copy.length === 4 ? 4 : 6, bytes: copy, text: formatIp(copy) });
}

function parse4(text: string): Uint8Array | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (const [i, p] of parts.entries()) {
    // Decimal only: "010" or "0x1" are ambiguous across tools, so refuse them.
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    out[i] = n;
  }
  return out;
}

function parse6(text: string): Uint8Array | null {
  if (text.includes("%") || text.length > 45) return null;
  let head = text;
  let tail4: Uint8Array | null = null;
  // An embedded IPv4 tail (::ffff:192.0.2.1) stands for the last two groups.
  const lastColon = text.lastIndexOf(":");
  if (text.slice(lastColon + 1).includes(".")) {
    tail4 = parse4(text.slice(lastColon + 1));
    if (!tail4) return null;
    head = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const halves = head.split("::");
  if (halves.length > 2) return null;
  const groups = (s: string) => (s === "" ? [] : s.split(":"));
  const left = groups(halves[0]!);
  const right = halves.length === 2 ? groups(halves[1]!) : [];
  const total = left.length + right.length;
  if (halves.length === 1 ? total !== 8 : total > 7) return null;
  const words = [...left, ...Array<string>(8 - total).fill("0"), ...right];
  const out = new Uint8Array(16);
  for (const [i, w] of words.entries()) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(w)) return null;
    const n = parseInt(w, 16);
    out[i * 2] = n >> 8;
    out[i * 2 + 1] = n & 0xff;
  }
  if (tail4) out.set(tail4, 12);
  return out;
}

export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return Array.from(bytes).join(".");
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((bytes[i]! << 8) | bytes[i + 1]!);
  // RFC 5952 §4.2: compress the longest run of two or more zero groups, the first if tied.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(":");
  if (best < 0) return hex(words);
  return `${hex(words.slice(0, best))}::${hex(words.slice(best + bestLen))}`;
}

/** Link-local (fe80::/10) IPv6 or 169.254/16 IPv4: never a valid VIP. */
export function isLinkLocal(ip: IpAddress): boolean {
  return ip.family === 4 ? ip.bytes[0] === 169 && ip.bytes[1] === 254 : ip.bytes[0] === 0xfe && (ip.bytes[1]! & 0xc0) === 0x80;
}

/** Multicast, unspecified, broadcast or loopback: addresses no host may own as a VIP. */
export function isUnusableAsVip(ip: IpAddress): boolean {
  const b = ip.bytes;
  if (ip.family === 4) {
    return b[0] === 0 || b[0] === 127 || b[0]! >= 224 || isLinkLocal(ip);
  }
  const zero = b.every((x) => x === 0);
  const loopback = b.slice(0, 15).every((x) => x === 0) && b[15] === 1;
  return zero || loopback || b[0] === 0xff || isLinkLocal(ip);
}

/** Formats 6 bytes as aa:bb:cc:dd:ee:ff. */
export function formatMac(mac: Uint8Array): string {
  return Array.from(mac, (x) => x.toString(16).padStart(2, "0")).join(":");
}

export function parseMac(text: string): Uint8Array | null {
  const parts = text.split(":");
  if (parts.length !== 6 || !parts.every((p) => /^[0-9a-fA-F]{2}$/.test(p))) return null;
  return Uint8Array.from(parts, (p) => parseInt(p, 16));
}
