// The LAN's neighbour table (ARP for IPv4, NDP for IPv6) read with `ip -j neigh show dev <lan>`: who is on the LAN
// and with which MAC, without sending anything. Every appliance that talks to the gateway appears here.
import { execFile } from 'node:child_process';
import { isIPv4, isIPv6 } from 'node:net';
import { DiscoveryCommandError } from './errors.js';
import type { NeighbourEntry } from './types.js';

/**
 * NUD states that mean "seen recently" (kernel include/uapi/linux/neighbour.h): REACHABLE was confirmed, STALE and
 * DELAY were reachable and are not yet known to be gone; PERMANENT is a static entry. INCOMPLETE/FAILED/NONE are not.
 */
const ONLINE_STATES: ReadonlySet<string> = new Set(['REACHABLE', 'STALE', 'DELAY', 'PERMANENT']);

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** Normalises a MAC to lowercase colon form; null when it is not a 48-bit unicast MAC. */
export function normaliseMac(text: string): string | null {
  const m = text.trim().toLowerCase().replace(/-/g, ':');
  if (!MAC_RE.test(m) || m === '00:00:00:00:00:00') return null;
  // The group bit (lowest bit of the first octet) marks multicast/broadcast: never an appliance.
  if ((parseInt(m.slice(0, 2), 16) & 1) === 1) return null;
  return m;
}

/** Parses the JSON `ip -j neigh` prints; malformed rows are skipped (the table is input from the kernel, not us). */
export function parseNeighbours(json: string): NeighbourEntry[] {
  let rows: unknown;
  try {
    rows = JSON.parse(json);
  } catch {
    return [];
  }
  if (!Array.isArray(rows)) return [];
  const out: NeighbourEntry[] = [];
  for (const row of rows as unknown[]) {
    if (typeof row !== 'object' || row === null) continue;
    const r = row as Record<string, unknown>;
    const ip = typeof r['dst'] === 'string' ? r['dst'] : '';
    const family = isIPv4(ip) ? 4 : isIPv6(ip) ? 6 : 0;
    if (family === 0) continue;
    const rawState = r['state'];
    const states = (Array.isArray(rawState) ? rawState : typeof rawState === 'string' ? [rawState] : [])
      .filter((s): s is string => typeof s === 'string')
      .map((s) => s.toUpperCase());
    const mac = typeof r['lladdr'] === 'string' ? normaliseMac(r['lladdr']) : null;
    // Without a usable MAC (INCOMPLETE, FAILED, multicast) an entry names no device; its absence means "offline".
    if (mac === null) continue;
    out.push({ ip: ip.toLowerCase(), family, mac, states, online: states.some((s) => ONLINE_STATES.has(s)) });
  }
  return out;
}

export interface ReadNeighboursOptions {
  /** Read the table of this network namespace (`ip -n <ns>`): tests; the agent reads its own. */
  readonly netns?: string;
  readonly timeoutMs?: number;
}

/** Runs `ip -j neigh show dev <iface>`; throws DiscoveryCommandError when ip fails (e.g. no such interface). */
export function readNeighbours(iface: string, opts: ReadNeighboursOptions = {}): Promise<NeighbourEntry[]> {
  const args = [...(opts.netns ? ['-n', opts.netns] : []), '-j', 'neigh', 'show', 'dev', iface];
  return new Promise((resolve, reject) => {
    execFile('ip', args, { timeout: opts.timeoutMs ?? 5000, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new DiscoveryCommandError(`ip ${args.join(' ')}`, String(stderr).trim() || err.message));
      else resolve(parseNeighbours(stdout.trim() === '' ? '[]' : stdout));
    });
  });
}
