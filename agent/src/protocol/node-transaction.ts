// The 148-byte Node Transaction of docs/protocol.md §2 (paper §2.2): a terminal's signed registration record, laid
// out as Solidity's abi.encodePacked(uint8 ver, address id, bytes pubkey33, address dc, bool rev, uint64 ts) ‖ sig65
// so a smart contract can rebuild the digest and check it with ecrecover.
//
//  0      1                    21                                54
//  +------+--------------------+---------------------------------+
//  | ver  | id (20)            | public key, compressed (33)     |
//  +------+--------------------+-------+-------------------------+
//  54                          74      75                        83
//  | managing DC id (20)       | rev   | timestamp, ms since the |
//  |                           | (0/1) | Unix epoch, uint64 BE   |
//  +---------------------------+-------+-------------------------+
//  83                                                          148
//  | signature r ‖ s ‖ v (65) over keccak256("NTM1 node-transaction" ‖ bytes 0..83)
//  +--------------------------------------------------------------+
//
// decode() never throws on bad bytes: it returns a NodeTransactionDecodeError value. check()/verify() never throw.

import { BufferLengthError } from '../crypto/errors.js';
import { toHex } from '../crypto/hex.js';
import {
  defaultSecp256k1,
  ID_LENGTH,
  idFromUncompressed,
  PUBLIC_KEY_LENGTH,
  PUBLIC_KEY_UNCOMPRESSED_LENGTH,
  SIGNATURE_LENGTH,
  type Secp256k1,
} from '../crypto/secp256k1.js';
import { NtmError } from '../types/errors.js';
import { domainDigest, DomainTag, type Identity } from './identity.js';

export const NT_VERSION = 1;
export const NT_LENGTH = 148;
/** Bytes 0..83 are signed. */
export const NT_SIGNED_LENGTH = 83;

const OFF_VER = 0;
const OFF_ID = 1;
const OFF_PUB = 21;
const OFF_DC = 54;
const OFF_REV = 74;
const OFF_TS = 75;
const OFF_SIG = 83;
const TWO32 = 0x1_0000_0000;
/** High 32-bit word limit for timestamps that fit Number.MAX_SAFE_INTEGER. */
const SAFE_HI_LIMIT = 0x20_0000;

// Scratch for digest()/check(): single-threaded, never escapes.
const scratchSigned = Buffer.alloc(NT_SIGNED_LENGTH);
const scratchDigest = Buffer.alloc(32);
const scratchRecovered = Buffer.alloc(PUBLIC_KEY_UNCOMPRESSED_LENGTH);
const scratchId = Buffer.alloc(ID_LENGTH);

/** A decoded Node Transaction. Buffers are views into one private copy of the 148 bytes: never aliases the input. */
export interface NodeTransaction {
  readonly version: number;
  /** 20-byte ID of the terminal (= EVM address of publicKey). */
  readonly id: Buffer;
  /** 33-byte compressed secp256k1 public key. */
  readonly publicKey: Buffer;
  /** 20-byte ID of the managing DC. */
  readonly dcId: Buffer;
  readonly revoked: boolean;
  /** Milliseconds since the Unix epoch (a uint64 on the wire; values above 2^53 − 1 fail to decode). */
  readonly timestamp: number;
  /** 65 bytes r ‖ s ‖ v. */
  readonly signature: Buffer;
}

export type NodeTransactionDecodeReason =
  | 'length' // not exactly 148 bytes
  | 'version' // ver ≠ 1
  | 'public-key' // first byte of the key is not 0x02/0x03
  | 'revoked-flag' // rev ∉ {0, 1}
  | 'timestamp'; // above 2^53 − 1 ms (year 287,396)

/** A decode failure, returned (never thrown). One frozen instance per reason: no allocation on the hot path. */
export class NodeTransactionDecodeError extends NtmError {
  override readonly name = 'NodeTransactionDecodeError';
  override readonly code = 'node_transaction_decode';
  constructor(readonly reason: NodeTransactionDecodeReason) {
    super(`malformed Node Transaction: ${reason}`);
  }
}

