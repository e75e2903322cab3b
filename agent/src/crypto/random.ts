// Random bytes for per-packet hot paths (a DC's nonce and channel index for each registration): node:crypto's
// randomBytes is one call into the CSPRNG per use, and on this VM that call costs the same for 16 bytes as for 4 KiB
// (~10% of an ECDH: the DC capacity benchmark, tests/bench/README.md). These draw the same CSPRNG's output a 4 KiB
// block at a time and hand each byte out once. For values that are public on the wire (nonces, indexes); keys are
// made with randomBytes, so that no unused key material sits in a shared block.
import { randomFillSync } from 'node:crypto';

const BLOCK = 4096;
const block = Buffer.allocUnsafeSlow(BLOCK);
let at = BLOCK;

function take(n: number): number {
  if (n > BLOCK) throw new RangeError(`pooled random: at most ${BLOCK} bytes at a time, asked for ${n}`);
  if (at + n > BLOCK) {
    randomFillSync(block);
    at = 0;
  }
  const from = at;
  at += n;
  return from;
}

/** `n` fresh random bytes (a new Buffer the caller owns). */
export function randomPublicBytes(n: number): Buffer {
  const from = take(n);
  return Buffer.from(block.subarray(from, from + n));
}

/** A random unsigned 32-bit integer. */
export function randomU32(): number {
  return block.readUInt32BE(take(4));
}
