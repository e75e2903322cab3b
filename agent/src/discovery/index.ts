// LAN discovery for the agent: the neighbour table polled every few seconds plus live mDNS browsing, merged into one
// record per appliance (merge.ts). The agent hands snapshots to the household store (HouseholdStore.applyDiscovery).
import { createSocket, type Socket } from 'node:dgram';
import { isIPv4 } from 'node:net';
import { silentLogger, type Logger } from '../util/log.js';
import { MdnsBrowser, type MdnsBrowserOptions } from './mdns.js';
import { mergeDiscovery, type ResolvedService } from './merge.js';
import { readNeighbours } from './neighbours.js';
import type { DiscoveredDevice, NeighbourEntry } from './types.js';

export type { DiscoveredDevice, DiscoveredService, NeighbourEntry } from './types.js';
export { mergeDiscovery, type ResolvedService } from './merge.js';
export { kindOf } from './kinds.js';
export { normaliseMac, parseNeighbours, readNeighbours } from './neighbours.js';
export { MdnsBrowser, avahiResolveHost, DEFAULT_SERVICE_TYPES } from './mdns.js';
export { DiscoveryCommandError, MdnsUnavailableError } from './errors.js';

export interface LanDiscoveryOptions {
  /** The LAN interface (the vCPE's bridge), e.g. "br0". */
  readonly lanInterface: string;
  /** Browse mDNS through Avahi (config agent.mdns); default true. */
  readonly mdns?: boolean;
  readonly mdnsOptions?: Omit<MdnsBrowserOptions, 'log' | 'now'>;
  /** Neighbour-table poll period (ms); default 5000. */
  readonly pollMs?: number;
  /** Read the neighbour table of this namespace (tests only; the agent runs in the vCPE's own). */
  readonly netns?: string;
  /**
   * Send one empty UDP datagram (to the discard port, 9) to an mDNS host whose IPv4 address is not yet in the
   * neighbour table, so the kernel resolves its MAC; at most once a minute per address. Default true.
   */
  readonly nudge?: boolean;
  readonly now?: () => number;
  readonly log?: Logger;
}

/** Discovery's one object: start it, read `snapshot()`, get told on change. Single-threaded (event loop). */
export class LanDiscovery {
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly browser: MdnsBrowser | undefined;
  private neighbours: NeighbourEntry[] = [];
  private current: DiscoveredDevice[] = [];
  private fingerprint = '';
  private timer: NodeJS.Timeout | undefined;
  private polling = false;
  private neighbourFailing = false;
  private udp: Socket | undefined;
  private readonly nudged = new Map<string, number>();
  private readonly listeners = new Set<(devices: DiscoveredDevice[]) => void>();

  constructor(private readonly opts: LanDiscoveryOptions) {
    this.log = (opts.log ?? silentLogger).child({ part: 'discovery' });
    this.now = opts.now ?? Date.now;
    if (opts.mdns !== false) this.browser = new MdnsBrowser({ ...opts.mdnsOptions, log: this.log, now: this.now });
  }

  /** Starts polling and browsing; resolves after the first neighbour-table read. mDNS failures are logged, not thrown. */
  async start(): Promise<void> {
    if (this.browser) {
      try {
        this.browser.start();
        this.browser.onChange(() => this.recompute());
      } catch (e) {
        this.log.warn('mDNS discovery unavailable; using the neighbour table only', { err: e });
      }
    }
    await this.poll();
    this.timer = setInterval(() => void this.poll(), this.opts.pollMs ?? 5000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.browser?.stop();
    this.udp?.close();
    this.udp = undefined;
  }

  snapshot(): DiscoveredDevice[] {
    return this.current;
  }

  /** Called with the whole new snapshot whenever a device appears, leaves, changes address, name or state. */
  onChange(listener: (devices: DiscoveredDevice[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      this.neighbours = await readNeighbours(this.opts.lanInterface, this.opts.netns ? { netns: this.opts.netns } : {});
      if (this.neighbourFailing) this.log.info('neighbour table readable again');
      this.neighbourFailing = false;
    } catch (e) {
      // Logged once per outage, not every poll.
      if (!this.neighbourFailing) this.log.warn('cannot read the neighbour table', { err: e, iface: this.opts.lanInterface });
      this.neighbourFailing = true;
    } finally {
      this.polling = false;
    }
    this.browser?.refresh();
    this.recompute();
  }

  private recompute(): void {
    const services: ResolvedService[] = this.browser?.services() ?? [];
    const devices = mergeDiscovery(this.neighbours, services, this.now());
    if (this.opts.nudge !== false) this.nudge(devices);
    // lastSeen moves on every poll; only a change of anything else is news.
    const fp = JSON.stringify(devices.map((d) => ({ ...d, lastSeen: 0 })));
    this.current = devices;
    if (fp === this.fingerprint) return;
    this.fingerprint = fp;
    for (const l of this.listeners) {
      try {
        l(devices);
      } catch (e) {
        this.log.error('discovery listener failed', { err: e });
      }
    }
  }

  private nudge(devices: readonly DiscoveredDevice[]): void {
    const now = this.now();
    for (const d of devices) {
      if (d.mac !== null || d.ipv4 === null || !isIPv4(d.ipv4)) continue;
      const last = this.nudged.get(d.ipv4) ?? 0;
      if (now - last < 60_000) continue;
      this.nudged.set(d.ipv4, now);
      if (!this.udp) {
        this.udp = createSocket('udp4');
        this.udp.on('error', (e) => this.log.debug('nudge socket error', { err: e }));
        this.udp.unref();
      }
      this.udp.send(Buffer.alloc(0), 9, d.ipv4, (err) => {
        if (err) this.log.debug('nudge failed', { ip: d.ipv4, err });
      });
    }
  }
}
