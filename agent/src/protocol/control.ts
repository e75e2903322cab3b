// CONTROL messages: what terminals and their DC say inside the sealed channel (docs/protocol.md §3.3; paper §2.2–2.3):
// keep-alives, Direction Request → Route Direction, name/address resolution, location updates, RTT reports, DNS-SD
// questions to the household (a DNS message each way), and the re-punch of a direct path whose NAT mapping changed
// (Path Refresh → Peer Endpoints to both ends).
// Plaintext layout: message type (1) ‖ txid (8) ‖ body.
import type { Endpoint } from '../types/net.js';
import { readEndpoint, writeEndpoint } from './endpoint.js';
import { bytesToIp4, bytesToIp6, ip4ToBytes, ip6ToBytes } from './ip.js';
import type { Decoded } from './wire.js';
import { Reader, WireError, Writer, decodeWith } from './wire.js';

export const Ctl = {
  KEEPALIVE: 0x01,
  KEEPALIVE_ACK: 0x02,
  DIRECTION_REQUEST: 0x03,
  ROUTE_DIRECTION: 0x04,
  DIRECTION_ERROR: 0x05,
  ROUTE_ACK: 0x06,
  LOCATION_UPDATE: 0x07,
  LOCATION_ACK: 0x08,
  RTT_REPORT: 0x09,
  RESOLVE_REQUEST: 0x0a,
  RESOLVE_RESPONSE: 0x0b,
  DEREGISTER: 0x0c,
  ACK: 0x0d,
  REVOKED: 0x0e,
  DNS_QUERY: 0x0f,
  DNS_ANSWER: 0x10,
  PATH_REFRESH: 0x11,
  PEER_ENDPOINTS: 0x12,
} as const;

/** The largest DNS message carried in DNS_QUERY / DNS_ANSWER (EDNS's safe UDP size, RFC 9715 / DNS flag day 2020). */
export const MAX_DNS_MESSAGE = 1232;

/** Refusal reasons on the wire (DIRECTION_ERROR, RESOLVE_RESPONSE, REGISTRATION_RESPONSE, PEER_INFO_RESPONSE). */
export const Status = {
  OK: 0,
  NOT_FOUND: 1,
  REVOKED: 2,
  OFFLINE: 3,
  NO_ROUTE: 4,
  NOT_ALLOWED: 5,
  BAD_REQUEST: 6,
  STALE: 7,
  WRONG_DC: 8,
  POOL_EXHAUSTED: 9,
  PEER_DC_UNREACHABLE: 10,
  INTERNAL: 11,
} as const;
export type StatusCode = (typeof Status)[keyof typeof Status];
export const STATUS_TEXT: Record<number, string> = Object.fromEntries(
  Object.entries(Status).map(([k, v]) => [v, k.toLowerCase()]),
);

/** Whom a Direction or Resolve Request is about: the paper's ID, or a virtual address, or a name. */
export type Target =
  | { readonly kind: 'id'; readonly id: Uint8Array }
  | { readonly kind: 'v4'; readonly address: string }
  | { readonly kind: 'v6'; readonly address: string }
  | { readonly kind: 'name'; readonly name: string };

export function writeTarget(w: Writer, t: Target): void {
  switch (t.kind) {
    case 'id':
      w.u8(1).fixed(t.id, 20);
      break;
    case 'v4':
      w.u8(2).bytes(ip4ToBytes(t.address));
      break;
    case 'v6':
      w.u8(3).bytes(ip6ToBytes(t.address));
      break;
    case 'name':
      w.u8(4).str8(t.name);
      break;
  }
}

export function readTarget(r: Reader): Target {
  const k = r.u8();
  if (k === 1) return { kind: 'id', id: Buffer.from(r.bytes(20)) };
  if (k === 2) return { kind: 'v4', address: bytesToIp4(r.bytes(4)) };
  if (k === 3) return { kind: 'v6', address: bytesToIp6(r.bytes(16)) };
  if (k === 4) return { kind: 'name', name: r.str8() };
  throw new WireError(`bad target kind ${k}`);
}

