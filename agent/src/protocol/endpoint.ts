// Endpoints (family, address, port): the wire form of docs/protocol.md §3.1 and the text form "a.b.c.d:p" / "[v6]:p".
import type { Endpoint } from '../types/net.js';
import { bytesToIp4, bytesToIp6, canonicalIp, ip4ToBytes, ip6ToBytes, ipFamily } from './ip.js';
import type { Reader, Writer } from './wire.js';
import { WireError } from './wire.js';

export type { Endpoint };

export function endpoint(address: string, port: number): Endpoint {
  const a = canonicalIp(address);
  const family = ipFamily(a);
  if (family === 0) throw new RangeError(`not an IP address: ${address}`);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`bad port ${port}`);
  return { family, address: a, port };
}

/** Parses "1.2.3.4:5", "[2001:db8::1]:5" (and "host" forms are rejected: no DNS here). */
export function parseEndpoint(text: string): Endpoint {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  if (!m) throw new RangeError(`not an endpoint (addr:port or [v6]:port): ${text}`);
  return endpoint(m[1]!, Number(m[2]));
}

export function formatEndpoint(e: Endpoint): string {
  return e.family === 6 ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}

export function sameEndpoint(a: Endpoint | undefined, b: Endpoint | undefined): boolean {
  return !!a && !!b && a.family === b.family && a.port === b.port && a.address === b.address;
}

export function writeEndpoint(w: Writer, e: Endpoint): void {
  w.u8(e.family);
  const b = e.family === 4 ? ip4ToBytes(e.address) : ip6ToBytes(e.address);
  w.bytes(b).u16(e.port);
}

/** Writes an optional endpoint: family 0 means absent. */
export function writeOptEndpoint(w: Writer, e: Endpoint | undefined): void {
  if (e) writeEndpoint(w, e);
  else w.u8(0);
}

export function readOptEndpoint(r: Reader): Endpoint | undefined {
  const family = r.u8();
  if (family === 0) return undefined;
  if (family === 4) {
    const address = bytesToIp4(r.bytes(4));
    return { family, address, port: r.u16() };
  }
  if (family === 6) {
    const address = canonicalIp(bytesToIp6(r.bytes(16)));
    return { family: ipFamily(address) === 4 ? 4 : 6, address, port: r.u16() };
  }
  throw new WireError(`bad address family ${family}`);
}

export function readEndpoint(r: Reader): Endpoint {
  const e = readOptEndpoint(r);
  if (!e) throw new WireError('missing endpoint');
  return e;
}
