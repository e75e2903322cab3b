// secp256k1 keys, recoverable ECDSA (SEC 1 §4.1, RFC 6979 nonces, EVM v = 27 + recid, low-s only) and ECDH (raw x),
// with IDs = last 20 bytes of keccak256(X‖Y) (EVM addresses, EIP-55 checksums), as docs/protocol.md §1 specifies.
//
// Two implementations behind one interface: `native` (libsecp256k1 through the `secp256k1` npm binding: the fast path,
// ~11–16k verifies or recoveries/s on the target) and `noble` (@noble/curves: the audited reference, ~300–450/s).
// Tests prove they agree (identical RFC 6979 signatures, recoveries, shared secrets, refusals).
// The binding is loaded as `secp256k1/bindings.js` loads it, not from the package root: the root silently falls back
// to a pure-JS `elliptic` port when the addon fails to load, which would hide a 30× slowdown behind the name "native".
// The three calls a DC makes per new terminal (publicKeyConvert, ecdh, ecdsaRecover) go to the addon itself: the
// package's JavaScript layer re-checks what this module checked already and builds its error messages on every call
// (~1–3 µs each, issue 15).
//
// Every function that takes bytes off the wire (verify, recover, ecdh, isValidPublicKey, publicKeyConvert) returns
// false/null on bad input and never throws. Functions fed by our own configuration (sign, publicKeyCreate with a
// private key) throw typed errors, because a bad private key there is a bug, not an attack.

import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { secp256k1 as nobleCurve } from '@noble/curves/secp256k1.js';
import type * as NativeSecp256k1Api from 'secp256k1';
import { BufferLengthError, InvalidIdError, InvalidPrivateKeyError, InvalidPublicKeyError, NativeUnavailableError } from './errors.js';
import { keccak256, toHex, tryParseHex, parseHex } from './hex.js';

export const PRIVATE_KEY_LENGTH = 32;
export const PUBLIC_KEY_LENGTH = 33;
export const PUBLIC_KEY_UNCOMPRESSED_LENGTH = 65;
/** r(32) ‖ s(32) ‖ v(1), v = 27 + recovery id. */
export const SIGNATURE_LENGTH = 65;
export const DIGEST_LENGTH = 32;
export const ID_LENGTH = 20;
export const SHARED_SECRET_LENGTH = 32;

/** floor(n / 2) for the secp256k1 group order n: a signature is low-s when s ≤ this. */
const HALF_N = Buffer.from('7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0', 'hex');

/** One secp256k1 implementation. All outputs are fresh Buffers unless the caller passes `out` (caller-owned). */
export interface Secp256k1 {
  readonly name: 'native' | 'noble';
  /** 32 bytes, in [1, n-1]. */
  isValidPrivateKey(privateKey: Uint8Array): boolean;
  /** SEC 1 compressed (33 B, 0x02/0x03) or uncompressed (65 B, 0x04) on the curve; hybrid 0x06/0x07 refused. */
  isValidPublicKey(publicKey: Uint8Array): boolean;
  /** Throws InvalidPrivateKeyError (a configuration bug, not wire input). */
  publicKeyCreate(privateKey: Uint8Array, compressed?: boolean, out?: Buffer): Buffer;
  /** Re-encodes a public key; null when it is not a valid point. */
  publicKeyConvert(publicKey: Uint8Array, compressed: boolean, out?: Buffer): Buffer | null;
  /** Deterministic (RFC 6979) low-s recoverable signature of a 32-byte digest: r ‖ s ‖ (27 + recid), v ∈ {27, 28}. */
  sign(digest: Uint8Array, privateKey: Uint8Array, out?: Buffer): Buffer;
  /**
   * True when `signature` (64-byte r‖s or 65-byte r‖s‖v) is a valid low-s signature of `digest` by `publicKey`.
   * With 65 bytes v must be 27 or 28 but is not checked against the key (use `recover` for the EVM-exact check).
   */
  verify(signature: Uint8Array, digest: Uint8Array, publicKey: Uint8Array): boolean;
  /** The public key a 65-byte low-s signature recovers to (v ∈ {27, 28}), or null. */
  recover(signature: Uint8Array, digest: Uint8Array, compressed?: boolean, out?: Buffer): Buffer | null;
  /** ECDH: the raw 32-byte x-coordinate of privateKey × publicKey (not hashed), or null for an invalid point. */
  ecdh(publicKey: Uint8Array, privateKey: Uint8Array, out?: Buffer): Buffer | null;
}

