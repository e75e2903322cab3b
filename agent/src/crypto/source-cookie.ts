// Return routability without state (WireGuard paper §5.4.7, "cookie reply"): a cookie is a MAC over the sender's
// address and port under a secret that rotates every two minutes. Whoever echoes it receives at that address, so a
// spoofed source cannot. One HMAC to issue or check, no EC operation, nothing stored per sender. The RS asks for one
// before it binds a tunnel end's address (RELAY_CHALLENGE, docs/protocol.md §3.5); the DC under load before it does
// the ECDH a registration from an unknown ID costs (REGISTRATION_COOKIE, §3.2).
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Endpoint } from '../types/net.js';

/** WireGuard's COOKIE_SECRET_MAX_AGE; a cookie stays good for one to two of these. */
export const COOKIE_ROTATE_MS = 120_000;
export const COOKIE_BYTES = 16;

export class SourceCookies {
  private current = randomBytes(32);
  private previous = randomBytes(32);
  private rotatedAt: number;

  constructor(private readonly monotonic: () => number) {
    this.rotatedAt = monotonic();
  }

  private rotate(): void {
    const now = this.monotonic();
    if (now - this.rotatedAt < COOKIE_ROTATE_MS) return;
    this.previous = now - this.rotatedAt < 2 * COOKIE_ROTATE_MS ? this.current : randomBytes(32);
    this.current = randomBytes(32);
    this.rotatedAt = now;
  }

  private mac(secret: Buffer, from: Endpoint): Buffer {
    return createHmac('sha256', secret).update(`${from.address} ${from.port}`).digest().subarray(0, COOKIE_BYTES);
  }

  /** The cookie `from` must echo. */
  issue(from: Endpoint): Buffer {
    this.rotate();
    return this.mac(this.current, from);
  }

  /** True when `cookie` was issued to exactly this address and port under the current or the previous secret. */
  valid(cookie: Buffer | undefined, from: Endpoint): boolean {
    if (!cookie || cookie.length !== COOKIE_BYTES) return false;
    this.rotate();
    return timingSafeEqual(cookie, this.mac(this.current, from)) || timingSafeEqual(cookie, this.mac(this.previous, from));
  }

  /**
   * For messages that carry a MAC keyed by the cookie rather than the cookie (WireGuard's mac2): whether `mac` is
   * `macOf(cookie)` for the cookie `from` was issued under the current or the previous secret.
   */
  validKeyed(from: Endpoint, macOf: (cookie: Buffer) => Buffer, mac: Uint8Array): boolean {
    this.rotate();
    const a = macOf(this.mac(this.current, from));
    if (a.length === mac.length && timingSafeEqual(a, mac)) return true;
    const b = macOf(this.mac(this.previous, from));
    return b.length === mac.length && timingSafeEqual(b, mac);
  }
}