export const PATH_KINDS = ['direct', 'holepunch', 'relay'] as const;
export type WirePathKind = (typeof PATH_KINDS)[number];

/** A relay leg of a route: which RS, at which address for this end, and the DC-signed ticket (§3.5). */
export interface RelayLeg {
  readonly rsId: Uint8Array;
  readonly endpoint: Endpoint;
  readonly ticket: Uint8Array;
}

/** Route Direction (paper §2.3): how this end builds its tunnel to the peer, with the peer's public key. */
export interface Route {
  readonly tunnelId: bigint;
  readonly peerId: Uint8Array;
  readonly peerPublicKey: Uint8Array;
  readonly peerV4: string;
  readonly peerV6: string;
  readonly peerName: string;
  readonly kind: WirePathKind;
  readonly initiator: boolean;
  /** Peer endpoints to try in order (direct and hole punching); empty for relay-only. */
  readonly endpoints: readonly Endpoint[];
  /** The relay: the path itself for kind 'relay', else the fallback. */
  readonly relay?: RelayLeg;
  /** Keep-alive period inside the tunnel (s); 0 when no NAT is on the path. */
  readonly keepaliveS: number;
}

export function writeRoute(w: Writer, r: Route): void {
  w.u64(r.tunnelId)
    .fixed(r.peerId, 20)
    .fixed(r.peerPublicKey, 33)
    .bytes(ip4ToBytes(r.peerV4))
    .bytes(ip6ToBytes(r.peerV6))
    .str8(r.peerName)
    .u8(PATH_KINDS.indexOf(r.kind) + 1)
    .u8(r.initiator ? 1 : 0);
  if (r.endpoints.length > 16) throw new WireError('too many endpoints');
  w.u8(r.endpoints.length);
  for (const e of r.endpoints) writeEndpoint(w, e);
  if (r.relay) {
    w.u8(1).fixed(r.relay.rsId, 20);
    writeEndpoint(w, r.relay.endpoint);
    w.vbytes16(r.relay.ticket);
  } else w.u8(0);
  w.u16(r.keepaliveS);
}

export function readRoute(r: Reader): Route {
  const tunnelId = r.u64();
  const peerId = Buffer.from(r.bytes(20));
  const peerPublicKey = Buffer.from(r.bytes(33));
  const peerV4 = bytesToIp4(r.bytes(4));
  const peerV6 = bytesToIp6(r.bytes(16));
  const peerName = r.str8();
  const k = r.u8();
  const kind = PATH_KINDS[k - 1];
  if (!kind) throw new WireError(`bad path kind ${k}`);
  const initiator = r.u8() === 1;
  const n = r.u8();
  if (n > 16) throw new WireError('too many endpoints');
  const endpoints: Endpoint[] = [];
  for (let i = 0; i < n; i++) endpoints.push(readEndpoint(r));
  let relay: RelayLeg | undefined;
  if (r.u8() === 1) {
    const rsId = Buffer.from(r.bytes(20));
    const endpoint = readEndpoint(r);
    relay = { rsId, endpoint, ticket: Buffer.from(r.vbytes16()) };
  }
  const keepaliveS = r.u16();
  const base = { tunnelId, peerId, peerPublicKey, peerV4, peerV6, peerName, kind, initiator, endpoints, keepaliveS };
  return relay ? { ...base, relay } : base;
}

