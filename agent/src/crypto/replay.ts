// Sliding anti-replay window over 64-bit message counters (RFC 6479 ring bitmap, as WireGuard's replay filter), for
// the 2,048-packet window of docs/protocol.md §3.3. Allocation-free: one Uint32Array per window, sized for it (512
// bytes for 2,048 packets; a small window — control channels — gets a small ring).
//
// Counters are JS numbers (exact up to 2^53 − 1). The wire carries 64 bits, but at a million packets per second
// 2^53 takes 285 years and a keypair dies after 180 s, so counters beyond MAX_SAFE_INTEGER (or beyond the
// configured reject limit) are simply refused.
//
// Ownership/threading: one window per receiving keypair, used from the receive path only (single-threaded).
// Use `check` before the AEAD open (cheap drop of stale or replayed packets) and `update` only after the tag
// verified, so forged packets cannot move the window.

/** Bits per ring word. */
const WORD_BITS = 32;
/** Largest ring (words): windows up to (RING_WORDS − 1) × 32 packets. */
const RING_WORDS = 128;

/** A power of two ≥ window/32 + 1 words, so advancing never clears words still inside the window. */
function ringWords(windowSize: number): number {
  let n = 2;
  while (n < Math.ceil(windowSize / WORD_BITS) + 1) n *= 2;
  return n;
}

/** docs/protocol.md §3.3. */
export const REPLAY_WINDOW_SIZE = 2048;

export class ReplayWindow {
  readonly #ring: Uint32Array;
  readonly #mask: number;
  /** Greatest counter accepted so far; -1 before the first one. */
  #greatest = -1;

  /**
   * @param windowSize counters older than greatest − windowSize + 1 are refused (1 … (RING_WORDS − 1) × 32).
   * @param limit counters ≥ limit are refused (REJECT_AFTER_MESSAGES, clamped to MAX_SAFE_INTEGER + 1).
   */
  constructor(
    readonly windowSize: number = REPLAY_WINDOW_SIZE,
    readonly limit: number = Number.MAX_SAFE_INTEGER,
  ) {
    if (!Number.isInteger(windowSize) || windowSize < 1 || windowSize > (RING_WORDS - 1) * WORD_BITS) {
      throw new RangeError(`replay window size out of range: ${windowSize}`);
    }
    this.#ring = new Uint32Array(ringWords(windowSize));
    this.#mask = this.#ring.length - 1;
  }

  /** Greatest counter accepted so far, or -1. */
  get greatest(): number {
    return this.#greatest;
  }

  /** True when `counter` would be accepted now (not seen, not too old, within limits). Does not change state. */
  check(counter: number): boolean {
    if (!Number.isSafeInteger(counter) || counter < 0 || counter >= this.limit) return false;
    if (counter > this.#greatest) return true;
    if (this.#greatest - counter >= this.windowSize) return false;
    const word = Math.floor(counter / WORD_BITS) & this.#mask;
    return (this.#ring[word]! & (1 << (counter & (WORD_BITS - 1)))) === 0;
  }

  /** Marks `counter` as seen; returns false (and changes nothing) when `check` would have refused it. */
  update(counter: number): boolean {
    if (!Number.isSafeInteger(counter) || counter < 0 || counter >= this.limit) return false;
    const block = Math.floor(counter / WORD_BITS);
    if (counter > this.#greatest) {
      // Clear the words between the old top block and the new one (at most the whole ring).
      const current = Math.floor(this.#greatest / WORD_BITS); // -1 before the first counter
      let diff = block - current;
      const words = this.#ring.length;
      if (diff > words) diff = words;
      for (let i = 1; i <= diff; i++) this.#ring[(current + i) & this.#mask] = 0;
      this.#greatest = counter;
    } else if (this.#greatest - counter >= this.windowSize) {
      return false;
    }
    const word = block & this.#mask;
    const bit = 1 << (counter & (WORD_BITS - 1));
    const old = this.#ring[word]!;
    if ((old & bit) !== 0) return false;
    this.#ring[word] = old | bit;
    return true;
  }

  /** check + update in one step (for callers that authenticate before asking). */
  accept(counter: number): boolean {
    return this.update(counter);
  }

  /** Back to the initial state (a new keypair reusing the object). */
  reset(): void {
    this.#ring.fill(0);
    this.#greatest = -1;
  }
}
