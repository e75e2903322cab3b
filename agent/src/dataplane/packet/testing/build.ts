// Test support: builds IPv4 (RFC 791) / IPv6 (RFC 8200) packets carrying TCP, UDP, ICMP or ICMPv6, and splits
// them into fragments (RFC 791 §2.3, RFC 8200 §4.5). Allocates freely: for tests, fakes and benchmarks only.
import { put16 } from '../checksum.js';
import { PacketInfo, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, parsePacket } from '../parse.js';
import { fillChecksums } from '../sums.js';

export interface ExtensionHeader {
  /** Header type: 0 Hop-by-Hop, 43 Routing, 60 Destination Options, … */
  readonly type: number;
  /** Bytes after the Next Header and Hdr Ext Len octets; 2 + length must be a multiple of 8. */
  readonly body: Uint8Array;
}

export interface PacketSpec {
  /** 4 or 16 bytes; the family follows from the length. */
  readonly src: Uint8Array;
  readonly dst: Uint8Array;
  readonly protocol: 'tcp' | 'udp' | 'icmp' | number;
  readonly srcPort?: number;
  readonly dstPort?: number;
  readonly payload?: Uint8Array;
  /** TCP only. Options are padded with EOL to a multiple of 4. */
  readonly tcpFlags?: number;
  readonly tcpOptions?: Uint8Array;
  readonly seq?: number;
  readonly ack?: number;
  /** ICMP/ICMPv6 type, code and the 4 "rest of header" bytes (echo: id, sequence). */
  readonly icmpType?: number;
  readonly icmpCode?: number;
  readonly icmpRest?: number;
  readonly ttl?: number;
  readonly id?: number;
  readonly dontFragment?: boolean;
  /** IPv4 options (multiple of 4 bytes). */
  readonly ipOptions?: Uint8Array;
  /** IPv6 extension headers, in order, before the upper-layer header. */
  readonly extensions?: readonly ExtensionHeader[];
  /** IPv4 UDP only: send checksum 0 ("no checksum"). */
  readonly udpZeroChecksum?: boolean;
}

const PROTO: Record<'tcp' | 'udp', number> = { tcp: PROTO_TCP, udp: PROTO_UDP };

