// Registration Request / Response (paper §2.2, Fig. 2; docs/protocol.md §3.2), the cookie reply, the NAT-mapping
// probe, and HINT. The request carries the signed Node Transaction plus a MAC under K_ss (static-static ECDH of
// terminal and DC); the response is sealed under the channel key both sides derive from K_ss and the two nonces.
// After the MAC come WireGuard's mac1 and mac2 (WireGuard paper §5.4.4, §5.4.7): mac1 is keyed by the DC's public key,
// so the DC drops random garbage with one HMAC before any EC operation; mac2 is keyed by a cookie the DC hands out
// under load (REGISTRATION_COOKIE), so a DC under a flood does the ECDH of an unknown ID only for a sender that
// receives at its source address.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Endpoint } from '../types/net.js';
import { hkdf, hmacSha256 } from '../crypto/hkdf.js';
import { compressUncompressed } from '../crypto/secp256k1.js';
import { COOKIE_BYTES } from '../crypto/source-cookie.js';
import { readEndpoint, readOptEndpoint, writeEndpoint, writeOptEndpoint } from './endpoint.js';
import { readLocals, writeLocals } from './control.js';
import { bytesToIp4, bytesToIp6, ip4ToBytes, ip6ToBytes } from './ip.js';
import type { Decoded } from './wire.js';
import { Reader, WireError, Writer, decodeWith } from './wire.js';

export const REGISTRATION_REQUEST = 0x01;
export const REGISTRATION_RESPONSE = 0x02;
export const NAT_PROBE = 0x03;
export const REGISTRATION_COOKIE = 0x08;
export const HINT = 0x12;
export const NT_LENGTH = 148;
export const MAC_LENGTH = 16;
export const NONCE_LENGTH = 16;
/** mac1 ‖ mac2 after the request's MAC (WireGuard's msg.mac1, msg.mac2). */
export const MAC1_LENGTH = 16;
export const MAC2_LENGTH = 16;
const TRAILER = MAC1_LENGTH + MAC2_LENGTH;
/** `0x08 ‖ 0 ×3 ‖ terminal index (4) ‖ the request's mac1 (16) ‖ cookie (16)`. */
export const REGISTRATION_COOKIE_BYTES = 8 + MAC1_LENGTH + COOKIE_BYTES;

function publicKeyBytes(dcPublicKey: Uint8Array): Uint8Array {
  return dcPublicKey.length === 65 ? compressUncompressed(dcPublicKey) : dcPublicKey;
}

/** The key of mac1: SHA-256("NTM1 mac1" ‖ DC public key, compressed); anyone who knows the DC's key can compute it. */
export function mac1Key(dcPublicKey: Uint8Array): Buffer {
  return createHash('sha256').update('NTM1 mac1').update(publicKeyBytes(dcPublicKey)).digest();
}

const INFO_REG = Buffer.from('NTM1 reg');
const INFO_CHAN = Buffer.from('NTM1 chan');

/** K_ss: the paper's Diffie-Hellman of the two long-term keys, bound to its purpose. */
export function registrationKey(sharedX: Uint8Array): Buffer {
  return hkdf(sharedX, undefined, INFO_REG, 32);
}

/**
 * The sealed channel's keys: [terminal → DC, DC → terminal, registration response]. The response has its own key
 * so that the channel's counters can start at 0 without ever reusing a nonce.
 */
export function channelKeys(kss: Uint8Array, nonceT: Uint8Array, nonceDc: Uint8Array): [Buffer, Buffer, Buffer] {
  const okm = hkdf(kss, Buffer.concat([nonceT, nonceDc]), INFO_CHAN, 96);
  return [okm.subarray(0, 32), okm.subarray(32, 64), okm.subarray(64, 96)];
}

