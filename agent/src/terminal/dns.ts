// A small DNS responder (RFC 1035) for `NAME.ntm`: the phone's apps reach a household's lamp by name. It answers A and
// AAAA from the DC's name table (the peer's virtual addresses) and starts the tunnel while the app is still resolving;
// other names go to the upstream resolver unchanged.
import dgram from 'node:dgram';
import { ip4ToBytes, ip6ToBytes } from '../protocol/ip.js';
import type { Endpoint } from '../types/net.js';
import { Counters } from '../util/log.js';

export interface DnsQuestion {
  readonly id: number;
  readonly name: string;
  readonly type: number;
  readonly klass: number;
  /** Offset just past the question, for building the answer from the query. */
  readonly end: number;
}

const A = 1;
const AAAA = 28;

/** Parses a standard query with one question; undefined for anything else (no compression in questions). */
export function parseQuery(msg: Buffer): DnsQuestion | undefined {
  if (msg.length < 17) return undefined;
  const flags = msg.readUInt16BE(2);
  if (flags & 0x8000 || ((flags >> 11) & 0xf) !== 0 || msg.readUInt16BE(4) !== 1) return undefined;
  const labels: string[] = [];
  let off = 12;
  for (;;) {
    const len = msg[off];
    if (len === undefined || len > 63) return undefined;
    off++;
    if (len === 0) break;
    if (off + len > msg.length) return undefined;
    labels.push(msg.toString('latin1', off, off + len));
    off += len;
    if (off > 12 + 255) return undefined;
  }
  if (off + 4 > msg.length) return undefined;
  return { id: msg.readUInt16BE(0), name: labels.join('.').toLowerCase(), type: msg.readUInt16BE(off), klass: msg.readUInt16BE(off + 2), end: off + 4 };
}

/** An answer to `q` (rcode 0 NOERROR, 3 NXDOMAIN, 5 REFUSED) with the given addresses of the asked type. */
export function buildAnswer(query: Buffer, q: DnsQuestion, rcode: number, addrs: readonly string[], ttl = 30): Buffer {
  const head = Buffer.from(query.subarray(0, q.end));
  head.writeUInt16BE(0x8000 | 0x0400 | (query.readUInt16BE(2) & 0x0100) | 0x0080 | rcode, 2); // QR AA RD RA
  head.writeUInt16BE(1, 4);
  head.writeUInt16BE(addrs.length, 6);
  head.writeUInt16BE(0, 8);
  head.writeUInt16BE(0, 10);
  const rrs = addrs.map((a) => {
    const data = q.type === A ? ip4ToBytes(a) : ip6ToBytes(a);
    const rr = Buffer.alloc(12 + data.length);
    rr.writeUInt16BE(0xc00c, 0); // name: pointer to the question
    rr.writeUInt16BE(q.type, 2);
    rr.writeUInt16BE(1, 4);
    rr.writeUInt32BE(ttl, 6);
    rr.writeUInt16BE(data.length, 10);
    rr.set(data, 12);
    return rr;
  });
  return Buffer.concat([head, ...rrs]);
}

export interface DnsOptions {
  readonly listen: Endpoint;
  /** Resolves `name` (without ".ntm") to virtual addresses; undefined: no such name. */
  readonly resolve: (name: string) => Promise<{ v4: string; v6: string } | undefined>;
  readonly upstream?: Endpoint;
}

export class NtmDns {
  readonly counts = new Counters();
  private constructor(
    private readonly sock: dgram.Socket,
    private readonly opts: DnsOptions,
  ) {
    sock.on('message', (m, r) => {
      this.onQuery(m, { family: r.family === 'IPv6' ? 6 : 4, address: r.address, port: r.port }).catch(() => this.counts.inc('errors'));
    });
    sock.on('error', () => this.counts.inc('socket-errors'));
  }

  static async start(opts: DnsOptions): Promise<NtmDns> {
    const sock = dgram.createSocket(opts.listen.family === 6 ? 'udp6' : 'udp4');
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(opts.listen.port, opts.listen.address, () => resolve());
    });
    return new NtmDns(sock, opts);
  }

  private reply(b: Buffer, to: Endpoint): void {
    this.sock.send(b, to.port, to.address);
  }

  private async onQuery(msg: Buffer, from: Endpoint): Promise<void> {
    const q = parseQuery(msg);
    if (!q) return this.counts.inc('malformed');
    if (q.name === 'ntm' || q.name.endsWith('.ntm')) {
      this.counts.inc('ntm');
      const r = await this.opts.resolve(q.name.slice(0, -'.ntm'.length));
      if (!r) return this.reply(buildAnswer(msg, q, 3, []), from);
      const addrs = q.type === A ? [r.v4] : q.type === AAAA ? [r.v6] : [];
      return this.reply(buildAnswer(msg, q, 0, addrs), from);
    }
    const up = this.opts.upstream;
    if (!up) return this.reply(buildAnswer(msg, q, 5, []), from);
    this.counts.inc('forwarded');
    const s = dgram.createSocket(up.family === 6 ? 'udp6' : 'udp4');
    const timer = setTimeout(() => s.close(), 3000);
    s.on('message', (answer) => {
      clearTimeout(timer);
      this.reply(answer, from);
      s.close();
    });
    s.on('error', () => undefined);
    s.send(msg, up.port, up.address);
  }

  close(): void {
    this.sock.close();
  }
}
