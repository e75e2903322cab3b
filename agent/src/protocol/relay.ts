// Relay wire formats (docs/protocol.md §3.5; paper §2.3 Fig. 4): DC-signed tickets, RELAY_BIND from each end,
// RELAY frames the RS forwards unchanged, and RS_PING for RTT measurement. The RS never sees tunnel keys.
import type { Endpoint } from '../types/net.js';
import { SIGNATURE_LENGTH } from '../crypto/secp256k1.js';
import { keccak256 } from '../crypto/hex.js';
import { COOKIE_BYTES } from '../crypto/source-cookie.js';
import type { Identity } from './identity.js';
import { DomainTag, verifyBySigner } from './identity.js';
import { readEndpoint, writeEndpoint } from './endpoint.js';
import type { Decoded } from './wire.js';
import { Reader, WireError, Writer, decodeWith } from './wire.js';

export const RELAY_FRAME = 0x20;
export const RELAY_BIND = 0x21;
export const RS_PING = 0x22;
export const RELAY_BIND_ACK = 0x23;
export const RELAY_CHALLENGE = 0x24;
/** The return-routability cookie an RS asks a bind from a new address to echo (docs/protocol.md §3.5). */
export const BIND_COOKIE_BYTES = COOKIE_BYTES;
/** Bytes before the inner packet in a RELAY frame. */
export const RELAY_HEADER = 12;

export const TICKET_BODY_BYTES = 8 + 20 + 20 + 20 + 8 + 8 + 8 + 20;
export const TICKET_BYTES = TICKET_BODY_BYTES + SIGNATURE_LENGTH;

export interface TicketFields {
  readonly tunnelId: bigint;
  readonly rsId: Uint8Array;
  readonly endA: Uint8Array;
  readonly endB: Uint8Array;
  readonly expiresAt: number;
  readonly byteQuota: number;
  readonly packetQuota: number;
  readonly dcId: Uint8Array;
}

export interface Ticket extends TicketFields {
  /** The whole encoded ticket (body ‖ signature), as carried in Route Directions and binds. */
  readonly bytes: Uint8Array;
  readonly signature: Uint8Array;
}

function ticketBody(t: TicketFields): Buffer {
  return new Writer(TICKET_BODY_BYTES)
    .u64(t.tunnelId)
    .fixed(t.rsId, 20)
    .fixed(t.endA, 20)
    .fixed(t.endB, 20)
    .u64(t.expiresAt)
    .u64(t.byteQuota)
    .u64(t.packetQuota)
    .fixed(t.dcId, 20)
    .finish();
}

/** The issuing DC signs the ticket with its identity key (t.dcId must be dc.id). */
export function signTicket(t: TicketFields, dc: Identity): Uint8Array {
  const body = ticketBody(t);
  return Buffer.concat([body, dc.sign(DomainTag.relayTicket, body)]);
}

export function decodeTicket(buf: Uint8Array): Decoded<Ticket> {
  return decodeWith(() => {
    const r = new Reader(Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength));
    const t = {
      tunnelId: r.u64(),
      rsId: r.bytes(20),
      endA: r.bytes(20),
      endB: r.bytes(20),
      expiresAt: r.u64n(),
      byteQuota: r.u64n(),
      packetQuota: r.u64n(),
      dcId: r.bytes(20),
      signature: r.bytes(SIGNATURE_LENGTH),
    };
    r.end();
    return { ...t, bytes: buf };
  });
}

/** True when the ticket's signature recovers to the DC named in it (the caller checks that DC is trusted). */
export function verifyTicket(t: Ticket): boolean {
  return verifyBySigner(DomainTag.relayTicket, t.bytes.subarray(0, TICKET_BODY_BYTES), t.signature, t.dcId);
}

export interface RelayBind {
  readonly ticket: Ticket;
  /** 0: end A binds, 1: end B binds. */
  readonly role: 0 | 1;
  readonly timestamp: number;
  readonly signature: Uint8Array;
}

/** What an end signs to bind: keccak256(ticket) ‖ role ‖ timestamp. */
function bindBody(ticketBytes: Uint8Array, role: number, timestamp: number): Buffer {
  const body = Buffer.allocUnsafe(32 + 9);
  keccak256(ticketBytes, body);
  body[32] = role;
  body.writeBigUInt64BE(BigInt(timestamp), 33);
  return body;
}

export const RELAY_BIND_BYTES = 4 + TICKET_BYTES + 8 + SIGNATURE_LENGTH;

/** A signed bind; `cookie` (from a RELAY_CHALLENGE) follows the signed part, as WireGuard's mac2 does. */
export function encodeRelayBind(ticketBytes: Uint8Array, role: 0 | 1, timestamp: number, end: Identity, cookie?: Uint8Array): Buffer {
  const sig = end.sign(DomainTag.relayBind, bindBody(ticketBytes, role, timestamp));
  const w = new Writer(RELAY_BIND_BYTES + BIND_COOKIE_BYTES)
    .u8(RELAY_BIND)
    .u8(role)
    .zeros(2)
    .fixed(ticketBytes, TICKET_BYTES)
    .u64(timestamp)
    .fixed(sig, SIGNATURE_LENGTH);
  if (cookie) w.fixed(cookie, BIND_COOKIE_BYTES);
  return w.finish();
}

