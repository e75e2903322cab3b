// The fast `Bind`: the terminal's one UDP socket in the native addon (agent/native/ntmdp.c) — datagrams read with
// recvmmsg in bursts (one JS call per burst), written with a synchronous sendto (no request object per datagram as
// with node:dgram). Same contract as UdpBind; `data` handed to the handler is borrowed from a shared arena.
import type { Bind, Endpoint } from '../../types/net.js';
import { nativeAddon, type NativeUdpSocket } from '../../native.js';
import { bytesToIp4, bytesToIp6, ipFamily } from '../../protocol/ip.js';

const UMETA = 4;

export class NativeUdpBind implements Bind {
  private handler: (data: Buffer, from: Endpoint) => void = () => {};
  private closed = false;
  private readonly arena: Buffer;
  /** Datagrams the kernel refused to send: counted, never thrown. */
  sendErrors = 0;

  private constructor(private readonly sock: NativeUdpSocket) {
    this.arena = Buffer.from(sock.arena);
    sock.start((n) => this.burst(n));
  }

  get port(): number {
    return this.sock.port;
  }

  private burst(n: number): void {
    const m = this.sock.meta;
    const a = this.sock.addrs;
    for (let i = 0; i < n; i++) {
      const o = i * UMETA;
      const family = m[o + 3] === 4 ? 4 : 6;
      const address = family === 4 ? bytesToIp4(a, i * 16 + 12) : bytesToIp6(a, i * 16);
      const off = m[o]!;
      this.handler(this.arena.subarray(off, off + m[o + 1]!), { family, address, port: m[o + 2]! });
      if (this.closed) return;
    }
  }

  /** "[::]:port", "0.0.0.0:port" or "[addr]:port"; null when the addon is not built. */
  static open(listen: string, o: { recvBufferSize?: number; sendBufferSize?: number } = {}): NativeUdpBind | null {
    const addon = nativeAddon();
    if (!addon) return null;
    const m = /^\[([^\]]*)\]:(\d+)$/.exec(listen) ?? /^([^:]*):(\d+)$/.exec(listen);
    if (!m) throw new RangeError(`listen address must be addr:port or [v6]:port, got ${listen}`);
    const host = m[1] === '' ? '::' : m[1]!;
    if (ipFamily(host) === 0) throw new RangeError(`not an IP address: ${host}`);
    try {
      return new NativeUdpBind(new addon.UdpSocket(host, Number(m[2]), o.recvBufferSize ?? 4 << 20, o.sendBufferSize ?? 4 << 20));
    } catch (e) {
      // A host without IPv6: fall back to IPv4 for the wildcard address.
      if (host === '::') return new NativeUdpBind(new addon.UdpSocket('0.0.0.0', Number(m[2]), o.recvBufferSize ?? 4 << 20, o.sendBufferSize ?? 4 << 20));
      throw e;
    }
  }

  send(data: Uint8Array, to: Endpoint): void {
    if (this.closed) return;
    if (this.sock.send(data, to.address, to.port) < 0) this.sendErrors++;
  }

  /**
   * One datagram with a TTL (IPv4) / hop limit (IPv6) of `ttl`: the short first punch of hole punching
   * (docs/protocol.md §3.4), which must open our NAT without reaching the peer's. Returns false when it was not sent.
   */
  sendWithTtl(data: Uint8Array, to: Endpoint, ttl: number): boolean {
    if (this.closed) return false;
    if (this.sock.send(data, to.address, to.port, ttl) < 0) {
      this.sendErrors++;
      return false;
    }
    return true;
  }

  onMessage(handler: (data: Buffer, from: Endpoint) => void): void {
    this.handler = handler;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.sock.close();
  }
}
