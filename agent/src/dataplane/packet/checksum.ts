// The Internet checksum (RFC 1071) and its incremental update (RFC 1624), over caller-owned bytes, allocation-free.
//
// Sums are kept as plain numbers and folded at the end: a 64 KiB packet adds at most 32,768 words of 16 bits,
// far below 2^53, so no intermediate folding is needed.

/** Folds a non-negative sum of 16-bit words into 16 bits with end-around carry (RFC 1071 §2(1)). */
export function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/**
 * One's complement sum of `buf[start..end)` as big-endian 16-bit words, plus `initial`, folded to 16 bits
 * (not complemented). An odd trailing byte is padded with a zero byte (RFC 1071 §1). `start` must be the
 * first byte of a word of the checksummed message (offsets are relative to it).
 */
export function onesSum(buf: Uint8Array, start: number, end: number, initial = 0): number {
  let sum = initial;
  let i = start;
  const even = end - ((end - start) & 1);
  for (; i < even; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  if (i < end) sum += buf[i]! << 8;
  return fold(sum);
}

/** The Internet checksum (complemented one's complement sum) of `buf[start..end)` plus `initial`. */
export function internetChecksum(buf: Uint8Array, start: number, end: number, initial = 0): number {
  return ~onesSum(buf, start, end, initial) & 0xffff;
}

/**
 * The contribution of changing one 16-bit word from `oldWord` to `newWord`: ~m + m' (RFC 1624 eqn. 3).
 * Deltas of several words may be added together before `adjustChecksum`.
 */
export function wordDelta(oldWord: number, newWord: number): number {
  return (~oldWord & 0xffff) + (newWord & 0xffff);
}

/**
 * RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), where `delta` is the sum of `wordDelta`s of every changed word.
 * Unlike eqn. 2 this never yields 0xffff from a valid non-zero input, and handles the -0/+0 case of RFC 1624 §3.
 */
export function adjustChecksum(checksum: number, delta: number): number {
  return ~fold((~checksum & 0xffff) + delta) & 0xffff;
}

/**
 * Overwrites `len` bytes (even) at `buf[off..]` with `value[0..len)` and returns the checksum delta of the
 * change. `off` must be at an even distance from the start of every checksummed range the bytes belong to.
 */
export function replaceWords(buf: Uint8Array, off: number, value: Uint8Array, len: number): number {
  let delta = 0;
  for (let i = 0; i < len; i += 2) {
    const o = off + i;
    delta += (~((buf[o]! << 8) | buf[o + 1]!) & 0xffff) + ((value[i]! << 8) | value[i + 1]!);
    buf[o] = value[i]!;
    buf[o + 1] = value[i + 1]!;
  }
  return fold(delta);
}

/** Big-endian 16-bit read; reads past the end give 0 bytes (callers check bounds first). */
export function u16(buf: Uint8Array, off: number): number {
  return (buf[off]! << 8) | buf[off + 1]!;
}

/** Big-endian 16-bit write. */
export function put16(buf: Uint8Array, off: number, v: number): void {
  buf[off] = (v >>> 8) & 0xff;
  buf[off + 1] = v & 0xff;
}
