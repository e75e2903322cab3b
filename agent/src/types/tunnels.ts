// The boundary between the data-path engine (dataplane/engine.ts: packets) and the NTMobile control code that owns the
// tunnels (terminal/host.ts: identities, directions, handshakes): the engine looks tunnels up here and seals and opens
// through them; the host never sees an inner packet. Per packet: decide without awaiting and without throwing.
// No dependencies.
import type { Endpoint, OpenedDatagram } from './net.js';

/** How a datagram reached us: straight from the peer, or framed by the RS. */
export type Via = 'direct' | 'relay' | 'none';

/** What became of an inner packet handed to a tunnel (or to the table, when none is up yet). */
export type OutboundResult =
  /** Sealed and sent through the tunnel. */
  | 'sent'
  /** Held while the tunnel is being built (direction requested) or keyed. */
  | 'queued'
  /** Refused by the tunnel (limits, expired keys), or the on-demand queue is full. */
  | 'dropped';

/** One tunnel as the data path sees it. `K` is the tunnel's keypair type (opaque here). */
export interface DataTunnel<K = unknown> {
  /** The peer's NTM ID (0x…) and virtual addresses (4 and 16 bytes): cryptokey routing checks inner sources. */
  readonly peerId: string;
  readonly peerV4: Buffer;
  readonly peerV6: Buffer;
  readonly keypairs: { byIndex(index: number): K | undefined };
  /**
   * Crypto, tunnel → LAN: opens a DATA datagram (borrowed) sealed under `kp`, checks its replay window, and learns the
   * peer's new address from it (roaming). Returns the inner packet (borrowed: a subarray of `out`, or of `opened`'s
   * plaintext when the bind opened it ahead) or a drop reason.
   */
  onData(packet: Buffer, kp: K, from: Endpoint, via: Via, out: Buffer, opened?: OpenedDatagram): Buffer | string;
  /** Crypto and write, LAN → tunnel: seals the inner packet (borrowed) and sends it, or queues it for keys. */
  sendInner(inner: Buffer): OutboundResult;
  /**
   * LAN → tunnel for a TCP GSO packet (up to 64 KB, borrowed): cut into segments of at most the peer's MSS and `mtu`
   * and sealed where the socket seals (issue 15). The segments sent; 'dropped' (the keys refused); 'unsupported' (no
   * such socket, no keys yet): the engine cuts it and hands each segment to sendInner(). Optional.
   */
  sendGso?(packet: Buffer, mtu: number): number | 'dropped' | 'unsupported';
}

/** Our side of a tunnel: the identity it belongs to and that identity's virtual addresses (as the wire has them). */
export interface LocalEnd {
  /** The NTM ID of our identity (a paired appliance's, on the agent). */
  readonly node: string;
  /** Virtual IPv4 as a big-endian uint32, and virtual IPv6 (16 bytes). */
  readonly v4: number;
  readonly v6: Buffer;
}

/** LAN → tunnel lookup failed: the source is none of our virtual addresses. */
export const NO_NODE = 0;

/**
 * The tunnels of one terminal host, keyed for the data path. Lookups are by the bytes of the packet (no strings
 * built); the answers are the host's own objects, valid until the host's next event-loop turn.
 */
export interface TunnelTable {
  /**
   * LAN → tunnel: the tunnel up between our virtual source and the peer's virtual destination of this IP packet of
   * `family` (header at offset 0, at least a full IP header long); NO_NODE when the source is none of our
   * identities; undefined when there is no tunnel up yet.
   */
  tunnelFor(packet: Buffer, family: 4 | 6): DataTunnel | typeof NO_NODE | undefined;
  /**
   * The first packets to a virtual address without a tunnel: asks the DC for a direction and holds a few (copied)
   * until the tunnel is up.
   */
  connectOnDemand(packet: Buffer, family: 4 | 6): OutboundResult;
  /** Tunnel → LAN: the tunnel that owns this local receiver index, if any. */
  byIndex(index: number): DataTunnel | undefined;
  /** Our end of `t`: undefined before its identity registered (no virtual address yet). */
  localEnd(t: DataTunnel): LocalEnd | undefined;
  /** An authentic DATA packet arrived on `t` (after a move: the interruption ends here). */
  heard(t: DataTunnel): void;
  /** Every datagram that is not DATA (registration, control, handshakes, punches, relay acks, RS pongs). */
  onSignal(data: Buffer, from: Endpoint, via: Via): void;
}

/** Where decrypted inner packets go back into the kernel (dataplane/reinject.ts); a fake in unit tests. */
export interface InnerWriter {
  /** Sends `inner` (borrowed for the call) into the `family` stack: true when sent. Never throws. */
  write(inner: Buffer, family: 4 | 6): boolean;
}
