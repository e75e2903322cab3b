// Interfaces of a packet source: IP packets the kernel queued (Linux NFQUEUE) handed to the data plane, one
// verdict each. No imports. Implementations: dataplane/nfqueue/source.ts (real), dataplane/nfqueue/fake.ts.
//
// Threading: every call happens on the JS thread that opened the source; handlers must not block or await.

/**
 * The handler's decision. 'accept' lets the packet continue (with the replaced bytes and mark, if set),
 * 'drop' discards it, 'deferred' means the handler called `defer()` and will settle the packet later.
 */
export type PacketVerdict = 'accept' | 'drop' | 'deferred';

/**
 * One queued packet, lent to the handler. The view object itself may be reused for the next packet: keep the
 * `PendingPacket` from `defer()`, never the view.
 */
export interface QueuedPacket {
  /**
   * Borrowed: the whole IP packet, network header first. Valid until the verdict is issued: when the handler
   * returns, or, after `defer()`, until the pending packet is settled. The handler may change it in place and
   * pass it (or a subarray of it) to `replacePayload`.
   */
  readonly data: Uint8Array;
  /** Queue number the packet came from. */
  readonly queue: number;
  /** Kernel packet id within the queue. */
  readonly id: number;
  /** Netfilter mark on arrival (0: none). */
  readonly mark: number;
  /** Interface index it arrived on / will leave by (0: none or unknown). */
  readonly inIfindex: number;
  readonly outIfindex: number;
  /**
   * A TCP GSO packet handed over uncut (a batch source opened with `whole`): up to 64 KB, longer than the MTU, for a
   * handler that cuts it where it seals it (agent/native/udp.c queueSealGso). False from every other source.
   */
  readonly whole: boolean;
  /**
   * With an 'accept' result: let these bytes continue instead of the original (the kernel re-routes them).
   * Borrowed until the verdict is issued; the source copies them to the kernel then.
   */
  replacePayload(bytes: Uint8Array): void;
  /** Mark (1..2^32-1) the packet carries on when accepted. 0 leaves the mark as it arrived. */
  setMark(mark: number): void;
  /** Takes the verdict out of the handler; the handler then returns 'deferred' and settles the result once. */
  defer(): PendingPacket;
}

/** A packet whose verdict is issued later. Exactly one call settles it; later calls are counted and ignored. */
export interface PendingPacket {
  /** The same borrowed bytes as the view's `data`, valid until settled. */
  readonly data: Uint8Array;
  readonly id: number;
  accept(mark?: number): void;
  /** Accepts `bytes` instead of the original (borrowed for the call). */
  acceptWith(bytes: Uint8Array, mark?: number): void;
  drop(): void;
}

/**
 * Decides about one packet. Must not throw: a throw (or 'deferred' without `defer()`) drops the packet and counts
 * an error — the overlay fails closed.
 */
export type PacketHandler = (packet: QueuedPacket) => PacketVerdict;

/** Monotonic counters; read them any time, never write them. */
export interface PacketSourceCounters {
  /** Packets handed to this process (including those dropped because there was no handler or it was closed). */
  received: number;
  /** Verdicts issued, by kind. `replaced` counts the accepts with new bytes (also counted in `accepted`). */
  accepted: number;
  replaced: number;
  dropped: number;
  /** Packets ever deferred, and those awaiting their verdict now. */
  deferred: number;
  pending: number;
  /** Handler failures (threw, broke the contract) and packets that arrived with no handler set: all dropped. */
  errors: number;
  /** Settle calls on an already settled (or closed-and-dropped) packet: ignored. */
  lateVerdicts: number;
}

/** Where queued packets come from. */
export interface PacketSource {
  /** The queue number this source serves. */
  readonly queue: number;
  /** Sets the one handler (replacing any earlier one). Until a handler is set, packets are dropped. */
  onPacket(handler: PacketHandler): void;
  readonly counters: Readonly<PacketSourceCounters>;
  /**
   * Stops delivery: pending packets are dropped, and so is anything arriving later. Idempotent. What the kernel
   * does once the queue has no reader is up to the firewall rules (see dataplane/nfqueue/rules.ts).
   */
  close(): Promise<void>;
}
