// The real UDP `Bind`: one port for both families. "[::]:port" opens an IPv6-only socket and an IPv4 socket on the same
// port (IPv4-only when the host has no IPv6), so each family's packets carry their own TTL / hop limit settings:
// Node's setTTL on a dual-stack socket does not reach IPv4-mapped traffic, and hole punching needs a short TTL.
import dgram from 'node:dgram';
import type { Bind, Endpoint } from '../../types/net.js';
import { ipFamily } from '../../protocol/ip.js';
import { NativeUdpBind } from './native-udp.js';
import { ConfigError } from '../../types/errors.js';

const MAPPED = '::ffff:';
/** What the kernel uses when nobody asks (net.ipv4.ip_default_ttl, net.ipv6.conf.*.hop_limit): restored after a short-TTL send. */
const DEFAULT_TTL = 64;

export interface UdpBindOptions {
  /** "[::]:port", "0.0.0.0:port", "[addr]:port"… */
  readonly listen: string;
  readonly recvBufferSize?: number;
  readonly sendBufferSize?: number;
  /**
   * The data path reads this socket (a DataEngine's bind): the native socket opens received DATA on a thread of its
   * own ahead of the handler (agent/native/rxopen.c). Off for signalling-only sockets (DC, RS).
   */
  readonly openData?: boolean;
  /**
   * SO_REUSEPORT: several processes bind the same port and the kernel spreads datagrams among them by 4-tuple hash
   * (the DC's workers, issue 15). Only the native socket can (node:dgram has no reusePort before Node 23): without
   * the addon, open() refuses.
   */
  readonly reusePort?: boolean;
}

/**
 * Endpoints are always IP literals: answering the lookup at once makes `send` reach the kernel synchronously (no
 * DNS round through the event loop), so a TTL set just before a send applies to that send and no other.
 */
function literalLookup(host: string, _opts: unknown, cb: (err: Error | null, address: string, family: number) => void): void {
  cb(null, host, host.includes(':') ? 6 : 4);
}

export class UdpBind implements Bind {
  private handler: (data: Buffer, from: Endpoint) => void = () => {};
  private closed = false;
  /** Datagrams the kernel refused to send (no route, unreachable): counted, never thrown. */
  sendErrors = 0;

  private constructor(
    /** IPv4 traffic (absent on a host or listen address without IPv4). */
    private readonly sock4: dgram.Socket | undefined,
    /** IPv6 traffic; when it is the only socket and dual-stack, IPv4 goes through it as ::ffff:a.b.c.d. */
    private readonly sock6: dgram.Socket | undefined,
    readonly port: number,
  ) {
    for (const sock of [sock4, sock6]) {
      if (!sock) continue;
      sock.on('message', (msg, rinfo) => {
        const a = rinfo.address;
        const v4 = a.startsWith(MAPPED) && a.indexOf('.') > 0;
        this.handler(msg, {
          family: v4 || rinfo.family === 'IPv4' ? 4 : 6,
          address: v4 ? a.slice(MAPPED.length) : a,
          port: rinfo.port,
        });
      });
      // ICMP errors for earlier datagrams surface here on Linux; they must never take the process down.
      sock.on('error', () => {
        this.sendErrors++;
      });
    }
  }

  /** The fastest Bind available: the native one when the addon is built (unless `dgram` is asked for), else node:dgram. */
  static async open(opts: UdpBindOptions & { readonly engine?: 'auto' | 'dgram' }): Promise<Bind> {
    if (opts.engine !== 'dgram' && process.env.NTM_DGRAM !== '1') {
      const n = NativeUdpBind.open(opts.listen, opts);
      if (n) return n;
    }
    if (opts.reusePort) throw new ConfigError('dc.workers', 'SO_REUSEPORT needs the native UDP socket (agent/native: npm run build:native; not NTM_DGRAM=1)');
    return UdpBind.openDgram(opts);
  }

