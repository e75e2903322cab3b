// Zero-copy parsing of IPv4 (RFC 791) and IPv6 (RFC 8200) packets up to the transport header: TCP (RFC 9293),
// UDP (RFC 768), ICMP (RFC 792), ICMPv6 (RFC 4443). Malformed bytes get a reason, never an exception.
//
// IPv4 header (RFC 791 §3.1)                       IPv6 header (RFC 8200 §3)
//  0       4       8              16    19        31    0       4            12      16       24       31
// +-------+-------+---------------+-----+-----------+   +-------+-------------+-----------------------+
// |Version|  IHL  |   DSCP/ECN    |  Total Length   |   |Version|Traffic Class|      Flow Label       |
// +-------+-------+---------------+-----+-----------+   +-------+-------------+--------+--------------+
// |        Identification         |Flags| Frag Off  |   |    Payload Length  |Next Hdr|  Hop Limit   |
// +---------------+---------------+-----+-----------+   +--------------------+--------+--------------+
// |  Time to Live |   Protocol    | Header Checksum |   |             Source Address (16)              |
// +---------------+---------------+-----------------+   +----------------------------------------------+
// |              Source Address (12..16)            |   |          Destination Address (24..40)        |
// |           Destination Address (16..20)          |   +----------------------------------------------+
// |             Options (IHL*4 - 20)                |   then extension headers: Hop-by-Hop (first only), Routing,
// +-------------------------------------------------+   Fragment, Destination Options, AH, ... up to L4.
//
// Offsets in `PacketInfo` are absolute indexes into the parsed buffer, so a packet may sit at any offset of a
// larger buffer (ICMP errors: the embedded packet is parsed in place).

export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
export const PROTO_ICMPV6 = 58;

const EXT_HOP_BY_HOP = 0;
const EXT_ROUTING = 43;
const EXT_FRAGMENT = 44;
const EXT_ESP = 50;
const EXT_AH = 51;
const EXT_NONE = 59;
const EXT_DEST_OPTS = 60;
const EXT_MOBILITY = 135;
const EXT_HIP = 139;
const EXT_SHIM6 = 140;

/** Extension headers walked before giving up (RFC 8200 sets no limit; real stacks send 0–3). */
export const MAX_EXTENSION_HEADERS = 8;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_ACK = 0x10;

export type PacketFailureReason =
  | 'empty'
  | 'truncated'
  | 'bad-version'
  | 'bad-header-length'
  | 'bad-total-length'
  | 'jumbogram'
  | 'bad-extension-header'
  | 'too-many-extension-headers'
  | 'truncated-l4'
  | 'bad-tcp-header'
  | 'bad-udp-length'
  | 'address-length'
  | 'routing-header'
  | 'not-too-big'
  | 'not-df'
  | 'icmp-error'
  | 'non-first-fragment'
  | 'bad-address'
  | 'output-too-small';

/** The verdict-style failure: expected for malformed or unsuitable packets, never thrown. */
export interface PacketFailure {
  readonly ok: false;
  readonly reason: PacketFailureReason;
}

const failures = new Map<PacketFailureReason, PacketFailure>();
/** The shared, frozen failure value for `reason` (no allocation per packet). */
export function failure(reason: PacketFailureReason): PacketFailure {
  let f = failures.get(reason);
  if (!f) {
    f = Object.freeze({ ok: false as const, reason });
    failures.set(reason, f);
  }
  return f;
}

const F_EMPTY = failure('empty');
const F_TRUNCATED = failure('truncated');
const F_VERSION = failure('bad-version');
const F_HLEN = failure('bad-header-length');
const F_TOTLEN = failure('bad-total-length');
const F_JUMBO = failure('jumbogram');
const F_EXT = failure('bad-extension-header');
const F_EXT_MANY = failure('too-many-extension-headers');
const F_L4 = failure('truncated-l4');
const F_TCP = failure('bad-tcp-header');
const F_UDP = failure('bad-udp-length');

/**
 * What the parser learnt about one packet. Caller-owned and reused across packets: `parsePacket` overwrites
 * every field. All offsets are absolute indexes into the parsed buffer; -1 means "not present".
 */