export type ControlMessage =
  | { readonly type: typeof Ctl.KEEPALIVE; readonly txid: bigint; readonly dcTime: number }
  | { readonly type: typeof Ctl.KEEPALIVE_ACK; readonly txid: bigint }
  | { readonly type: typeof Ctl.DIRECTION_REQUEST; readonly txid: bigint; readonly target: Target }
  | { readonly type: typeof Ctl.ROUTE_DIRECTION; readonly txid: bigint; readonly route: Route }
  | { readonly type: typeof Ctl.DIRECTION_ERROR; readonly txid: bigint; readonly status: number; readonly message: string }
  | { readonly type: typeof Ctl.ROUTE_ACK; readonly txid: bigint; readonly tunnelId: bigint }
  | { readonly type: typeof Ctl.LOCATION_UPDATE; readonly txid: bigint; readonly locals: readonly Endpoint[] }
  | {
      readonly type: typeof Ctl.LOCATION_ACK;
      readonly txid: bigint;
      readonly observed: Endpoint;
      readonly behindNat: boolean;
    }
  | { readonly type: typeof Ctl.RTT_REPORT; readonly txid: bigint; readonly rtts: ReadonlyArray<readonly [Uint8Array, number]> }
  | { readonly type: typeof Ctl.RESOLVE_REQUEST; readonly txid: bigint; readonly target: Target }
  | {
      readonly type: typeof Ctl.RESOLVE_RESPONSE;
      readonly txid: bigint;
      readonly status: number;
      readonly id: Uint8Array;
      readonly v4: string;
      readonly v6: string;
      readonly name: string;
    }
  | { readonly type: typeof Ctl.DEREGISTER; readonly txid: bigint }
  | { readonly type: typeof Ctl.ACK; readonly txid: bigint }
  | { readonly type: typeof Ctl.REVOKED; readonly txid: bigint }
  /** A DNS message (RFC 1035) the terminal's resolver asks its household (DNS-SD, RFC 6763); the answer likewise, empty when the DC serves none. */
  | { readonly type: typeof Ctl.DNS_QUERY | typeof Ctl.DNS_ANSWER; readonly txid: bigint; readonly message: Uint8Array }
  /** A tunnel end heard nothing on its direct path: the DC tells both ends where the other is now. */
  | { readonly type: typeof Ctl.PATH_REFRESH; readonly txid: bigint; readonly tunnelId: bigint; readonly peerId: Uint8Array }
  | {
      readonly type: typeof Ctl.PEER_ENDPOINTS;
      readonly txid: bigint;
      readonly tunnelId: bigint;
      /** The end these endpoints belong to (the receiver's peer on that tunnel). */
      readonly peerId: Uint8Array;
      readonly endpoints: readonly Endpoint[];
    };

export function writeLocals(w: Writer, locals: readonly Endpoint[]): void {
  if (locals.length > 32) throw new WireError('too many local addresses');
  w.u8(locals.length);
  for (const e of locals) writeEndpoint(w, e);
}

export function readLocals(r: Reader): Endpoint[] {
  const n = r.u8();
  if (n > 32) throw new WireError('too many local addresses');
  const out: Endpoint[] = [];
  for (let i = 0; i < n; i++) out.push(readEndpoint(r));
  return out;
}

export function encodeControl(m: ControlMessage): Buffer {
  const w = new Writer(128);
  w.u8(m.type).u64(m.txid);
  switch (m.type) {
    case Ctl.KEEPALIVE:
      w.u64(m.dcTime);
      break;
    case Ctl.DIRECTION_REQUEST:
    case Ctl.RESOLVE_REQUEST:
      writeTarget(w, m.target);
      break;
    case Ctl.ROUTE_DIRECTION:
      writeRoute(w, m.route);
      break;
    case Ctl.DIRECTION_ERROR:
      w.u8(m.status).str8(m.message.slice(0, 200));
      break;
    case Ctl.ROUTE_ACK:
      w.u64(m.tunnelId);
      break;
    case Ctl.LOCATION_UPDATE:
      writeLocals(w, m.locals);
      break;
    case Ctl.LOCATION_ACK:
      writeEndpoint(w, m.observed);
      w.u8(m.behindNat ? 1 : 0);
      break;
    case Ctl.RTT_REPORT:
      if (m.rtts.length > 32) throw new WireError('too many RTTs');
      w.u8(m.rtts.length);
      for (const [id, ms] of m.rtts) w.fixed(id, 20).u16(Math.min(65535, Math.round(ms)));
      break;
    case Ctl.PATH_REFRESH:
      w.u64(m.tunnelId).fixed(m.peerId, 20);
      break;
    case Ctl.PEER_ENDPOINTS:
      w.u64(m.tunnelId).fixed(m.peerId, 20);
      if (m.endpoints.length > 16) throw new WireError('too many endpoints');
      w.u8(m.endpoints.length);
      for (const e of m.endpoints) writeEndpoint(w, e);
      break;
    case Ctl.RESOLVE_RESPONSE:
      w.u8(m.status).fixed(m.id, 20).bytes(ip4ToBytes(m.v4)).bytes(ip6ToBytes(m.v6)).str8(m.name);
      break;
    case Ctl.DNS_QUERY:
    case Ctl.DNS_ANSWER:
      if (m.message.length > MAX_DNS_MESSAGE) throw new WireError('DNS message too long');
      w.vbytes16(m.message);
      break;
    case Ctl.KEEPALIVE_ACK:
    case Ctl.DEREGISTER:
    case Ctl.ACK:
    case Ctl.REVOKED:
      break;
  }
  return w.finish();
}

