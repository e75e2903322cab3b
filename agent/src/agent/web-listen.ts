// Where the household web page listens (issue 11, item 2). A home gateway's page belongs to the LAN: "lan:PORT" (the
// default) means every address of the LAN interface, and only sources inside the LAN's prefixes (or loopback) may
// connect. Binding to the LAN addresses alone is not enough: Linux answers for any of its addresses on any interface
// (the weak host model), so a WAN neighbour routing 192.168.1.1 via the vCPE's WAN address would reach a socket
// bound there. Without a LAN interface the page falls back to loopback. Any other entry ("addr:port", "[v6]:port",
// e.g. an operator's management address) is taken as given: that is the operator's choice, and no source filter.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { canonicalIp, cidrContainsText, parseCidr, type Cidr } from '../protocol/ip.js';
import { ConfigError } from '../types/errors.js';

const run = promisify(execFile);

export interface WebListener {
  /** "addr:port" or "[v6]:port", as WebApp.listen takes it. */
  readonly address: string;
  /** The IP address alone (for the certificate and the Host allow-list). */
  readonly ip: string;
  /** Sources allowed to connect; undefined: any. */
  readonly clients?: (remoteAddress: string) => boolean;
}

export interface LanAddress {
  readonly address: string;
  readonly prefix: Cidr;
}

/** The LAN interface's global and ULA addresses with their prefixes (link-local ones are left out: they need a zone). */
export async function lanAddresses(iface: string): Promise<LanAddress[]> {
  const { stdout } = await run('ip', ['-j', 'addr', 'show', 'dev', iface], { timeout: 5000 });
  const links = JSON.parse(stdout) as Array<{ addr_info?: Array<{ family: string; local: string; prefixlen: number; scope?: string }> }>;
  const out: LanAddress[] = [];
  for (const a of links.flatMap((l) => l.addr_info ?? [])) {
    if ((a.family !== 'inet' && a.family !== 'inet6') || a.scope === 'link' || a.scope === 'host') continue;
    out.push({ address: canonicalIp(a.local), prefix: parseCidr(`${a.local}/${a.prefixlen}`) });
  }
  return out;
}

const LOOPBACK = [parseCidr('127.0.0.0/8'), parseCidr('::1/128')];

/** The source filter of a LAN listener: inside one of `prefixes`, or loopback (IPv4-mapped IPv6 forms included). */
export function lanClients(prefixes: readonly Cidr[]): (remoteAddress: string) => boolean {
  const all = [...prefixes, ...LOOPBACK];
  return (remote) => {
    const a = remote.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, '$1').replace(/%.*$/, '');
    try {
      return all.some((c) => cidrContainsText(c, a));
    } catch {
      return false;
    }
  };
}

const hostPort = (ip: string, port: number): string => (ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`);

/**
 * The listeners for the configured entries (agent.web or agent.webTls). `lan` is undefined when no LAN interface
 * was found: "lan:PORT" then listens on loopback only (the caller warns).
 */
export function planWebListeners(entries: readonly string[], lan: readonly LanAddress[] | undefined, key: string): WebListener[] {
  const out: WebListener[] = [];
  for (const e of entries) {
    const m = /^lan:(\d{1,5})$/.exec(e);
    if (!m) {
      const ip = /^\[([^\]]+)\]:\d{1,5}$/.exec(e)?.[1] ?? /^([^:[\]]*):\d{1,5}$/.exec(e)?.[1];
      if (ip === undefined) throw new ConfigError(key, `"${e}" is neither lan:PORT nor addr:port / [v6]:port`);
      out.push({ address: e, ip: ip || '::' });
      continue;
    }
    const port = Number(m[1]);
    if (port > 65535) throw new ConfigError(key, `port ${port} is out of range`);
    const ips = lan && lan.length > 0 ? lan.map((a) => a.address) : ['127.0.0.1', '::1'];
    const clients = lanClients(lan?.map((a) => a.prefix) ?? []);
    for (const ip of ips) out.push({ address: hostPort(ip, port), ip, clients });
  }
  return out;
}