// ---------------------------------------------------------------------------------------------------------------
// Shared checks (cheap, byte-level, identical for both implementations so they reject the same inputs).

function hasValidPrefix(pub: Uint8Array): boolean {
  if (pub.length === PUBLIC_KEY_LENGTH) return pub[0] === 0x02 || pub[0] === 0x03;
  if (pub.length === PUBLIC_KEY_UNCOMPRESSED_LENGTH) return pub[0] === 0x04;
  return false;
}

/** s ≤ floor(n/2), s read big-endian from bytes 32..64. Not constant-time: signatures are public. */
export function isLowS(signature: Uint8Array): boolean {
  if (signature.length < 64) return false;
  for (let i = 0; i < 32; i++) {
    const a = signature[32 + i]!;
    const b = HALF_N[i]!;
    if (a !== b) return a < b;
  }
  return true;
}

function checkOut(out: Buffer | undefined, len: number, what: string): Buffer {
  if (out === undefined) return Buffer.allocUnsafe(len);
  if (out.length < len) throw new BufferLengthError(what, len, out.length);
  return out.length === len ? out : out.subarray(0, len);
}

function checkPrivateKey(impl: Secp256k1, privateKey: Uint8Array): void {
  if (!(privateKey instanceof Uint8Array) || !impl.isValidPrivateKey(privateKey)) throw new InvalidPrivateKeyError();
}

function sigArgsOk(signature: Uint8Array, digest: Uint8Array): boolean {
  if (!(signature instanceof Uint8Array) || !(digest instanceof Uint8Array)) return false;
  if (digest.length !== DIGEST_LENGTH) return false;
  if (signature.length === SIGNATURE_LENGTH) {
    const v = signature[64]!;
    if (v !== 27 && v !== 28) return false;
  } else if (signature.length !== 64) return false;
  return isLowS(signature);
}

// ---------------------------------------------------------------------------------------------------------------
// Native: libsecp256k1.

type NativeApi = typeof NativeSecp256k1Api;

/** The addon under the package's JavaScript layer: output first, a status back (0: done), nothing checked. */
interface RawSecp256k1 {
  publicKeyConvert(output: Uint8Array, publicKey: Uint8Array): number;
  ecdsaRecover(output: Uint8Array, signature: Uint8Array, recid: number, digest: Uint8Array): number;
  ecdh(output: Uint8Array, publicKey: Uint8Array, privateKey: Uint8Array, data: undefined, hashfn: (x: Uint8Array) => Uint8Array, xbuf: Uint8Array, ybuf: Uint8Array): number;
}

function loadNative(): { api: NativeApi | null; raw: RawSecp256k1 | null; error: Error | null } {
  try {
    // What secp256k1/bindings.js does, keeping the addon's instance (one context for both layers).
    const req = createRequire(createRequire(import.meta.url).resolve('secp256k1/bindings.js'));
    const addon = (req('node-gyp-build') as (dir: string) => { Secp256k1: new () => RawSecp256k1 })(dirname(req.resolve('./bindings.js')));
    const raw = new addon.Secp256k1();
    return { api: (req('./lib/index.js') as (raw: RawSecp256k1) => NativeApi)(raw), raw, error: null };
  } catch (e) {
    return { api: null, raw: null, error: e instanceof Error ? e : new Error(String(e)) };
  }
}

