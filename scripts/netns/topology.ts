// Topology files: their typed shape, and a loader that validates a JSON file into it with messages naming file and key.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { TopologyError } from './errors.js';
import { type Cidr, type Family, familyOf, inSubnet, parseCidr } from './ip.js';

export type Role = 'host' | 'router' | 'nat';
/**
 * eim: endpoint-independent mapping, port-preserving (plain masquerade; RFC 4787 §4.1 "EIM").
 * symmetric: address-and-port-dependent mapping with random ports (masquerade fully-random).
 */
export type NatKind = 'eim' | 'symmetric' | 'full-cone' | 'port-restricted';
export const NAT_KINDS: readonly NatKind[] = ['eim', 'symmetric', 'full-cone', 'port-restricted'];

export interface Route {
  /** "default" or a CIDR. */
  readonly to: string;
  readonly via: string;
  readonly family: Family;
  readonly dev: string | undefined;
}

export interface Uplink {
  readonly network: string;
  readonly iface: string;
  readonly via: string;
  readonly family: Family;
}

export interface Host {
  readonly name: string;
  readonly role: Role;
  readonly about: string;
  readonly ipv4: boolean;
  readonly ipv6: boolean;
  readonly routes: readonly Route[];
  /** Present exactly when role is "nat": the default kind and the interface it masquerades to. */
  readonly nat: { readonly kind: NatKind; readonly wan: string } | undefined;
  /** Hosts that switch networks (the phone): one entry per network, only one active at a time. */
  readonly uplinks: readonly Uplink[];
  readonly initialUplink: string | undefined;
}

export interface Iface {
  readonly host: string;
  readonly name: string;
  readonly kind: 'veth' | 'bridge';
  readonly addrs: readonly Cidr[];
  /** veth only: the other end. */
  readonly peer: { readonly host: string; readonly iface: string } | undefined;
  /** veth only: the bridge (in the same host) this end is a port of. */
  readonly bridge: string | undefined;
}

export interface Link {
  readonly a: Iface;
  readonly b: Iface;
  readonly about: string;
}

/** One unordered pair of sites at an emulating router, with its round-trip time per column. */
export interface Pair {
  readonly a: string;
  readonly b: string;
  readonly rttMs: Readonly<Record<string, number>>;
  /** Where the figure comes from: "Table 1" or a stated estimate. */
  readonly source: string;
  /** Probability that a packet is dropped, per direction. */
  readonly loss: number;
  /** Uniform ± jitter added to each packet's one-way delay. */
  readonly jitterMs: number;
  /** Probability that a packet is sent twice, per direction. */
  readonly duplicate: number;
  /** With jitter, let a later packet overtake an earlier one (otherwise order per direction is kept). */
  readonly reorder: boolean;
}

/** A core router whose forwarded packets are delayed by the emulator according to (input site, output site). */
export interface Emulation {
  readonly router: string;
  /** Site name → the router's interface towards that site. */
  readonly sites: Readonly<Record<string, string>>;
  readonly pairs: readonly Pair[];
}

export interface Topology {
  readonly name: string;
  readonly description: string;
  readonly file: string;
  readonly hosts: ReadonlyMap<string, Host>;
  readonly links: readonly Link[];
  /** Every interface, keyed by host, in file order (bridges first). */
  readonly ifaces: ReadonlyMap<string, readonly Iface[]>;
  readonly columns: readonly string[];
  readonly defaultColumn: string;
  readonly emulation: readonly Emulation[];
}

const NAME_RE = /^[a-z][a-z0-9]{0,14}$/;
const IFACE_RE = /^[a-z][a-z0-9]{0,14}$/;

type Json = unknown;

/** Reads one JSON value with its path, so every complaint says exactly where. */
class Reader {
  constructor(
    readonly file: string,
    readonly path: string,
    readonly value: Json,
  ) {}

  err(message: string): TopologyError {
    return new TopologyError(`${basename(this.file)}: ${this.path || '(top level)'}: ${message}`);
  }

