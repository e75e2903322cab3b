// Interfaces for the network boundary: endpoints and the UDP `Bind` (as wireguard-go's conn.Bind). No dependencies.

/** A transport address: IP family, textual address, UDP port. */
export interface Endpoint {
  readonly family: 4 | 6;
  readonly address: string;
  readonly port: number;
}

/**
 * One UDP socket (dual-stack where the host has both families). A terminal uses exactly one, so
 * the NAT mapping its DC observes is the mapping its tunnels use (docs/protocol.md §3.2).
 */
export interface Bind {
  /** The bound local port. */
  readonly port: number;
  /**
   * Sends one datagram. The bind takes ownership of `data` until the send completes: callers
   * must not reuse it (Node's dgram keeps a reference until the write callback).
   */
  send(data: Uint8Array, to: Endpoint): void;
  /** The one handler for arriving datagrams; `data` is borrowed: valid only during the call. */
  onMessage(handler: (data: Buffer, from: Endpoint) => void): void;
  close(): Promise<void>;
}

/** Wall-clock and monotonic time in milliseconds, injectable for tests. */
export interface Clock {
  /** Milliseconds since the Unix epoch (wall clock: timestamps on the wire). */
  now(): number;
  /** Monotonic milliseconds (durations, timers, RTTs). */
  monotonic(): number;
}
