// ChaCha20-Poly1305 AEAD (RFC 8439 §2.8) with WireGuard's nonce layout, 0x00000000 ‖ counter as uint64 little-endian
// (docs/protocol.md §3.3; Noise rev 34 §12.3 ChaChaPoly). Two implementations behind one interface: `native`
// (node:crypto / OpenSSL, the data path) and `noble` (@noble/ciphers, the reference). Tests prove identical bytes.
//
// Cost (measured on the 2-core target, Node 20.20, tests/bench/crypto-bench.ts): a native seal costs ~9–11 µs whatever
// the size up to 1,400 B, almost all of it createCipheriv (OpenSSL context setup); a KeyObject instead of raw key
// bytes saves nothing measurable, and Node can neither re-key a Cipheriv nor write into a caller buffer, so per
// packet we reuse only the nonce scratch and copy the result into the caller's `out`. noble costs about the same
// at 64 B and ~2.5× more at 1,400 B (~22 µs), hence native on the data path.
//
// `open` never throws and never writes plaintext to `out` unless the tag verified.

import { createCipheriv, createDecipheriv } from 'node:crypto';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { BufferLengthError } from './errors.js';
import { nativeAddon } from '../native.js';

export const AEAD_KEY_LENGTH = 32;
export const AEAD_TAG_LENGTH = 16;
export const AEAD_NONCE_LENGTH = 12;
/** Counters are JS numbers on the hot path (no BigInt allocation); the largest one we can encode exactly. */
export const MAX_COUNTER = Number.MAX_SAFE_INTEGER;

export interface Aead {
  readonly name: 'native' | 'noble' | 'ntmdp';
  /**
   * Encrypts `plaintext` under (key, nonce(counter)) with optional AAD and returns ciphertext ‖ tag
   * (plaintext.length + 16 bytes). With `out` (caller-owned, ≥ that length) the result is written at out[0..] and a
   * subarray of `out` is returned; `out` may be `plaintext`'s own memory only at the same offset (in place).
   * Throws only on caller bugs (key not 32 bytes, counter not a safe non-negative integer, `out` too small).
   */
  seal(key: Uint8Array, counter: number, plaintext: Uint8Array, aad?: Uint8Array, out?: Buffer): Buffer;
  /**
   * Decrypts ciphertext ‖ tag; returns the plaintext (a subarray of `out` when given, ≥ sealed.length − 16 bytes),
   * or null when the input is too short, the tag is wrong, or any argument is malformed. Never throws.
   */
  open(key: Uint8Array, counter: number, sealed: Uint8Array, aad?: Uint8Array, out?: Buffer): Buffer | null;
  /** seal with an explicit 12-byte nonce (RFC 8439 vectors, other nonce layouts). Same rules as seal. */
  sealWithNonce(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad?: Uint8Array, out?: Buffer): Buffer;
  /** open with an explicit 12-byte nonce. Same rules as open: null on any failure, never throws. */
  openWithNonce(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad?: Uint8Array, out?: Buffer): Buffer | null;
}

/** Writes the 12-byte nonce for `counter` into `out` (caller-owned scratch) and returns it. */
export function writeNonce(counter: number, out: Buffer = Buffer.allocUnsafe(AEAD_NONCE_LENGTH)): Buffer {
  out.writeUInt32LE(0, 0);
  out.writeUInt32LE(counter >>> 0, 4);
  out.writeUInt32LE(Math.floor(counter / 0x1_0000_0000), 8);
  return out;
}

function validCounter(counter: number): boolean {
  return Number.isSafeInteger(counter) && counter >= 0;
}

function checkCounter(counter: number): void {
  if (!validCounter(counter)) throw new RangeError(`AEAD counter out of range: ${counter}`);
}

function sealArgs(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, out: Buffer | undefined): Buffer {
  if (key.length !== AEAD_KEY_LENGTH) throw new BufferLengthError('AEAD key', AEAD_KEY_LENGTH, key.length);
  if (nonce.length !== AEAD_NONCE_LENGTH) throw new BufferLengthError('AEAD nonce', AEAD_NONCE_LENGTH, nonce.length);
  const len = plaintext.length + AEAD_TAG_LENGTH;
  if (out === undefined) return Buffer.allocUnsafe(len);
  if (out.length < len) throw new BufferLengthError('AEAD output', len, out.length);
  return out.length === len ? out : out.subarray(0, len);
}

function openArgsOk(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, out: Buffer | undefined): boolean {
  return (
    key instanceof Uint8Array &&
    key.length === AEAD_KEY_LENGTH &&
    nonce instanceof Uint8Array &&
    nonce.length === AEAD_NONCE_LENGTH &&
    sealed instanceof Uint8Array &&
    sealed.length >= AEAD_TAG_LENGTH &&
    (out === undefined || out.length >= sealed.length - AEAD_TAG_LENGTH)
  );
}

