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
  /**
   * The one handler for arriving datagrams; `data` is borrowed: valid only during the call. `opened`, when the bind
   * opened a DATA datagram ahead of the handler (the native socket's opening thread, agent/native/rxopen.c), says how
   * (borrowed likewise).
   */
  onMessage(handler: (data: Buffer, from: Endpoint, opened?: OpenedDatagram) => void): void;
  close(): Promise<void>;
}

/**
 * A DATA datagram (docs/protocol.md §3.3) a bind opened before its handler ran, on a thread of its own: only the AEAD
 * (RFC 8439); the header checks, limits and replay window are the keypair's, as for any other packet
 * (crypto/session.ts). Borrowed: valid during the handler's call only, and reused for the next datagram.
 */
export interface OpenedDatagram {
  /** The generation of the receive key that opened it (crypto/rx-keys.ts): it counts only for that keypair. */
  readonly gen: number;
  /** The tag verified and `plain` is the plaintext; false: it did not. */
  readonly ok: boolean;
  readonly plain: Buffer;
}

/** Wall-clock and monotonic time in milliseconds, injectable for tests. */
export interface Clock {
  /** Milliseconds since the Unix epoch (wall clock: timestamps on the wire). */
  now(): number;
  /** Monotonic milliseconds (durations, timers, RTTs). */
  monotonic(): number;
}
