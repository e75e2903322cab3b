// TCP MSS clamping: lowers the Maximum Segment Size option (RFC 9293 §3.7.1, RFC 6691) of SYN and SYN-ACK
// segments so the peer never sends segments that would not fit the tunnel, with an RFC 1624 checksum update.
import { adjustChecksum, put16, u16, wordDelta } from './checksum.js';
import type { PacketInfo } from './parse.js';
import { PROTO_TCP, TCP_SYN } from './parse.js';

const OPT_EOL = 0;
const OPT_NOP = 1;
const OPT_MSS = 2;

/**
 * Rewrites the MSS option of a SYN or SYN-ACK in `buf` (in place) down to `maxMss` when it is larger, fixing the
 * TCP checksum. Returns true when the packet changed.
 *
 * A SYN without an MSS option is left alone: the peer then assumes 536 (IPv4) or 1220 (IPv6) (RFC 9293 §3.7.1),
 * which is below any tunnel MTU we accept. Malformed option lists are left alone too (the receiver will judge).
 * The option may sit at an odd offset (options need no alignment): its bytes then straddle two checksum words,
 * which contributes the byte-swapped value to the sum (RFC 1071 §2(B), byte order independence).
 */
export function clampTcpMss(buf: Uint8Array, info: PacketInfo, maxMss: number): boolean {
  if (info.protocol !== PROTO_TCP || info.l4Offset < 0 || (info.tcpFlags & TCP_SYN) === 0) return false;
  if (!(maxMss >= 1 && maxMss <= 0xffff)) return false;
  const l4 = info.l4Offset;
  const optEnd = l4 + info.l4HeaderLength;
  if (optEnd > info.end) return false;
  let i = l4 + 20;
  while (i < optEnd) {
    const kind = buf[i]!;
    if (kind === OPT_EOL) return false;
    if (kind === OPT_NOP) {
      i++;
      continue;
    }
    if (i + 1 >= optEnd) return false;
    const len = buf[i + 1]!;
    if (len < 2 || i + len > optEnd) return false;
    if (kind === OPT_MSS && len === 4) {
      const v = i + 2;
      const mss = u16(buf, v);
      if (mss <= maxMss) return false;
      put16(buf, v, maxMss);
      const odd = ((v - l4) & 1) === 1;
      const delta = odd ? wordDelta(swap16(mss), swap16(maxMss)) : wordDelta(mss, maxMss);
      put16(buf, l4 + 16, adjustChecksum(u16(buf, l4 + 16), delta));
      return true;
    }
    i += len;
  }
  return false;
}

/** Reads the MSS option of a TCP segment, or -1 when it has none (or the options are malformed). */
export function readTcpMss(buf: Uint8Array, info: PacketInfo): number {
  if (info.protocol !== PROTO_TCP || info.l4Offset < 0) return -1;
  const l4 = info.l4Offset;
  const optEnd = Math.min(l4 + info.l4HeaderLength, info.end);
  let i = l4 + 20;
  while (i < optEnd) {
    const kind = buf[i]!;
    if (kind === OPT_EOL) return -1;
    if (kind === OPT_NOP) {
      i++;
      continue;
    }
    if (i + 1 >= optEnd) return -1;
    const len = buf[i + 1]!;
    if (len < 2 || i + len > optEnd) return -1;
    if (kind === OPT_MSS && len === 4) return u16(buf, i + 2);
    i += len;
  }
  return -1;
}

function swap16(v: number): number {
  return ((v & 0xff) << 8) | (v >>> 8);
}
