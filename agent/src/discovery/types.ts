// LAN discovery's records: what the neighbour table and mDNS tell the agent about the household's appliances. Types only.

/** One service an appliance announces over mDNS / DNS-SD (RFC 6763), resolved to its host and port. */
export interface DiscoveredService {
  /** Service type without the domain, e.g. "_http._tcp". */
  readonly type: string;
  /** The instance name, e.g. "Living Room Lamp". */
  readonly name: string;
  /** The SRV target, e.g. "lamp-1.local" (no trailing dot). */
  readonly host: string;
  readonly port: number;
  readonly txt: Readonly<Record<string, string>>;
}

/** One appliance as discovery sees it: merged from its mDNS services and its neighbour-table entries. */
export interface DiscoveredDevice {
  /** The mDNS instance name (or the device's friendly name from TXT); "" when only the neighbour table knows it. */
  readonly name: string;
  /** "lamp", "camera", "printer", … from the service types (see kinds.ts); "" when unknown. */
  readonly kind: string;
  /** Lowercase "aa:bb:cc:dd:ee:ff", or null when no neighbour entry is known yet. */
  readonly mac: string | null;
  readonly ipv4: string | null;
  /** A global or ULA address when known, else a link-local one; null when none. */
  readonly ipv6: string | null;
  /** The mDNS host name ("lamp-1.local"), when announced. */
  readonly host: string | null;
  /** Neighbour entry reachable/stale/delay, or a live mDNS announcement. */
  readonly online: boolean;
  readonly sources: readonly ('mdns' | 'neighbour')[];
  /** When last seen (ms since the Unix epoch). */
  readonly lastSeen: number;
  readonly services: readonly DiscoveredService[];
}

/** One row of `ip -j neigh show dev <lan>`. */
export interface NeighbourEntry {
  readonly ip: string;
  readonly family: 4 | 6;
  /** Lowercase MAC (entries without one are not listed). */
  readonly mac: string;
  /** Kernel NUD states, uppercase ("REACHABLE", "STALE", …). */
  readonly states: readonly string[];
  readonly online: boolean;
}
