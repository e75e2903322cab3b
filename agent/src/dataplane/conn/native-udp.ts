// The fast `Bind`: the terminal's one UDP socket in the native addon (agent/native/udp.c) — datagrams read with
// recvmmsg in bursts (one JS call per burst; runs that arrive GRO'd are split there), written without a request object
// per datagram as with node:dgram. Same contract as UdpBind; `data` handed to the handler is borrowed from a shared
// arena.
//
// Sends are batched: send() copies the datagram into the addon's queue, and the queue goes out at the end of the
// current JavaScript job (a microtask), so everything one burst of packets produced leaves in one sendmmsg, runs of
// equal-sized datagrams to one peer as single UDP GSO sends. Order is kept (sendWithTtl sends the queue first).
//
// DATA is sealed off the JavaScript thread too (issue 15): sendSealing() queues a datagram still in plaintext with the
// keypair's header, key and counter (crypto/session.ts sealVia), and the addon's sealing thread seals each flushed
// queue in place and sends it while this thread fills the next one (agent/native/udp.c).
//
// Received DATA is opened off the JavaScript thread (issue 15): the addon's opening thread (agent/native/rxopen.c)
// opens each burst's DATA datagrams under the receive keys the keypairs lent it (crypto/rx-keys.ts) while this thread
// handles the burst before; the handler gets the verdict and plaintext as its `opened` argument.
import { constants } from 'node:os';
import type { Bind, Endpoint, OpenedDatagram } from '../../types/net.js';
import { nativeAddon, type NativeUdpSocket } from '../../native.js';
import { bytesToIp4, bytesToIp6, ipFamily } from '../../protocol/ip.js';
import { receiveKeysLent } from '../../crypto/rx-keys.js';

const UMETA = 6;
const SEALED_HEADER = 16;
const TAG = 16;

/** The handler's `opened` argument: one object, rewritten per datagram (borrowed by the handler for its call). */
class Opened implements OpenedDatagram {
  gen = 0;
  ok = false;
  plain: Buffer = Buffer.alloc(0);
}

/** The 16-byte address slots at `x` and `y` of the addon's address array hold the same address. */
function sameAddress(a: Uint8Array, x: number, y: number): boolean {
  for (let k = 15; k >= 0; k--) if (a[x + k] !== a[y + k]) return false;
  return true;
}

export class NativeUdpBind implements Bind {
  private handler: (data: Buffer, from: Endpoint, opened?: OpenedDatagram) => void = () => {};
  private closed = false;
  private readonly arena: Buffer;
  private readonly plain: Buffer;
  private readonly opened = new Opened();
  /** Entries per half of meta (and addrs). */
  private readonly halfEntries: number;
  /** Whether the opening thread runs. */
  readonly opening: boolean;
  /** Datagrams the kernel refused to send: counted, never thrown (those refused at a flush are in stats()). */
  sendErrors = 0;
  /** send() copies the datagram before it returns: the caller may reuse its buffer at once (TerminalHost does). */
  readonly copiesOnSend = true;
  /** Whether sendSealing() works: a stale build of the addon has no sealing queue. */
  readonly seals: boolean;
  /** Whether sendSealingGso() works (a build of the addon before it has not). */
  readonly sealsGso: boolean;
  private flushScheduled = false;
  private readonly flushNow = (): void => {
    this.flushScheduled = false;
    if (!this.closed) this.sock.flush();
  };

  private constructor(
    private readonly sock: NativeUdpSocket,
    openData: boolean,
  ) {
    this.arena = Buffer.from(sock.arena);
    this.plain = Buffer.from(sock.plain);
    this.halfEntries = sock.meta.length / UMETA / 2;
    this.opening = sock.start((n, half) => this.burst(n, half), openData && receiveKeysLent());
    this.seals = typeof sock.queueSeal === 'function';
    this.sealsGso = typeof sock.queueSealGso === 'function';
  }

  get port(): number {
    return this.sock.port;
  }