const DECODE_ERRORS: Readonly<Record<NodeTransactionDecodeReason, NodeTransactionDecodeError>> = Object.freeze({
  length: Object.freeze(new NodeTransactionDecodeError('length')),
  version: Object.freeze(new NodeTransactionDecodeError('version')),
  'public-key': Object.freeze(new NodeTransactionDecodeError('public-key')),
  'revoked-flag': Object.freeze(new NodeTransactionDecodeError('revoked-flag')),
  timestamp: Object.freeze(new NodeTransactionDecodeError('timestamp')),
});

/** Result of check(): 'ok' or why the Node Transaction is not valid. */
export type NodeTransactionCheck =
  | 'ok'
  | 'malformed' // a field has the wrong length / version / flag (only for hand-built objects; decode refuses these)
  | 'signature' // not a valid low-s signature with v ∈ {27, 28}, or recovers no key
  | 'public-key' // the signature recovers to another key than publicKey
  | 'id'; // id is not the ID of publicKey

/** The unsigned fields. */
export interface NodeTransactionFields {
  readonly id: Uint8Array;
  readonly publicKey: Uint8Array;
  readonly dcId: Uint8Array;
  readonly revoked: boolean;
  readonly timestamp: number;
  readonly version?: number;
}

function fieldsOk(f: NodeTransactionFields): boolean {
  return (
    (f.version ?? NT_VERSION) === NT_VERSION &&
    f.id instanceof Uint8Array &&
    f.id.length === ID_LENGTH &&
    f.publicKey instanceof Uint8Array &&
    f.publicKey.length === PUBLIC_KEY_LENGTH &&
    f.dcId instanceof Uint8Array &&
    f.dcId.length === ID_LENGTH &&
    typeof f.revoked === 'boolean' &&
    Number.isSafeInteger(f.timestamp) &&
    f.timestamp >= 0
  );
}

function writeSigned(f: NodeTransactionFields, dst: Buffer): void {
  dst[OFF_VER] = f.version ?? NT_VERSION;
  dst.set(f.id, OFF_ID);
  dst.set(f.publicKey, OFF_PUB);
  dst.set(f.dcId, OFF_DC);
  dst[OFF_REV] = f.revoked ? 1 : 0;
  dst.writeUInt32BE(Math.floor(f.timestamp / TWO32), OFF_TS);
  dst.writeUInt32BE(f.timestamp >>> 0, OFF_TS + 4);
}

function checkFields(f: NodeTransactionFields): void {
  if (!fieldsOk(f)) {
    if (f.id?.length !== ID_LENGTH) throw new BufferLengthError('Node Transaction id', ID_LENGTH, f.id?.length ?? -1);
    if (f.publicKey?.length !== PUBLIC_KEY_LENGTH) throw new BufferLengthError('Node Transaction public key', PUBLIC_KEY_LENGTH, f.publicKey?.length ?? -1);
    if (f.dcId?.length !== ID_LENGTH) throw new BufferLengthError('Node Transaction DC id', ID_LENGTH, f.dcId?.length ?? -1);
    throw new RangeError('Node Transaction: version must be 1, revoked a boolean, timestamp a safe non-negative integer');
  }
}

/** Bytes 0..83 (what the signature covers). Throws on malformed fields (caller bug). */
export function encodeSigned(f: NodeTransactionFields, out?: Buffer): Buffer {
  checkFields(f);
  const dst = out === undefined ? Buffer.allocUnsafe(NT_SIGNED_LENGTH) : out.subarray(0, NT_SIGNED_LENGTH);
  if (dst.length < NT_SIGNED_LENGTH) throw new BufferLengthError('Node Transaction output', NT_SIGNED_LENGTH, dst.length);
  writeSigned(f, dst);
  return dst;
}

/** The 148-byte encoding. Throws on malformed fields (caller bug). */
export function encode(nt: NodeTransaction, out?: Buffer): Buffer {
  checkFields(nt);
  if (!(nt.signature instanceof Uint8Array) || nt.signature.length !== SIGNATURE_LENGTH) {
    throw new BufferLengthError('Node Transaction signature', SIGNATURE_LENGTH, nt.signature?.length ?? -1);
  }
  const dst = out === undefined ? Buffer.allocUnsafe(NT_LENGTH) : out.subarray(0, NT_LENGTH);
  if (dst.length < NT_LENGTH) throw new BufferLengthError('Node Transaction output', NT_LENGTH, dst.length);
  writeSigned(nt, dst);
  dst.set(nt.signature, OFF_SIG);
  return dst;
}

