// mDNS / DNS-SD browsing (RFC 6762/6763) through the system's Avahi daemon with the `mdns` package (Avahi's Bonjour
// compatibility library over D-Bus), so the agent shares one mDNS responder with the vCPE instead of opening port 5353.
//
// Two Avahi-specific constraints, both checked on Debian 12 / Node 20:
//  - the package's default resolver sequence ends in getaddrinfo, which aborts Node 20 (a libuv assertion), and
//    Avahi's compatibility layer lacks DNSServiceGetAddrInfo; so services are resolved with DNSServiceResolve only
//    (host and port) and the host's addresses are looked up separately (`avahi-resolve`, also over Avahi);
//  - interface indexes are those of the daemon's network namespace, so index→name lookups are switched off.
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import type Mdns from 'mdns';
import { silentLogger, type Logger } from '../util/log.js';
import { DiscoveryCommandError, MdnsUnavailableError } from './errors.js';
import type { ResolvedService } from './merge.js';

type MdnsModule = typeof Mdns;

/** Types browsed even when the daemon's "all types" enumeration misses them (appliances often skip it). */
export const DEFAULT_SERVICE_TYPES: readonly string[] = [
  '_http._tcp',
  '_hap._tcp',
  '_googlecast._tcp',
  '_ipp._tcp',
  '_rtsp._tcp',
  '_hue._tcp',
  '_printer._tcp',
  '_airplay._tcp',
];

let loaded: MdnsModule | Error | undefined;

/** Loads the native module once; the Avahi compatibility warnings it prints on every call are switched off. */
export function loadMdns(): MdnsModule {
  if (loaded === undefined) {
    process.env['AVAHI_COMPAT_NOWARN'] = '1';
    try {
      loaded = createRequire(import.meta.url)('mdns') as MdnsModule;
    } catch (e) {
      loaded = e as Error;
    }
  }
  if (loaded instanceof Error) throw new MdnsUnavailableError(`the mdns module did not load: ${loaded.message}`);
  return loaded;
}

/** Addresses of an mDNS host name through Avahi (`avahi-resolve -4/-6 -n`); [] when it does not resolve in time. */
export async function avahiResolveHost(host: string, timeoutMs = 3000): Promise<string[]> {
  const one = (flag: '-4' | '-6'): Promise<string[]> =>
    new Promise((resolve) => {
      execFile('avahi-resolve', [flag, '-n', host], { timeout: timeoutMs }, (err, stdout) => {
        if (err) {
          resolve([]);
          return;
        }
        const out: string[] = [];
        for (const line of stdout.split('\n')) {
          const addr = line.split('\t')[1]?.trim();
          if (addr) out.push(addr.toLowerCase());
        }
        resolve(out);
      });
    });
  const [v4, v6] = await Promise.all([one('-4'), one('-6')]);
  return [...v4, ...v6];
}

export interface MdnsBrowserOptions {
  /** Also browse every type the daemon enumerates (`_services._dns-sd._udp`); default true. */
  readonly browseAll?: boolean;
  readonly serviceTypes?: readonly string[];
  /** Restrict to the LAN interface; only valid when the agent shares the daemon's network namespace. */
  readonly networkInterface?: string;
  readonly resolveHost?: (host: string) => Promise<string[]>;
  /** How long a host's addresses are reused before asking again (ms). */
  readonly hostCacheMs?: number;
  /** Wait before re-creating the browsers after the daemon went away (ms). */
  readonly retryMs?: number;
  readonly now?: () => number;
  readonly log?: Logger;
}

interface Entry {
  type: string;
  name: string;
  host: string;
  port: number;
  txt: Record<string, string>;
  seenAt: number;
}

function typeName(t: unknown): string {
  // ServiceType.toString() gives "_http._tcp." ; keep "_http._tcp".
  return String(t).replace(/\.$/, '');
}

function txtOf(raw: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (typeof raw !== 'object' || raw === null) return out;
  let n = 0;
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    if (++n > 64) break;
    const s = Buffer.isBuffer(v) ? v.toString('utf8') : typeof v === 'string' ? v : v === true ? '' : String(v);
    out[k.slice(0, 64)] = s.slice(0, 255);
  }
  return out;
}

/**
 * Keeps the set of live DNS-SD services on the LAN, each resolved to host, port, TXT and host addresses.
 * Single-threaded: everything runs on the event loop; listeners get no arguments and read `services()`.
 */
export class MdnsBrowser {
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly resolveHost: (host: string) => Promise<string[]>;
  private readonly entries = new Map<string, Entry>();
  private readonly hostAddrs = new Map<string, { addrs: string[]; at: number; pending: boolean }>();
  private readonly browsers = new Map<string, Mdns.Browser>();
  private readonly listeners = new Set<() => void>();
  private retry: NodeJS.Timeout | undefined;
  private running = false;
  private mdns: MdnsModule | undefined;

  constructor(private readonly opts: MdnsBrowserOptions = {}) {
    this.log = opts.log ?? silentLogger;
    this.now = opts.now ?? Date.now;
    this.resolveHost = opts.resolveHost ?? ((h) => avahiResolveHost(h));
  }

  /** Starts browsing; throws MdnsUnavailableError when the module cannot load (a missing daemon is retried instead). */
  start(): void {
    this.mdns = loadMdns();
    this.running = true;
    this.createBrowsers();
  }