  private burst(n: number, half: number): void {
    const m = this.sock.meta;
    const a = this.sock.addrs;
    const opened = this.opened;
    // Datagrams of a burst mostly come from one peer (a GRO'd run always does): the sender's Endpoint (immutable) is
    // reused while address, port and family stay the same, instead of a new string and object per datagram.
    let from: Endpoint | undefined;
    let fromAt = -1;
    for (let i = half * this.halfEntries, end = i + n; i < end; i++) {
      const o = i * UMETA;
      const family = m[o + 3] === 4 ? 4 : 6;
      const port = m[o + 2]!;
      if (from === undefined || from.port !== port || from.family !== family || !sameAddress(a, fromAt * 16, i * 16)) {
        from = { family, address: family === 4 ? bytesToIp4(a, i * 16 + 12) : bytesToIp6(a, i * 16), port };
        fromAt = i;
      }
      const off = m[o]!;
      const len = m[o + 1]!;
      const verdict = m[o + 4]!;
      if (verdict === 0) this.handler(this.arena.subarray(off, off + len), from);
      else {
        opened.ok = verdict === 1;
        opened.gen = m[o + 5]! >>> 0;
        opened.plain = this.plain.subarray(off + SEALED_HEADER, off + len - TAG);
        this.handler(this.arena.subarray(off, off + len), from, opened);
      }
      if (this.closed) return;
    }
  }

  /** "[::]:port", "0.0.0.0:port" or "[addr]:port"; null when the addon is not built. */
  static open(listen: string, o: { recvBufferSize?: number; sendBufferSize?: number; openData?: boolean; reusePort?: boolean } = {}): NativeUdpBind | null {
    const addon = nativeAddon();
    // A stale build of the addon (before the two-half arena, rxopen.c: its meta has another layout): node:dgram.
    if (!addon || typeof addon.rxKeyAdd !== 'function') return null;
    const m = /^\[([^\]]*)\]:(\d+)$/.exec(listen) ?? /^([^:]*):(\d+)$/.exec(listen);
    if (!m) throw new RangeError(`listen address must be addr:port or [v6]:port, got ${listen}`);
    const host = m[1] === '' ? '::' : m[1]!;
    if (ipFamily(host) === 0) throw new RangeError(`not an IP address: ${host}`);
    const reuse = o.reusePort ? 1 : 0;
    try {
      return new NativeUdpBind(new addon.UdpSocket(host, Number(m[2]), o.recvBufferSize ?? 4 << 20, o.sendBufferSize ?? 4 << 20, reuse), o.openData ?? false);
    } catch (e) {
      // A host without IPv6: fall back to IPv4 for the wildcard address.
      if (host === '::') return new NativeUdpBind(new addon.UdpSocket('0.0.0.0', Number(m[2]), o.recvBufferSize ?? 4 << 20, o.sendBufferSize ?? 4 << 20, reuse), o.openData ?? false);
      throw e;
    }
  }

  send(data: Uint8Array, to: Endpoint): void {
    if (this.closed) return;
    if (this.sock.queue(data, to.address, to.port) < 0) {
      this.sendErrors++;
      return;
    }
    this.scheduleFlush();
  }

  /**
   * A DATA datagram to seal and send (issue 15): `prefix` (the relay header, if any, and the sealed header the keypair
   * wrote) then `plaintext` sealed under `key` with `counter`'s nonce, on the addon's sealing thread. All borrowed:
   * copied before this returns. Only where `seals` says the addon can.
   */
  sendSealing(prefix: Uint8Array, key: Uint8Array, counter: number, plaintext: Uint8Array, to: Endpoint): void {
    if (this.closed) return;
    if (this.sock.queueSeal!(prefix, key, counter, plaintext, to.address, to.port) < 0) {
      this.sendErrors++;
      return;
    }
    this.scheduleFlush();
  }

  /**
   * A TCP GSO packet (nfqueue "whole") cut into segments of at most the peer's MSS and `mtu`, each sealed as
   * sendSealing() seals, under counter, counter + 1, … (issue 15). Returns the segment count (≤ maxSegs), or -errno
   * with nothing sent (-EINVAL: not TCP, the caller cuts it itself).
   */
  sendSealingGso(prefix: Uint8Array, key: Uint8Array, counter: number, packet: Uint8Array, mtu: number, maxSegs: number, to: Endpoint): number {
    if (this.closed) return -constants.errno.EBADF;
    const n = this.sock.queueSealGso!(prefix, key, counter, packet, mtu, maxSegs, to.address, to.port);
    if (n < 0) return n;
    this.scheduleFlush();
    return n;
  }

  private scheduleFlush(): void {
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(this.flushNow);
    }
  }

  /** The addon's counters: received, bursts, sendErrors, receiveErrors, gsoSends, groMessages, queued, flushes. */
  stats(): Record<string, number> {
    return this.sock.stats();
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

  onMessage(handler: (data: Buffer, from: Endpoint, opened?: OpenedDatagram) => void): void {
    this.handler = handler;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.sock.close();
  }
}
