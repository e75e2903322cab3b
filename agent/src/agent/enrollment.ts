// The phone enrollment token: what "add a phone" shows (text, link, QR code) and `ntm enroll` decodes. Pure.
//
// It tells a new phone which DC to register with and proves the household invited it. The DC learns the token's
// secret from the registration request's token field (docs/protocol.md §3.2) and admits the phone when the secret
// matches an unused, unexpired enrollment (HouseholdStore.consumeEnrollment). The token carries the DC's public
// key, not only its ID, so the phone can compute K_ss for its very first request without any lookup.
//
// Binary form (big-endian), then base64url (RFC 4648 §5, no padding) after the prefix "ntm1:":
//
//   0      1      2                       35                  51            55     56
//   +------+------+-----------------------+-------------------+-------------+------+----------------------
//   | ver  | flags| DC public key (33,    | secret (16)       | expiry, s   | n    | n × Endpoint (§3.1):
//   | = 1  | = 0  | SEC1 compressed)      |                   | since epoch |(1..4)| family ‖ addr ‖ port
//   +------+------+-----------------------+-------------------+-------------+------+----------------------
//   | household name length (1, ≤ 63) ‖ name (UTF-8) | check (4) = SHA-256(all bytes before)[0..4] |
//
// The check catches a token mangled by copy and paste before the phone sends anything; it is not a MAC (the
// secret is what authenticates). Link form: "ntm://enroll#" + the text form (a fragment is never sent to a server).
import { createHash, randomBytes } from 'node:crypto';
import QRCode from 'qrcode';
import { tryIdFromPublicKey } from '../crypto/secp256k1.js';
import { formatEndpoint, readEndpoint, writeEndpoint } from '../protocol/endpoint.js';
import { decodeWith, Reader, Writer } from '../protocol/wire.js';
import type { Endpoint } from '../types/net.js';

export const TOKEN_PREFIX = 'ntm1:';
export const LINK_PREFIX = 'ntm://enroll#';
export const TOKEN_VERSION = 1;
export const SECRET_LENGTH = 16;
export const MAX_ENDPOINTS = 4;
export const MAX_HOUSEHOLD_BYTES = 63;
const CHECK_LENGTH = 4;
const PUBKEY_LENGTH = 33;

/** What a token says. */
export interface EnrollmentToken {
  /** The household DC's public key: 66 lowercase hex digits (compressed point). */
  readonly dcPublicKey: string;
  /** The DC's ID (0x + 40 hex), derived from the key. */
  readonly dcId: string;
  /** Where the phone reaches the DC (1..4; IPv4 and/or IPv6). */
  readonly dcEndpoints: readonly Endpoint[];
  /** The one-time secret (16 bytes): goes into the registration request's token field. */
  readonly secret: Buffer;
  /** The household's name, to show on the phone ("Join Tanaka home?"). */
  readonly household: string;
  /** Expiry, ms since the Unix epoch (whole seconds). */
  readonly expiresAt: number;
}

export type DecodeFailure = 'empty' | 'prefix' | 'encoding' | 'checksum' | 'version' | 'malformed' | 'public_key' | 'expired';

export type DecodeResult =
  | { readonly ok: true; readonly token: EnrollmentToken }
  | { readonly ok: false; readonly reason: DecodeFailure; readonly message: string };

/** A fresh random secret (128 bits from the OS CSPRNG). */
export function newSecret(): Buffer {
  return randomBytes(SECRET_LENGTH);
}

/** What the store keeps instead of the secret: SHA-256 (the secret has 128 bits of entropy; no KDF needed). */
export function secretHash(secret: Uint8Array): Buffer {
  return createHash('sha256').update(secret).digest();
}

/** "<66 hex public key>@addr:port" for each endpoint: the DC references `ntm up --dc` and the phone's config take. */
export function dcRefs(t: Pick<EnrollmentToken, 'dcPublicKey' | 'dcEndpoints'>): string[] {
  return t.dcEndpoints.map((e) => `${t.dcPublicKey}@${formatEndpoint(e)}`);
}