export interface RegistrationRequest {
  readonly terminalIndex: number;
  readonly txid: bigint;
  readonly nonce: Uint8Array;
  /** Request time (ms): freshness and replay protection (strictly increasing per ID). */
  readonly time: number;
  /** The 148-byte Node Transaction, undecoded (the DC decodes and verifies it). */
  readonly nt: Uint8Array;
  readonly locals: readonly Endpoint[];
  readonly name: string;
  /** One-time enrollment token (empty when the DC knows this ID already or registration is open). */
  readonly token: Uint8Array;
}

/**
 * The request with its MAC under K_ss, mac1 under `macKey` (mac1Key of the DC's public key) and mac2 under `cookie`
 * (the DC's last cookie to us, if one is fresh; zeros otherwise).
 */
export function encodeRegistrationRequest(req: RegistrationRequest, kss: Uint8Array, macKey: Uint8Array, cookie?: Uint8Array): Buffer {
  const w = new Writer(256)
    .u8(REGISTRATION_REQUEST)
    .zeros(3)
    .u32(req.terminalIndex)
    .u64(req.txid)
    .fixed(req.nonce, NONCE_LENGTH)
    .u64(req.time)
    .fixed(req.nt, NT_LENGTH);
  writeLocals(w, req.locals);
  if (Buffer.byteLength(req.name) > 63) throw new WireError('name longer than 63 bytes');
  w.str8(req.name);
  w.vbytes8(req.token);
  const body = w.finish();
  const packet = Buffer.concat([body, hmacSha256(kss, body).subarray(0, MAC_LENGTH), Buffer.alloc(TRAILER)]);
  hmacSha256(macKey, packet.subarray(0, packet.length - TRAILER)).copy(packet, packet.length - TRAILER, 0, MAC1_LENGTH);
  stampMac2(packet, cookie);
  return packet;
}

/** Writes mac2 into a request (in place): under `cookie`, or zeros without one. */
export function stampMac2(packet: Buffer, cookie: Uint8Array | undefined): void {
  const at = packet.length - MAC2_LENGTH;
  if (cookie) mac2Of(packet, cookie).copy(packet, at);
  else packet.fill(0, at);
}

/** mac2 as it should be for `packet` under `cookie` (a fresh buffer; the DC compares it with the one sent). */
export function mac2Of(packet: Buffer, cookie: Uint8Array): Buffer {
  return hmacSha256(cookie, packet.subarray(0, packet.length - MAC2_LENGTH)).subarray(0, MAC2_LENGTH);
}

/** Borrowed views of a request's mac1 and mac2 (the packet must be at least TRAILER long). */
export function requestMac1(packet: Buffer): Buffer {
  return packet.subarray(packet.length - TRAILER, packet.length - MAC2_LENGTH);
}

export function requestMac2(packet: Buffer): Buffer {
  return packet.subarray(packet.length - MAC2_LENGTH);
}

/** mac1 holds: one HMAC, no EC operation, no allocation beyond the digest. */
export function checkMac1(packet: Buffer, macKey: Uint8Array): boolean {
  if (packet.length < TRAILER + 4) return false;
  const want = hmacSha256(macKey, packet.subarray(0, packet.length - TRAILER)).subarray(0, MAC1_LENGTH);
  return timingSafeEqual(want, requestMac1(packet));
}

/** Whether mac2 is zeros (the sender has no cookie). */
export function hasMac2(packet: Buffer): boolean {
  const m = requestMac2(packet);
  for (let i = 0; i < m.length; i++) if (m[i] !== 0) return true;
  return false;
}

/**
 * REGISTRATION_COOKIE (WireGuard's cookie reply, §5.4.7): the cookie, after the mac1 of the request it answers. An
 * off-path attacker cannot forge one (it never saw that mac1: 128 bits); WireGuard also encrypts the cookie, which
 * hides it from a passive observer on the path, but a cookie proves only that its holder receives at an address, and
 * whoever sees it is on the path to that address already. In the clear it costs the DC under a flood no AEAD per
 * reply (a seal was most of a reply's cost), and the RS's RELAY_CHALLENGE is the same.
 */
