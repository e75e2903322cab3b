// HTTP hardening that does not depend on a route: response headers (CSP and friends), the Host check against DNS
// rebinding, the same-origin check for state-changing requests, and the session cookie's exact form.
import { networkInterfaces } from 'node:os';
import { isIP } from 'node:net';

/**
 * Sent with every response. The page loads only its own files (no inline script or style, nothing from the
 * Internet); the QR code is a data: image; nothing may frame the page (clickjacking).
 */
export function securityHeaders(tls: boolean): Record<string, string> {
  const h: Record<string, string> = {
    'Content-Security-Policy':
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
      "manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    'X-Content-Type-Options': 'nosniff',
    'X-Frame-Options': 'DENY',
    'Referrer-Policy': 'no-referrer',
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Resource-Policy': 'same-origin',
    'Permissions-Policy': 'camera=(), microphone=(), geolocation=(), payment=(), usb=()',
  };
  if (tls) h['Strict-Transport-Security'] = 'max-age=31536000';
  return h;
}

/** The host part of a Host header, lowercase, without port, brackets or a trailing dot; null when malformed. */
export function hostName(header: string | undefined): string | null {
  if (!header || header.length > 255) return null;
  const h = header.trim().toLowerCase();
  let name: string;
  const v6 = /^\[([0-9a-f:.]+)\](?::\d{1,5})?$/.exec(h);
  if (v6) name = v6[1]!;
  else {
    const m = /^([a-z0-9._-]+)(?::\d{1,5})?$/.exec(h);
    if (!m) return null;
    name = m[1]!;
  }
  return name.replace(/\.$/, '');
}

/**
 * Which Host headers are this agent: localhost, the addresses the page is served on, and configured names. A page
 * served on a wildcard address answers on every interface address (re-read every 30 s: DHCP/SLAAC may change them);
 * one served on the LAN's addresses does not accept its WAN address (issue 11, item 2). A DNS-rebinding page at
 * evil.example resolving to the agent's address still sends "Host: evil.example" and is refused.
 */
export class HostAllowList {
  private cached: Set<string> = new Set();
  private readAt = -Infinity;
  private readonly fixed: Set<string>;
  private readonly served = new Set<string>();
  private wildcard = false;

  constructor(
    extra: readonly string[],
    private readonly now: () => number = Date.now,
    private readonly interfaces: () => ReturnType<typeof networkInterfaces> = networkInterfaces,
  ) {
    this.fixed = new Set(['localhost', '127.0.0.1', '::1']);
    for (const e of extra) {
      const n = hostName(isIP(e) === 6 ? `[${e}]` : e);
      if (n) this.fixed.add(n);
    }
  }

  /** A TCP address the page is now served on ("::" or "0.0.0.0": every interface address). */
  serveOn(address: string): void {
    const a = address.toLowerCase().replace(/%.*$/, '').replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1');
    if (a === '::' || a === '0.0.0.0') this.wildcard = true;
    else this.served.add(a);
    this.readAt = -Infinity;
  }

  private current(): Set<string> {
    if (this.now() - this.readAt > 30_000) {
      const s = new Set([...this.fixed, ...this.served]);
      for (const list of this.wildcard ? Object.values(this.interfaces()) : []) {
        for (const a of list ?? []) s.add(a.address.toLowerCase().replace(/%.*$/, ''));
      }
      this.cached = s;
      this.readAt = this.now();
    }
    return this.cached;
  }

  allows(header: string | undefined): boolean {
    const n = hostName(header);
    return n !== null && this.current().has(n);
  }
}

/**
 * A state-changing request must come from this origin: when the browser says where it comes from (Origin,
 * Sec-Fetch-Site), that must be here. Requests without those headers (curl, the CLI) are judged by CSRF token.
 */
export function sameOrigin(headers: Readonly<Record<string, string | string[] | undefined>>, scheme: 'http' | 'https'): boolean {
  const site = headers['sec-fetch-site'];
  if (typeof site === 'string' && site !== 'same-origin' && site !== 'none') return false;
  const origin = headers['origin'];
  if (typeof origin === 'string' && origin !== 'null') {
    const host = headers['host'];
    return typeof host === 'string' && origin.toLowerCase() === `${scheme}://${host.toLowerCase()}`;
  }
  return origin === undefined;
}

export const COOKIE_PLAIN = 'ntm_session';
/** Over TLS the __Host- prefix makes the browser insist on Secure, Path=/ and no Domain (RFC 6265bis §4.1.3.2). */
export const COOKIE_TLS = '__Host-ntm_session';

/** The Set-Cookie value for a session id (or for clearing it: id null). */
export function sessionCookie(id: string | null, tls: boolean, maxAgeS: number): string {
  const name = tls ? COOKIE_TLS : COOKIE_PLAIN;
  const parts = [`${name}=${id ?? ''}`, 'Path=/', 'HttpOnly', 'SameSite=Strict', `Max-Age=${id === null ? 0 : maxAgeS}`];
  if (tls) parts.push('Secure');
  return parts.join('; ');
}

/** The session id from a Cookie header (the name that fits the connection). */
export function readSessionCookie(header: string | undefined, tls: boolean): string | undefined {
  if (!header) return undefined;
  const want = tls ? COOKIE_TLS : COOKIE_PLAIN;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === want) {
      const v = part.slice(eq + 1).trim();
      return /^[A-Za-z0-9_-]{1,100}$/.test(v) ? v : undefined;
    }
  }
  return undefined;
}