function makeNative(api: NativeApi, raw: RawSecp256k1): Secp256k1 {
  // Scratch for the ECDH callback: the binding copies x and y here, then copies the callback's return value
  // (x itself) into the caller's output. Wiped after each call; single-threaded, so sharing is safe.
  const xbuf = new Uint8Array(32);
  const ybuf = new Uint8Array(32);
  const returnX = (x: Uint8Array): Uint8Array => x;

  const impl: Secp256k1 = {
    name: 'native',
    isValidPrivateKey(privateKey) {
      return privateKey instanceof Uint8Array && privateKey.length === PRIVATE_KEY_LENGTH && api.privateKeyVerify(privateKey);
    },
    isValidPublicKey(publicKey) {
      if (!(publicKey instanceof Uint8Array) || !hasValidPrefix(publicKey)) return false;
      try {
        return api.publicKeyVerify(publicKey);
      } catch {
        return false;
      }
    },
    publicKeyCreate(privateKey, compressed = true, out) {
      checkPrivateKey(impl, privateKey);
      const dst = checkOut(out, compressed ? PUBLIC_KEY_LENGTH : PUBLIC_KEY_UNCOMPRESSED_LENGTH, 'public key output');
      api.publicKeyCreate(privateKey, compressed, dst);
      return dst;
    },
    publicKeyConvert(publicKey, compressed, out) {
      if (!(publicKey instanceof Uint8Array) || !hasValidPrefix(publicKey)) return null;
      const dst = checkOut(out, compressed ? PUBLIC_KEY_LENGTH : PUBLIC_KEY_UNCOMPRESSED_LENGTH, 'public key output');
      // The output's length says which form (as the package's own layer passes it).
      return raw.publicKeyConvert(dst, publicKey) === 0 ? dst : null;
    },
    sign(digest, privateKey, out) {
      if (digest.length !== DIGEST_LENGTH) throw new BufferLengthError('digest', DIGEST_LENGTH, digest.length);
      checkPrivateKey(impl, privateKey);
      const dst = checkOut(out, SIGNATURE_LENGTH, 'signature output');
      const rs = dst.subarray(0, 64);
      let { recid } = api.ecdsaSign(digest, privateKey, {}, rs);
      // recid 2/3 (r ≥ n after reduction) happens with probability ~2^-127; EVM v only encodes 0/1, so re-sign with
      // extra RFC 6979 entropy (a different nonce) until it is 0/1.
      while (recid > 1) recid = api.ecdsaSign(digest, privateKey, { data: randomBytes(32) }, rs).recid;
      dst[64] = 27 + recid;
      return dst;
    },
    verify(signature, digest, publicKey) {
      if (!sigArgsOk(signature, digest) || !(publicKey instanceof Uint8Array) || !hasValidPrefix(publicKey)) return false;
      try {
        return api.ecdsaVerify(signature.subarray(0, 64), digest, publicKey);
      } catch {
        return false;
      }
    },
    recover(signature, digest, compressed = true, out) {
      if (signature.length !== SIGNATURE_LENGTH || !sigArgsOk(signature, digest)) return null;
      const dst = checkOut(out, compressed ? PUBLIC_KEY_LENGTH : PUBLIC_KEY_UNCOMPRESSED_LENGTH, 'public key output');
      return raw.ecdsaRecover(dst, signature.subarray(0, 64), signature[64]! - 27, digest) === 0 ? dst : null;
    },
    ecdh(publicKey, privateKey, out) {
      if (!(publicKey instanceof Uint8Array) || !hasValidPrefix(publicKey)) return null;
      if (!(privateKey instanceof Uint8Array) || privateKey.length !== PRIVATE_KEY_LENGTH) return null;
      const dst = checkOut(out, SHARED_SECRET_LENGTH, 'shared secret output');
      try {
        return raw.ecdh(dst, publicKey, privateKey, undefined, returnX, xbuf, ybuf) === 0 ? dst : null;
      } finally {
        xbuf.fill(0);
        ybuf.fill(0);
      }
    },
  };
  return impl;
}

// ---------------------------------------------------------------------------------------------------------------
// Noble: @noble/curves, the reference.

function copyOut(src: Uint8Array, out: Buffer | undefined, what: string): Buffer {
  const dst = checkOut(out, src.length, what);
  dst.set(src);
  return dst;
}

