// IP address text <-> bytes (RFC 4291 §2.2 text forms, RFC 5952 canonical output) and CIDR prefixes.
// Used by signalling and configuration; the per-packet path works on bytes and never formats text.
import { isIPv4, isIPv6 } from 'node:net';

export function ipFamily(text: string): 4 | 6 | 0 {
  return isIPv4(text) ? 4 : isIPv6(text) ? 6 : 0;
}

export function ip4ToBytes(text: string, out: Uint8Array = new Uint8Array(4), off = 0): Uint8Array {
  if (!isIPv4(text)) throw new RangeError(`not an IPv4 address: ${text}`);
  const parts = text.split('.');
  for (let i = 0; i < 4; i++) out[off + i] = Number(parts[i]);
  return out;
}

export function ip6ToBytes(text: string, out: Uint8Array = new Uint8Array(16), off = 0): Uint8Array {
  const zone = text.indexOf('%');
  const t = zone >= 0 ? text.slice(0, zone) : text;
  if (!isIPv6(t)) throw new RangeError(`not an IPv6 address: ${text}`);
  let head = t;
  let tail = '';
  const dbl = t.indexOf('::');
  if (dbl >= 0) {
    head = t.slice(0, dbl);
    tail = t.slice(dbl + 2);
  }
  const groups = (s: string): number[] => {
    if (s === '') return [];
    const out16: number[] = [];
    for (const g of s.split(':')) {
      if (g.includes('.')) {
        const v4 = ip4ToBytes(g);
        out16.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else out16.push(parseInt(g, 16));
    }
    return out16;
  };
  const h = groups(head);
  const tl = groups(tail);
  const all = dbl >= 0 ? [...h, ...new Array<number>(8 - h.length - tl.length).fill(0), ...tl] : h;
  for (let i = 0; i < 8; i++) {
    out[off + 2 * i] = all[i]! >> 8;
    out[off + 2 * i + 1] = all[i]! & 0xff;
  }
  return out;
}

export function ipToBytes(text: string): Uint8Array {
  const f = ipFamily(text);
  if (f === 4) return ip4ToBytes(text);
  if (f === 6) return ip6ToBytes(text);
  throw new RangeError(`not an IP address: ${text}`);
}

export function bytesToIp4(b: Uint8Array, off = 0): string {
  return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
}

/** RFC 5952: lowercase, leading zeros dropped, the longest run (>1) of zero groups as "::". */
export function bytesToIp6(b: Uint8Array, off = 0): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((b[off + 2 * i]! << 8) | b[off + 2 * i + 1]!);
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen && j - i > 1) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (xs: number[]): string => xs.map((x) => x.toString(16)).join(':');
  if (bestStart < 0) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

export function bytesToIp(b: Uint8Array): string {
  if (b.length === 4) return bytesToIp4(b);
  if (b.length === 16) return bytesToIp6(b);
  throw new RangeError(`address of ${b.length} bytes`);
}

/** Canonical text of an address; IPv4-mapped IPv6 (::ffff:a.b.c.d, as dual-stack sockets report) becomes IPv4. */
export function canonicalIp(text: string): string {
  const f = ipFamily(text);
  if (f === 4) return text;
  if (f !== 6) throw new RangeError(`not an IP address: ${text}`);
  const b = ip6ToBytes(text);
  if (b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) return bytesToIp4(b, 12);
  return bytesToIp6(b);
}

/** An IPv4 or IPv6 network prefix. */
export interface Cidr {
  readonly family: 4 | 6;
  readonly network: Uint8Array;
  readonly length: number;
  readonly text: string;
}

export function parseCidr(text: string): Cidr {
  const slash = text.indexOf('/');
  if (slash < 0) throw new RangeError(`not a prefix (addr/len): ${text}`);
  const addr = text.slice(0, slash);
  const len = Number(text.slice(slash + 1));
  const family = ipFamily(addr);
  if (family === 0) throw new RangeError(`not an IP prefix: ${text}`);
  const bits = family === 4 ? 32 : 128;
  if (!Number.isInteger(len) || len < 0 || len > bits) throw new RangeError(`bad prefix length in ${text}`);
  const network = ipToBytes(addr);
  for (let i = 0; i < network.length; i++) {
    const keep = Math.max(0, Math.min(8, len - i * 8));
    network[i]! &= (0xff << (8 - keep)) & 0xff;
  }
  return { family, network, length: len, text: `${bytesToIp(network)}/${len}` };
}

/** True when `addr` (bytes of the prefix's family) lies inside the prefix. */
export function cidrContains(c: Cidr, addr: Uint8Array, off = 0): boolean {
  const full = c.length >> 3;
  for (let i = 0; i < full; i++) if (addr[off + i] !== c.network[i]) return false;
  const rem = c.length & 7;
  if (rem === 0) return true;
  const mask = (0xff << (8 - rem)) & 0xff;
  return ((addr[off + full]! & mask) === c.network[full]);
}

export function cidrContainsText(c: Cidr, text: string): boolean {
  const f = ipFamily(text);
  return f === c.family && cidrContains(c, ipToBytes(text));
}