  /** A node:dgram socket (the portable fallback). */
  static async openDgram(opts: UdpBindOptions): Promise<UdpBind> {
    const m = /^\[([^\]]*)\]:(\d+)$/.exec(opts.listen) ?? /^([^:]*):(\d+)$/.exec(opts.listen);
    if (!m) throw new RangeError(`listen address must be addr:port or [v6]:port, got ${opts.listen}`);
    const host = m[1]!;
    const port = Number(m[2]);
    const family = ipFamily(host);
    const tryOpen = (type: 'udp4' | 'udp6', address: string, p: number, ipv6Only: boolean) =>
      new Promise<dgram.Socket>((resolve, reject) => {
        const s = dgram.createSocket({
          type,
          ipv6Only,
          reuseAddr: false,
          lookup: literalLookup,
          recvBufferSize: opts.recvBufferSize ?? 4 << 20,
          sendBufferSize: opts.sendBufferSize ?? 4 << 20,
        });
        s.once('error', (e) => {
          s.close();
          reject(e);
        });
        s.bind(p, address, () => {
          s.removeAllListeners('error');
          resolve(s);
        });
      });
    if (family === 4) {
      const s = await tryOpen('udp4', host, port, false);
      return new UdpBind(s, undefined, s.address().port);
    }
    if (host !== '::' && host !== '') {
      const s = await tryOpen('udp6', host, port, false);
      return new UdpBind(undefined, s, s.address().port);
    }
    // Both families on one port. With port 0 the kernel picks the IPv6 port; the IPv4 one may then be taken: retry.
    for (let attempt = 0; ; attempt++) {
      let s6: dgram.Socket;
      try {
        s6 = await tryOpen('udp6', '::', port, true);
      } catch {
        // A host without IPv6.
        const s = await tryOpen('udp4', '0.0.0.0', port, false);
        return new UdpBind(s, undefined, s.address().port);
      }
      const p = s6.address().port;
      try {
        const s4 = await tryOpen('udp4', '0.0.0.0', p, false);
        return new UdpBind(s4, s6, p);
      } catch (e) {
        await new Promise<void>((r) => s6.close(() => r()));
        if ((e as NodeJS.ErrnoException).code === 'EAFNOSUPPORT') {
          // IPv6 only: one dual-stack socket is all there is.
          const s = await tryOpen('udp6', '::', port, false);
          return new UdpBind(undefined, s, s.address().port);
        }
        if (port !== 0 || attempt >= 20) throw e;
      }
    }
  }

  private socketFor(to: Endpoint): { sock: dgram.Socket; addr: string } | undefined {
    if (to.family === 4) {
      if (this.sock4) return { sock: this.sock4, addr: to.address };
      return this.sock6 ? { sock: this.sock6, addr: MAPPED + to.address } : undefined;
    }
    return this.sock6 ? { sock: this.sock6, addr: to.address } : undefined;
  }

  send(data: Uint8Array, to: Endpoint): void {
    if (this.closed) return;
    const s = this.socketFor(to);
    if (!s) {
      this.sendErrors++;
      return;
    }
    s.sock.send(data, to.port, s.addr, (err) => {
      if (err) this.sendErrors++;
    });
  }

  /**
   * Sends one datagram with a TTL (hop limit) of `ttl`, the socket's other datagrams keep the default. Hole punching
   * uses it to open its own NAT without the packet reaching the peer's (docs/protocol.md §3.4). Returns false where
   * the TTL cannot be set for that family (IPv4 through a dual-stack IPv6 socket): the caller sends normally.
   */
  sendWithTtl(data: Uint8Array, to: Endpoint, ttl: number): boolean {
    if (this.closed) return false;
    const s = this.socketFor(to);
    if (!s || (to.family === 4 && s.sock === this.sock6)) return false;
    try {
      s.sock.setTTL(ttl);
      // Synchronous down to sendmsg() (literalLookup); if the kernel queue is full the datagram waits and goes with
      // the default TTL, which only makes it an ordinary punch.
      s.sock.send(data, to.port, s.addr, (err) => {
        if (err) this.sendErrors++;
      });
    } finally {
      s.sock.setTTL(DEFAULT_TTL);
    }
    return true;
  }

  onMessage(handler: (data: Buffer, from: Endpoint) => void): void {
    this.handler = handler;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([this.sock4, this.sock6].map((s) => (s ? new Promise<void>((r) => s.close(() => r())) : undefined)));
  }
}
