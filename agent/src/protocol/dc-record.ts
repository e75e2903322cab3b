// Server directory records (docs/protocol.md §1 tag "NTM1 dc-record"): a DC's or RS's signed statement of its key,
// addresses and (for a DC) its virtual-address pools. Kept in the registry beside Node Transactions (paper §2.3:
// DC_MN finds DC_CN from the chain) and exchanged in HELLO frames, so servers learn each other's keys from IDs:
//
//   HELLO = 0x13 ‖ flags (1: bit 0 "please answer") ‖ 0x00 ×2 ‖ record
//   record = ver (1) ‖ id (20) ‖ public key (33) ‖ role (1: 1 DC, 2 RS) ‖ time ms (8) ‖ n (1) ‖ n × Endpoint
//            ‖ pool v4 (4 + len 1) ‖ pool v6 (16 + len 1) ‖ signature (65)
import type { Endpoint } from '../types/net.js';
import { SIGNATURE_LENGTH } from '../crypto/secp256k1.js';
import type { Identity } from './identity.js';
import { DomainTag, verifyBySigner } from './identity.js';
import { readEndpoint, writeEndpoint } from './endpoint.js';
import { bytesToIp4, bytesToIp6, ip4ToBytes, ip6ToBytes } from './ip.js';
import type { Decoded } from './wire.js';
import { Reader, WireError, Writer, decodeWith } from './wire.js';

export const HELLO = 0x13;

export interface ServerRecord {
  readonly id: Uint8Array;
  readonly publicKey: Uint8Array;
  readonly role: 'dc' | 'rs';
  readonly time: number;
  readonly endpoints: readonly Endpoint[];
  /** "a.b.c.d/len" or "" (RS). */
  readonly poolV4: string;
  readonly poolV6: string;
  /** The whole signed encoding. */
  readonly bytes: Uint8Array;
}

function splitPool(p: string, family: 4 | 6): [Uint8Array, number] {
  if (!p) return [new Uint8Array(family === 4 ? 4 : 16), 0];
  const [a, l] = p.split('/');
  return [family === 4 ? ip4ToBytes(a!) : ip6ToBytes(a!), Number(l)];
}

export function signServerRecord(
  me: Identity,
  r: { role: 'dc' | 'rs'; time: number; endpoints: readonly Endpoint[]; poolV4: string; poolV6: string },
): Uint8Array {
  const w = new Writer(200).u8(1).fixed(me.id, 20).fixed(me.publicKey, 33).u8(r.role === 'dc' ? 1 : 2).u64(r.time);
  if (r.endpoints.length > 8) throw new WireError('too many endpoints');
  w.u8(r.endpoints.length);
  for (const e of r.endpoints) writeEndpoint(w, e);
  const [p4, l4] = splitPool(r.poolV4, 4);
  const [p6, l6] = splitPool(r.poolV6, 6);
  w.bytes(p4).u8(l4).bytes(p6).u8(l6);
  const body = w.finish();
  return Buffer.concat([body, me.sign(DomainTag.dcRecord, body)]);
}

/** Decodes and verifies (the signature must recover to the record's own ID). */
export function decodeServerRecord(bytes: Uint8Array): Decoded<ServerRecord> {
  const d = decodeWith(() => {
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const r = new Reader(buf);
    if (r.u8() !== 1) throw new WireError('record version');
    const id = Buffer.from(r.bytes(20));
    const publicKey = Buffer.from(r.bytes(33));
    const roleByte = r.u8();
    if (roleByte !== 1 && roleByte !== 2) throw new WireError('record role');
    const time = r.u64n();
    const n = r.u8();
    if (n > 8) throw new WireError('too many endpoints');
    const endpoints: Endpoint[] = [];
    for (let i = 0; i < n; i++) endpoints.push(readEndpoint(r));
    const a4 = bytesToIp4(r.bytes(4));
    const l4 = r.u8();
    const a6 = bytesToIp6(r.bytes(16));
    const l6 = r.u8();
    if (l4 > 32 || l6 > 128) throw new WireError('bad pool length');
    const bodyEnd = r.offset;
    const sig = r.bytes(SIGNATURE_LENGTH);
    r.end();
    return {
      rec: {
        id,
        publicKey,
        role: roleByte === 1 ? ('dc' as const) : ('rs' as const),
        time,
        endpoints,
        poolV4: l4 ? `${a4}/${l4}` : '',
        poolV6: l6 ? `${a6}/${l6}` : '',
        bytes: Buffer.from(buf),
      },
      body: buf.subarray(0, bodyEnd),
      sig,
    };
  });
  if (!d.ok) return d;
  const { rec, body, sig } = d.value;
  if (!verifyBySigner(DomainTag.dcRecord, body, sig, rec.id)) return { ok: false, reason: 'record signature' };
  return { ok: true, value: rec };
}

export function encodeHello(record: Uint8Array, wantAnswer: boolean): Buffer {
  return new Writer(record.length + 4).u8(HELLO).u8(wantAnswer ? 1 : 0).zeros(2).bytes(record).finish();
}

export function decodeHello(buf: Buffer): Decoded<{ wantAnswer: boolean; record: ServerRecord }> {
  if (buf.length < 4 || buf[0] !== HELLO) return { ok: false, reason: 'not a hello' };
  const rec = decodeServerRecord(buf.subarray(4));
  if (!rec.ok) return rec;
  return { ok: true, value: { wantAnswer: (buf[1]! & 1) === 1, record: rec.value } };
}