  stop(): void {
    this.running = false;
    if (this.retry) clearTimeout(this.retry);
    this.retry = undefined;
    this.stopBrowsers();
    this.entries.clear();
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  services(): ResolvedService[] {
    return [...this.entries.values()].map((e) => ({
      type: e.type,
      name: e.name,
      host: e.host,
      port: e.port,
      txt: e.txt,
      seenAt: e.seenAt,
      addresses: this.hostAddrs.get(e.host)?.addrs ?? [],
    }));
  }

  /** Looks up again the hosts whose addresses are unknown or old (called on the neighbour-table poll). */
  refresh(): void {
    for (const host of new Set([...this.entries.values()].map((e) => e.host))) this.lookup(host);
  }

  private changed(): void {
    for (const l of this.listeners) {
      try {
        l();
      } catch (e) {
        this.log.error('discovery listener failed', { err: e });
      }
    }
  }

  private stopBrowsers(): void {
    for (const b of this.browsers.values()) {
      try {
        b.stop();
      } catch {
        // Already stopped by a daemon failure: nothing left to release.
      }
    }
    this.browsers.clear();
  }

  private scheduleRetry(why: unknown): void {
    if (!this.running || this.retry) return;
    this.log.warn('mDNS browsing stopped; retrying', { err: why, inMs: this.opts.retryMs ?? 30_000 });
    this.stopBrowsers();
    this.retry = setTimeout(() => {
      this.retry = undefined;
      if (this.running) this.createBrowsers();
    }, this.opts.retryMs ?? 30_000);
    this.retry.unref();
  }

  private browserOptions(): Mdns.BrowserOptions & { lookupInterfaceNames: boolean } {
    const m = this.mdns!;
    return {
      resolverSequence: [m.rst.DNSServiceResolve()],
      lookupInterfaceNames: false,
      ...(this.opts.networkInterface ? { networkInterface: this.opts.networkInterface } : {}),
    };
  }

  private createBrowsers(): void {
    const m = this.mdns!;
    try {
      if (this.opts.browseAll !== false) {
        const all = m.browseThemAll(this.browserOptions());
        all.on('serviceUp', (s: Mdns.Service) => this.browseType(typeName(s.type)));
        all.on('error', (e: unknown) => this.onBrowserError(e));
        all.start();
        this.browsers.set('*', all);
      }
      for (const t of this.opts.serviceTypes ?? DEFAULT_SERVICE_TYPES) this.browseType(t);
    } catch (e) {
      // DNSServiceBrowse throws when the daemon is not running (or D-Bus is not there).
      this.scheduleRetry(e);
    }
  }

  private onBrowserError(e: unknown): void {
    const code = (e as { errorCode?: number }).errorCode;
    // Resolve failures of one service are routine (it left mid-resolve); a daemon-level error stops everything.
    if (code !== undefined && code === this.mdns?.kDNSServiceErr_ServiceNotRunning) this.scheduleRetry(e);
    else this.log.debug('mDNS browser error', { err: e });
  }

  private browseType(type: string): void {
    if (!/^_[a-z0-9-]{1,63}\._(tcp|udp)$/i.test(type) || this.browsers.has(type)) return;
    const m = this.mdns!;
    const b = m.createBrowser(m.makeServiceType(type), this.browserOptions());
    b.on('serviceUp', (s: Mdns.Service) => this.onUp(type, s));
    b.on('serviceDown', (s: Mdns.Service) => this.onDown(type, s));
    b.on('error', (e: unknown) => this.onBrowserError(e));
    b.start();
    this.browsers.set(type, b);
  }

  private onUp(type: string, s: Mdns.Service): void {
    if (!s.name || !s.host || !Number.isInteger(s.port)) return;
    const host = s.host.replace(/\.$/, '').toLowerCase();
    const key = `${type}|${s.name}`;
    this.entries.set(key, { type, name: s.name, host, port: s.port, txt: txtOf(s.txtRecord), seenAt: this.now() });
    this.log.debug('mDNS service up', { type, name: s.name, host, port: s.port });
    this.lookup(host);
    this.changed();
  }

  private onDown(type: string, s: Mdns.Service): void {
    if (!s.name) return;
    if (this.entries.delete(`${type}|${s.name}`)) {
      this.log.debug('mDNS service down', { type, name: s.name });
      this.changed();
    }
  }

  private lookup(host: string): void {
    const cached = this.hostAddrs.get(host);
    // An unresolved host is asked again sooner than a resolved one is refreshed, but not on every poll.
    const maxAge = cached && cached.addrs.length > 0 ? (this.opts.hostCacheMs ?? 60_000) : 10_000;
    if (cached && (cached.pending || this.now() - cached.at < maxAge)) return;
    this.hostAddrs.set(host, { addrs: cached?.addrs ?? [], at: cached?.at ?? 0, pending: true });
    this.resolveHost(host).then(
      (addrs) => {
        this.hostAddrs.set(host, { addrs, at: this.now(), pending: false });
        if (!this.running) return;
        if (addrs.length === 0) this.log.debug('mDNS host did not resolve', { host });
        this.changed();
      },
      (e: unknown) => {
        this.hostAddrs.set(host, { addrs: cached?.addrs ?? [], at: 0, pending: false });
        this.log.warn('mDNS host lookup failed', { host, err: e instanceof Error ? e : new DiscoveryCommandError('avahi-resolve', String(e)) });
      },
    );
  }
}
