// A small DNS responder (RFC 1035) for `NAME.ntm`: the phone's apps reach a household's lamp by name. It answers A and
// AAAA from the DC's name table (the peer's virtual addresses) and starts the tunnel while the app is still resolving;
// other names go to the upstream resolver unchanged. DNS-SD questions under .ntm (RFC 6763: which services the
// household's appliances offer) go to the household agent through the DC's sealed channel, which answers with the
// services of exactly the appliances this phone may reach (agent/src/agent/dns-sd.ts).
import dgram from 'node:dgram';
import { buildAnswer, buildResponse, parseQuery, parseResponseHead, Rcode, RR, type DnsQuestion } from '../protocol/dns.js';
import type { Endpoint } from '../types/net.js';
import { Counters } from '../util/log.js';

export { buildAnswer, parseQuery, type DnsQuestion } from '../protocol/dns.js';

/**
 * A DNS-SD question (RFC 6763): a service-type or instance name, which always has a label starting with "_"
 * ("_http._tcp.home.ntm", "Lamp._http._tcp.home.ntm", "_services._dns-sd._udp.home.ntm", "b._dns-sd._udp.ntm");
 * NAME.ntm host names never do (agent/src/agent/names.ts).
 */
export function isServiceDiscovery(q: DnsQuestion): boolean {
  return q.labels.some((l) => l.startsWith('_'));
}

export interface DnsOptions {
  readonly listen: Endpoint;
  /** Resolves `name` (without ".ntm") to virtual addresses; undefined: no such name. */
  readonly resolve: (name: string) => Promise<{ v4: string; v6: string } | undefined>;
  readonly upstream?: Endpoint;
  /**
   * Asks the household agent a DNS-SD question (the whole query message) through the DC's sealed channel; resolves to
   * the agent's answer message, or undefined when it gave none. Absent: DNS-SD questions under .ntm are refused.
   */
  readonly serviceQuery?: (query: Buffer) => Promise<Buffer | undefined>;
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
      if (isServiceDiscovery(q)) return this.onServiceQuery(msg, q, from);
      this.counts.inc('ntm');
      const r = await this.opts.resolve(q.name.slice(0, -'.ntm'.length));
      if (!r) return this.reply(buildAnswer(msg, q, 3, []), from);
      const addrs = q.type === RR.A ? [r.v4] : q.type === RR.AAAA ? [r.v6] : [];
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

  /**
   * DNS-SD under .ntm: the agent answers (it alone knows the appliances' services and this phone's grants); this
   * resolver only carries the question and checks that the answer is to it before the application sees it.
   */
  private async onServiceQuery(msg: Buffer, q: DnsQuestion, from: Endpoint): Promise<void> {
    this.counts.inc('dns-sd');
    if (!this.opts.serviceQuery) return this.reply(buildResponse(msg, q, Rcode.REFUSED, []), from);
    const answer = await this.opts.serviceQuery(Buffer.from(msg)).catch(() => undefined);
    const head = answer ? parseResponseHead(answer) : undefined;
    if (!answer || !head || head.question.type !== q.type || head.question.labels.join('.') !== q.labels.join('.')) {
      this.counts.inc('dns-sd-failed');
      return this.reply(buildResponse(msg, q, Rcode.SERVFAIL, []), from);
    }
    const out = Buffer.from(answer);
    out.writeUInt16BE(q.id, 0);
    this.reply(out, from);
  }

  close(): void {
    this.sock.close();
  }
}
