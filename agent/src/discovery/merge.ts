// Merging the two views of the LAN into one record per appliance: mDNS says what a device is (name, services),
// the neighbour table says where it is (MAC, addresses) and whether it is there. Pure: tested without a network.
import { isIPv4 } from 'node:net';
import { kindOf } from './kinds.js';
import type { DiscoveredDevice, DiscoveredService, NeighbourEntry } from './types.js';

/** An mDNS service with the addresses its host resolved to (possibly none yet). */
export interface ResolvedService extends DiscoveredService {
  readonly addresses: readonly string[];
  /** When the announcement was last seen (ms). */
  readonly seenAt: number;
}

function isLinkLocal6(ip: string): boolean {
  return /^fe[89ab][0-9a-f]:/i.test(ip);
}

/** Prefers a routable IPv6 address (global or ULA) over a link-local one: only routable ones work through NAT66/rules. */
function better6(current: string | null, candidate: string): string {
  if (current === null) return candidate;
  if (isLinkLocal6(current) && !isLinkLocal6(candidate)) return candidate;
  return current;
}

/** The name to show for a group of services of one host: a friendly name from TXT, else the first instance name. */
function displayName(services: readonly DiscoveredService[]): string {
  for (const s of services) {
    const fn = s.txt['fn'] ?? s.txt['md'];
    if (s.type === '_googlecast._tcp' && fn) return fn;
  }
  // Prefer services that name the appliance itself over generic helpers (_device-info, _workstation).
  const ordered = [...services].sort((a, b) => rank(a.type) - rank(b.type) || a.name.localeCompare(b.name));
  return ordered[0]?.name ?? '';
}

function rank(type: string): number {
  if (type === '_device-info._tcp' || type === '_workstation._tcp' || type === '_sleep-proxy._udp') return 2;
  if (type === '_http._tcp') return 1;
  return 0;
}

/**
 * One record per appliance. Services are grouped by host name; a host is tied to a neighbour entry when one of its
 * addresses is in the table (which gives its MAC); neighbour entries sharing a MAC are one device.
 */
export function mergeDiscovery(neighbours: readonly NeighbourEntry[], services: readonly ResolvedService[], now: number): DiscoveredDevice[] {
  interface Acc {
    name: string;
    host: string | null;
    mac: string | null;
    ipv4: string | null;
    ipv6: string | null;
    online: boolean;
    mdns: boolean;
    neighbour: boolean;
    lastSeen: number;
    services: DiscoveredService[];
  }
  const byMac = new Map<string, Acc>();
  const byIp = new Map<string, Acc>();
  for (const n of neighbours) {
    let acc = byMac.get(n.mac);
    if (!acc) {
      acc = { name: '', host: null, mac: n.mac, ipv4: null, ipv6: null, online: false, mdns: false, neighbour: true, lastSeen: 0, services: [] };
      byMac.set(n.mac, acc);
    }
    if (n.family === 4) acc.ipv4 ??= n.ip;
    else acc.ipv6 = better6(acc.ipv6, n.ip);
    if (n.online) {
      acc.online = true;
      acc.lastSeen = now;
    }
    byIp.set(n.ip, acc);
  }

  const hosts = new Map<string, ResolvedService[]>();
  for (const s of services) {
    const key = s.host.toLowerCase();
    const list = hosts.get(key);
    if (list) list.push(s);
    else hosts.set(key, [s]);
  }
  const out: Acc[] = [];
  for (const [host, list] of hosts) {
    const addresses = [...new Set(list.flatMap((s) => s.addresses.map((a) => a.toLowerCase())))];
    const seenAt = Math.max(...list.map((s) => s.seenAt));
    let acc = addresses.map((a) => byIp.get(a)).find((x) => x !== undefined);
    if (!acc) {
      acc = { name: '', host: null, mac: null, ipv4: null, ipv6: null, online: false, mdns: false, neighbour: false, lastSeen: 0, services: [] };
      out.push(acc);
    }
    acc.mdns = true;
    acc.host ??= host;
    acc.online = true;
    acc.lastSeen = Math.max(acc.lastSeen, seenAt);
    acc.services.push(...list.map(({ type, name, host: h, port, txt }) => ({ type, name, host: h, port, txt })));
    for (const a of addresses) {
      if (isIPv4(a)) acc.ipv4 ??= a;
      else acc.ipv6 = better6(acc.ipv6, a);
    }
  }
  out.push(...byMac.values());

  return out
    .map((a): DiscoveredDevice => {
      const services = a.services.sort((x, y) => x.type.localeCompare(y.type) || x.port - y.port);
      const name = displayName(services);
      const sources: ('mdns' | 'neighbour')[] = [];
      if (a.mdns) sources.push('mdns');
      if (a.neighbour) sources.push('neighbour');
      return {
        name,
        kind: kindOf(services, name),
        mac: a.mac,
        ipv4: a.ipv4,
        ipv6: a.ipv6,
        host: a.host,
        online: a.online,
        sources,
        lastSeen: a.lastSeen,
        services,
      };
    })
    // Named devices first, by name; then the unnamed by address.
    .sort((x, y) => Number(x.name === '') - Number(y.name === '') || x.name.localeCompare(y.name) || (x.ipv4 ?? '').localeCompare(y.ipv4 ?? ''));
}