export interface EncodeInput {
  readonly dcPublicKey: string | Uint8Array;
  readonly dcEndpoints: readonly Endpoint[];
  readonly secret: Uint8Array;
  readonly household: string;
  readonly expiresAt: number;
}

/** Encodes a token's text form. Throws RangeError on values a token cannot carry (a programming error). */
export function encodeEnrollment(t: EncodeInput): string {
  const key = typeof t.dcPublicKey === 'string' ? Buffer.from(t.dcPublicKey.replace(/^0x/, ''), 'hex') : Buffer.from(t.dcPublicKey);
  if (key.length !== PUBKEY_LENGTH || tryIdFromPublicKey(key) === null) throw new RangeError('DC public key must be a 33-byte compressed secp256k1 point');
  if (t.secret.length !== SECRET_LENGTH) throw new RangeError(`secret must be ${SECRET_LENGTH} bytes`);
  if (t.dcEndpoints.length < 1 || t.dcEndpoints.length > MAX_ENDPOINTS) throw new RangeError(`1..${MAX_ENDPOINTS} DC endpoints`);
  const name = Buffer.from(t.household, 'utf8');
  if (name.length > MAX_HOUSEHOLD_BYTES) throw new RangeError(`household name longer than ${MAX_HOUSEHOLD_BYTES} bytes`);
  const seconds = Math.floor(t.expiresAt / 1000);
  if (!Number.isInteger(seconds) || seconds < 0 || seconds > 0xffffffff) throw new RangeError('expiry out of range');
  const w = new Writer(128);
  w.u8(TOKEN_VERSION).u8(0).fixed(key, PUBKEY_LENGTH).fixed(t.secret, SECRET_LENGTH).u32(seconds).u8(t.dcEndpoints.length);
  for (const e of t.dcEndpoints) writeEndpoint(w, e);
  w.vbytes8(name);
  const body = w.finish();
  const check = createHash('sha256').update(body).digest().subarray(0, CHECK_LENGTH);
  return TOKEN_PREFIX + Buffer.concat([body, check]).toString('base64url');
}

export function enrollmentLink(tokenText: string): string {
  return LINK_PREFIX + tokenText;
}

const fail = (reason: DecodeFailure, message: string): DecodeResult => ({ ok: false, reason, message });

/**
 * Decodes a token or link as a person may paste it (surrounding spaces and line breaks are ignored). Never throws:
 * a bad input gives a reason and a message fit to show. `now` (ms) checks expiry; pass null to skip that check.
 */
