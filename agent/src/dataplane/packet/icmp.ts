// ICMP errors the data path originates. Path MTU signalling for packets too big for the tunnel: ICMP "fragmentation
// needed and DF set" (RFC 792 type 3 code 4 with the next-hop MTU of RFC 1191 §4) and ICMPv6 "Packet Too Big"
// (RFC 4443 §3.2, RFC 8201). And "destination unreachable" for an appliance that lacks the packet's IP family on the
// LAN (RFC 792 type 3 code 1 host unreachable; RFC 4443 §3.1 type 1 code 3 address unreachable), so that the sender
// falls back to the other family at once instead of waiting on a black hole. Not the hot path (the caller rate-limits errors, RFC 1812 §4.3.2.8, RFC 4443 §2.4(f)), so results are objects.
import { internetChecksum, put16 } from './checksum.js';
import type { PacketFailure, PacketInfo } from './parse.js';
import { failure, isIcmpError } from './parse.js';
import { pseudoHeaderSum } from './sums.js';

/** An IPv4 ICMP error never exceeds 576 bytes (RFC 1812 §4.3.2.3). */
export const ICMP4_ERROR_MAX = 576;
/** An ICMPv6 error never exceeds the IPv6 minimum MTU (RFC 4443 §2.4(c)). */
export const ICMP6_ERROR_MAX = 1280;
/** Smallest MTU each family may advertise (RFC 791 §3.2: 68; RFC 8200 §5: 1280). */
export const MIN_MTU_V4 = 68;
export const MIN_MTU_V6 = 1280;
/** Hop limit of the errors we originate. */
const ERROR_TTL = 64;

export interface BuildOk {
  readonly ok: true;
  /** Bytes written at the start of the output buffer. */
  readonly length: number;
}
export type BuildResult = BuildOk | PacketFailure;

/**
 * Writes into `out` (caller-owned) the ICMP error telling the sender of `orig` that it exceeds `mtu`:
 * from `from` (our address, 4 or 16 bytes) to the packet's source, quoting as much of it as the size limits allow.
 *
 * Refuses ('ok: false') where no error may be sent: the packet fits ('not-too-big'); IPv4 without DF ('not-df':
 * the router fragments it instead); non-first fragments (RFC 1122 §3.2.2); ICMP errors themselves ('icmp-error',
 * RFC 1122 §3.2.2, RFC 4443 §2.4(e)); sources that name no single host ('bad-address': unspecified, multicast,
 * broadcast, loopback) or IPv4 destinations that are broadcast/multicast. An MTU below the family's minimum is
 * raised to it. `out` must hold the result: 576 (IPv4) or 1280 (IPv6) bytes always suffice.
 */
export function buildPacketTooBig(orig: Uint8Array, info: PacketInfo, mtu: number, from: Uint8Array, out: Uint8Array): BuildResult {
  if (info.totalLength <= mtu) return failure('not-too-big');
  if (info.version === 4 && !info.dontFragment) return failure('not-df');
  const v4 = Math.max(MIN_MTU_V4, Math.min(Math.floor(mtu), 0xffff));
  const v6 = Math.max(MIN_MTU_V6, Math.min(Math.floor(mtu), 0xffffffff));
  // IPv4: the next-hop MTU in the low 16 bits of the rest-of-header word (RFC 1191 §4); IPv6: the whole word.
  return buildError(orig, info, from, out, info.version === 4 ? { type: 3, code: 4, word: v4 } : { type: 2, code: 0, word: v6 });
}

/**
 * Writes into `out` the error telling the sender of `orig` that its destination (ours, `from`) cannot be reached in
 * this IP family: IPv4 host unreachable, ICMPv6 address unreachable. Refused where no error may be sent, as for
 * buildPacketTooBig.
 */
export function buildDestinationUnreachable(orig: Uint8Array, info: PacketInfo, from: Uint8Array, out: Uint8Array): BuildResult {
  return buildError(orig, info, from, out, info.version === 4 ? { type: 3, code: 1, word: 0 } : { type: 1, code: 3, word: 0 });
}

/** The checks and the layout every error shares: ICMP header `type`, `code`, rest-of-header `word`, then the quote. */
function buildError(orig: Uint8Array, info: PacketInfo, from: Uint8Array, out: Uint8Array, e: { type: number; code: number; word: number }): BuildResult {
  if (from.length !== (info.version === 4 ? 4 : 16)) return failure('address-length');
  if (info.fragmentOffset !== 0) return failure('non-first-fragment');
  if (isIcmpError(info)) return failure('icmp-error');
  const s = info.start;
  if (info.version === 4) {
    if (!unicast4(orig, s + 12) || !unicast4(orig, s + 16)) return failure('bad-address');
    const quote = Math.min(info.end - s, ICMP4_ERROR_MAX - 28);
    const length = 28 + quote;
    if (out.length < length) return failure('output-too-small');
    out[0] = 0x45;
    out[1] = 0xc0; // precedence "internetwork control" for ICMP errors (RFC 1812 §4.3.2.5)
    put16(out, 2, length);
    put16(out, 4, 0);
    put16(out, 6, 0);
    out[8] = ERROR_TTL;
    out[9] = 1;
    put16(out, 10, 0);
    out.set(from, 12);
    for (let i = 0; i < 4; i++) out[16 + i] = orig[s + 12 + i]!;
    put16(out, 10, internetChecksum(out, 0, 20));
    out[20] = e.type;
    out[21] = e.code;
    put16(out, 22, 0);
    put16(out, 24, Math.floor(e.word / 0x10000));
    put16(out, 26, e.word & 0xffff);
    out.set(orig.subarray(s, s + quote), 28);
    put16(out, 22, internetChecksum(out, 20, length));
    return { ok: true, length };
  }
  if (!unicast6(orig, s + 8)) return failure('bad-address');
  const quote = Math.min(info.end - s, ICMP6_ERROR_MAX - 48);
  const length = 48 + quote;
  if (out.length < length) return failure('output-too-small');
  out[0] = 0x60;
  out[1] = 0;
  out[2] = 0;
  out[3] = 0;
  put16(out, 4, length - 40);
  out[6] = 58;
  out[7] = ERROR_TTL;
  out.set(from, 8);
  for (let i = 0; i < 16; i++) out[24 + i] = orig[s + 8 + i]!;
  out[40] = e.type;
  out[41] = e.code;
  put16(out, 42, 0);
  put16(out, 44, Math.floor(e.word / 0x10000));
  put16(out, 46, e.word & 0xffff);
  out.set(orig.subarray(s, s + quote), 48);
  put16(out, 42, internetChecksum(out, 40, length, pseudoHeaderSum(out, 0, 6, 58, length - 40)));
  return { ok: true, length };
}

/** A single-host IPv4 address: not 0/8, 127/8, multicast 224/4, reserved 240/4, broadcast. */
function unicast4(b: Uint8Array, off: number): boolean {
  const a = b[off]!;
  return a !== 0 && a !== 127 && a < 224;
}

/** A single-host IPv6 address: not unspecified, loopback or multicast (ff00::/8). */
function unicast6(b: Uint8Array, off: number): boolean {
  if (b[off] === 0xff) return false;
  let zero = true;
  for (let i = 0; i < 15 && zero; i++) zero = b[off + i] === 0;
  return !(zero && (b[off + 15] === 0 || b[off + 15] === 1));
}
