// The boundary between the data plane (packets) and the NTMobile control code (tunnels, registrations). The data plane
// calls these per packet; implementations must decide without awaiting and without throwing. No dependencies.

export type OutboundResult =
  /** Sealed and sent through the tunnel. */
  | 'sent'
  /** Held while the tunnel is being built (direction requested). */
  | 'queued'
  /** The source is none of our virtual addresses. */
  | 'no-node'
  /** No tunnel and none can be started (unknown peer, refused). */
  | 'no-tunnel'
  /** Refused by the tunnel (limits, expired keys). */
  | 'dropped';

export type InboundResult =
  /** A tunnel packet decrypted: `packet` is the inner IP packet (borrowed until the next call). */
  | { readonly kind: 'inner'; readonly packet: Buffer; readonly node: string; readonly peer: string }
  /** Authentic but nothing to deliver (keep-alive). */
  | { readonly kind: 'consumed' }
  /** Not a data packet: let it through to the socket unchanged (signalling). */
  | { readonly kind: 'pass' }
  | { readonly kind: 'drop'; readonly reason: string };

export interface Overlay {
  /**
   * An inner IPv4/IPv6 packet (borrowed) from one of our virtual addresses to a peer's; `family` is its IP version.
   * The source and destination addresses are read from the packet itself.
   */
  sendInner(packet: Buffer, family: 4 | 6): OutboundResult;
  /** A UDP payload (borrowed) that arrived at our port from `fromAddr`:`fromPort`. */
  receiveOuter(payload: Buffer, family: 4 | 6, fromAddr: string, fromPort: number): InboundResult;
}