/** Builds one whole packet with correct checksums. */
export function buildPacket(spec: PacketSpec): Uint8Array {
  const v6 = spec.src.length === 16;
  if (spec.dst.length !== spec.src.length || (spec.src.length !== 4 && !v6)) throw new RangeError('addresses of 4 or 16 bytes, same family');
  const proto =
    spec.protocol === 'icmp' ? (v6 ? PROTO_ICMPV6 : PROTO_ICMP) : typeof spec.protocol === 'number' ? spec.protocol : PROTO[spec.protocol];
  const payload = spec.payload ?? new Uint8Array(0);
  let l4: Uint8Array;
  if (proto === PROTO_TCP) {
    const opts = spec.tcpOptions ?? new Uint8Array(0);
    const optLen = (opts.length + 3) & ~3;
    l4 = new Uint8Array(20 + optLen + payload.length);
    put16(l4, 0, spec.srcPort ?? 0);
    put16(l4, 2, spec.dstPort ?? 0);
    new DataView(l4.buffer).setUint32(4, spec.seq ?? 0);
    new DataView(l4.buffer).setUint32(8, spec.ack ?? 0);
    l4[12] = ((20 + optLen) / 4) << 4;
    l4[13] = spec.tcpFlags ?? 0x02;
    put16(l4, 14, 65535);
    l4.set(opts, 20);
    l4.set(payload, 20 + optLen);
  } else if (proto === PROTO_UDP) {
    l4 = new Uint8Array(8 + payload.length);
    put16(l4, 0, spec.srcPort ?? 0);
    put16(l4, 2, spec.dstPort ?? 0);
    put16(l4, 4, l4.length);
    l4.set(payload, 8);
  } else if (proto === PROTO_ICMP || proto === PROTO_ICMPV6) {
    l4 = new Uint8Array(8 + payload.length);
    l4[0] = spec.icmpType ?? (v6 ? 128 : 8);
    l4[1] = spec.icmpCode ?? 0;
    new DataView(l4.buffer).setUint32(4, spec.icmpRest ?? 0);
    l4.set(payload, 8);
  } else l4 = payload.slice();

  let pkt: Uint8Array;
  if (!v6) {
    const opts = spec.ipOptions ?? new Uint8Array(0);
    if (opts.length % 4 !== 0) throw new RangeError('IPv4 options must be a multiple of 4 bytes');
    const hl = 20 + opts.length;
    pkt = new Uint8Array(hl + l4.length);
    pkt[0] = 0x40 | (hl / 4);
    put16(pkt, 2, pkt.length);
    put16(pkt, 4, spec.id ?? 0x1234);
    put16(pkt, 6, spec.dontFragment === false ? 0 : 0x4000);
    pkt[8] = spec.ttl ?? 64;
    pkt[9] = proto;
    pkt.set(spec.src, 12);
    pkt.set(spec.dst, 16);
    pkt.set(opts, 20);
    pkt.set(l4, hl);
  } else {
    const exts = spec.extensions ?? [];
    let extLen = 0;
    for (const e of exts) {
      if ((2 + e.body.length) % 8 !== 0) throw new RangeError('extension header length must be a multiple of 8');
      extLen += 2 + e.body.length;
    }
    pkt = new Uint8Array(40 + extLen + l4.length);
    pkt[0] = 0x60;
    put16(pkt, 4, extLen + l4.length);
    pkt[6] = exts[0]?.type ?? proto;
    pkt[7] = spec.ttl ?? 64;
    pkt.set(spec.src, 8);
    pkt.set(spec.dst, 24);
    let off = 40;
    exts.forEach((e, i) => {
      pkt[off] = exts[i + 1]?.type ?? proto;
      pkt[off + 1] = (2 + e.body.length) / 8 - 1;
      pkt.set(e.body, off + 2);
      off += 2 + e.body.length;
    });
    pkt.set(l4, off);
  }
  const info = new PacketInfo();
  // A spec may describe a packet the parser must refuse (tests of malformed input): then no checksums.
  if (!parsePacket(pkt, info).ok) return pkt;
  fillChecksums(pkt, info);
  if (spec.udpZeroChecksum && proto === PROTO_UDP && !v6) put16(pkt, info.l4Offset + 6, 0);
  return pkt;
}

/** Splits an IPv4 packet (no options) into fragments carrying at most `size` payload bytes (rounded to 8). */
export function fragment4(pkt: Uint8Array, size: number): Uint8Array[] {
  const hl = (pkt[0]! & 0x0f) * 4;
  const data = pkt.subarray(hl);
  const step = size & ~7;
  const out: Uint8Array[] = [];
  for (let off = 0; off < data.length; off += step) {
    const chunk = data.subarray(off, Math.min(off + step, data.length));
    const f = new Uint8Array(hl + chunk.length);
    f.set(pkt.subarray(0, hl));
    put16(f, 2, f.length);
    const more = off + step < data.length ? 0x2000 : 0;
    put16(f, 6, more | (off >> 3));
    f.set(chunk, hl);
    put16(f, 10, 0);
    const info = new PacketInfo();
    parsePacket(f, info);
    fillChecksums(f, info);
    out.push(f);
  }
  return out;
}

/** Splits an IPv6 packet without extension headers into fragments with a Fragment header (RFC 8200 §4.5). */
export function fragment6(pkt: Uint8Array, size: number, id: number): Uint8Array[] {
  const next = pkt[6]!;
  const data = pkt.subarray(40);
  const step = size & ~7;
  const out: Uint8Array[] = [];
  for (let off = 0; off < data.length; off += step) {
    const chunk = data.subarray(off, Math.min(off + step, data.length));
    const f = new Uint8Array(48 + chunk.length);
    f.set(pkt.subarray(0, 40));
    put16(f, 4, 8 + chunk.length);
    f[6] = 44;
    f[40] = next;
    put16(f, 42, off | (off + step < data.length ? 1 : 0));
    new DataView(f.buffer).setUint32(44, id);
    f.set(chunk, 48);
    out.push(f);
  }
  return out;
}

/** Hex text → bytes (whitespace ignored), for fixtures written out in tests. */
export function hex(text: string): Uint8Array {
  const clean = text.replace(/\s+/g, '');
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}
