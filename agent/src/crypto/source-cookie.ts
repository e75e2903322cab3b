// Return routability without state (WireGuard paper §5.4.7, "cookie reply"): a cookie is a MAC over the sender's
// address and port under a secret that rotates every two minutes. Whoever echoes it receives at that address, so a
// spoofed source cannot. One HMAC to issue or check, no EC operation, nothing stored per sender. The RS asks for one
// before it binds a tunnel end's address (RELAY_CHALLENGE, docs/protocol.md §3.5); the DC under load before it does
// the ECDH a registration from an unknown ID costs (REGISTRATION_COOKIE, §3.2).
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { hmacSha256 } from './hkdf.js';
import type { Endpoint } from '../types/net.js';

/** WireGuard's COOKIE_SECRET_MAX_AGE; a cookie stays good for one to two of these. */
export const COOKIE_ROTATE_MS = 120_000;
export const COOKIE_BYTES = 16;
/** A source that was given a cookie this recently is not given another (issueOnce). */
export const COOKIE_REPEAT_MS = 1000;
/** Sources remembered per COOKIE_REPEAT_MS; past that, every source is answered (the memory is bounded, not the work). */
const REMEMBERED_SOURCES = 65_536;

export class SourceCookies {
  private current = randomBytes(32);
  private previous = randomBytes(32);
  private rotatedAt: number;
  /** The sources given a cookie in this repeat window and in the last one (two generations: no timer, no sweep). */
  private answered = new Set<string>();
  private answeredBefore = new Set<string>();
  private answeredSince: number;

  constructor(private readonly monotonic: () => number) {
    this.rotatedAt = monotonic();
    this.answeredSince = this.rotatedAt;
  }

  private rotate(): void {
    const now = this.monotonic();
    if (now - this.rotatedAt < COOKIE_ROTATE_MS) return;
    this.previous = now - this.rotatedAt < 2 * COOKIE_ROTATE_MS ? this.current : randomBytes(32);
    this.current = randomBytes(32);
    this.rotatedAt = now;
  }

  private mac(secret: Buffer, source: string): Buffer {
    return hmacSha256(secret, Buffer.from(source)).subarray(0, COOKIE_BYTES);
  }

  /** The cookie `from` must echo. */
  issue(from: Endpoint): Buffer {
    this.rotate();
    return this.mac(this.current, sourceOf(from));
  }

  /**
   * The cookie for a server under load to send, or undefined when `from` was given one less than COOKIE_REPEAT_MS ago
   * (1-2 windows). A sender needs one cookie per COOKIE_ROTATE_MS, and retransmits no sooner than every 0.5 s, so
   * a true sender loses at most a second if that cookie was lost; a flood's repeated sources cost a set lookup each
   * instead of an HMAC and a datagram sent (the send was most of the DC's cost per refused request, issue 11 #4).
   */
  issueOnce(from: Endpoint): Buffer | undefined {
    const now = this.monotonic();
    if (now - this.answeredSince >= COOKIE_REPEAT_MS) {
      this.answeredBefore = now - this.answeredSince >= 2 * COOKIE_REPEAT_MS ? new Set() : this.answered;
      this.answered = new Set();
      this.answeredSince = now;
    }
    const key = sourceOf(from);
    if (this.answered.has(key) || this.answeredBefore.has(key)) return undefined;
    if (this.answered.size < REMEMBERED_SOURCES) this.answered.add(key);
    this.rotate();
    return this.mac(this.current, key);
  }

  /** True when `cookie` was issued to exactly this address and port under the current or the previous secret. */
  valid(cookie: Buffer | undefined, from: Endpoint): boolean {
    if (!cookie || cookie.length !== COOKIE_BYTES) return false;
    this.rotate();
    const source = sourceOf(from);
    return timingSafeEqual(cookie, this.mac(this.current, source)) || timingSafeEqual(cookie, this.mac(this.previous, source));
  }

  /**
   * For messages that carry a MAC keyed by the cookie rather than the cookie (WireGuard's mac2): whether `mac` is
   * `macOf(cookie)` for the cookie `from` was issued under the current or the previous secret.
   */
  validKeyed(from: Endpoint, macOf: (cookie: Buffer) => Buffer, mac: Uint8Array): boolean {
    this.rotate();
    const source = sourceOf(from);
    const a = macOf(this.mac(this.current, source));
    if (a.length === mac.length && timingSafeEqual(a, mac)) return true;
    const b = macOf(this.mac(this.previous, source));
    return b.length === mac.length && timingSafeEqual(b, mac);
  }
}

/** What a cookie is bound to: the sender's address and port. */
function sourceOf(from: Endpoint): string {
  return `${from.address} ${from.port}`;
}