function makeNoble(): Secp256k1 {
  const { Signature, Point } = nobleCurve;
  const impl: Secp256k1 = {
    name: 'noble',
    isValidPrivateKey(privateKey) {
      return privateKey instanceof Uint8Array && privateKey.length === PRIVATE_KEY_LENGTH && nobleCurve.utils.isValidSecretKey(privateKey);
    },
    isValidPublicKey(publicKey) {
      if (!(publicKey instanceof Uint8Array) || !hasValidPrefix(publicKey)) return false;
      try {
        return nobleCurve.utils.isValidPublicKey(publicKey);
      } catch {
        return false;
      }
    },
    publicKeyCreate(privateKey, compressed = true, out) {
      checkPrivateKey(impl, privateKey);
      return copyOut(nobleCurve.getPublicKey(privateKey, compressed), out, 'public key output');
    },
    publicKeyConvert(publicKey, compressed, out) {
      if (!(publicKey instanceof Uint8Array) || !hasValidPrefix(publicKey)) return null;
      let bytes: Uint8Array;
      try {
        bytes = Point.fromBytes(publicKey).toBytes(compressed);
      } catch {
        return null;
      }
      return copyOut(bytes, out, 'public key output');
    },
    sign(digest, privateKey, out) {
      if (digest.length !== DIGEST_LENGTH) throw new BufferLengthError('digest', DIGEST_LENGTH, digest.length);
      checkPrivateKey(impl, privateKey);
      const dst = checkOut(out, SIGNATURE_LENGTH, 'signature output');
      const opts = { prehash: false, lowS: true, format: 'recovered' as const };
      // noble's 'recovered' format is recid ‖ r ‖ s; ours (EVM) is r ‖ s ‖ 27+recid.
      let rec = nobleCurve.sign(digest, privateKey, opts);
      while (rec[0]! > 1) rec = nobleCurve.sign(digest, privateKey, { ...opts, extraEntropy: randomBytes(32) });
      dst.set(rec.subarray(1, 65), 0);
      dst[64] = 27 + rec[0]!;
      return dst;
    },
    verify(signature, digest, publicKey) {
      if (!sigArgsOk(signature, digest) || !(publicKey instanceof Uint8Array) || !hasValidPrefix(publicKey)) return false;
      try {
        return nobleCurve.verify(signature.subarray(0, 64), digest, publicKey, { prehash: false, lowS: true, format: 'compact' });
      } catch {
        return false;
      }
    },
    recover(signature, digest, compressed = true, out) {
      if (signature.length !== SIGNATURE_LENGTH || !sigArgsOk(signature, digest)) return null;
      let bytes: Uint8Array;
      try {
        const sig = Signature.fromBytes(signature.subarray(0, 64), 'compact').addRecoveryBit(signature[64]! - 27);
        bytes = sig.recoverPublicKey(digest).toBytes(compressed);
      } catch {
        return null;
      }
      return copyOut(bytes, out, 'public key output');
    },
    ecdh(publicKey, privateKey, out) {
      if (!(publicKey instanceof Uint8Array) || !hasValidPrefix(publicKey)) return null;
      if (!impl.isValidPrivateKey(privateKey)) return null;
      let shared: Uint8Array;
      try {
        shared = nobleCurve.getSharedSecret(privateKey, publicKey, true); // compressed point: prefix ‖ x
      } catch {
        return null;
      }
      const r = copyOut(shared.subarray(1, 33), out, 'shared secret output');
      shared.fill(0);
      return r;
    },
  };
  return impl;
}

const loaded = loadNative();

/** The reference implementation; always available. */
export const nobleSecp256k1: Secp256k1 = makeNoble();
/** The libsecp256k1 implementation, or null when the addon did not load (see nativeSecp256k1LoadError). */
export const nativeSecp256k1: Secp256k1 | null = loaded.api && loaded.raw ? makeNative(loaded.api, loaded.raw) : null;
/** Why the native binding is missing, for the startup log. */
export const nativeSecp256k1LoadError: Error | null = loaded.error;
/** What the rest of the agent uses: native when available, else noble (slow but correct). */
export const defaultSecp256k1: Secp256k1 = nativeSecp256k1 ?? nobleSecp256k1;

