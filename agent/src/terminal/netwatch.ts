// Notices when this host's real addresses change (the phone moved from Wi-Fi to LTE), by netlink events from
// `ip monitor` and a slower poll as a safety net, so mobility starts within milliseconds of the move.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import dgram from 'node:dgram';
import type { Endpoint } from '../types/net.js';
import { canonicalIp, cidrContainsText, parseCidr } from '../protocol/ip.js';

const run = promisify(execFile);

/** Virtual ranges are ours, never "real" addresses. */
const EXCLUDE = ['198.18.0.0/15', 'fd4e:544d::/32', '127.0.0.0/8', '::1/128', 'fe80::/10', '169.254.0.0/16'].map(parseCidr);

export interface AddressSnapshot {
  /** Addresses of interfaces that are up, without loopback, link-local and virtual addresses. */
  readonly addresses: ReadonlyArray<{ readonly family: 4 | 6; readonly address: string; readonly iface: string }>;
  /** The source address the kernel would use towards each probe target ("" when unreachable). */
  readonly primary: readonly string[];
}

export async function readAddresses(): Promise<AddressSnapshot['addresses']> {
  const { stdout } = await run('ip', ['-j', 'addr', 'show', 'up'], { timeout: 5000 });
  const out: Array<{ family: 4 | 6; address: string; iface: string }> = [];
  for (const l of JSON.parse(stdout) as Array<{ ifname: string; flags?: string[]; addr_info?: Array<{ family: string; local: string; dadfailed?: boolean; tentative?: boolean }> }>) {
    if (l.flags?.includes('LOOPBACK') || l.flags?.includes('NO-CARRIER')) continue;
    if (!l.flags?.includes('LOWER_UP')) continue;
    for (const a of l.addr_info ?? []) {
      const family = a.family === 'inet' ? 4 : a.family === 'inet6' ? 6 : 0;
      if (!family || a.dadfailed) continue;
      const address = canonicalIp(a.local);
      if (EXCLUDE.some((c) => cidrContainsText(c, address))) continue;
      out.push({ family, address, iface: l.ifname });
    }
  }
  return out;
}

/** Which local address the kernel picks to reach `to` (a connected UDP socket sends nothing). */
export function sourceFor(to: Endpoint): Promise<string> {
  return new Promise((resolve) => {
    const s = dgram.createSocket(to.family === 4 ? 'udp4' : 'udp6');
    const done = (v: string) => {
      s.close();
      resolve(v);
    };
    s.once('error', () => done(''));
    s.connect(to.port || 9, to.address, () => {
      try {
        done(canonicalIp(s.address().address));
      } catch {
        done('');
      }
    });
  });
}

/** Whether the source address towards the watched targets changed: the packets' path moved, not just an address. */
export function pathChanged(now: AddressSnapshot, before: AddressSnapshot): boolean {
  return now.primary.length !== before.primary.length || now.primary.some((a, i) => a !== before.primary[i]);
}

export class NetWatch {
  private monitor: ChildProcess | undefined;
  private poll: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private firstEventAt: number | undefined;
  private last = '';
  snapshot: AddressSnapshot = { addresses: [], primary: [] };

  constructor(
    /** Endpoints whose route decides "where we are" (the DC). */
    private readonly targets: () => Endpoint[],
    /**
     * Called with the new snapshot, the one before it, and when (performance.now()) the first netlink event of the
     * change arrived: the move happened then, not when the addresses had been read again.
     */
    private readonly onChange: (s: AddressSnapshot, before: AddressSnapshot, at: number) => void,
    private readonly pollMs: number,
  ) {}

  async start(): Promise<AddressSnapshot> {
    await this.check(false);
    this.monitor = spawn('ip', ['-o', 'monitor', 'address', 'route', 'link'], { stdio: ['ignore', 'pipe', 'ignore'] });
    this.monitor.stdout!.on('data', () => this.kick());
    this.monitor.on('error', () => undefined);
    this.poll = setInterval(() => this.kick(), this.pollMs);
    this.poll.unref();
    return this.snapshot;
  }

  private kick(): void {
    this.firstEventAt ??= performance.now();
    if (this.debounce) return;
    // Link, address and route events of one move come in a burst: look once it settles.
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      this.check(true).catch(() => undefined);
    }, 15);
  }

  private async check(notify: boolean): Promise<void> {
    const addresses = await readAddresses().catch(() => this.snapshot.addresses);
    const primary = await Promise.all(this.targets().map(sourceFor));
    const key = JSON.stringify([addresses.map((a) => `${a.iface}/${a.address}`).sort(), primary]);
    const at = this.firstEventAt ?? performance.now();
    this.firstEventAt = undefined;
    const before = this.snapshot;
    this.snapshot = { addresses, primary };
    if (key === this.last) return;
    const changed = this.last !== '';
    this.last = key;
    if (notify && changed) this.onChange(this.snapshot, before, at);
  }

  stop(): void {
    clearInterval(this.poll);
    clearTimeout(this.debounce);
    this.monitor?.kill();
  }
}
