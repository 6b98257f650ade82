/** What the packet layer needs to know about a link: where to send and from which MAC. */
export interface LinkRef {
  readonly index: number;
  readonly name: string;
  /** 6-byte hardware address. */
  readonly mac: Uint8Array;
}
