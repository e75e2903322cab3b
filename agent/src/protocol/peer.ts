// PEER messages: DC ↔ DC (paper §2.3: DC_MN asks DC_CN for CN's details; Node Transactions are replicated so each DC
// finds the other's terminals) and RS → DC load reports (paper §2.4: choosing the RS by load). Sealed in PEER frames.
// Plaintext layout: message type (1) ‖ txid (8) ‖ sender time ms (8) ‖ body.
import type { Endpoint } from '../types/net.js';
import type { Route, Target } from './control.js';
import { readLocals, readRoute, readTarget, writeLocals, writeRoute, writeTarget } from './control.js';
import { readEndpoint, readOptEndpoint, writeEndpoint, writeOptEndpoint } from './endpoint.js';
import { bytesToIp4, bytesToIp6, ip4ToBytes, ip6ToBytes } from './ip.js';
import type { Decoded } from './wire.js';
import { Reader, WireError, Writer, decodeWith } from './wire.js';

export const Peer = {
  NT_ANNOUNCE: 0x22,
  PEER_INFO_REQUEST: 0x23,
  PEER_INFO_RESPONSE: 0x24,
  LOAD_REPORT: 0x25,
  SYNC_REQUEST: 0x26,
  ACK: 0x27,
  ROUTE_UPDATE: 0x28,
} as const;

export const NAT_KINDS = ['none', 'eim', 'symmetric', 'unknown'] as const;
export type WireNatKind = (typeof NAT_KINDS)[number];

/** What one DC tells another about its terminal (the requester), enough to compute the route. */
export interface TerminalInfo {
  readonly id: Uint8Array;
  readonly publicKey: Uint8Array;
  readonly v4: string;
  readonly v6: string;
  readonly name: string;
  readonly observed: Endpoint;
  readonly nat: WireNatKind;
  readonly locals: readonly Endpoint[];
  readonly rsRtts: ReadonlyArray<readonly [Uint8Array, number]>;
}

export function writeTerminalInfo(w: Writer, t: TerminalInfo): void {
  w.fixed(t.id, 20).fixed(t.publicKey, 33).bytes(ip4ToBytes(t.v4)).bytes(ip6ToBytes(t.v6)).str8(t.name);
  writeEndpoint(w, t.observed);
  w.u8(NAT_KINDS.indexOf(t.nat));
  writeLocals(w, t.locals);
  if (t.rsRtts.length > 32) throw new WireError('too many RTTs');
  w.u8(t.rsRtts.length);
  for (const [id, ms] of t.rsRtts) w.fixed(id, 20).u16(Math.min(65535, Math.round(ms)));
}

export function readTerminalInfo(r: Reader): TerminalInfo {
  const id = Buffer.from(r.bytes(20));
  const publicKey = Buffer.from(r.bytes(33));
  const v4 = bytesToIp4(r.bytes(4));
  const v6 = bytesToIp6(r.bytes(16));
  const name = r.str8();
  const observed = readEndpoint(r);
  const nat = NAT_KINDS[r.u8()];
  if (!nat) throw new WireError('bad NAT kind');
  const locals = readLocals(r);
  const n = r.u8();
  if (n > 32) throw new WireError('too many RTTs');
  const rsRtts: Array<readonly [Uint8Array, number]> = [];
  for (let i = 0; i < n; i++) rsRtts.push([Buffer.from(r.bytes(20)), r.u16()]);
  return { id, publicKey, v4, v6, name, observed, nat, locals, rsRtts };
}

export type PeerMessage =
  | { readonly type: typeof Peer.NT_ANNOUNCE; readonly txid: bigint; readonly time: number; readonly entries: readonly Uint8Array[] }
  | {
      readonly type: typeof Peer.PEER_INFO_REQUEST;
      readonly txid: bigint;
      readonly time: number;
      readonly tunnelId: bigint;
      readonly target: Target;
      readonly requester: TerminalInfo;
    }
  | {
      readonly type: typeof Peer.PEER_INFO_RESPONSE;
      readonly txid: bigint;
      readonly time: number;
      readonly status: number;
      readonly message: string;
      /** The route for the requester (when status is OK). */
      readonly route?: Route;
    }
  | {
      readonly type: typeof Peer.LOAD_REPORT;
      readonly txid: bigint;
      readonly time: number;
      readonly tunnels: number;
      readonly capacity: number;
      readonly packetsPerS: number;
      readonly v4?: Endpoint;
      readonly v6?: Endpoint;
      /**
       * Tunnels this RS created from tickets of the DC it reports to, since it started (mod 2^32). The DC takes that
       * many of its directed-but-unreported routes as now in `tunnels` (docs/protocol.md §3.5). Absent from older RSs.
       */
      readonly bound?: number;
    }
  | { readonly type: typeof Peer.SYNC_REQUEST; readonly txid: bigint; readonly time: number; readonly since: number }
  | { readonly type: typeof Peer.ACK; readonly txid: bigint; readonly time: number }
  | {
      /** A terminal moved: the DC managing the peer tells it where to punch now (hole-punched paths). */
      readonly type: typeof Peer.ROUTE_UPDATE;
      readonly txid: bigint;
      readonly time: number;
      readonly tunnelId: bigint;
      readonly target: Uint8Array;
      readonly mover: TerminalInfo;
    };