  at(key: string | number): Reader {
    const v = typeof key === 'number' ? (this.value as Json[])[key] : (this.value as Record<string, Json>)[key];
    const path = typeof key === 'number' ? `${this.path}[${key}]` : this.path ? `${this.path}.${key}` : key;
    return new Reader(this.file, path, v);
  }

  has(key: string): boolean {
    return (this.value as Record<string, Json>)[key] !== undefined;
  }

  object(allowed: readonly string[], required: readonly string[] = []): this {
    const v = this.value;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw this.err('expected an object');
    for (const k of Object.keys(v)) {
      if (!allowed.includes(k)) throw this.err(`unknown key "${k}" (allowed: ${allowed.join(', ')})`);
    }
    for (const k of required) if ((v as Record<string, Json>)[k] === undefined) throw this.err(`missing key "${k}"`);
    return this;
  }

  map(): [string, Reader][] {
    const v = this.value;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw this.err('expected an object');
    return Object.keys(v).map((k) => [k, this.at(k)]);
  }

  array(): Reader[] {
    if (!Array.isArray(this.value)) throw this.err('expected an array');
    return (this.value as Json[]).map((_, i) => this.at(i));
  }

  string(): string {
    if (typeof this.value !== 'string') throw this.err('expected a string');
    return this.value as string;
  }

  number(min: number, max: number): number {
    const v = this.value;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw this.err('expected a number');
    if ((v as number) < min || (v as number) > max) throw this.err(`${v as number} is outside ${min}..${max}`);
    return v as number;
  }

  boolean(): boolean {
    if (typeof this.value !== 'boolean') throw this.err('expected true or false');
    return this.value as boolean;
  }

  optString(fallback: string): string {
    return this.value === undefined ? fallback : this.string();
  }

  optNumber(min: number, max: number, fallback: number): number {
    return this.value === undefined ? fallback : this.number(min, max);
  }

  optBoolean(fallback: boolean): boolean {
    return this.value === undefined ? fallback : this.boolean();
  }

  name(re: RegExp, what: string): string {
    const s = this.string();
    if (!re.test(s)) throw this.err(`"${s}" is not a valid ${what} name (${re.source})`);
    return s;
  }
}

function readRoute(r: Reader): Route {
  r.object(['to', 'via', 'dev'], ['to', 'via']);
  const to = r.at('to').string();
  const via = r.at('via').string();
  const family = familyOf(via);
  if (family === null) throw r.at('via').err(`"${via}" is not an IP address`);
  if (to !== 'default') {
    const c = parseCidr(to);
    if (typeof c === 'string') throw r.at('to').err(c);
    if (c.family !== family) throw r.err(`destination ${to} and gateway ${via} are of different families`);
  }
  const dev = r.has('dev') ? r.at('dev').name(IFACE_RE, 'interface') : undefined;
  return { to, via, family, dev };
}

function readHost(name: string, r: Reader): Host {
  r.object(['role', 'about', 'ipv4', 'ipv6', 'routes', 'nat', 'uplinks', 'initialUplink'], ['role', 'about']);
  const role = r.at('role').string();
  if (role !== 'host' && role !== 'router' && role !== 'nat') throw r.at('role').err(`"${role}" is not one of host, router, nat`);
  let nat: Host['nat'];
  if (r.has('nat')) {
    const n = r.at('nat').object(['kind', 'wan'], ['kind', 'wan']);
    const kind = n.at('kind').string();
    if (!(NAT_KINDS as readonly string[]).includes(kind)) throw n.at('kind').err(`"${kind}" is not one of ${NAT_KINDS.join(', ')}`);
    nat = { kind: kind as NatKind, wan: n.at('wan').name(IFACE_RE, 'interface') };
  }
  if (role === 'nat' && !nat) throw r.err('a host with role "nat" needs a "nat" object ({"kind": "eim", "wan": IFACE})');
  if (role !== 'nat' && nat) throw r.at('nat').err(`only hosts with role "nat" masquerade (this one is a ${role})`);
  const uplinks: Uplink[] = [];
  if (r.has('uplinks')) {
    for (const [network, u] of r.at('uplinks').map()) {
      if (!NAME_RE.test(network)) throw u.err(`"${network}" is not a valid network name (${NAME_RE.source})`);
      u.object(['iface', 'via'], ['iface', 'via']);
      const via = u.at('via').string();
      const family = familyOf(via);
      if (family === null) throw u.at('via').err(`"${via}" is not an IP address`);
      uplinks.push({ network, iface: u.at('iface').name(IFACE_RE, 'interface'), via, family });
    }
  }
  let initialUplink: string | undefined;
  if (r.has('initialUplink')) {
    initialUplink = r.at('initialUplink').string();
    if (!uplinks.some((u) => u.network === initialUplink)) throw r.at('initialUplink').err(`"${initialUplink}" is not one of the uplinks`);
  } else if (uplinks.length > 0) {
    throw r.err('a host with uplinks needs "initialUplink"');
  }
  return {
    name,
    role,
    about: r.at('about').string(),
    ipv4: r.at('ipv4').optBoolean(true),
    ipv6: r.at('ipv6').optBoolean(true),
    routes: r.has('routes') ? r.at('routes').array().map(readRoute) : [],
    nat,
    uplinks,
    initialUplink,
  };
}

