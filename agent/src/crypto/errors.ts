// Typed errors of the crypto and identity modules (docs/protocol.md §1–§3.4), one class per condition (STYLE habit 5).
// These are thrown only for programmer or operator mistakes (a malformed key in a config file, a too-small output
// buffer). Attacker-controlled input never reaches a throw: bad signatures, tags, points and replays are return values.

import { NtmError } from '../types/errors.js';

/** A private key is not 32 bytes or not in [1, n-1] of secp256k1. */
export class InvalidPrivateKeyError extends NtmError {
  override readonly name = 'InvalidPrivateKeyError';
  override readonly code = 'invalid_private_key';
  constructor(message = 'invalid secp256k1 private key') {
    super(message);
  }
}

/** A public key given by a caller (not read off the wire) is not a valid secp256k1 point encoding. */
export class InvalidPublicKeyError extends NtmError {
  override readonly name = 'InvalidPublicKeyError';
  override readonly code = 'invalid_public_key';
  constructor(message = 'invalid secp256k1 public key') {
    super(message);
  }
}

/** Text that should be hex (optionally `0x`-prefixed) of a given length is not. Safe to show to a client. */
export class InvalidHexError extends NtmError {
  override readonly name = 'InvalidHexError';
  override readonly code = 'invalid_hex';
  override readonly expose = true;
}

/** Text that should be an NTM ID (`0x` + 40 hex digits, EIP-55 checksum when mixed-case) is not. Safe to show. */
export class InvalidIdError extends NtmError {
  override readonly name = 'InvalidIdError';
  override readonly code = 'invalid_id';
  override readonly expose = true;
}

/** A buffer argument has the wrong length (a caller bug, never wire input). */
export class BufferLengthError extends NtmError {
  override readonly name = 'BufferLengthError';
  override readonly code = 'buffer_length';
  constructor(
    readonly what: string,
    readonly expected: number,
    readonly actual: number,
  ) {
    super(`${what}: expected ${expected} bytes, got ${actual}`);
  }
}

/** The native libsecp256k1 binding could not be loaded and the caller asked for it explicitly. */
export class NativeUnavailableError extends NtmError {
  override readonly name = 'NativeUnavailableError';
  override readonly code = 'native_unavailable';
}

/** An identity file cannot be read, parsed, has unsafe permissions, or its fields disagree with each other. */
export class IdentityFileError extends NtmError {
  override readonly name = 'IdentityFileError';
  override readonly code = 'identity_file';
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`identity file ${path}: ${message}`);
  }
}

/** A handshake object was used out of order (e.g. a response created twice from one request state). */
export class HandshakeStateError extends NtmError {
  override readonly name = 'HandshakeStateError';
  override readonly code = 'handshake_state';
}