export function decodeEnrollment(input: unknown, opts: { now?: number | null } = {}): DecodeResult {
  if (typeof input !== 'string' || input.trim() === '') return fail('empty', 'no enrollment token given');
  if (input.length > 2048) return fail('malformed', 'too long to be an enrollment token');
  let text = input.replace(/\s+/g, '');
  if (text.toLowerCase().startsWith(LINK_PREFIX)) text = text.slice(LINK_PREFIX.length);
  if (!text.toLowerCase().startsWith(TOKEN_PREFIX)) return fail('prefix', `an enrollment token starts with "${TOKEN_PREFIX}" (or a link with "${LINK_PREFIX}")`);
  const b64 = text.slice(TOKEN_PREFIX.length);
  if (!/^[A-Za-z0-9_-]+$/.test(b64)) return fail('encoding', 'the token contains characters that are not base64url');
  const raw = Buffer.from(b64, 'base64url');
  if (raw.length < 2 + PUBKEY_LENGTH + SECRET_LENGTH + 4 + 1 + CHECK_LENGTH) return fail('malformed', 'the token is too short (cut off when copied?)');
  const body = raw.subarray(0, raw.length - CHECK_LENGTH);
  const check = createHash('sha256').update(body).digest().subarray(0, CHECK_LENGTH);
  if (!check.equals(raw.subarray(raw.length - CHECK_LENGTH))) return fail('checksum', 'the token is damaged (a character changed or missing when copied?)');
  if (body[0] !== TOKEN_VERSION) return fail('version', `token version ${body[0]} is not supported (this software reads version ${TOKEN_VERSION})`);
  const parsed = decodeWith(() => {
    const r = new Reader(body, 2);
    const key = Buffer.from(r.bytes(PUBKEY_LENGTH));
    const secret = Buffer.from(r.bytes(SECRET_LENGTH));
    const expiresAt = r.u32() * 1000;
    const n = r.u8();
    if (n < 1 || n > MAX_ENDPOINTS) throw new RangeError(`${n} DC addresses`);
    const endpoints: Endpoint[] = [];
    for (let i = 0; i < n; i++) endpoints.push(readEndpoint(r));
    const household = r.str8();
    if (Buffer.byteLength(household) > MAX_HOUSEHOLD_BYTES) throw new RangeError('household name too long');
    r.end();
    return { key, secret, expiresAt, endpoints, household };
  });
  if (!parsed.ok) return fail('malformed', `the token is malformed (${parsed.reason})`);
  const v = parsed.value;
  const id = tryIdFromPublicKey(v.key);
  if (id === null) return fail('public_key', 'the token names an invalid DC key');
  const now = opts.now === undefined ? Date.now() : opts.now;
  if (now !== null && v.expiresAt <= now) return fail('expired', `the token expired at ${new Date(v.expiresAt).toISOString()}; ask for a new one`);
  return {
    ok: true,
    token: {
      dcPublicKey: v.key.toString('hex'),
      dcId: '0x' + id.toString('hex'),
      dcEndpoints: v.endpoints,
      secret: v.secret,
      household: v.household,
      expiresAt: v.expiresAt,
    },
  };
}

/**
 * The QR code of `text` as SVG markup: byte mode, error correction M, one <path> of dark modules with a 4-module
 * quiet zone (ISO/IEC 18004 §6.3.8). Sizes scale with the viewBox, so the page decides the displayed size.
 */
export function qrSvg(text: string): string {
  const qr = QRCode.create(text, { errorCorrectionLevel: 'M' });
  const size = qr.modules.size;
  const quiet = 4;
  const dim = size + 2 * quiet;
  let d = '';
  for (let y = 0; y < size; y++) {
    let x = 0;
    while (x < size) {
      if (!qr.modules.get(y, x)) {
        x++;
        continue;
      }
      let run = 1;
      while (x + run < size && qr.modules.get(y, x + run)) run++;
      d += `M${x + quiet} ${y + quiet}h${run}v1h-${run}z`;
      x += run;
    }
  }
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${dim} ${dim}" shape-rendering="crispEdges" role="img" aria-label="QR code">` +
    `<rect width="${dim}" height="${dim}" fill="#fff"/><path fill="#000" d="${d}"/></svg>`
  );
}

export interface NewEnrollment {
  readonly token: string;
  readonly link: string;
  readonly qrSvg: string;
  readonly secret: Buffer;
  readonly expiresAt: number;
}

/** A fresh enrollment's token, link and QR code; the caller stores `secret`'s hash (HouseholdStore.createEnrollment). */
export function makeEnrollment(input: Omit<EncodeInput, 'secret' | 'expiresAt'> & { readonly ttlMs: number; readonly now: number }): NewEnrollment {
  const secret = newSecret();
  // Whole seconds on the wire: round down so the stored expiry is never later than the printed one.
  const expiresAt = Math.floor((input.now + input.ttlMs) / 1000) * 1000;
  const token = encodeEnrollment({ ...input, secret, expiresAt });
  const link = enrollmentLink(token);
  return { token, link, qrSvg: qrSvg(link), secret, expiresAt };
}