/** The native implementation, or NativeUnavailableError (for benchmarks and tests that must not silently fall back). */
export function requireNativeSecp256k1(): Secp256k1 {
  if (nativeSecp256k1 === null) {
    throw new NativeUnavailableError(`libsecp256k1 binding not loaded: ${nativeSecp256k1LoadError?.message ?? 'unknown'}`);
  }
  return nativeSecp256k1;
}

// ---------------------------------------------------------------------------------------------------------------
// IDs (docs/protocol.md §1): last 20 bytes of keccak256(X ‖ Y).

/** ID from a 65-byte uncompressed key, not validated (the caller got it from a trusted derivation or recovery). */
export function idFromUncompressed(publicKeyUncompressed: Uint8Array, out?: Buffer): Buffer {
  const h = keccak256(publicKeyUncompressed.subarray(1, 65));
  const dst = checkOut(out, ID_LENGTH, 'id output');
  h.copy(dst, 0, 12, 32);
  return dst;
}

/** ID of a public key (33 or 65 bytes); null when the key is not a valid point. */
export function tryIdFromPublicKey(publicKey: Uint8Array, impl: Secp256k1 = defaultSecp256k1, out?: Buffer): Buffer | null {
  const full = publicKey.length === PUBLIC_KEY_UNCOMPRESSED_LENGTH && impl.isValidPublicKey(publicKey)
    ? publicKey
    : impl.publicKeyConvert(publicKey, false);
  return full === null ? null : idFromUncompressed(full, out);
}

/** ID of a public key; throws InvalidPublicKeyError (for keys from configuration). */
export function idFromPublicKey(publicKey: Uint8Array, impl: Secp256k1 = defaultSecp256k1, out?: Buffer): Buffer {
  const id = tryIdFromPublicKey(publicKey, impl, out);
  if (id === null) throw new InvalidPublicKeyError();
  return id;
}

/** 33-byte compressed form of a 65-byte uncompressed key, by byte shuffling (no point validation, no field math). */
export function compressUncompressed(publicKeyUncompressed: Uint8Array, out?: Buffer): Buffer {
  const dst = checkOut(out, PUBLIC_KEY_LENGTH, 'public key output');
  dst[0] = (publicKeyUncompressed[64]! & 1) === 1 ? 0x03 : 0x02;
  dst.set(publicKeyUncompressed.subarray(1, 33), 1);
  return dst;
}

/** Display form of an ID: `0x` + 40 lowercase hex digits. */
export function formatId(id: Uint8Array): string {
  if (id.length !== ID_LENGTH) throw new BufferLengthError('id', ID_LENGTH, id.length);
  return toHex(id);
}

/** EIP-55 mixed-case checksum form (for EVM tooling; our own display is lowercase). */
export function formatIdChecksum(id: Uint8Array): string {
  const lower = formatId(id).slice(2);
  const h = keccak256(Buffer.from(lower, 'ascii'));
  let s = '0x';
  for (let i = 0; i < 40; i++) {
    const c = lower[i]!;
    const nibble = (h[i >> 1]! >> (i % 2 === 0 ? 4 : 0)) & 0xf;
    s += nibble >= 8 ? c.toUpperCase() : c;
  }
  return s;
}

/**
 * Parses an ID: `0x` + 40 hex digits. All-lowercase and all-uppercase are accepted as is; mixed case must carry a
 * valid EIP-55 checksum (it catches typos in addresses pasted from wallets). Null when invalid.
 */
export function tryParseId(text: string): Buffer | null {
  if (typeof text !== 'string' || text.length !== 42 || !(text.startsWith('0x') || text.startsWith('0X'))) return null;
  const id = tryParseHex(text, ID_LENGTH);
  if (id === null) return null;
  const body = text.slice(2);
  if (body !== body.toLowerCase() && body !== body.toUpperCase() && formatIdChecksum(id) !== `0x${body}`) return null;
  return id;
}

/** Like tryParseId, throwing InvalidIdError (safe to show to a client). */
export function parseId(text: string): Buffer {
  const id = tryParseId(text);
  if (id === null) throw new InvalidIdError('an ID is 0x followed by 40 hex digits (with a valid EIP-55 checksum if mixed-case)');
  return id;
}