export function encodeRegistrationCookie(terminalIndex: number, cookie: Uint8Array, requestMac1: Uint8Array): Buffer {
  return new Writer(REGISTRATION_COOKIE_BYTES).u8(REGISTRATION_COOKIE).zeros(3).u32(terminalIndex).fixed(requestMac1, MAC1_LENGTH).fixed(cookie, COOKIE_BYTES).finish();
}

/** The cookie of a REGISTRATION_COOKIE for our request (whose mac1 we sent), or undefined if it answers another. */
export function openRegistrationCookie(packet: Buffer, requestMac1: Uint8Array): Buffer | undefined {
  if (packet.length !== REGISTRATION_COOKIE_BYTES || packet[0] !== REGISTRATION_COOKIE) return undefined;
  if (!timingSafeEqual(packet.subarray(8, 8 + MAC1_LENGTH), requestMac1)) return undefined;
  return Buffer.from(packet.subarray(8 + MAC1_LENGTH));
}

/** Where the Node Transaction's ID lies in a request (its byte 1..21), for a lookup before the request is decoded. */
export const REQUEST_ID_OFFSET = 4 + 4 + 8 + NONCE_LENGTH + 8 + 1;

/** The shortest request: no locals, no name, no token. */
export const REGISTRATION_REQUEST_MIN = 4 + 4 + 8 + NONCE_LENGTH + 8 + NT_LENGTH + 3 + MAC_LENGTH + TRAILER;

export interface DecodedRegistrationRequest extends RegistrationRequest {
  /** Borrowed views into the packet: the MAC'd part and the MAC. */
  readonly macInput: Buffer;
  readonly mac: Buffer;
}

export function decodeRegistrationRequest(buf: Buffer): Decoded<DecodedRegistrationRequest> {
  return decodeWith(() => {
    if (buf.length < REGISTRATION_REQUEST_MIN) throw new WireError('registration request too short');
    const end = buf.length - TRAILER;
    const macInput = buf.subarray(0, end - MAC_LENGTH);
    const r = new Reader(macInput);
    if (r.u8() !== REGISTRATION_REQUEST) throw new WireError('not a registration request');
    r.bytes(3);
    const terminalIndex = r.u32();
    const txid = r.u64();
    const nonce = r.bytes(NONCE_LENGTH);
    const time = r.u64n();
    const nt = r.bytes(NT_LENGTH);
    const locals = readLocals(r);
    const name = r.str8();
    const token = r.vbytes8();
    r.end();
    return { terminalIndex, txid, nonce, time, nt, locals, name, token, macInput, mac: buf.subarray(end - MAC_LENGTH, end) };
  });
}

export function checkRegistrationMac(req: DecodedRegistrationRequest, kss: Uint8Array): boolean {
  const want = hmacSha256(kss, req.macInput).subarray(0, MAC_LENGTH);
  return timingSafeEqual(want, req.mac);
}

export interface RelayEntry {
  readonly id: Uint8Array;
  readonly v4?: Endpoint;
  readonly v6?: Endpoint;
}

export interface RegistrationResult {
  readonly txid: bigint;
  readonly status: number;
  readonly v4: string;
  readonly v4Len: number;
  readonly v6: string;
  readonly v6Len: number;
  readonly observed: Endpoint;
  readonly behindNat: boolean;
  readonly keepaliveS: number;
  readonly dcTime: number;
  readonly relays: readonly RelayEntry[];
}

/** What encodeRegistrationBody takes: a result whose addresses may be bytes already (4 and 16; the DC's are). */
export type RegistrationBodyFields = Omit<RegistrationResult, 'v4' | 'v6'> & { readonly v4: string | Uint8Array; readonly v6: string | Uint8Array };

