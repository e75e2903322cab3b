// Test support: captured packets and an independent checksum reference (RFC 1071 written out plainly) for tests.
//
// The captured packets were recorded with `tcpdump -xx` on a veth between two namespaces (Linux 6.18): MLDv2
// report with a Hop-by-Hop header, ICMP echo, UDP over IPv4 and IPv6, ICMP/ICMPv6 port unreachable, a TCP SYN with
// options and the RST answering it. The sender's TCP/UDP checksums were offloaded (a veth carries them partial),
// so the three marked values are the ones tcpdump computed, written in by hand.
import { hex } from './build.js';

export const CAPTURED = {
  /** fe80::90e3:d3ff:fe14:cd9 > ff02::16: HBH (router alert) ICMP6 multicast listener report v2. */
  mldHbh: hex(`6000000000380001fe8000000000000090e3d3fffe140cd9ff020000000000000000000000000016
    3a00050200000100 8f00f22f00000002 04000000ff0200000000000000000001ff140cd9 04000000ff0200000000000000000001ff000001`),
  /** 10.9.0.1 > 10.9.0.2: ICMP echo request, id 6077, seq 0, 56 data bytes, DF. */
  echo4: hex(`45000054f6614000400130330a0900010a090002 0800f15417bd0000 9c80526d${'00'.repeat(52)}`),
  /** 10.9.0.1.60395 > 10.9.0.2.5353: UDP "hello" (checksum 0xa718 per tcpdump). */
  udp4: hex('450000219cd04000401189e70a0900010a090002 ebeb14e9000d a718 68656c6c6f'),
  /** 10.9.0.2 > 10.9.0.1: ICMP port 5353 unreachable quoting `udp4` as sent (partial checksum 0x1433 inside). */
  unreach4: hex(`45c0003df672000040016f790a0900020a090001 0303a41500000000
    450000219cd04000401189e70a0900010a090002ebeb14e9000d143368656c6c6f`),
  /** fd09::1.60779 > fd09::2.7: UDP "hi6" (checksum 0x79e5 per tcpdump). */
  udp6: hex('600d4f34000b1140fd090000000000000000000000000001fd090000000000000000000000000002 ed6b0007000b 79e5 686936'),
  /** fd09::2 > fd09::1: ICMPv6 port unreachable quoting the IPv6 UDP datagram as sent (partial checksum inside). */
  unreach6: hex(`60048c00003b3a40fd090000000000000000000000000002fd090000000000000000000000000001 0104c3b100000000
    600d4f34000b1140fd090000000000000000000000000001fd090000000000000000000000000002ed6b0007000bfa32686936`),
  /** 10.9.0.1.45138 > 10.9.0.2.80 SYN, options mss 1460, sackOK, TS, nop, wscale 10 (checksum 0x1601 per tcpdump). */
  syn4: hex(`4500003cf7fe400040062ea90a0900010a090002 b05200508f946b7400000000a002faf0 1601 0000
    020405b40402080a78e5fe65000000000103030a`),
  /** 10.9.0.2.80 > 10.9.0.1.45138 RST-ACK, padded to the 46-byte Ethernet minimum as a NIC would hand it over. */
  rst4Padded: hex('4500002800004000400626bc0a0900020a0900010050b052000000008f946b7550140000f00f0000 000000000000'),
};

const fold = (s: number): number => {
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
};

/** Sum of big-endian words of several byte arrays laid end to end (each of even length but the last). */
function refSum(parts: Uint8Array[]): number {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0) + 1);
  let o = 0;
  for (const p of parts) {
    all.set(p, o);
    o += p.length;
  }
  const dv = new DataView(all.buffer);
  let s = 0;
  for (let i = 0; i < o; i += 2) s = fold(s + dv.getUint16(i));
  return s;
}

/** What the IPv4 header checksum must be, computed from scratch. */
export function refIpChecksum(pkt: Uint8Array, headerLength: number): number {
  const h = pkt.slice(0, headerLength);
  h[10] = 0;
  h[11] = 0;
  return ~refSum([h]) & 0xffff;
}

/**
 * What the transport checksum of a whole packet must be: pseudo-header (not for ICMPv4) + the segment with its
 * checksum field zeroed, written independently of the code under test.
 */
export function refL4Checksum(pkt: Uint8Array, version: 4 | 6, l4: number, proto: number): number {
  const seg = pkt.slice(l4);
  const at = proto === 6 ? 16 : proto === 17 ? 6 : 2;
  seg[at] = 0;
  seg[at + 1] = 0;
  const parts: Uint8Array[] = [];
  if (proto !== 1) {
    if (version === 4) {
      const ph = new Uint8Array(12);
      ph.set(pkt.subarray(12, 20));
      ph[9] = proto;
      ph[10] = seg.length >> 8;
      ph[11] = seg.length & 0xff;
      parts.push(ph);
    } else {
      const ph = new Uint8Array(40);
      ph.set(pkt.subarray(8, 40));
      new DataView(ph.buffer).setUint32(32, seg.length);
      ph[39] = proto;
      parts.push(ph);
    }
  }
  parts.push(seg);
  const c = ~refSum(parts) & 0xffff;
  return proto === 17 && c === 0 ? 0xffff : c;
}

export function field16(pkt: Uint8Array, off: number): number {
  return (pkt[off]! << 8) | pkt[off + 1]!;
}

/** Deterministic PRNG (xorshift32) so failures reproduce. */
export function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

export function randomBytes(rand: () => number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}