// ---------------------------------------------------------------------------------------------------------------
// Key pairs.

/** Something that can do Diffie-Hellman with its private key without handing the key out (Noise's static/ephemeral). */
export interface DhKey {
  /** 33-byte compressed public key. Owned by the key; do not modify. */
  readonly publicKey: Buffer;
  /** Raw x-coordinate of the shared point, or null when `peerPublicKey` is not a valid point. */
  dh(peerPublicKey: Uint8Array, out?: Buffer): Buffer | null;
}

/**
 * A secp256k1 key pair. The private key stays in a private field: it is not enumerable, not in JSON, not in
 * util.inspect output; `exportPrivateKey()` is the one deliberate way out (for the identity file).
 */
export class KeyPair implements DhKey {
  readonly #privateKey: Buffer;
  #uncompressed: Buffer | undefined;
  #id: Buffer | undefined;
  readonly publicKey: Buffer;

  /** `privateKey` is copied; the caller may wipe its own copy. */
  protected constructor(
    privateKey: Uint8Array,
    readonly impl: Secp256k1 = defaultSecp256k1,
  ) {
    if (!(privateKey instanceof Uint8Array) || !impl.isValidPrivateKey(privateKey)) throw new InvalidPrivateKeyError();
    this.#privateKey = Buffer.from(privateKey);
    this.publicKey = impl.publicKeyCreate(this.#privateKey, true);
  }

  /** A fresh random key pair (rejection sampling over 32 random bytes; the loop essentially never repeats). */
  static generate(impl: Secp256k1 = defaultSecp256k1): KeyPair {
    const k = randomPrivateKey(impl);
    try {
      return new KeyPair(k, impl);
    } finally {
      k.fill(0);
    }
  }

  /** From 32 bytes or their hex (`0x` optional). Throws InvalidPrivateKeyError / InvalidHexError. */
  static fromPrivateKey(privateKey: Uint8Array | string, impl: Secp256k1 = defaultSecp256k1): KeyPair {
    return new KeyPair(typeof privateKey === 'string' ? parseHex(privateKey, PRIVATE_KEY_LENGTH, 'private key') : privateKey, impl);
  }

  /** 65-byte uncompressed public key (computed once, on first use). */
  get publicKeyUncompressed(): Buffer {
    this.#uncompressed ??= this.impl.publicKeyCreate(this.#privateKey, false);
    return this.#uncompressed;
  }

  /** 20-byte ID (computed once, on first use: ephemeral keys never pay for it). */
  get id(): Buffer {
    this.#id ??= idFromUncompressed(this.publicKeyUncompressed);
    return this.#id;
  }

  get idHex(): string {
    return formatId(this.id);
  }

  /** 65-byte recoverable signature of a 32-byte digest. */
  signDigest(digest: Uint8Array, out?: Buffer): Buffer {
    return this.impl.sign(digest, this.#privateKey, out);
  }

  dh(peerPublicKey: Uint8Array, out?: Buffer): Buffer | null {
    return this.impl.ecdh(peerPublicKey, this.#privateKey, out);
  }

  /** A copy of the 32-byte private key. The caller owns it and should wipe it when done. */
  exportPrivateKey(): Buffer {
    return Buffer.from(this.#privateKey);
  }

  /** Zeroes the private key; the object must not be used afterwards (ephemeral keys after a handshake). */
  destroy(): void {
    this.#privateKey.fill(0);
  }

  toJSON(): { publicKey: string; id: string } {
    return { publicKey: toHex(this.publicKey), id: this.idHex };
  }

  [inspect.custom](): string {
    return `${this.constructor.name} { id: ${this.idHex} }`;
  }
}

/** 32 random bytes that form a valid private key. */
export function randomPrivateKey(impl: Secp256k1 = defaultSecp256k1): Buffer {
  for (;;) {
    const k = randomBytes(PRIVATE_KEY_LENGTH);
    if (impl.isValidPrivateKey(k)) return k;
  }
}
