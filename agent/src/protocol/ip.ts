// IP address text <-> bytes (RFC 4291 §2.2 text forms, RFC 5952 canonical output) and CIDR prefixes.
// Used by signalling and configuration; the per-packet path works on bytes and never formats text.
import { isIPv6 } from 'node:net';

export function ipFamily(text: string): 4 | 6 | 0 {
  return parseIp4(text) >= 0 ? 4 : isIPv6(text) ? 6 : 0;
}

/**
 * Dotted-quad text → 4 bytes, read character by character (the DC writes an address into every answer, and a regular
 * expression then a split cost more than the rest of the encoding). Accepts exactly what node:net's isIPv4 accepts:
 * four decimal octets 0–255, no leading zeros, nothing else (tests/unit/ip.test.ts holds it to that).
 */
export function ip4ToBytes(text: string, out: Uint8Array = new Uint8Array(4), off = 0): Uint8Array {
  const q = parseIp4(text);
  if (q < 0) throw new RangeError(`not an IPv4 address: ${text}`);
  out[off] = q >>> 24;
  out[off + 1] = (q >>> 16) & 0xff;
  out[off + 2] = (q >>> 8) & 0xff;
  out[off + 3] = q & 0xff;
  return out;
}

/** The address as an unsigned 32-bit number, or −1 when `text` is not one (isIPv4's grammar). */
function parseIp4(text: string): number {
  const n = text.length;
  if (n < 7 || n > 15) return -1;
  let q = 0;
  let parts = 0;
  let i = 0;
  while (i < n) {
    let v = 0;
    const start = i;
    for (; i < n; i++) {
      const c = text.charCodeAt(i) - 48;
      if (c < 0 || c > 9) break;
      v = v * 10 + c;
    }
    const len = i - start;
    if (len === 0 || len > 3 || v > 255 || (len > 1 && text.charCodeAt(start) === 48)) return -1;
    q = q * 256 + v;
    parts++;
    if (i === n) break;
    if (text.charCodeAt(i) !== 46 || parts === 4) return -1;
    i++;
    if (i === n) return -1;
  }
  return parts === 4 ? q : -1;
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

/** RFC 5952: lowercase, leading zeros dropped, the longest run (>1) of zero groups as "::" (the first of equals). */
export function bytesToIp6(b: Uint8Array, off = 0): string {
  const group = (i: number): number => (b[off + 2 * i]! << 8) | b[off + 2 * i + 1]!;
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (group(i) !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && group(j) === 0) j++;
    if (j - i > bestLen && j - i > 1) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  // One string built in place (the DC formats an address for every new terminal).
  let text = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      text += '::';
      i += bestLen - 1;
      continue;
    }
    // A separator, except first and right after the "::".
    if (text.length > 0 && text.charCodeAt(text.length - 1) !== 58) text += ':';
    text += group(i).toString(16);
  }
  return text;
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
