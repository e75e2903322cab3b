// The boundary between the data plane (packets) and the NTMobile control code (tunnels, registrations): the data plane
// hands outgoing inner packets to the overlay (inside.ts); the overlay hands decrypted ones to the data plane through
// the host's `onInner` (outside.ts). Per packet: decide without awaiting and without throwing. No dependencies.

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

export interface Overlay {
  /**
   * An inner IPv4/IPv6 packet (borrowed) from one of our virtual addresses to a peer's; `family` is its IP version.
   * The source and destination addresses are read from the packet itself.
   */
  sendInner(packet: Buffer, family: 4 | 6): OutboundResult;
}
