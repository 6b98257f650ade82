// How every decoder in wire/ refuses bytes it cannot read: it returns a
// WireError, and never throws one. A malformed datagram or frame is data
// from the kernel or the segment, and each caller decides what it means
// (a reply it cannot trust: EBADMSG; a frame from someone else: ignored);
// an exception would be easy to let through as a crash. Encoders, which only
// see vipd's own values, throw RangeError on a caller's mistake.

/** Bytes a decoder could not read; the message says what and why. */
export class WireError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WireError";
  }
}
