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
//
// TCP goes faster through a TUN device opened with IFF_VNET_HDR (agent/native/tun.c, config `receiveTun`): the
// decrypted segments of a flow are coalesced into one packet of up to 64 KB, as a NIC's GRO would, and the kernel
// routes, tracks and forwards that once, segmenting it only at the outgoing device. A packet written there is one
// received on that device (PREROUTING, then FORWARD to the LAN or INPUT), no longer one this host sends (OUTPUT), so
// a family goes through it only where that works as the raw socket did: the agent's LAN-bound packets need forwarding
// on for the family; an IPv4 source from the virtual range must pass the reverse-path filter (strict mode, 1, would
// drop it: the route back to the virtual range is not the device's). Everything else keeps the raw socket: other
// protocols, IPv4 fragments, IPv6 extension headers, a family the device does not carry, a host without /dev/net/tun.
import { execFile } from 'node:child_process';
import dgram from 'node:dgram';
import { readFileSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { Counters } from '../util/log.js';
import { nativeAddon, type NativeRawInjector, type NativeTunWriter } from '../native.js';
import type { InnerWriter } from '../types/tunnels.js';

export interface CarrierEnd {
  readonly family: 4 | 6;
  readonly address: string;
  readonly port: number;
}

/** Where TCP may go through a receive TUN, and why a family may not. */
export interface ReceiveTunOptions {
  /** The device's name ("%d": the kernel numbers it); '' : none, the raw socket carries everything. */
  readonly name: string;
  /** True for a terminal (packets are delivered to this host), false for the agent (forwarded to its LAN). */
  readonly local: boolean;
}

/** The receive TUN's IPv4 address (see Reinjector.open). */
const RECEIVE_TUN_V4 = '127.0.0.73/32';

/** Reads a sysctl under /proc/sys/net (this process's namespace); undefined when it is not there. */
function sysctl(path: string): string | undefined {
  try {
    return readFileSync(`/proc/sys/net/${path}`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/**
 * The families a receive TUN can carry on this host (bit 1: IPv4, bit 2: IPv6), and why the others not: forwarding
 * off for a LAN-bound family (the agent), strict reverse-path filtering for IPv4.
 */
export function receiveTunFamilies(local: boolean): { families: number; why: string[] } {
  const why: string[] = [];
  let families = 0;
  if (!local && sysctl('ipv4/ip_forward') !== '1') why.push('IPv4 forwarding is off');
  else if (sysctl('ipv4/conf/all/rp_filter') === '1') why.push('IPv4 reverse-path filtering is strict (rp_filter 1)');
  else families |= 1;
  if (sysctl('ipv6/conf/all/disable_ipv6') === '1') why.push('IPv6 is disabled');
  else if (!local && sysctl('ipv6/conf/all/forwarding') !== '1') why.push('IPv6 forwarding is off');
  else families |= 2;
  return { families, why };
}

export class Reinjector implements InnerWriter {
  readonly counters = new Counters();
  private constructor(
    private readonly s4: dgram.Socket | undefined,
    private readonly s6: dgram.Socket | undefined,
    readonly port4: number,
    readonly port6: number,
    private readonly raw?: NativeRawInjector,
    private readonly tun?: NativeTunWriter,
    /** Why TCP does not go through a receive TUN (or a family of it does not), for the log and `ntm status`. */
    readonly tunNote: string = '',
  ) {}

  private flushScheduled = false;
  private readonly flushNow = (): void => {
    this.flushScheduled = false;
    const refusedTun = this.tun ? this.tun.flush() : 0;
    if (refusedTun > 0) {
      this.counters.inc('tun-error', refusedTun);
      this.lastErrno = this.tun!.stats().lastErrno ?? 0;
    }
    const refused = this.raw!.flush();
    if (refused > 0) {
      this.counters.inc('raw-error', refused);
      this.lastErrno = this.raw!.stats().lastErrno ?? 0;
    }
  };

  /**
   * How packets go back: 'tun' (TCP coalesced through a TUN with a virtio-net header, the rest through raw sockets),
   * 'raw' (native raw sockets) or 'carrier' (loopback datagrams through a queue).
   */
  get mode(): 'tun' | 'raw' | 'carrier' {
    return this.tun ? 'tun' : this.raw ? 'raw' : 'carrier';
  }

  /** The receive TUN's name and the addon's figures (packets queued, segments coalesced, writes), if there is one. */
  tunStatus(): Record<string, unknown> | null {
    return this.tun ? { device: this.tun.name, ...this.tun.stats(), ...(this.tunNote ? { note: this.tunNote } : {}) } : this.tunNote ? { note: this.tunNote } : null;
  }

  /**
   * Raw sockets when the native addon is there (and `preferRaw`), with a receive TUN for TCP when `tun` names one and
   * the host allows it (receiveTunFamilies), else one loopback socket per family the host has (the port is the same
   * number in both where possible).
   */
  static async open(opts: { preferRaw?: boolean; tun?: ReceiveTunOptions } = {}): Promise<Reinjector> {
    const addon = opts.preferRaw === false ? null : nativeAddon();
    if (addon) {
      let raw: NativeRawInjector | undefined;
      try {
        raw = new addon.RawInjector();
      } catch {
        // No raw sockets here (no CAP_NET_RAW): the carrier works with less.
      }
      if (raw) {
        let tun: NativeTunWriter | undefined;
        let note = '';
        if (opts.tun?.name) {
          const { families, why } = receiveTunFamilies(opts.tun.local);
          note = why.join('; ');
          if (families !== 0) {
            try {
              tun = new addon.TunWriter(opts.tun.name, families);
              if (families & 1) {
                // The device's own reverse-path setting: the effective one is the larger of it and "all" (checked
                // above). In loose mode (2) the kernel still refuses every source arriving on a device without an IPv4
                // address (fib_validate_source); the device gets one that stands for nothing: a /32 of the loopback
                // range this host owns anyway, scope host, never chosen as a source.
                writeFileSync(`/proc/sys/net/ipv4/conf/${tun.name}/rp_filter`, '0');
                await promisify(execFile)('ip', ['addr', 'replace', RECEIVE_TUN_V4, 'dev', tun.name, 'scope', 'host'], { timeout: 5000 });
              }
            } catch (e) {
              tun?.close();
              tun = undefined;
              note = `no receive TUN: ${(e as Error).message}`;
            }
          }
        }
        return new Reinjector(undefined, undefined, 0, 0, raw, tun, note);
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
      const t = this.tun ? this.tun.queue(inner) : 1;
      const rc = t === 1 ? this.raw.queue(inner) : t;
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
    this.tun?.close();
    this.s4?.close();
    this.s6?.close();
  }
}