/**
 * Parses 148 bytes (borrowed; copied once, so the result does not alias them). Checks framing only — length,
 * version, key prefix, flag, timestamp range; signature validity is check()'s job. Never throws.
 */
export function decode(bytes: Uint8Array): NodeTransaction | NodeTransactionDecodeError {
  if (!(bytes instanceof Uint8Array) || bytes.length !== NT_LENGTH) return DECODE_ERRORS.length;
  if (bytes[OFF_VER] !== NT_VERSION) return DECODE_ERRORS.version;
  const prefix = bytes[OFF_PUB];
  if (prefix !== 0x02 && prefix !== 0x03) return DECODE_ERRORS['public-key'];
  const rev = bytes[OFF_REV];
  if (rev !== 0 && rev !== 1) return DECODE_ERRORS['revoked-flag'];
  const b = Buffer.from(bytes); // the one copy
  const hi = b.readUInt32BE(OFF_TS);
  if (hi >= SAFE_HI_LIMIT) return DECODE_ERRORS.timestamp;
  return {
    version: NT_VERSION,
    id: b.subarray(OFF_ID, OFF_PUB),
    publicKey: b.subarray(OFF_PUB, OFF_DC),
    dcId: b.subarray(OFF_DC, OFF_REV),
    revoked: rev === 1,
    timestamp: hi * TWO32 + b.readUInt32BE(OFF_TS + 4),
    signature: b.subarray(OFF_SIG, NT_LENGTH),
  };
}

/** keccak256("NTM1 node-transaction" ‖ bytes 0..83). */
export function digest(f: NodeTransactionFields, out?: Buffer): Buffer {
  return domainDigest(DomainTag.nodeTransaction, encodeSigned(f, scratchSigned), out);
}

/** Creates and signs a Node Transaction for `identity` (id and public key come from it). */
export function sign(identity: Identity, p: { readonly dcId: Uint8Array; readonly revoked: boolean; readonly timestamp: number }): NodeTransaction {
  const fields: NodeTransactionFields = { id: identity.id, publicKey: identity.publicKey, dcId: p.dcId, revoked: p.revoked, timestamp: p.timestamp };
  const signed = encodeSigned(fields);
  const signature = identity.sign(DomainTag.nodeTransaction, signed);
  const d = decode(Buffer.concat([signed, signature]));
  if (d instanceof NodeTransactionDecodeError) throw new RangeError(`Node Transaction: ${d.reason}`); // unreachable after encodeSigned
  return d;
}

/**
 * Full validity (docs/protocol.md §2): the signature (low-s, v ∈ {27, 28}) recovers to `publicKey`, `id` is that
 * key's ID, version and flag are valid. Costs one recovery (~70 µs native) and two keccak-256. Never throws.
 */
export function check(nt: NodeTransaction, impl: Secp256k1 = defaultSecp256k1): NodeTransactionCheck {
  if (!fieldsOk(nt) || !(nt.signature instanceof Uint8Array) || nt.signature.length !== SIGNATURE_LENGTH) return 'malformed';
  writeSigned(nt, scratchSigned);
  domainDigest(DomainTag.nodeTransaction, scratchSigned, scratchDigest);
  // Recover the uncompressed key: its ID needs X‖Y anyway, and comparing its compressed form with publicKey is
  // byte shuffling instead of a square root.
  const full = impl.recover(nt.signature, scratchDigest, false, scratchRecovered);
  if (full === null) return 'signature';
  const pub = nt.publicKey;
  if (pub[0] !== ((full[64]! & 1) === 1 ? 0x03 : 0x02) || !full.subarray(1, 33).equals(pub.subarray(1, 33))) return 'public-key';
  if (!idFromUncompressed(full, scratchId).equals(nt.id)) return 'id';
  return 'ok';
}

/** check(nt) === 'ok'. */
export function verify(nt: NodeTransaction, impl: Secp256k1 = defaultSecp256k1): boolean {
  return check(nt, impl) === 'ok';
}

/** For logs and the admin UI: hex fields, no buffers. */
export function describe(nt: NodeTransaction): { id: string; publicKey: string; dcId: string; revoked: boolean; timestamp: number; signature: string } {
  return { id: toHex(nt.id), publicKey: toHex(nt.publicKey), dcId: toHex(nt.dcId), revoked: nt.revoked, timestamp: nt.timestamp, signature: toHex(nt.signature) };
}