function readAddrs(r: Reader): Cidr[] {
  if (!r.has('addrs')) return [];
  return r
    .at('addrs')
    .array()
    .map((a) => {
      const c = parseCidr(a.string());
      if (typeof c === 'string') throw a.err(c);
      return c;
    });
}

/** Validates a parsed JSON value; `file` is used for messages and to resolve nothing else. */
export function parseTopology(json: Json, file: string): Topology {
  const top = new Reader(file, '', json).object(
    ['name', 'description', 'columns', 'defaultColumn', 'hosts', 'bridges', 'links', 'delays'],
    ['name', 'description', 'hosts', 'links'],
  );
  const name = top.at('name').name(NAME_RE, 'topology');
  const columns = top.has('columns') ? top.at('columns').array().map((c) => c.name(NAME_RE, 'column')) : ['default'];
  if (columns.length === 0) throw top.at('columns').err('needs at least one column');
  if (new Set(columns).size !== columns.length) throw top.at('columns').err('columns repeat');
  const defaultColumn = top.at('defaultColumn').optString(columns[0] ?? 'default');
  if (!columns.includes(defaultColumn)) throw top.at('defaultColumn').err(`"${defaultColumn}" is not one of the columns (${columns.join(', ')})`);

  const hosts = new Map<string, Host>();
  for (const [hostName, h] of top.at('hosts').map()) {
    if (!NAME_RE.test(hostName)) throw h.err(`"${hostName}" is not a valid host name (${NAME_RE.source}; no dashes, they separate prefix and host)`);
    hosts.set(hostName, readHost(hostName, h));
  }
  if (hosts.size === 0) throw top.at('hosts').err('no hosts');

  const ifaces = new Map<string, Iface[]>();
  for (const h of hosts.keys()) ifaces.set(h, []);
  const addIface = (r: Reader, iface: Iface): void => {
    const list = ifaces.get(iface.host);
    if (!list) throw r.at('host').err(`unknown host "${iface.host}"`);
    if (list.some((i) => i.name === iface.name)) throw r.at('iface').err(`${iface.host} already has an interface "${iface.name}"`);
    list.push(iface);
  };

  if (top.has('bridges')) {
    for (const b of top.at('bridges').array()) {
      b.object(['host', 'iface', 'addrs', 'about'], ['host', 'iface']);
      addIface(b, {
        host: b.at('host').string(),
        name: b.at('iface').name(IFACE_RE, 'interface'),
        kind: 'bridge',
        addrs: readAddrs(b),
        peer: undefined,
        bridge: undefined,
      });
    }
  }

  const links: Link[] = [];
  for (const l of top.at('links').array()) {
    l.object(['a', 'b', 'about'], ['a', 'b']);
    const end = (key: 'a' | 'b', other: 'a' | 'b'): Iface => {
      const e = l.at(key).object(['host', 'iface', 'addrs', 'bridge'], ['host', 'iface']);
      const o = l.at(other);
      const bridge = e.has('bridge') ? e.at('bridge').name(IFACE_RE, 'bridge') : undefined;
      const addrs = readAddrs(e);
      if (bridge && addrs.length > 0) throw e.err('a bridge port carries no addresses (put them on the bridge)');
      return {
        host: e.at('host').string(),
        name: e.at('iface').name(IFACE_RE, 'interface'),
        kind: 'veth',
        addrs,
        peer: { host: String(o.at('host').value), iface: String(o.at('iface').value) },
        bridge,
      };
    };
    const a = end('a', 'b');
    const b = end('b', 'a');
    if (a.host === b.host) throw l.err(`both ends are on ${a.host}; a link joins two hosts`);
    addIface(l.at('a'), a);
    addIface(l.at('b'), b);
    links.push({ a, b, about: l.at('about').optString('') });
  }

  // Cross-checks that need every interface known.
  const seen = new Map<string, string>();
  for (const [hostName, list] of ifaces) {
    const host = hosts.get(hostName);
    if (!host) continue;
    const hr = top.at('hosts').at(hostName);
    for (const i of list) {
      if (i.bridge !== undefined && !list.some((x) => x.kind === 'bridge' && x.name === i.bridge)) {
        throw top.at('links').err(`${hostName}:${i.name} names bridge "${i.bridge}", which ${hostName} does not have`);
      }
      for (const c of i.addrs) {
        const where = `${hostName}:${i.name}`;
        const prev = seen.get(c.address);
        if (prev) throw top.err(`address ${c.address} is on both ${prev} and ${where}`);
        seen.set(c.address, where);
        if (c.family === 4 && !host.ipv4) throw hr.err(`${hostName} is IPv4-free ("ipv4": false) but ${where} has ${c.address}`);
        if (c.family === 6 && !host.ipv6) throw hr.err(`${hostName} is IPv6-free ("ipv6": false) but ${where} has ${c.address}`);
      }
    }
    const onLink = (via: string, dev: string | undefined): boolean =>
      list.some((i) => (dev === undefined || i.name === dev) && i.addrs.some((c) => inSubnet(c, via)));
    host.routes.forEach((route, n) => {
      const rr = hr.at('routes').at(n);
      if (route.dev !== undefined && !list.some((i) => i.name === route.dev)) throw rr.err(`${hostName} has no interface "${route.dev}"`);
      if (!onLink(route.via, route.dev)) throw rr.err(`gateway ${route.via} is not on any subnet of ${hostName}'s interfaces`);
      if (route.family === 4 && !host.ipv4) throw rr.err(`${hostName} is IPv4-free but has an IPv4 route`);
      if (route.family === 6 && !host.ipv6) throw rr.err(`${hostName} is IPv6-free but has an IPv6 route`);
    });
    for (const u of host.uplinks) {
      const ur = hr.at('uplinks').at(u.network);
      if (!list.some((i) => i.name === u.iface)) throw ur.err(`${hostName} has no interface "${u.iface}"`);
      if (!onLink(u.via, u.iface)) throw ur.err(`gateway ${u.via} is not on ${hostName}:${u.iface}'s subnet`);
      if (host.routes.some((r) => r.to === 'default' && r.family === u.family)) {
        throw hr.at('routes').err(`${hostName}'s IPv${u.family} default route comes from its uplinks; do not list one in routes`);
      }
    }
    if (host.nat && !list.some((i) => i.name === host.nat?.wan)) throw hr.at('nat').at('wan').err(`${hostName} has no interface "${host.nat.wan}"`);
  }

  const emulation: Emulation[] = [];
  if (top.has('delays')) {
    for (const [router, d] of top.at('delays').map()) {
      const rh = hosts.get(router);
      if (!rh) throw d.err(`unknown host "${router}"`);
      if (rh.role === 'host') throw d.err(`${router} is a plain host; only routers forward packets to delay`);
      d.object(['sites', 'pairs'], ['sites', 'pairs']);
      const sites: Record<string, string> = {};
      for (const [site, s] of d.at('sites').map()) {
        if (!NAME_RE.test(site)) throw s.err(`"${site}" is not a valid site name`);
        const iface = s.name(IFACE_RE, 'interface');
        if (!(ifaces.get(router) ?? []).some((i) => i.name === iface)) throw s.err(`${router} has no interface "${iface}"`);
        if (Object.values(sites).includes(iface)) throw s.err(`interface ${iface} is already another site`);
        sites[site] = iface;
      }
      const pairs: Pair[] = [];
      for (const [key, p] of d.at('pairs').map()) {
        const m = /^([a-z][a-z0-9]*)-([a-z][a-z0-9]*)$/.exec(key);
        if (!m?.[1] || !m[2]) throw p.err(`pair names are "SITE-SITE", not "${key}"`);
        const [a, b] = [m[1], m[2]];
        for (const s of [a, b]) if (sites[s] === undefined) throw p.err(`"${s}" is not a site of ${router} (sites: ${Object.keys(sites).join(', ')})`);
        if (a === b) throw p.err('a pair joins two different sites');
        if (pairs.some((q) => (q.a === a && q.b === b) || (q.a === b && q.b === a))) throw p.err(`${a} and ${b} are paired twice`);
        p.object(['rttMs', 'source', 'loss', 'jitterMs', 'duplicate', 'reorder'], ['rttMs', 'source']);
        const rtt = p.at('rttMs').object(columns, columns);
        const rttMs: Record<string, number> = {};
        for (const c of columns) rttMs[c] = rtt.at(c).number(0, 10_000);
        pairs.push({
          a,
          b,
          rttMs,
          source: p.at('source').string(),
          loss: p.at('loss').optNumber(0, 1, 0),
          jitterMs: p.at('jitterMs').optNumber(0, 10_000, 0),
          duplicate: p.at('duplicate').optNumber(0, 1, 0),
          reorder: p.at('reorder').optBoolean(false),
        });
      }
      // A star cannot fit Table 1, so every pair is given explicitly rather than derived from per-site legs.
      const names = Object.keys(sites);
      const missing: string[] = [];
      for (let i = 0; i < names.length; i++) {
        for (let j = i + 1; j < names.length; j++) {
          const [a, b] = [names[i], names[j]];
          if (!pairs.some((q) => (q.a === a && q.b === b) || (q.a === b && q.b === a))) missing.push(`${a}-${b}`);
        }
      }
      if (missing.length > 0) throw d.at('pairs').err(`the matrix is incomplete; missing ${missing.join(', ')}`);
      emulation.push({ router, sites, pairs });
    }
  }

  return {
    name,
    description: top.at('description').string(),
    file,
    hosts,
    links,
    ifaces,
    columns,
    defaultColumn,
    emulation,
  };
}