function makeNative(): Aead {
  // Single-threaded: a shared nonce scratch is safe; createCipheriv copies it.
  const scratch = Buffer.alloc(AEAD_NONCE_LENGTH);
  const opts = { authTagLength: AEAD_TAG_LENGTH } as const;
  const sealWithNonce: Aead['sealWithNonce'] = (key, nonce, plaintext, aad, out) => {
    const dst = sealArgs(key, nonce, plaintext, out);
    const c = createCipheriv('chacha20-poly1305', key, nonce, opts);
    if (aad !== undefined && aad.length > 0) c.setAAD(aad, { plaintextLength: plaintext.length });
    // Read all of plaintext before writing dst: they may be the same memory.
    const ct = c.update(plaintext);
    let n = ct.copy(dst, 0);
    n += c.final().copy(dst, n);
    c.getAuthTag().copy(dst, n);
    return dst;
  };
  const openWithNonce: Aead['openWithNonce'] = (key, nonce, sealed, aad, out) => {
    if (!openArgsOk(key, nonce, sealed, out)) return null;
    const ctLen = sealed.length - AEAD_TAG_LENGTH;
    try {
      const d = createDecipheriv('chacha20-poly1305', key, nonce, opts);
      d.setAuthTag(sealed.subarray(ctLen));
      if (aad !== undefined && aad.length > 0) d.setAAD(aad, { plaintextLength: ctLen });
      const pt = d.update(sealed.subarray(0, ctLen));
      d.final(); // throws on a bad tag: only then is pt authentic
      if (out === undefined) return pt;
      pt.copy(out, 0);
      return out.subarray(0, ctLen);
    } catch {
      return null;
    }
  };
  return {
    name: 'native',
    sealWithNonce,
    openWithNonce,
    seal(key, counter, plaintext, aad, out) {
      checkCounter(counter);
      return sealWithNonce(key, writeNonce(counter, scratch), plaintext, aad, out);
    },
    open(key, counter, sealed, aad, out) {
      if (!validCounter(counter)) return null;
      return openWithNonce(key, writeNonce(counter, scratch), sealed, aad, out);
    },
  };
}

function makeNoble(): Aead {
  const scratch = Buffer.alloc(AEAD_NONCE_LENGTH);
  const sealWithNonce: Aead['sealWithNonce'] = (key, nonce, plaintext, aad, out) => {
    const dst = sealArgs(key, nonce, plaintext, out);
    chacha20poly1305(key, nonce, aad).encrypt(plaintext, dst);
    return dst;
  };
  const openWithNonce: Aead['openWithNonce'] = (key, nonce, sealed, aad, out) => {
    if (!openArgsOk(key, nonce, sealed, out)) return null;
    const ptLen = sealed.length - AEAD_TAG_LENGTH;
    const dst = out === undefined ? Buffer.allocUnsafe(ptLen) : out.subarray(0, ptLen);
    try {
      chacha20poly1305(key, nonce, aad).decrypt(sealed, dst); // writes dst only after the tag verified
      return dst;
    } catch {
      return null;
    }
  };
  return {
    name: 'noble',
    sealWithNonce,
    openWithNonce,
    seal(key, counter, plaintext, aad, out) {
      checkCounter(counter);
      return sealWithNonce(key, writeNonce(counter, scratch), plaintext, aad, out);
    },
    open(key, counter, sealed, aad, out) {
      if (!validCounter(counter)) return null;
      return openWithNonce(key, writeNonce(counter, scratch), sealed, aad, out);
    },
  };
}

/**
 * OpenSSL's ChaCha20-Poly1305 on one reused context (agent/native/aead.c): ~2 µs per 1,400-byte packet where
 * node:crypto's createCipheriv costs ~10 µs. Counter nonces only; explicit nonces (test vectors) go to node:crypto.
 */
function makeNtmdp(): Aead | null {
  const addon = nativeAddon();
  if (!addon) return null;
  const ctx = new addon.ChaChaPoly();
  const fallback = makeNative();
  return {
    name: 'ntmdp',
    sealWithNonce: fallback.sealWithNonce,
    openWithNonce: fallback.openWithNonce,
    seal(key, counter, plaintext, aad, out) {
      checkCounter(counter);
      const dst = sealArgs(key, ZERO_NONCE, plaintext, out);
      ctx.seal(key, counter, plaintext, dst, aad !== undefined && aad.length > 0 ? aad : undefined);
      return dst;
    },
    open(key, counter, sealed, aad, out) {
      if (!validCounter(counter) || !openArgsOk(key, ZERO_NONCE, sealed, out)) return null;
      const dst = out === undefined ? Buffer.allocUnsafe(sealed.length - AEAD_TAG_LENGTH) : out;
      const n = ctx.open(key, counter, sealed, dst, aad !== undefined && aad.length > 0 ? aad : undefined);
      return n < 0 ? null : dst.subarray(0, n);
    },
  };
}

const ZERO_NONCE = Buffer.alloc(AEAD_NONCE_LENGTH);

/** node:crypto (OpenSSL) ChaCha20-Poly1305. */
export const nativeAead: Aead = makeNative();
/** @noble/ciphers ChaCha20-Poly1305: the reference. */
export const nobleAead: Aead = makeNoble();
/** The data path's fast one, when the native addon is built; null otherwise. */
export const ntmdpAead: Aead | null = makeNtmdp();
/** What the agent uses. */
export const defaultAead: Aead = ntmdpAead ?? nativeAead;
