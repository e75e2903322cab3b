// Who may use the household's web page: the owner's password (scrypt, memory-hard), the one-time setup code that
// proves presence on first start, sign-in rate limits, and sessions (random ids, stored hashed, with a CSRF token).
import { createHash, randomBytes, randomInt, scrypt, timingSafeEqual } from 'node:crypto';
import { isIPv6 } from 'node:net';
import { InputError } from '../../agent/src/types/errors.js';
import type { OwnerStore, SessionRecord } from '../../agent/src/types/owner.js';
import { RateLimitedError } from './errors.js';

/**
 * scrypt (RFC 7914) parameters: N = 2^15, r = 8 costs 32 MiB and ~0.1 s per guess on the vCPE, the OWASP minimum
 * for scrypt. They are stored with each hash, so they can be raised later without locking anyone out.
 */
export const SCRYPT = { logN: 15, r: 8, p: 1, keyLength: 32, saltLength: 16 } as const;

export const PASSWORD_MIN = 8;
export const PASSWORD_MAX = 256;

function scryptAsync(password: string, salt: Buffer, logN: number, r: number, p: number, keyLength: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // maxmem must exceed 128·N·r (exactly 32 MiB here), which is Node's default limit.
    scrypt(password.normalize('NFC'), salt, keyLength, { N: 2 ** logN, r, p, maxmem: 256 * 2 ** logN * r }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** Checks the password policy; throws InputError naming `field`. */
export function checkPasswordPolicy(password: string, field = 'password'): void {
  const n = [...password].length;
  if (n < PASSWORD_MIN) throw new InputError(`the password must be at least ${PASSWORD_MIN} characters`, field);
  if (n > PASSWORD_MAX) throw new InputError(`the password must be at most ${PASSWORD_MAX} characters`, field);
}

/** "scrypt$<logN>$<r>$<p>$<salt b64>$<key b64>" with a fresh 16-byte salt. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(SCRYPT.saltLength);
  const key = await scryptAsync(password, salt, SCRYPT.logN, SCRYPT.r, SCRYPT.p, SCRYPT.keyLength);
  return ['scrypt', SCRYPT.logN, SCRYPT.r, SCRYPT.p, salt.toString('base64'), key.toString('base64')].join('$');
}

/** Recomputes with the stored parameters and compares in constant time; false for a malformed stored hash. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [logN, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
  if (![logN, r, p].every((x) => Number.isInteger(x) && x > 0) || logN > 20 || r > 32 || p > 16) return false;
  const salt = Buffer.from(parts[4]!, 'base64');
  const want = Buffer.from(parts[5]!, 'base64');
  if (want.length < 16) return false;
  const got = await scryptAsync(password, salt, logN, r, p, want.length);
  return timingSafeEqual(got, want);
}

export function sha256(data: string | Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

/** Constant-time equality of two strings of any length (compares their SHA-256 digests). */
export function safeEqual(a: string, b: string): boolean {
  return timingSafeEqual(sha256(a), sha256(b));
}

/** A random token: `bytes` from the CSPRNG, base64url. */
export function newToken(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}

// --- the setup code ---------------------------------------------------------------------------------------------

/** No 0/O, 1/I/L: the code is typed from paper. 32 symbols × 12 = 60 bits; guessing is rate-limited to 10/min. */
const SETUP_ALPHABET = 'ABCDEFGHJKMNPQRSTUVWXYZ23456789';

/** A fresh code like "K7QM-2XPA-9RWD". */
export function generateSetupCode(): string {
  let s = '';
  for (let i = 0; i < 12; i++) s += SETUP_ALPHABET[randomInt(SETUP_ALPHABET.length)];
  return `${s.slice(0, 4)}-${s.slice(4, 8)}-${s.slice(8)}`;
}

/** Uppercase, without the spaces and dashes a person may type or leave out. */
export function normaliseSetupCode(s: string): string {
  return s.toUpperCase().replace(/[\s-]/g, '');
}

export function setupCodeMatches(given: string, expected: string): boolean {
  return safeEqual(normaliseSetupCode(given), normaliseSetupCode(expected));
}

// --- rate limit ---------------------------------------------------------------------------------------------------

/**
 * The key a client is counted under: its IPv4 address, or its IPv6 /64 (a host picks any address in its /64, so
 * counting single IPv6 addresses would let one client rotate past the limit). Unix-socket clients share one key.
 */
export function clientKey(remoteAddress: string | undefined): string {
  if (!remoteAddress) return 'local';
  const a = remoteAddress.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, '$1').replace(/%.*$/, '');
  if (!isIPv6(a)) return a;
  const groups = expand6(a).slice(0, 4);
  return `${groups.join(':')}::/64`;
}

function expand6(a: string): string[] {
  const [head, tail] = a.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const fill = tail === undefined ? [] : new Array<string>(8 - h.length - t.length).fill('0');
  return [...h, ...fill, ...t].map((g) => g.toLowerCase().replace(/^0+(?=.)/, ''));
}

export interface LimitPolicy {
  /** Failures one client may have within `windowMs` before further attempts are refused (10: the 11th is refused). */
  readonly perClient: number;
  readonly windowMs: number;
}

export const DEFAULT_LIMITS: LimitPolicy = { perClient: 10, windowMs: 60_000 };

/**
 * Sign-in and setup-code attempts, counted per client in the store so a restart does not reset them. There is no
 * limit over all clients together: it let anyone who could reach the page lock the owner out (issue 11, item 2: 11
 * sources × 10 wrong passwords and the owner's right one got 429). Guessing from many sources stays slow (each guess
 * costs a scrypt), and the page answers only the LAN by default.
 *
 * Failures are stamped on the limiter's own clock, which only goes up: it starts at the later of the wall clock and
 * the latest failure stored, and runs on the monotonic clock from there. On the wall clock alone, failures stamped
 * during a boot with the clock in 2046 counted forever once the clock was right (a Retry-After of 20 years was seen);
 * here they expire a window after the limiter's time passes them, and a clock stepped back while running changes
 * nothing.
 */
export class LoginLimiter {
  private readonly base: number;
  private readonly start: number;

  constructor(
    private readonly store: OwnerStore,
    wallNow: () => number,
    private readonly policy: LimitPolicy = DEFAULT_LIMITS,
    private readonly monotonic: () => number = () => performance.now(),
  ) {
    this.base = Math.max(wallNow(), store.latestLoginFailure() ?? -Infinity);
    this.start = monotonic();
  }

  /** The limiter's clock (ms): never earlier than any failure it stored. */
  now(): number {
    return this.base + (this.monotonic() - this.start);
  }

  /** Throws RateLimitedError when this client has failed too often lately. */
  check(client: string): void {
    const since = this.now() - this.policy.windowMs;
    if (this.store.loginFailuresSince(since, client) >= this.policy.perClient) {
      const oldest = this.store.oldestLoginFailureSince(since, client) ?? this.now();
      throw new RateLimitedError(Math.max(1, Math.ceil((oldest + this.policy.windowMs - this.now()) / 1000)));
    }
  }

  /**
   * Call right after check(), before the slow password check: counts the attempt as failed at once (so parallel
   * guesses cannot all slip past check()), and returns the function that withdraws it when the attempt succeeds.
   */
  attempt(client: string): () => void {
    const id = this.store.recordLoginFailure(client, this.now());
    return () => this.store.forgetLoginFailure(id);
  }
}

// --- sessions -------------------------------------------------------------------------------------------------------

export interface SessionPolicy {
  /** A session unused this long ends (ms). */
  readonly idleMs: number;
  /** A session ends this long after sign-in whatever happens (ms). */
  readonly absoluteMs: number;
}

export const DEFAULT_SESSIONS: SessionPolicy = { idleMs: 12 * 3600_000, absoluteMs: 7 * 86400_000 };

export interface Session extends SessionRecord {
  readonly idHash: Buffer;
}

/** Sessions: the cookie holds a random id; the store holds its SHA-256 (a copied database opens no session). */
export class Sessions {
  constructor(
    private readonly store: OwnerStore,
    private readonly now: () => number,
    readonly policy: SessionPolicy = DEFAULT_SESSIONS,
  ) {}

  create(): { id: string; session: Session } {
    const id = newToken(32);
    const csrf = newToken(32);
    const idHash = sha256(id);
    const now = this.now();
    const expiresAt = Math.min(now + this.policy.idleMs, now + this.policy.absoluteMs);
    this.store.createSession(idHash, csrf, expiresAt);
    return { id, session: { idHash, user: 'owner', csrf, createdAt: now, lastSeenAt: now, expiresAt } };
  }

  /** The live session for a cookie value, sliding its idle expiry (written at most once a minute). */
  get(id: string | undefined): Session | null {
    if (!id || id.length > 100) return null;
    const idHash = sha256(id);
    const s = this.store.session(idHash);
    if (!s) return null;
    const now = this.now();
    if (now - s.lastSeenAt > 60_000) {
      const expiresAt = Math.min(now + this.policy.idleMs, s.createdAt + this.policy.absoluteMs);
      this.store.touchSession(idHash, expiresAt);
      return { ...s, idHash, lastSeenAt: now, expiresAt };
    }
    return { ...s, idHash };
  }

  /** Still valid (for long-lived streams that checked once at the start). */
  alive(idHash: Buffer): boolean {
    return this.store.session(idHash) !== null;
  }

  end(idHash: Buffer): void {
    this.store.deleteSession(idHash);
  }
}
