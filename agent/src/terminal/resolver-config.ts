// Where `ntm up`'s resolver sends names outside `.ntm`, and how `.ntm` reaches it on a host that runs systemd-resolved:
// a phone whose system resolver points at ours must keep resolving ordinary names (issue 11, "DNS on the phone").
// resolv.conf(5) gives the resolver we stand in for; with systemd-resolved (resolvectl(1)) we add a per-link routing
// domain "~ntm" on the virtual device instead, so the system resolver stays in place and asks us for `.ntm` only.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { ipFamily } from '../protocol/ip.js';
import { formatEndpoint, parseEndpoint } from '../protocol/endpoint.js';
import { InputError } from '../types/errors.js';
import type { Endpoint } from '../types/net.js';
import type { Logger } from '../util/log.js';

const run = promisify(execFile);

/** resolvectl(1) with `args`; optional on this host (absent where systemd-resolved is not installed). */
function resolvectl(args: readonly string[], timeout: number): Promise<unknown> {
  return run('resolvectl', args, { timeout });
}

const DNS_PORT = 53;

function isLoopback(address: string): boolean {
  return ipFamily(address) === 4 ? address.startsWith('127.') : address === '::1';
}

function isWildcard(address: string): boolean {
  return address === '0.0.0.0' || address === '::';
}

/**
 * The first `nameserver` of a resolv.conf text that is not our own listener: a server at our address and port, or a
 * loopback server on our port when we listen on every address, would hand each forwarded query back to us.
 */
export function upstreamFromResolvConf(text: string, listen: Endpoint | undefined): Endpoint | undefined {
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (!m) continue;
    const address = m[1]!.replace(/%.*$/, ''); // a link-local server's "%zone" is not part of the address
    const family = ipFamily(address);
    if (family !== 4 && family !== 6) continue;
    if (listen && listen.port === DNS_PORT) {
      if (address === listen.address) continue;
      if (isLoopback(address) && isWildcard(listen.address)) continue;
    }
    return { family, address, port: DNS_PORT };
  }
  return undefined;
}

/** `terminal.dnsUpstream`: "ADDR" (port 53), "ADDR:PORT" or "[V6]:PORT". */
export function parseDnsServer(text: string): Endpoint {
  const family = ipFamily(text);
  if (family !== 0) return { family, address: text, port: DNS_PORT };
  try {
    return parseEndpoint(text);
  } catch {
    throw new InputError(`terminal.dnsUpstream: not a DNS server (ADDR, ADDR:PORT or [V6]:PORT): ${text}`);
  }
}

/** The upstream from /etc/resolv.conf (read once, at start); undefined when it names none but us. */
export function systemUpstream(listen: Endpoint | undefined, file = '/etc/resolv.conf'): Endpoint | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  return upstreamFromResolvConf(text, listen);
}

/** systemd-resolved answers here: resolvectl exists and reaches the daemon over D-Bus. */
export async function resolvedRuns(): Promise<boolean> {
  try {
    await resolvectl(['status'], 3000);
    return true;
  } catch {
    return false;
  }
}

/**
 * Routes `.ntm` (and only `.ntm`) to our listener through `device`: `resolvectl dns` + `resolvectl domain ~ntm`.
 * Returns the undo, `resolvectl revert`, which drops every per-link setting we made. Untested here: the test machine
 * does not run systemd-resolved.
 */
export async function registerNtmDomain(device: string, listen: Endpoint, log: Logger): Promise<() => Promise<void>> {
  const server = formatEndpoint(listen);
  await resolvectl(['dns', device, server], 5000);
  await resolvectl(['domain', device, '~ntm'], 5000);
  log.info('systemd-resolved routes .ntm to the terminal', { device, server });
  return async () => {
    await resolvectl(['revert', device], 5000).catch((e: Error) => log.warn('resolvectl revert failed', { device, err: e }));
  };
}