export class PacketInfo {
  readonly ok = true as const;
  /** Index of the first byte of the IP header. */
  start = 0;
  version: 4 | 6 = 4;
  /** Bytes of the IP packet per its header (IPv4 Total Length, IPv6 40 + Payload Length). */
  totalLength = 0;
  /** One past the last byte of the packet present in the buffer (shorter than start+totalLength only when embedded). */
  end = 0;
  /** Bytes from `start` to the transport header (IPv4 IHL*4; IPv6 40 + extension headers). */
  headerLength = 0;
  /** Upper-layer protocol (IPv6: the Next Header after the extension headers). */
  protocol = 0;
  hopLimit = 0;
  /** IPv4 DF bit (IPv6 never fragments in the network: always false). */
  dontFragment = false;
  /** True for any fragment, including an IPv6 atomic fragment (RFC 6946). */
  isFragment = false;
  moreFragments = false;
  /** Fragment offset in bytes. */
  fragmentOffset = 0;
  /** IPv4 Identification, or the IPv6 Fragment header's 32-bit Identification. */
  fragmentId = 0;
  /** Index of the IPv6 Fragment header, -1 when absent. */
  fragmentHeaderOffset = -1;
  /** Segments Left of an IPv6 Routing header (0 when absent): the destination field is then not the final one. */
  routingSegmentsLeft = 0;
  /** Index of the transport header; -1 for non-first fragments (their bytes are the middle of a datagram). */
  l4Offset = -1;
  /** Transport header length (TCP data offset, 8 for UDP/ICMP/ICMPv6), 0 when unknown or not present. */
  l4HeaderLength = 0;
  /** Index of the transport payload, -1 when there is no transport header. */
  payloadOffset = -1;
  /** TCP/UDP ports; 0 for other protocols. */
  srcPort = 0;
  dstPort = 0;
  /** TCP flags byte (CWR..FIN), 0 otherwise. */
  tcpFlags = 0;
  /** ICMP/ICMPv6 type and code, -1 otherwise. */
  icmpType = -1;
  icmpCode = -1;
  /** ICMP/ICMPv6 echo identifier, 0 otherwise. */
  icmpId = 0;
}

export type ParseResult = PacketInfo | PacketFailure;

/**
 * Parses the IP packet at `buf[start..end)` into `out` (caller-owned, overwritten) and returns it, or the reason
 * it is malformed. Trailing bytes beyond the header's total length are ignored (link padding).
 *
 * `embedded` parses the copy of a packet inside an ICMP error (RFC 792, RFC 4443 §2.4(c)): it is truncated by
 * design, so lengths may run past `end`; only the fixed IP header must be present.
 */