export function decodeControl(buf: Buffer): Decoded<ControlMessage> {
  return decodeWith(() => {
    const r = new Reader(buf);
    const type = r.u8();
    const txid = r.u64();
    let m: ControlMessage;
    switch (type) {
      case Ctl.KEEPALIVE:
        m = { type, txid, dcTime: r.u64n() };
        break;
      case Ctl.DIRECTION_REQUEST:
      case Ctl.RESOLVE_REQUEST:
        m = { type, txid, target: readTarget(r) };
        break;
      case Ctl.ROUTE_DIRECTION:
        m = { type, txid, route: readRoute(r) };
        break;
      case Ctl.DIRECTION_ERROR:
        m = { type, txid, status: r.u8(), message: r.str8() };
        break;
      case Ctl.ROUTE_ACK:
        m = { type, txid, tunnelId: r.u64() };
        break;
      case Ctl.LOCATION_UPDATE:
        m = { type, txid, locals: readLocals(r) };
        break;
      case Ctl.LOCATION_ACK:
        m = { type, txid, observed: readEndpoint(r), behindNat: r.u8() === 1 };
        break;
      case Ctl.RTT_REPORT: {
        const n = r.u8();
        if (n > 32) throw new WireError('too many RTTs');
        const rtts: Array<readonly [Uint8Array, number]> = [];
        for (let i = 0; i < n; i++) rtts.push([Buffer.from(r.bytes(20)), r.u16()]);
        m = { type, txid, rtts };
        break;
      }
      case Ctl.PATH_REFRESH:
        m = { type, txid, tunnelId: r.u64(), peerId: Buffer.from(r.bytes(20)) };
        break;
      case Ctl.PEER_ENDPOINTS: {
        const tunnelId = r.u64();
        const peerId = Buffer.from(r.bytes(20));
        const n = r.u8();
        if (n > 16) throw new WireError('too many endpoints');
        const endpoints: Endpoint[] = [];
        for (let i = 0; i < n; i++) endpoints.push(readEndpoint(r));
        m = { type, txid, tunnelId, peerId, endpoints };
        break;
      }
      case Ctl.RESOLVE_RESPONSE:
        m = {
          type,
          txid,
          status: r.u8(),
          id: Buffer.from(r.bytes(20)),
          v4: bytesToIp4(r.bytes(4)),
          v6: bytesToIp6(r.bytes(16)),
          name: r.str8(),
        };
        break;
      case Ctl.DNS_QUERY:
      case Ctl.DNS_ANSWER: {
        const message = Buffer.from(r.vbytes16());
        if (message.length > MAX_DNS_MESSAGE) throw new WireError('DNS message too long');
        m = { type, txid, message };
        break;
      }
      case Ctl.KEEPALIVE_ACK:
      case Ctl.DEREGISTER:
      case Ctl.ACK:
      case Ctl.REVOKED:
        m = { type, txid };
        break;
      default:
        throw new WireError(`unknown control message ${type}`);
    }
    r.end();
    return m;
  });
}

