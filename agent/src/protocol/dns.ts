// DNS messages (RFC 1035 §4) as the phone's resolver and the household agent exchange them: a standard query with one
// question, and answers carrying the record types DNS-SD needs (RFC 6763: PTR, SRV (RFC 2782), TXT, A, AAAA). Names
// are written uncompressed, except answers to the question itself, which point at it. Labels are kept as latin1 strings
// so that any octet survives (DNS-SD instance names are UTF-8, RFC 6763 §4.1.1, and may hold dots and spaces).
import { ip4ToBytes, ip6ToBytes } from './ip.js';

export const RR = { A: 1, PTR: 12, TXT: 16, AAAA: 28, SRV: 33, ANY: 255 } as const;
export const Rcode = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const;

export interface DnsQuestion {
  readonly id: number;
  /** The name in lower case, labels joined by "." (for the ordinary NAME.ntm lookups). */
  readonly name: string;
  /** The labels as sent (latin1: one character per octet), ASCII letters folded to lower case (RFC 4343). */
  readonly labels: readonly string[];
  readonly type: number;
  readonly klass: number;
  /** Offset just past the question, for building the answer from the query. */
  readonly end: number;
}

/** ASCII-only case folding (RFC 4343): octets above 0x7f are left alone, so UTF-8 instance names compare exactly. */
export function foldLabel(s: string): string {
  return s.replace(/[A-Z]+/g, (c) => c.toLowerCase());
}

/** Parses a standard query with one question; undefined for anything else (no compression in questions). */
export function parseQuery(msg: Uint8Array): DnsQuestion | undefined {
  const b = Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength);
  if (b.length < 17) return undefined;
  const flags = b.readUInt16BE(2);
  if (flags & 0x8000 || ((flags >> 11) & 0xf) !== 0 || b.readUInt16BE(4) !== 1) return undefined;
  const labels: string[] = [];
  let off = 12;
  for (;;) {
    const len = b[off];
    if (len === undefined || len > 63) return undefined;
    off++;
    if (len === 0) break;
    if (off + len > b.length) return undefined;
    labels.push(foldLabel(b.toString('latin1', off, off + len)));
    off += len;
    if (off > 12 + 255) return undefined;
  }
  if (off + 4 > b.length) return undefined;
  return { id: b.readUInt16BE(0), name: labels.join('.').toLowerCase(), labels, type: b.readUInt16BE(off), klass: b.readUInt16BE(off + 2), end: off + 4 };
}

/** One resource record to send. `name` is a label list (latin1 strings); the question's own name may be `null`. */
export type DnsRecord =
  | { readonly name: readonly string[] | null; readonly type: typeof RR.A; readonly ttl: number; readonly address: string }
  | { readonly name: readonly string[] | null; readonly type: typeof RR.AAAA; readonly ttl: number; readonly address: string }
  | { readonly name: readonly string[] | null; readonly type: typeof RR.PTR; readonly ttl: number; readonly target: readonly string[] }
  | {
      readonly name: readonly string[] | null;
      readonly type: typeof RR.SRV;
      readonly ttl: number;
      readonly priority: number;
      readonly weight: number;
      readonly port: number;
      readonly target: readonly string[];
    }
  | { readonly name: readonly string[] | null; readonly type: typeof RR.TXT; readonly ttl: number; readonly strings: readonly string[] };