export function parsePacket(buf: Uint8Array, out: PacketInfo, start = 0, end = buf.length, embedded = false): ParseResult {
  if (end > buf.length) end = buf.length;
  if (end - start < 1) return F_EMPTY;
  const version = buf[start]! >> 4;
  out.start = start;
  out.isFragment = false;
  out.moreFragments = false;
  out.fragmentOffset = 0;
  out.fragmentId = 0;
  out.fragmentHeaderOffset = -1;
  out.routingSegmentsLeft = 0;
  out.dontFragment = false;
  out.l4Offset = -1;
  out.l4HeaderLength = 0;
  out.payloadOffset = -1;
  out.srcPort = 0;
  out.dstPort = 0;
  out.tcpFlags = 0;
  out.icmpType = -1;
  out.icmpCode = -1;
  out.icmpId = 0;

  let l4: number;
  let pend: number;
  if (version === 4) {
    if (end - start < 20) return F_TRUNCATED;
    const ihl = (buf[start]! & 0x0f) << 2;
    if (ihl < 20) return F_HLEN;
    const total = (buf[start + 2]! << 8) | buf[start + 3]!;
    if (total < ihl) return F_TOTLEN;
    if (start + total > end) {
      if (!embedded) return F_TRUNCATED;
      if (start + ihl > end) return F_TRUNCATED;
      pend = end;
    } else pend = start + total;
    const frag = (buf[start + 6]! << 8) | buf[start + 7]!;
    out.version = 4;
    out.totalLength = total;
    out.end = pend;
    out.headerLength = ihl;
    out.protocol = buf[start + 9]!;
    out.hopLimit = buf[start + 8]!;
    out.fragmentId = (buf[start + 4]! << 8) | buf[start + 5]!;
    out.dontFragment = (frag & 0x4000) !== 0;
    out.moreFragments = (frag & 0x2000) !== 0;
    out.fragmentOffset = (frag & 0x1fff) << 3;
    out.isFragment = out.moreFragments || out.fragmentOffset !== 0;
    if (out.fragmentOffset !== 0) return out;
    l4 = start + ihl;
  } else if (version === 6) {
    if (end - start < 40) return F_TRUNCATED;
    const payloadLength = (buf[start + 4]! << 8) | buf[start + 5]!;
    let next = buf[start + 6]!;
    if (payloadLength === 0 && next === EXT_HOP_BY_HOP && !embedded) return F_JUMBO;
    const total = 40 + payloadLength;
    if (start + total > end) {
      if (!embedded) return F_TRUNCATED;
      pend = end;
    } else pend = start + total;
    out.version = 6;
    out.totalLength = total;
    out.end = pend;
    out.hopLimit = buf[start + 7]!;
    let off = start + 40;
    let count = 0;
    // Walk the extension header chain (RFC 8200 §4) to the upper-layer header.
    for (;;) {
      if (next === EXT_HOP_BY_HOP && count !== 0) return F_EXT;
      if (
        next === EXT_HOP_BY_HOP ||
        next === EXT_ROUTING ||
        next === EXT_DEST_OPTS ||
        next === EXT_MOBILITY ||
        next === EXT_HIP ||
        next === EXT_SHIM6 ||
        next === EXT_AH
      ) {
        if (off + 8 > pend) return F_TRUNCATED;
        const len = next === EXT_AH ? (buf[off + 1]! + 2) << 2 : (buf[off + 1]! + 1) << 3;
        if (next === EXT_ROUTING) out.routingSegmentsLeft = buf[off + 3]!;
        next = buf[off]!;
        off += len;
        if (off > pend) return F_TRUNCATED;
      } else if (next === EXT_FRAGMENT) {
        if (off + 8 > pend) return F_TRUNCATED;
        const fo = (buf[off + 2]! << 8) | buf[off + 3]!;
        out.isFragment = true;
        out.fragmentHeaderOffset = off;
        out.fragmentOffset = fo & 0xfff8;
        out.moreFragments = (fo & 1) !== 0;
        out.fragmentId = ((buf[off + 4]! << 24) | (buf[off + 5]! << 16) | (buf[off + 6]! << 8) | buf[off + 7]!) >>> 0;
        next = buf[off]!;
        off += 8;
        if (out.fragmentOffset !== 0) {
          out.protocol = next;
          out.headerLength = off - start;
          return out;
        }
      } else break;
      if (++count > MAX_EXTENSION_HEADERS) return F_EXT_MANY;
    }
    out.protocol = next;
    out.headerLength = off - start;
    if (next === EXT_NONE || next === EXT_ESP) return out;
    l4 = off;
  } else return F_VERSION;

  // Transport header. A first fragment must carry it whole (RFC 8200 §4.5; RFC 1858 tiny fragments for IPv4).
  const avail = pend - l4;
  const proto = out.protocol;
  if (proto === PROTO_TCP) {
    if (avail < 20) {
      if (!embedded) return F_L4;
      if (avail >= 4) {
        out.l4Offset = l4;
        out.srcPort = (buf[l4]! << 8) | buf[l4 + 1]!;
        out.dstPort = (buf[l4 + 2]! << 8) | buf[l4 + 3]!;
      } else if (avail >= 0) out.l4Offset = l4;
      return out;
    }
    const doff = (buf[l4 + 12]! >> 4) << 2;
    if (doff < 20 || (doff > avail && !embedded)) return F_TCP;
    out.l4Offset = l4;
    out.l4HeaderLength = doff;
    out.payloadOffset = l4 + doff;
    out.srcPort = (buf[l4]! << 8) | buf[l4 + 1]!;
    out.dstPort = (buf[l4 + 2]! << 8) | buf[l4 + 3]!;
    out.tcpFlags = buf[l4 + 13]!;
    return out;
  }
  if (proto === PROTO_UDP) {
    if (avail < 8) {
      if (!embedded) return F_L4;
      out.l4Offset = l4;
      if (avail >= 4) {
        out.srcPort = (buf[l4]! << 8) | buf[l4 + 1]!;
        out.dstPort = (buf[l4 + 2]! << 8) | buf[l4 + 3]!;
      }
      return out;
    }
    const udpLength = (buf[l4 + 4]! << 8) | buf[l4 + 5]!;
    // The UDP length covers the whole datagram, which a first fragment only starts.
    if (!embedded && (udpLength < 8 || (!out.moreFragments && udpLength > avail) || (out.moreFragments && udpLength < avail)))
      return F_UDP;
    out.l4Offset = l4;
    out.l4HeaderLength = 8;
    out.payloadOffset = l4 + 8;
    out.srcPort = (buf[l4]! << 8) | buf[l4 + 1]!;
    out.dstPort = (buf[l4 + 2]! << 8) | buf[l4 + 3]!;
    return out;
  }
  if ((proto === PROTO_ICMP && version === 4) || (proto === PROTO_ICMPV6 && version === 6)) {
    if (avail < 8) {
      if (!embedded) return F_L4;
      out.l4Offset = l4;
      return out;
    }
    const type = buf[l4]!;
    out.l4Offset = l4;
    out.l4HeaderLength = 8;
    out.payloadOffset = l4 + 8;
    out.icmpType = type;
    out.icmpCode = buf[l4 + 1]!;
    if (version === 4 ? type === 0 || type === 8 || type === 13 || type === 14 : type === 128 || type === 129)
      out.icmpId = (buf[l4 + 4]! << 8) | buf[l4 + 5]!;
    return out;
  }
  out.l4Offset = l4;
  return out;
}

