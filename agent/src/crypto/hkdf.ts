// HMAC-SHA256 HKDF (RFC 5869) and the Noise Protocol Framework's HKDF(chaining_key, ikm, n) (Noise rev 34 §4.3),
// over the addon's one-call HMAC (agent/native/hmac.c, ~0.35 µs where createHmac takes ~2; a 96-byte HKDF 1.8 µs
// instead of 14.7) for keys of at most a block, which every key here is (a longer one, or no addon: node:crypto's).
// Noise's HKDF is RFC 5869 extract-then-expand with salt = chaining key, empty info and L = n × 32; it is written out
// separately because the handshake calls it with two or three outputs per step and wants them as separate 32-byte
// buffers.

import { createHmac } from 'node:crypto';
import { BufferLengthError } from './errors.js';
import { nativeAddon } from '../native.js';

export const HASH_LENGTH = 32;
const EMPTY = Buffer.alloc(0);
/** RFC 5869's default salt: HashLen zeros (read only). */
const ZERO_SALT = Buffer.alloc(HASH_LENGTH);
const MAX_OKM = 255 * HASH_LENGTH;
const ONE = Buffer.from([1]);
const TWO = Buffer.from([2]);
const THREE = Buffer.from([3]);

const nativeHmac = nativeAddon()?.hmacSha256;
/** SHA-256's block: a longer HMAC key is hashed first (RFC 2104 §2), which only node:crypto does here. */
const BLOCK = 64;

/** HMAC-SHA256(key, data…). */
export function hmacSha256(key: Uint8Array, ...data: Uint8Array[]): Buffer {
  if (nativeHmac && key.length <= BLOCK) {
    const out = Buffer.allocUnsafe(HASH_LENGTH);
    nativeHmac(key, data.length === 1 ? data[0]! : Buffer.concat(data), out);
    return out;
  }
  const h = createHmac('sha256', key);
  for (const d of data) h.update(d);
  return h.digest();
}

/** RFC 5869 §2.2: PRK = HMAC-Hash(salt, IKM); an absent or empty salt means HashLen zero bytes. */
export function hkdfExtract(salt: Uint8Array | undefined, ikm: Uint8Array): Buffer {
  return hmacSha256(salt === undefined || salt.length === 0 ? ZERO_SALT : salt, ikm);
}

/** RFC 5869 §2.3: OKM = T(1) ‖ T(2) ‖ … truncated to `length` (≤ 255 × 32) bytes. */
export function hkdfExpand(prk: Uint8Array, info: Uint8Array, length: number): Buffer {
  if (!Number.isInteger(length) || length < 0 || length > MAX_OKM) throw new BufferLengthError('HKDF output', MAX_OKM, length);
  const okm = Buffer.allocUnsafe(length);
  // T(i) = HMAC(PRK, T(i−1) ‖ info ‖ i), from one input buffer rewritten per round (T(0) is empty: the first round
  // starts after it).
  const input = Buffer.allocUnsafe(HASH_LENGTH + info.length + 1);
  input.set(info, HASH_LENGTH);
  let from = HASH_LENGTH;
  for (let off = 0, i = 1; off < length; i++) {
    input[input.length - 1] = i;
    const t = hmacSha256(prk, input.subarray(from));
    t.copy(input, 0);
    from = 0;
    off += t.copy(okm, off);
  }
  input.fill(0);
  return okm;
}

/** RFC 5869 HKDF-SHA256: extract then expand. `info` defaults to empty. */
export function hkdf(ikm: Uint8Array, salt: Uint8Array | undefined, info: Uint8Array | string = EMPTY, length = HASH_LENGTH): Buffer {
  const infoBytes = typeof info === 'string' ? Buffer.from(info, 'utf8') : info;
  const prk = hkdfExtract(salt, ikm);
  const okm = hkdfExpand(prk, infoBytes, length);
  prk.fill(0);
  return okm;
}

/** Noise §4.3 HKDF with two outputs. */
export function noiseHkdf2(chainingKey: Uint8Array, ikm: Uint8Array): [Buffer, Buffer] {
  const tempKey = hmacSha256(chainingKey, ikm);
  const o1 = hmacSha256(tempKey, ONE);
  const o2 = hmacSha256(tempKey, o1, TWO);
  tempKey.fill(0);
  return [o1, o2];
}

/** Noise §4.3 HKDF with three outputs. */
export function noiseHkdf3(chainingKey: Uint8Array, ikm: Uint8Array): [Buffer, Buffer, Buffer] {
  const tempKey = hmacSha256(chainingKey, ikm);
  const o1 = hmacSha256(tempKey, ONE);
  const o2 = hmacSha256(tempKey, o1, TWO);
  const o3 = hmacSha256(tempKey, o2, THREE);
  tempKey.fill(0);
  return [o1, o2, o3];
}