/** A name as wire labels; a label longer than 63 octets or a name longer than 255 cannot be written (RFC 1035 §2.3.4). */
export function encodeName(labels: readonly string[]): Buffer | undefined {
  const parts: Buffer[] = [];
  let total = 1;
  for (const l of labels) {
    const b = Buffer.from(l, 'latin1');
    if (b.length === 0 || b.length > 63) return undefined;
    parts.push(Buffer.from([b.length]), b);
    total += b.length + 1;
  }
  if (total > 255) return undefined;
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

/** A UTF-8 string as one label's latin1 form (what encodeName writes octet for octet). */
export function utf8Label(s: string): string {
  return Buffer.from(s, 'utf8').toString('latin1');
}

function rdata(r: DnsRecord): Buffer | undefined {
  switch (r.type) {
    case RR.A:
      return Buffer.from(ip4ToBytes(r.address));
    case RR.AAAA:
      return Buffer.from(ip6ToBytes(r.address));
    case RR.PTR:
      return encodeName(r.target);
    case RR.SRV: {
      const t = encodeName(r.target);
      if (!t) return undefined;
      const head = Buffer.alloc(6);
      head.writeUInt16BE(r.priority, 0);
      head.writeUInt16BE(r.weight, 2);
      head.writeUInt16BE(r.port, 4);
      return Buffer.concat([head, t]);
    }
    case RR.TXT: {
      // RFC 6763 §6.1: an empty TXT record is one empty string, not no data.
      const strings = r.strings.length === 0 ? [''] : r.strings;
      const parts: Buffer[] = [];
      for (const s of strings) {
        const b = Buffer.from(s, 'utf8');
        if (b.length > 255) return undefined;
        parts.push(Buffer.from([b.length]), b);
      }
      return Buffer.concat(parts);
    }
  }
}

function encodeRecord(r: DnsRecord): Buffer | undefined {
  const name = r.name === null ? Buffer.from([0xc0, 0x0c]) : encodeName(r.name);
  const data = rdata(r);
  if (!name || !data || data.length > 0xffff) return undefined;
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(r.type, 0);
  fixed.writeUInt16BE(1, 2); // IN
  fixed.writeUInt32BE(r.ttl, 4);
  fixed.writeUInt16BE(data.length, 8);
  return Buffer.concat([name, fixed, data]);
}

/**
 * A response to `query` (its header and question copied; QR, AA, RA set, RD echoed): answers, then additional records.
 * Records that cannot be written are skipped; whatever would take the message past `maxBytes` is left off, with TC set
 * when an answer (not only an additional record) had to go (RFC 1035 §4.1.1, RFC 6763 §12: additionals are a hint).
 */
export function buildResponse(query: Uint8Array, q: DnsQuestion, rcode: number, answers: readonly DnsRecord[], additional: readonly DnsRecord[] = [], maxBytes = 1232): Buffer {
  const head = Buffer.from(query.subarray(0, q.end));
  const rd = head.readUInt16BE(2) & 0x0100;
  let size = head.length;
  let truncated = false;
  const take = (list: readonly DnsRecord[], isAnswer: boolean): Buffer[] => {
    const out: Buffer[] = [];
    for (const r of list) {
      const b = encodeRecord(r);
      if (!b) continue;
      if (size + b.length > maxBytes) {
        if (isAnswer) truncated = true;
        break;
      }
      size += b.length;
      out.push(b);
    }
    return out;
  };
  const an = take(answers, true);
  const ar = truncated ? [] : take(additional, false);
  head.writeUInt16BE(0x8000 | 0x0400 | (truncated ? 0x0200 : 0) | rd | 0x0080 | (rcode & 0xf), 2);
  head.writeUInt16BE(1, 4);
  head.writeUInt16BE(an.length, 6);
  head.writeUInt16BE(0, 8);
  head.writeUInt16BE(ar.length, 10);
  return Buffer.concat([head, ...an, ...ar]);
}

/** An answer of addresses of the asked type (A or AAAA) to the question's own name. */
export function buildAnswer(query: Uint8Array, q: DnsQuestion, rcode: number, addrs: readonly string[], ttl = 30): Buffer {
  const type = q.type === RR.AAAA ? RR.AAAA : RR.A;
  return buildResponse(query, q, rcode, addrs.map((address) => ({ name: null, type, ttl, address })));
}

/** What a response says, as far as a forwarder must check it: id, rcode, the question, and record counts. */
export interface DnsResponseHead {
  readonly id: number;
  readonly rcode: number;
  readonly truncated: boolean;
  readonly question: DnsQuestion;
  readonly answers: number;
  readonly additional: number;
}

/** Reads a response's header and question; undefined when it is not a response with one question. */
export function parseResponseHead(msg: Uint8Array): DnsResponseHead | undefined {
  if (msg.length < 17) return undefined;
  const b = Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength);
  const flags = b.readUInt16BE(2);
  if (!(flags & 0x8000)) return undefined;
  // The question is parsed as a query's: clear QR on a copy of the header.
  const asQuery = Buffer.from(b.subarray(0, Math.min(b.length, 12 + 256 + 4)));
  asQuery.writeUInt16BE(flags & 0x7800, 2);
  asQuery.writeUInt16BE(1, 4);
  const question = parseQuery(asQuery);
  if (!question || b.readUInt16BE(4) !== 1) return undefined;
  return { id: b.readUInt16BE(0), rcode: flags & 0xf, truncated: (flags & 0x0200) !== 0, question, answers: b.readUInt16BE(6), additional: b.readUInt16BE(10) };
}