/** True for ICMP/ICMPv6 error messages, which carry a copy of the offending packet after their 8-byte header. */
export function isIcmpError(info: PacketInfo): boolean {
  if (info.l4Offset < 0 || info.l4HeaderLength === 0) return false;
  if (info.version === 4)
    return info.protocol === PROTO_ICMP && (info.icmpType === 3 || info.icmpType === 4 || info.icmpType === 5 || info.icmpType === 11 || info.icmpType === 12);
  return info.protocol === PROTO_ICMPV6 && info.icmpType < 128;
}

/** Index of the source (`'src'`) or destination (`'dst'`) address; 4 (IPv4) or 16 (IPv6) bytes long. */
export function addressOffset(info: PacketInfo, field: AddressField): number {
  if (info.version === 4) return info.start + (field === 'src' ? 12 : 16);
  return info.start + (field === 'src' ? 8 : 24);
}

export type AddressField = 'src' | 'dst';

/** Address length of the packet's family. */
export function addressLength(info: PacketInfo): 4 | 16 {
  return info.version === 4 ? 4 : 16;
}

/** True when the packet's `field` address equals `addr` (4 or 16 bytes). No allocation. */
export function addressEquals(buf: Uint8Array, info: PacketInfo, field: AddressField, addr: Uint8Array): boolean {
  const len = addressLength(info);
  if (addr.length !== len) return false;
  const off = addressOffset(info, field);
  for (let i = 0; i < len; i++) if (buf[off + i] !== addr[i]) return false;
  return true;
}

/** Index of the transport checksum field, or -1 when there is none or it lies outside `info.end`. */
export function l4ChecksumOffset(info: PacketInfo): number {
  if (info.l4Offset < 0) return -1;
  let at: number;
  switch (info.protocol) {
    case PROTO_TCP:
      at = info.l4Offset + 16;
      break;
    case PROTO_UDP:
      at = info.l4Offset + 6;
      break;
    case PROTO_ICMP:
      if (info.version !== 4) return -1;
      at = info.l4Offset + 2;
      break;
    case PROTO_ICMPV6:
      if (info.version !== 6) return -1;
      at = info.l4Offset + 2;
      break;
    default:
      return -1;
  }
  return at + 2 <= info.end ? at : -1;
}