export function encodeRegistrationBody(b: RegistrationBodyFields): Buffer {
  const w = new Writer(128)
    .u64(b.txid)
    .u8(b.status)
    .fixed(typeof b.v4 === 'string' ? ip4ToBytes(b.v4) : b.v4, 4)
    .u8(b.v4Len)
    .fixed(typeof b.v6 === 'string' ? ip6ToBytes(b.v6) : b.v6, 16)
    .u8(b.v6Len);
  writeEndpoint(w, b.observed);
  w.u8(b.behindNat ? 1 : 0).u16(b.keepaliveS).u64(b.dcTime);
  if (b.relays.length > 16) throw new WireError('too many relays');
  w.u8(b.relays.length);
  for (const r of b.relays) {
    w.fixed(r.id, 20);
    writeOptEndpoint(w, r.v4);
    writeOptEndpoint(w, r.v6);
  }
  return w.finish();
}

export function decodeRegistrationBody(buf: Buffer): Decoded<RegistrationResult> {
  return decodeWith(() => {
    const r = new Reader(buf);
    const txid = r.u64();
    const status = r.u8();
    const v4 = bytesToIp4(r.bytes(4));
    const v4Len = r.u8();
    const v6 = bytesToIp6(r.bytes(16));
    const v6Len = r.u8();
    const observed = readEndpoint(r);
    const behindNat = r.u8() === 1;
    const keepaliveS = r.u16();
    const dcTime = r.u64n();
    const n = r.u8();
    if (n > 16) throw new WireError('too many relays');
    const relays: RelayEntry[] = [];
    for (let i = 0; i < n; i++) {
      const id = Buffer.from(r.bytes(20));
      const e4 = readOptEndpoint(r);
      const e6 = readOptEndpoint(r);
      relays.push({ id, ...(e4 ? { v4: e4 } : {}), ...(e6 ? { v6: e6 } : {}) });
    }
    r.end();
    return { txid, status, v4, v4Len, v6, v6Len, observed, behindNat, keepaliveS, dcTime, relays };
  });
}

/**
 * Why a DC refused an authenticated registration (docs/protocol.md §3.2): the status byte of a REGISTRATION_RESPONSE
 * body that is not 0. A refusal is sealed as an answer is (K_resp), so the terminal knows it comes from its DC and can
 * stop at once, and it goes only to a request whose MAC held: to anything else the DC stays silent.
 */
export const REFUSAL_CODES = {
  'pool-full': 1,
  'not-admitted': 2,
  'key-unknown': 3,
  'key-revoked': 4,
  'key-expired': 5,
  'key-used-up': 6,
  revoked: 7,
  'rate-limited': 8,
} as const;
export type RefusalReason = keyof typeof REFUSAL_CODES;
const REFUSAL_BY_CODE = new Map<number, RefusalReason>(Object.entries(REFUSAL_CODES).map(([k, v]) => [v, k as RefusalReason]));

export interface RegistrationRefusal {
  readonly txid: bigint;
  readonly reason: RefusalReason;
  /** pool-full: how many addresses the pool holds (a household page says "this home has reached N devices"); else 0. */
  readonly limit: number;
  /** rate-limited: seconds until the source may try again; else 0. */
  readonly retryAfterS: number;
}

/** Refusal body: `txid (8) ‖ status (1, the reason's code) ‖ limit (4) ‖ retry after s (2)`. */
export function encodeRegistrationRefusal(r: RegistrationRefusal): Buffer {
  return new Writer(15).u64(r.txid).u8(REFUSAL_CODES[r.reason]).u32(r.limit).u16(r.retryAfterS).finish();
}

export type RegistrationAnswer = { readonly refused: false; readonly result: RegistrationResult } | { readonly refused: true; readonly refusal: RegistrationRefusal };

