// Full checksums of parsed packets: the IPv4 header checksum (RFC 791 §3.1) and the transport checksums with their
// pseudo-headers (TCP RFC 9293 §3.1, UDP RFC 768, ICMP RFC 792, IPv6 upper layers RFC 8200 §8.1, ICMPv6 RFC 4443 §2.3).
// For packets built from scratch and for checks; the rewrite path uses incremental updates (rewrite.ts) instead.
import { internetChecksum, onesSum, put16, u16 } from './checksum.js';
import type { PacketInfo } from './parse.js';
import { PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, l4ChecksumOffset } from './parse.js';

/**
 * One's complement sum of the pseudo-header of the packet whose IP header starts at `buf[start]`: both addresses,
 * the protocol and the upper-layer length (RFC 9293 §3.1 for IPv4, RFC 8200 §8.1 for IPv6).
 */
export function pseudoHeaderSum(buf: Uint8Array, start: number, version: 4 | 6, protocol: number, l4Length: number): number {
  if (version === 4) return onesSum(buf, start + 12, start + 20, protocol + l4Length);
  return onesSum(buf, start + 8, start + 40, protocol + (l4Length >>> 16) + (l4Length & 0xffff));
}

/** True when the transport protocol's checksum includes a pseudo-header. */
function hasPseudoHeader(info: PacketInfo): boolean {
  return info.protocol === PROTO_TCP || info.protocol === PROTO_UDP || (info.protocol === PROTO_ICMPV6 && info.version === 6);
}

/**
 * Computes the transport checksum of a whole (unfragmented) packet from scratch, ignoring the value in the field.
 * Returns -1 when it cannot be computed: fragments, protocols without a checksum we know, truncated input.
 */
export function computeL4Checksum(buf: Uint8Array, info: PacketInfo): number {
  if (info.moreFragments || info.fragmentOffset !== 0) return -1;
  const at = l4ChecksumOffset(info);
  if (at < 0 || info.end !== info.start + info.totalLength) return -1;
  const l4 = info.l4Offset;
  const len = info.end - l4;
  let sum = hasPseudoHeader(info) ? pseudoHeaderSum(buf, info.start, info.version, info.protocol, len) : 0;
  // Sum around the checksum field rather than zeroing it, so the caller's bytes are untouched.
  sum = onesSum(buf, l4, at, sum);
  // The second range starts at an even distance from l4 (the field is 16-bit aligned), so the word grid holds.
  sum = onesSum(buf, at + 2, info.end, sum);
  let c = ~sum & 0xffff;
  if (info.protocol === PROTO_UDP && c === 0) c = 0xffff;
  return c;
}

/** Writes the IPv4 header checksum and the transport checksum of a whole packet (no-op parts are skipped). */
export function fillChecksums(buf: Uint8Array, info: PacketInfo): void {
  if (info.version === 4) {
    put16(buf, info.start + 10, 0);
    put16(buf, info.start + 10, internetChecksum(buf, info.start, info.start + info.headerLength));
  }
  const c = computeL4Checksum(buf, info);
  if (c >= 0) put16(buf, l4ChecksumOffset(info), c);
}

export interface ChecksumReport {
  /** IPv4 header checksum holds (always true for IPv6, which has none). */
  readonly ip: boolean;
  /** Transport checksum holds; true when not checkable (fragments, unknown protocols) or IPv4 UDP without one. */
  readonly l4: boolean;
}

/** Verifies a whole packet's checksums as a receiving stack would. Allocates its report: diagnostics and tests only. */
export function verifyChecksums(buf: Uint8Array, info: PacketInfo): ChecksumReport {
  const ip = info.version === 6 || internetChecksum(buf, info.start, info.start + info.headerLength) === 0;
  const at = l4ChecksumOffset(info);
  const expected = computeL4Checksum(buf, info);
  if (at < 0 || expected < 0) return { ip, l4: true };
  const actual = u16(buf, at);
  if (info.protocol === PROTO_UDP && info.version === 4 && actual === 0) return { ip, l4: true };
  // 0x0000 and 0xffff are the two one's complement zeros; a receiver accepts either for TCP/ICMP.
  const l4 = actual === expected || (info.protocol !== PROTO_UDP && (actual ^ expected) === 0xffff && (actual === 0 || expected === 0));
  return { ip, l4 };
}