/** Splits an echoed cookie off a bind (borrowed views); cookie undefined when the bind carries none. */
export function splitBindCookie(buf: Buffer): { bind: Buffer; cookie: Buffer | undefined } {
  if (buf.length !== RELAY_BIND_BYTES + BIND_COOKIE_BYTES) return { bind: buf, cookie: undefined };
  return { bind: buf.subarray(0, RELAY_BIND_BYTES), cookie: buf.subarray(RELAY_BIND_BYTES) };
}

export interface RelayChallenge {
  readonly tunnelId: bigint;
  readonly cookie: Uint8Array;
}

/** RELAY_CHALLENGE = 0x24 ‖ 3 zero bytes ‖ tunnel id (8) ‖ cookie (16): 28 bytes, smaller than the bind it answers. */
export function encodeRelayChallenge(c: RelayChallenge): Buffer {
  return new Writer(12 + BIND_COOKIE_BYTES).u8(RELAY_CHALLENGE).zeros(3).u64(c.tunnelId).fixed(c.cookie, BIND_COOKIE_BYTES).finish();
}

export function decodeRelayChallenge(buf: Buffer): Decoded<RelayChallenge> {
  return decodeWith(() => {
    const r = new Reader(buf);
    if (r.u8() !== RELAY_CHALLENGE) throw new WireError('not a relay challenge');
    r.bytes(3);
    const tunnelId = r.u64();
    const cookie = r.bytes(BIND_COOKIE_BYTES);
    r.end();
    return { tunnelId, cookie };
  });
}

export function decodeRelayBind(buf: Buffer): Decoded<RelayBind> {
  return decodeWith(() => {
    const r = new Reader(buf);
    if (r.u8() !== RELAY_BIND) throw new WireError('not a relay bind');
    const role = r.u8();
    if (role !== 0 && role !== 1) throw new WireError('bad role');
    r.bytes(2);
    const t = decodeTicket(r.bytes(TICKET_BYTES));
    if (!t.ok) throw new WireError(t.reason);
    const timestamp = r.u64n();
    const signature = r.bytes(SIGNATURE_LENGTH);
    r.end();
    return { ticket: t.value, role, timestamp, signature };
  });
}

/** True when the bind is signed by the end the ticket names for its role. */
export function verifyRelayBind(b: RelayBind): boolean {
  const body = bindBody(b.ticket.bytes, b.role, b.timestamp);
  return verifyBySigner(DomainTag.relayBind, body, b.signature, b.role === 0 ? b.ticket.endA : b.ticket.endB);
}

export interface RelayBindAck {
  readonly tunnelId: bigint;
  readonly ok: boolean;
  /** The other end is bound already. */
  readonly peerBound: boolean;
  /** This end's address as the RS sees it. */
  readonly observed: Endpoint;
}

export function encodeRelayBindAck(a: RelayBindAck): Buffer {
  const w = new Writer(40).u8(RELAY_BIND_ACK).u8(a.ok ? 0 : 1).u8(a.peerBound ? 1 : 0).u8(0).u64(a.tunnelId);
  writeEndpoint(w, a.observed);
  return w.finish();
}

export function decodeRelayBindAck(buf: Buffer): Decoded<RelayBindAck> {
  return decodeWith(() => {
    const r = new Reader(buf);
    if (r.u8() !== RELAY_BIND_ACK) throw new WireError('not a bind ack');
    const ok = r.u8() === 0;
    const peerBound = r.u8() === 1;
    r.u8();
    const tunnelId = r.u64();
    const observed = readEndpoint(r);
    r.end();
    return { tunnelId, ok, peerBound, observed };
  });
}

/** Writes the RELAY header for `tunnelId` into out[0..12) (caller-owned). */
export function writeRelayHeader(out: Buffer, tunnelId: bigint): void {
  out[0] = RELAY_FRAME;
  out[1] = 0;
  out[2] = 0;
  out[3] = 0;
  out.writeBigUInt64BE(tunnelId, 4);
}

export function relayFrame(tunnelId: bigint, inner: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(RELAY_HEADER + inner.length);
  writeRelayHeader(out, tunnelId);
  out.set(inner, RELAY_HEADER);
  return out;
}

/**
 * RS_PING (kind 0) / RS_PONG (kind 1): `0x22 ‖ kind ‖ load‰ (2) ‖ nonce (8) [‖ cookie (16)]`. A ping padded with 16
 * zero bytes asks for the RS's return-routability cookie for its source (§3.5); it comes in a pong of the same size
 * (no amplification), so the terminal's first bind at that RS already echoes it and a tunnel's setup waits for no
 * RELAY_CHALLENGE round trip.
 */
export function encodeRsPing(kind: 0 | 1, nonce: bigint, loadPermille = 0, cookie?: Uint8Array): Buffer {
  const w = new Writer(12 + BIND_COOKIE_BYTES).u8(RS_PING).u8(kind).u16(loadPermille).u64(nonce);
  if (cookie) w.fixed(cookie, BIND_COOKIE_BYTES);
  return w.finish();
}

export function decodeRsPing(buf: Buffer): Decoded<{ kind: 0 | 1; nonce: bigint; loadPermille: number; cookie?: Buffer }> {
  return decodeWith(() => {
    const r = new Reader(buf);
    if (r.u8() !== RS_PING) throw new WireError('not a ping');
    const kind = r.u8();
    if (kind !== 0 && kind !== 1) throw new WireError('bad ping kind');
    const loadPermille = r.u16();
    const nonce = r.u64();
    const cookie = r.remaining > 0 ? r.bytes(BIND_COOKIE_BYTES) : undefined;
    r.end();
    return { kind, nonce, loadPermille, ...(cookie ? { cookie } : {}) };
  });
}
