// Cross-family delivery of decrypted packets. An NFQUEUE verdict can replace a packet only with one of the same IP
// family: the hook (ip6tables raw PREROUTING for a tunnel datagram that came over IPv6) keeps treating the bytes as
// IPv6. So an IPv4 packet that arrived inside IPv6 (an IPv6-only phone talking to IPv4 appliances: the point of
// NTMobile) goes back into the kernel through a loopback "carrier": a UDP datagram from this process to itself over
// the inner packet's family, queued in mangle OUTPUT, whose payload becomes the packet. mangle OUTPUT re-routes a
// packet whose addresses changed (ip_route_me_harder, which also allows the foreign source), so it is delivered
// locally or forwarded to the LAN like any other.
//
// With the native addon built, a raw socket (header included) does the same without the carrier's second pass through
// a queue: the carrier is the fallback. Raw writes are batched: write() copies the packet into the addon's queue and
// the queue goes out at the end of the current JavaScript job (a microtask), so a burst of decrypted packets costs
// one sendmmsg, not a system call each (as the UDP socket's sends, conn/native-udp.ts).
import dgram from 'node:dgram';
import { Counters } from '../util/log.js';
import { nativeAddon, type NativeRawInjector } from '../native.js';
import type { InnerWriter } from '../types/tunnels.js';

export interface CarrierEnd {
  readonly family: 4 | 6;
  readonly address: string;
  readonly port: number;
}

export class Reinjector implements InnerWriter {
  readonly counters = new Counters();
  private constructor(
    private readonly s4: dgram.Socket | undefined,
    private readonly s6: dgram.Socket | undefined,
    readonly port4: number,
    readonly port6: number,
    private readonly raw?: NativeRawInjector,
  ) {}

  private flushScheduled = false;
  private readonly flushNow = (): void => {
    this.flushScheduled = false;
    const refused = this.raw!.flush();
    if (refused > 0) {
      this.counters.inc('raw-error', refused);
      this.lastErrno = this.raw!.stats().lastErrno ?? 0;
    }
  };

  /** How packets go back: 'raw' (native raw sockets) or 'carrier' (loopback datagrams through a queue). */
  get mode(): 'raw' | 'carrier' {
    return this.raw ? 'raw' : 'carrier';
  }

  /**
   * Raw sockets when the native addon is there (and `preferRaw`), else one loopback socket per family the host has
   * (the port is the same number in both where possible).
   */
  static async open(opts: { preferRaw?: boolean } = {}): Promise<Reinjector> {
    const addon = opts.preferRaw === false ? null : nativeAddon();
    if (addon) {
      try {
        return new Reinjector(undefined, undefined, 0, 0, new addon.RawInjector());
      } catch {
        // No raw sockets here (no CAP_NET_RAW): the carrier works with less.
      }
    }
    const bind = (type: 'udp4' | 'udp6', addr: string, port: number) =>
      new Promise<dgram.Socket | undefined>((resolve) => {
        const s = dgram.createSocket(type === 'udp6' ? { type, ipv6Only: true } : { type });
        s.once('error', () => {
          s.close();
          resolve(undefined);
        });
        s.bind(port, addr, () => resolve(s));
      });
    const s4 = await bind('udp4', '127.0.0.1', 0);
    const port4 = s4?.address().port ?? 0;
    const s6 = (await bind('udp6', '::1', port4)) ?? (await bind('udp6', '::1', 0));
    const port6 = s6?.address().port ?? 0;
    // Carrier datagrams are taken by NFQUEUE before they are delivered; anything that still arrives is ignored.
    for (const s of [s4, s6]) s?.on('message', () => undefined).on('error', () => undefined);
    return new Reinjector(s4, s6, port4, port6);
  }

  /** The carrier rule matches these (mangle OUTPUT, `-o lo`, UDP from and to this port). */
  ends(): CarrierEnd[] {
    const out: CarrierEnd[] = [];
    if (this.s4) out.push({ family: 4, address: '127.0.0.1', port: this.port4 });
    if (this.s6) out.push({ family: 6, address: '::1', port: this.port6 });
    return out;
  }

  /**
   * Sends `inner` (an IP packet of `family`; borrowed for the call: the raw path and the carrier both copy it) towards
   * the kernel's `family` stack. True when sent or queued for this job's sendmmsg; why not is counted here ('raw-error'
   * with the last errno kept, also for what the kernel refused at the flush, or 'no-ipv4' / 'no-ipv6').
   */
  write(inner: Buffer, family: 4 | 6): boolean {
    if (this.raw) {
      const rc = this.raw.queue(inner);
      if (rc !== 0) {
        this.lastErrno = -rc;
        this.counters.inc('raw-error');
        return false;
      }
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        queueMicrotask(this.flushNow);
      }
      return true;
    }
    const s = family === 4 ? this.s4 : this.s6;
    if (!s) {
      this.counters.inc(family === 4 ? 'no-ipv4' : 'no-ipv6');
      return false;
    }
    s.send(Buffer.from(inner), family === 4 ? this.port4 : this.port6, family === 4 ? '127.0.0.1' : '::1');
    this.counters.inc('sent');
    return true;
  }

  /** The errno of the last failed raw send (0: none), for `ntm status`. */
  lastErrno = 0;

  /** True when the queued packet (outer UDP ports given) is one of our carriers. */
  isCarrier(family: 4 | 6, srcPort: number, dstPort: number): boolean {
    const p = family === 4 ? this.port4 : this.port6;
    return p !== 0 && srcPort === p && dstPort === p;
  }

  close(): void {
    this.s4?.close();
    this.s6?.close();
  }
}
