// The fast `Bind`: the terminal's one UDP socket in the native addon (agent/native/ntmdp.c) — datagrams read with
// recvmmsg in bursts (one JS call per burst), written with a synchronous sendto (no request object per datagram as
// with node:dgram). Same contract as UdpBind; `data` handed to the handler is borrowed from a shared arena.
import type { Bind, Endpoint } from '../../types/net.js';
import { nativeAddon, type NativeUdpSocket } from '../../native.js';
import { bytesToIp4, bytesToIp6, ip4ToBytes, ipFamily } from '../../protocol/ip.js';

const UMETA = 4;

export class NativeUdpBind implements Bind {
  private handler: (data: Buffer, from: Endpoint) => void = () => {};
  private closed = false;
  private readonly arena: Buffer;
  /** Raw socket for sendWithTtl, opened on first use (null: not available). */
  private injector: { inject(packet: Uint8Array): number } | null | undefined;
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
   * One IPv4 datagram from this socket's port with a TTL of `ttl`: the short first punch of hole punching
   * (docs/protocol.md §3.4), which must open our NAT without reaching the peer's. The native socket has no
   * per-datagram TTL, so this one goes out through the addon's raw socket: IP header included with source address 0
   * (the kernel fills in the address it routes from, as for the socket) and UDP checksum 0 (none: allowed for IPv4).
   * False for IPv6 or without a raw socket (no CAP_NET_RAW): the caller then punches the ordinary way.
   */
  sendWithTtl(data: Uint8Array, to: Endpoint, ttl: number): boolean {
    if (this.closed || to.family !== 4) return false;
    if (this.injector === undefined) {
      try {
        const addon = nativeAddon();
        this.injector = addon ? new addon.RawInjector() : null;
      } catch {
        this.injector = null;
      }
    }
    if (!this.injector) return false;
    const p = Buffer.alloc(28 + data.length);
    p[0] = 0x45;
    p.writeUInt16BE(p.length, 2);
    p.writeUInt16BE(0x4000, 6); // DF
    p[8] = ttl;
    p[9] = 17;
    p.set(ip4ToBytes(to.address), 16);
    p.writeUInt16BE(this.port, 20);
    p.writeUInt16BE(to.port, 22);
    p.writeUInt16BE(8 + data.length, 24);
    p.set(data, 28);
    if (this.injector.inject(p) < 0) {
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