/** The directory holding the shipped topology files, found from either the sources or dist/. */
export function topologiesDir(): string {
  for (let d = import.meta.dirname; ; d = dirname(d)) {
    for (const candidate of [join(d, 'topologies'), join(d, 'scripts', 'netns', 'topologies')]) {
      if (existsSync(join(candidate, 'paper.json'))) return candidate;
    }
    if (dirname(d) === d) throw new TopologyError('cannot find scripts/netns/topologies/');
  }
}

export function listTopologies(): string[] {
  return readdirSync(topologiesDir())
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -'.json'.length))
    .sort();
}

/** A shipped topology's name ("paper") or a path to a JSON file. */
export function topologyPath(nameOrPath: string): string {
  if (nameOrPath.includes('/') || nameOrPath.endsWith('.json')) return resolve(nameOrPath);
  const file = join(topologiesDir(), `${nameOrPath}.json`);
  if (!existsSync(file)) throw new TopologyError(`no topology "${nameOrPath}" (known: ${listTopologies().join(', ')})`);
  return file;
}

export function loadTopology(nameOrPath: string): Topology {
  const file = topologyPath(nameOrPath);
  let json: Json;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new TopologyError(`${basename(file)}: ${(e as Error).message}`);
  }
  return parseTopology(json, file);
}
