// Hex text <-> bytes with validation, and Keccak-256 (the original Keccak padding used by Ethereum, not FIPS-202
// SHA3-256: node:crypto's 'sha3-256' differs), for docs/protocol.md §1. Keccak comes from @noble/hashes.

import { keccak_256 } from '@noble/hashes/sha3.js';
import { InvalidHexError } from './errors.js';
import { nativeAddon } from '../native.js';

const HEX_RE = /^[0-9a-fA-F]*$/;

/** Lowercase hex of `bytes`, with a `0x` prefix unless `prefix` is false. */
export function toHex(bytes: Uint8Array, prefix = true): string {
  const s = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
  return prefix ? `0x${s}` : s;
}

/**
 * Parses hex text (with or without `0x`, any case). When `length` is given the result must have exactly that many
 * bytes. Throws InvalidHexError; use tryParseHex on untrusted text where a null is handier.
 */
export function parseHex(text: string, length?: number, what = 'value'): Buffer {
  const r = tryParseHex(text, length);
  if (r === null) {
    const want = length === undefined ? 'hex' : `${length} bytes of hex (${length * 2} digits)`;
    throw new InvalidHexError(`${what}: expected ${want}`);
  }
  return r;
}

/** Like parseHex, but returns null instead of throwing. */
export function tryParseHex(text: string, length?: number): Buffer | null {
  if (typeof text !== 'string') return null;
  const body = text.startsWith('0x') || text.startsWith('0X') ? text.slice(2) : text;
  if (body.length % 2 !== 0 || !HEX_RE.test(body)) return null;
  if (length !== undefined && body.length !== length * 2) return null;
  return Buffer.from(body, 'hex');
}

/** The native Keccak-256 (agent/native/keccak.c, ~3 µs where @noble/hashes takes ~20), when the addon is built. */
const nativeKeccak = nativeAddon()?.keccak256;

/** Keccak-256 of `data`. With `out` (≥ 32 bytes, caller-owned) the digest is written there and `out` returned. */
export function keccak256(data: Uint8Array, out?: Buffer): Buffer {
  if (nativeKeccak) {
    const dst = out ?? Buffer.allocUnsafe(32);
    nativeKeccak(data, dst);
    return dst.length === 32 ? dst : dst.subarray(0, 32);
  }
  if (out === undefined) {
    const d = keccak_256(data);
    return Buffer.from(d.buffer, d.byteOffset, d.byteLength);
  }
  keccak_256.create().update(data).digestInto(out);
  return out.length === 32 ? out : out.subarray(0, 32);
}

/** Keccak-256 of the concatenation of `parts` (natively: concatenated first; the inputs here are a few hundred bytes). */
export function keccak256Parts(parts: readonly Uint8Array[], out?: Buffer): Buffer {
  if (nativeKeccak) return keccak256(Buffer.concat(parts), out);
  const h = keccak_256.create();
  for (const p of parts) h.update(p);
  const dst = out ?? Buffer.allocUnsafe(32);
  h.digestInto(dst);
  return dst.length === 32 ? dst : dst.subarray(0, 32);
}
