// Return routability for RELAY_BIND (issue 11: "the RS bind does not cover the sender's address"): a bind from an
// address the tunnel has not bound yet is answered with a cookie, a MAC over that source address and port under a
// secret that rotates, and binds only when re-sent with the cookie echoed. Whoever echoes it receives at that address,
// so a spoofed source cannot point relayed traffic at a victim. Stateless and cheap, as WireGuard's cookie reply
// (WireGuard paper §5.4.7): one HMAC, no EC operation, nothing stored per sender.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Endpoint } from '../types/net.js';
import { BIND_COOKIE_BYTES } from '../protocol/relay.js';

/** WireGuard's COOKIE_SECRET_MAX_AGE; a cookie stays good for one to two of these. */
const ROTATE_MS = 120_000;

export class BindCookies {
  private current = randomBytes(32);
  private previous = randomBytes(32);
  private rotatedAt: number;

  constructor(private readonly monotonic: () => number) {
    this.rotatedAt = monotonic();
  }

  private rotate(): void {
    const now = this.monotonic();
    if (now - this.rotatedAt < ROTATE_MS) return;
    this.previous = now - this.rotatedAt < 2 * ROTATE_MS ? this.current : randomBytes(32);
    this.current = randomBytes(32);
    this.rotatedAt = now;
  }

  private mac(secret: Buffer, from: Endpoint): Buffer {
    return createHmac('sha256', secret).update(`${from.address} ${from.port}`).digest().subarray(0, BIND_COOKIE_BYTES);
  }

  /** The cookie `from` must echo. */
  issue(from: Endpoint): Buffer {
    this.rotate();
    return this.mac(this.current, from);
  }

  /** True when `cookie` was issued to exactly this address and port under the current or the previous secret. */
  valid(cookie: Buffer | undefined, from: Endpoint): boolean {
    if (!cookie || cookie.length !== BIND_COOKIE_BYTES) return false;
    this.rotate();
    return timingSafeEqual(cookie, this.mac(this.current, from)) || timingSafeEqual(cookie, this.mac(this.previous, from));
  }
}
