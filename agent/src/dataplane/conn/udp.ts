// The real UDP `Bind`: one dual-stack dgram socket ("[::]:port" takes IPv4 as ::ffff:a.b.c.d), IPv4-only as fallback.
import dgram from 'node:dgram';
import type { Bind, Endpoint } from '../../types/net.js';
import { ipFamily } from '../../protocol/ip.js';

const MAPPED = '::ffff:';

export interface UdpBindOptions {
  /** "[::]:port", "0.0.0.0:port", "[addr]:port"… */
  readonly listen: string;
  readonly recvBufferSize?: number;
  readonly sendBufferSize?: number;
}

export class UdpBind implements Bind {
  private handler: (data: Buffer, from: Endpoint) => void = () => {};
  private closed = false;
  /** Datagrams the kernel refused to send (no route, unreachable): counted, never thrown. */
  sendErrors = 0;

  private constructor(
    private readonly sock: dgram.Socket,
    private readonly dual: boolean,
    readonly port: number,
  ) {
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

  static async open(opts: UdpBindOptions): Promise<UdpBind> {
    const m = /^\[([^\]]*)\]:(\d+)$/.exec(opts.listen) ?? /^([^:]*):(\d+)$/.exec(opts.listen);
    if (!m) throw new RangeError(`listen address must be addr:port or [v6]:port, got ${opts.listen}`);
    const host = m[1]!;
    const port = Number(m[2]);
    const family = ipFamily(host);
    const tryOpen = (type: 'udp4' | 'udp6', address: string) =>
      new Promise<dgram.Socket>((resolve, reject) => {
        const s = dgram.createSocket({
          type,
          ipv6Only: false,
          reuseAddr: false,
          recvBufferSize: opts.recvBufferSize ?? 4 << 20,
          sendBufferSize: opts.sendBufferSize ?? 4 << 20,
        });
        s.once('error', reject);
        s.bind(port, address, () => {
          s.removeListener('error', reject);
          resolve(s);
        });
      });
    let sock: dgram.Socket;
    let dual = false;
    if (family === 4) sock = await tryOpen('udp4', host);
    else if (host === '::' || host === '') {
      try {
        sock = await tryOpen('udp6', '::');
        dual = true;
      } catch {
        sock = await tryOpen('udp4', '0.0.0.0'); // host without IPv6
      }
    } else sock = await tryOpen('udp6', host);
    return new UdpBind(sock, dual, sock.address().port);
  }

  send(data: Uint8Array, to: Endpoint): void {
    if (this.closed) return;
    const addr = this.dual && to.family === 4 ? MAPPED + to.address : to.address;
    this.sock.send(data, to.port, addr, (err) => {
      if (err) this.sendErrors++;
    });
  }

  onMessage(handler: (data: Buffer, from: Endpoint) => void): void {
    this.handler = handler;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await new Promise<void>((r) => this.sock.close(() => r()));
  }
}