export const NT_BYTES = 148;

export function encodePeer(m: PeerMessage): Buffer {
  const w = new Writer(256);
  w.u8(m.type).u64(m.txid).u64(m.time);
  switch (m.type) {
    case Peer.NT_ANNOUNCE:
      if (m.entries.length > 8) throw new WireError('too many entries in one announce');
      w.u8(m.entries.length);
      for (const e of m.entries) w.vbytes16(e);
      break;
    case Peer.PEER_INFO_REQUEST:
      w.u64(m.tunnelId);
      writeTarget(w, m.target);
      writeTerminalInfo(w, m.requester);
      break;
    case Peer.PEER_INFO_RESPONSE:
      w.u8(m.status).str8(m.message.slice(0, 200));
      if (m.route) {
        w.u8(1);
        writeRoute(w, m.route);
      } else w.u8(0);
      break;
    case Peer.LOAD_REPORT:
      w.u32(m.tunnels).u32(m.capacity).u32(Math.min(0xffffffff, Math.round(m.packetsPerS)));
      writeOptEndpoint(w, m.v4);
      writeOptEndpoint(w, m.v6);
      if (m.bound !== undefined) w.u32(m.bound >>> 0);
      break;
    case Peer.SYNC_REQUEST:
      w.u64(m.since);
      break;
    case Peer.ACK:
      break;
    case Peer.ROUTE_UPDATE:
      w.u64(m.tunnelId).fixed(m.target, 20);
      writeTerminalInfo(w, m.mover);
      break;
  }
  return w.finish();
}

export function decodePeer(buf: Buffer): Decoded<PeerMessage> {
  return decodeWith(() => {
    const r = new Reader(buf);
    const type = r.u8();
    const txid = r.u64();
    const time = r.u64n();
    let m: PeerMessage;
    switch (type) {
      case Peer.NT_ANNOUNCE: {
        const n = r.u8();
        if (n > 8) throw new WireError('too many entries');
        const entries: Uint8Array[] = [];
        for (let i = 0; i < n; i++) entries.push(Buffer.from(r.vbytes16()));
        m = { type, txid, time, entries };
        break;
      }
      case Peer.PEER_INFO_REQUEST:
        m = { type, txid, time, tunnelId: r.u64(), target: readTarget(r), requester: readTerminalInfo(r) };
        break;
      case Peer.PEER_INFO_RESPONSE: {
        const status = r.u8();
        const message = r.str8();
        const has = r.u8() === 1;
        m = has ? { type, txid, time, status, message, route: readRoute(r) } : { type, txid, time, status, message };
        break;
      }
      case Peer.LOAD_REPORT: {
        const tunnels = r.u32();
        const capacity = r.u32();
        const packetsPerS = r.u32();
        const v4 = readOptEndpoint(r);
        const v6 = readOptEndpoint(r);
        const bound = r.remaining > 0 ? r.u32() : undefined;
        m = { type, txid, time, tunnels, capacity, packetsPerS, ...(v4 ? { v4 } : {}), ...(v6 ? { v6 } : {}), ...(bound !== undefined ? { bound } : {}) };
        break;
      }
      case Peer.SYNC_REQUEST:
        m = { type, txid, time, since: r.u64n() };
        break;
      case Peer.ACK:
        m = { type, txid, time };
        break;
      case Peer.ROUTE_UPDATE:
        m = { type, txid, time, tunnelId: r.u64(), target: Buffer.from(r.bytes(20)), mover: readTerminalInfo(r) };
        break;
      default:
        throw new WireError(`unknown peer message ${type}`);
    }
    r.end();
    return m;
  });
}

