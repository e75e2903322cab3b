// Registration Request / Response (paper §2.2, Fig. 2; docs/protocol.md §3.2), the NAT-mapping probe, and HINT.
// The request carries the signed Node Transaction plus a MAC under K_ss (static-static ECDH of terminal and DC);
// the response is sealed under the channel key both sides derive from K_ss and the two nonces.
import { timingSafeEqual } from 'node:crypto';
import type { Endpoint } from '../types/net.js';
import { hkdf, hmacSha256 } from '../crypto/hkdf.js';
import { readEndpoint, readOptEndpoint, writeEndpoint, writeOptEndpoint } from './endpoint.js';
import { readLocals, writeLocals } from './control.js';
import { bytesToIp4, bytesToIp6, ip4ToBytes, ip6ToBytes } from './ip.js';
import type { Decoded } from './wire.js';
import { Reader, WireError, Writer, decodeWith } from './wire.js';

export const REGISTRATION_REQUEST = 0x01;
export const REGISTRATION_RESPONSE = 0x02;
export const NAT_PROBE = 0x03;
export const HINT = 0x12;
export const NT_LENGTH = 148;
export const MAC_LENGTH = 16;
export const NONCE_LENGTH = 16;

/** K_ss: the paper's Diffie-Hellman of the two long-term keys, bound to its purpose. */
export function registrationKey(sharedX: Uint8Array): Buffer {
  return hkdf(sharedX, undefined, 'NTM1 reg', 32);
}

/**
 * The sealed channel's keys: [terminal → DC, DC → terminal, registration response]. The response has its own key
 * so that the channel's counters can start at 0 without ever reusing a nonce.
 */
export function channelKeys(kss: Uint8Array, nonceT: Uint8Array, nonceDc: Uint8Array): [Buffer, Buffer, Buffer] {
  const okm = hkdf(kss, Buffer.concat([nonceT, nonceDc]), 'NTM1 chan', 96);
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

export function encodeRegistrationRequest(req: RegistrationRequest, kss: Uint8Array): Buffer {
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
  return Buffer.concat([body, hmacSha256(kss, body).subarray(0, MAC_LENGTH)]);
}

export interface DecodedRegistrationRequest extends RegistrationRequest {
  /** Borrowed views into the packet: the MAC'd part and the MAC. */
  readonly macInput: Buffer;
  readonly mac: Buffer;
}

export function decodeRegistrationRequest(buf: Buffer): Decoded<DecodedRegistrationRequest> {
  return decodeWith(() => {
    if (buf.length < 4 + 4 + 8 + NONCE_LENGTH + 8 + NT_LENGTH + 3 + MAC_LENGTH) throw new WireError('registration request too short');
    const macInput = buf.subarray(0, buf.length - MAC_LENGTH);
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
    return { terminalIndex, txid, nonce, time, nt, locals, name, token, macInput, mac: buf.subarray(buf.length - MAC_LENGTH) };
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

export function encodeRegistrationBody(b: RegistrationResult): Buffer {
  const w = new Writer(128)
    .u64(b.txid)
    .u8(b.status)
    .bytes(ip4ToBytes(b.v4))
    .u8(b.v4Len)
    .bytes(ip6ToBytes(b.v6))
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