/** An opened REGISTRATION_RESPONSE body: the answer (status 0) or a refusal; an unknown status is malformed. */
export function decodeRegistrationAnswer(buf: Buffer): Decoded<RegistrationAnswer> {
  if (buf.length >= 9 && buf[8] !== 0) {
    return decodeWith(() => {
      const r = new Reader(buf);
      const txid = r.u64();
      const reason = REFUSAL_BY_CODE.get(r.u8());
      if (!reason) throw new WireError('unknown refusal reason');
      const limit = r.u32();
      const retryAfterS = r.u16();
      r.end();
      return { refused: true, refusal: { txid, reason, limit, retryAfterS } };
    });
  }
  const d = decodeRegistrationBody(buf);
  return d.ok ? { ok: true, value: { refused: false, result: d.value } } : d;
}

/** Response header: `0x02 ‖ 0 ×3 ‖ terminal index ‖ DC index ‖ nonce_dc`, then the sealed body. */
export const RESPONSE_HEADER = 4 + 4 + 4 + NONCE_LENGTH;

export function encodeRegistrationResponseHeader(terminalIndex: number, dcIndex: number, nonceDc: Uint8Array): Buffer {
  return new Writer(RESPONSE_HEADER)
    .u8(REGISTRATION_RESPONSE)
    .zeros(3)
    .u32(terminalIndex)
    .u32(dcIndex)
    .fixed(nonceDc, NONCE_LENGTH)
    .finish();
}

export function decodeRegistrationResponseHeader(
  buf: Buffer,
): Decoded<{ terminalIndex: number; dcIndex: number; nonceDc: Buffer; sealed: Buffer }> {
  return decodeWith(() => {
    const r = new Reader(buf);
    if (r.u8() !== REGISTRATION_RESPONSE) throw new WireError('not a registration response');
    r.bytes(3);
    const terminalIndex = r.u32();
    const dcIndex = r.u32();
    const nonceDc = r.bytes(NONCE_LENGTH);
    return { terminalIndex, dcIndex, nonceDc, sealed: r.rest() };
  });
}

/** NAT_PROBE: `0x03 ‖ kind (0 probe, 1 reply) ‖ 0 0 ‖ txid (8) ‖ id (20) ‖ [reply: observed Endpoint]`. */
export function encodeNatProbe(kind: 0 | 1, txid: bigint, id: Uint8Array, observed?: Endpoint): Buffer {
  const w = new Writer(56).u8(NAT_PROBE).u8(kind).zeros(2).u64(txid).fixed(id, 20);
  if (kind === 1) {
    if (!observed) throw new WireError('probe reply needs the observed endpoint');
    writeEndpoint(w, observed);
  }
  return w.finish();
}

export function decodeNatProbe(buf: Buffer): Decoded<{ kind: 0 | 1; txid: bigint; id: Buffer; observed?: Endpoint }> {
  return decodeWith(() => {
    const r = new Reader(buf);
    if (r.u8() !== NAT_PROBE) throw new WireError('not a NAT probe');
    const kind = r.u8();
    if (kind !== 0 && kind !== 1) throw new WireError('bad probe kind');
    r.bytes(2);
    const txid = r.u64();
    const id = r.bytes(20);
    const observed = kind === 1 ? readEndpoint(r) : undefined;
    r.end();
    return observed ? { kind, txid, id, observed } : { kind, txid, id };
  });
}

export const HintReason = { DC_RESTARTED: 1, UNKNOWN_SESSION: 2 } as const;

/** HINT: `0x12 ‖ reason ‖ 0 0 ‖ DC id (20)`. Unauthenticated: it only prompts an authenticated re-registration. */
export function encodeHint(reason: number, dcId: Uint8Array): Buffer {
  return new Writer(24).u8(HINT).u8(reason).zeros(2).fixed(dcId, 20).finish();
}

export function decodeHint(buf: Buffer): Decoded<{ reason: number; dcId: Buffer }> {
  return decodeWith(() => {
    const r = new Reader(buf);
    if (r.u8() !== HINT) throw new WireError('not a hint');
    const reason = r.u8();
    r.bytes(2);
    const dcId = r.bytes(20);
    r.end();
    return { reason, dcId };
  });
}
