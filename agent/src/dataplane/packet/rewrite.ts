// In-place rewrite of one address of an IPv4/IPv6 packet (stateless one-to-one NAT) with incremental checksum
// updates (RFC 1624), including the packet embedded in an ICMP/ICMPv6 error (RFC 3022 §4.3, RFC 5508 §4.2).
//
// Hot path: no allocation. The checksum of the IPv4 header and of every transport protocol whose pseudo-header
// holds the address (TCP, UDP, ICMPv6) is adjusted by the same delta; ICMPv4 has no pseudo-header.
import { adjustChecksum, put16, replaceWords, u16, wordDelta } from './checksum.js';
import type { AddressField, PacketFailure } from './parse.js';
import {
  PROTO_ICMPV6,
  PROTO_TCP,
  PROTO_UDP,
  PacketInfo,
  addressLength,
  addressOffset,
  failure,
  isIcmpError,
  l4ChecksumOffset,
  parsePacket,
} from './parse.js';

export interface RewriteOk {
  readonly ok: true;
}
export type RewriteResult = RewriteOk | PacketFailure;

const OK: RewriteOk = Object.freeze({ ok: true as const });
const F_ADDRESS = failure('address-length');
const F_ROUTING = failure('routing-header');

/** Scratch for the packet inside an ICMP error. Module-private; JS runs one rewrite at a time. */
const embedded = new PacketInfo();

/**
 * Replaces the packet's `field` address with `addr` (4 or 16 bytes, matching the packet's family; borrowed for
 * the call) and fixes every checksum it is part of, in place in `buf`. `info` must come from `parsePacket` of
 * the same bytes and stays valid afterwards (addresses do not move anything).
 *
 * - IPv4 header checksum: adjusted. Transport checksums (TCP, UDP, ICMPv6): adjusted through the pseudo-header.
 * - IPv4 UDP with checksum 0 ("none", RFC 768) stays 0; an adjusted UDP checksum of 0 is sent as 0xffff.
 *   IPv6 UDP with checksum 0 is invalid (RFC 8200 §8.1) and left as it is rather than made to look valid.
 * - Non-first fragments carry no transport header: only the IP level is fixed (the first fragment's transport
 *   checksum is adjusted by the same delta, which is all the reassembled datagram needs).
 * - ICMP errors: when the embedded packet's opposite address equals the old address, it is rewritten too (with its
 *   IPv4 header and transport checksums), and the ICMP checksum is adjusted for every changed word. A host that
 *   sent to the old address as destination receives the error about its own packet (RFC 5508 §4.2).
 * - IPv6 with a Routing header that has segments left: the destination field is not the final destination the
 *   pseudo-header uses, so a `dst` rewrite is refused ('routing-header').
 */
export function rewriteAddress(buf: Uint8Array, info: PacketInfo, field: AddressField, addr: Uint8Array): RewriteResult {
  const len = addressLength(info);
  if (addr.length !== len) return F_ADDRESS;
  if (field === 'dst' && info.routingSegmentsLeft !== 0) return F_ROUTING;
  const off = addressOffset(info, field);

  // Decide about the embedded packet while the outer address still holds the old value it is compared with.
  let innerOff = -1;
  const icmpError = isIcmpError(info);
  if (icmpError && parsePacket(buf, embedded, info.payloadOffset, info.end, true).ok && embedded.version === info.version) {
    const io = addressOffset(embedded, field === 'src' ? 'dst' : 'src');
    let same = io + len <= info.end;
    for (let i = 0; same && i < len; i++) same = buf[io + i] === buf[off + i];
    if (same) innerOff = io;
  }

  const delta = replaceWords(buf, off, addr, len);
  const start = info.start;
  if (info.version === 4) put16(buf, start + 10, adjustChecksum(u16(buf, start + 10), delta));
  if (info.l4Offset < 0) return OK;

  const at = l4ChecksumOffset(info);
  if (at < 0) return OK;
  const proto = info.protocol;
  // Delta of the transport checksum field: from the pseudo-header, and (ICMP errors) from the embedded packet.
  let l4Delta = proto === PROTO_TCP || proto === PROTO_UDP || proto === PROTO_ICMPV6 ? delta : 0;
  if (innerOff >= 0) l4Delta += rewriteEmbedded(buf, innerOff, addr, len, delta, info.end);
  if (l4Delta !== 0) adjustTransportChecksum(buf, at, proto, l4Delta);
  return OK;
}

/** Adds `delta` to the transport checksum at `at` (RFC 1624); a UDP datagram without checksum (0) stays so. */
function adjustTransportChecksum(buf: Uint8Array, at: number, proto: number, delta: number): void {
  const old = u16(buf, at);
  if (proto === PROTO_UDP && old === 0) return;
  let sum = adjustChecksum(old, delta);
  if (proto === PROTO_UDP && sum === 0) sum = 0xffff;
  put16(buf, at, sum);
}

/**
 * Replaces the 16-bit word at `off` of the transport header (a port, or an ICMP echo identifier: RFC 5508 §3.1) with
 * `v` and fixes the transport checksum, as rewriteAddress does for an address.
 */
export function rewritePort(buf: Uint8Array, info: PacketInfo, off: number, v: number): void {
  const old = u16(buf, off);
  put16(buf, off, v);
  const at = l4ChecksumOffset(info);
  if (at >= 0) adjustTransportChecksum(buf, at, info.protocol, wordDelta(old, v));
}

/**
 * Rewrites the address at `off` inside the embedded packet parsed into `embedded` and fixes its own checksums.
 * Returns the sum of word deltas of everything it changed, for the enclosing ICMP checksum.
 */
function rewriteEmbedded(buf: Uint8Array, off: number, addr: Uint8Array, len: number, delta: number, end: number): number {
  let outer = replaceWords(buf, off, addr, len);
  const e = embedded;
  if (e.version === 4) {
    const c = e.start + 10;
    const old = u16(buf, c);
    const now = adjustChecksum(old, delta);
    put16(buf, c, now);
    outer += wordDelta(old, now);
  }
  if (e.l4Offset < 0) return outer;
  const p = e.protocol;
  if (p !== PROTO_TCP && p !== PROTO_UDP && !(p === PROTO_ICMPV6 && e.version === 6)) return outer;
  const at = l4ChecksumOffset(e);
  if (at < 0 || at + 2 > end) return outer;
  const old = u16(buf, at);
  if (p === PROTO_UDP && old === 0) return outer;
  let now = adjustChecksum(old, delta);
  if (p === PROTO_UDP && now === 0) now = 0xffff;
  put16(buf, at, now);
  return outer + wordDelta(old, now);
}
