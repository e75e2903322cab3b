// The web owner (one password, like a router's), the household's name, sessions and failed sign-ins: the OwnerStore
// the web server is given (agent/src/types/owner.ts). Session ids are stored only as SHA-256 hashes.
import { ConflictError, NotFoundError } from '../../types/errors.js';
import type { OwnerStore, SessionRecord } from '../../types/owner.js';
import { Part } from './journal.js';
import { LIMITS, validHouseholdName } from './validate.js';

/** The one web user: the household's owner (a household has one admin password, like a router). */
export const OWNER = 'owner';

export class SqliteOwnerStore extends Part implements OwnerStore {
  householdName(): string {
    const r = this.db.prepare("SELECT value FROM hh_meta WHERE key = 'household_name'").get() as { value: string } | undefined;
    return r?.value ?? 'Home';
  }

  setHouseholdName(name: unknown, field = 'name'): string {
    const n = validHouseholdName(name, field);
    this.tx(() => {
      this.db.prepare("INSERT INTO hh_meta (key, value) VALUES ('household_name', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value").run(n);
      this.event('household.renamed', `The household is now called "${n}"`);
    });
    return n;
  }

  hasOwner(): boolean {
    return this.db.prepare('SELECT 1 FROM hh_users WHERE name = ?').get(OWNER) !== undefined;
  }

  /**
   * First start: sets the owner's password hash (and the household's name, when given) in one transaction.
   * ConflictError when an owner exists (two setups racing cannot both win).
   */
  setupOwner(passwordHash: string, householdName?: string): void {
    const name = householdName === undefined ? undefined : validHouseholdName(householdName, 'household');
    this.tx(() => {
      if (this.hasOwner()) throw new ConflictError('the owner\'s password is already set; sign in instead');
      const now = this.now();
      this.db.prepare('INSERT INTO hh_users (name, password_hash, created_at, updated_at) VALUES (?, ?, ?, ?)').run(OWNER, passwordHash, now, now);
      if (name !== undefined) this.setHouseholdName(name, 'household');
      this.event('web.setup', 'The owner\'s password was set');
    });
  }

  ownerPasswordHash(): string | null {
    const r = this.db.prepare('SELECT password_hash FROM hh_users WHERE name = ?').get(OWNER) as { password_hash: string } | undefined;
    return r?.password_hash ?? null;
  }

  /** Replaces the owner's password hash and ends every other session. */
  changeOwnerPassword(passwordHash: string, keepSessionHash?: Buffer): void {
    this.tx(() => {
      const r = this.db.prepare('UPDATE hh_users SET password_hash = ?, updated_at = ? WHERE name = ?').run(passwordHash, this.now(), OWNER);
      if (r.changes !== 1) throw new NotFoundError('there is no owner yet');
      if (keepSessionHash) this.db.prepare('DELETE FROM hh_sessions WHERE id_hash <> ?').run(keepSessionHash);
      else this.db.prepare('DELETE FROM hh_sessions').run();
      this.event('web.password', 'The owner\'s password was changed');
    });
  }

  /** The ISP's reset (`ntm agent reset-owner`): no owner, no sessions; the next start shows the setup screen. */
  resetOwner(): void {
    this.tx(() => {
      this.db.prepare('DELETE FROM hh_sessions').run();
      this.db.prepare('DELETE FROM hh_users').run();
      this.event('web.reset', 'The owner\'s password was reset');
    });
  }

  createSession(idHash: Buffer, csrf: string, expiresAt: number): void {
    const now = this.now();
    this.tx(() => {
      this.db.prepare('DELETE FROM hh_sessions WHERE expires_at <= ?').run(now);
      this.db.prepare('INSERT INTO hh_sessions (id_hash, user, csrf, created_at, last_seen_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)').run(idHash, OWNER, csrf, now, now, expiresAt);
      // Bounded: the oldest sessions beyond the limit end (a forgotten tablet, not the person signing in now).
      this.db
        .prepare('DELETE FROM hh_sessions WHERE id_hash NOT IN (SELECT id_hash FROM hh_sessions ORDER BY last_seen_at DESC LIMIT ?)')
        .run(LIMITS.sessions);
    });
  }

  /** The session with this id hash, or null when unknown or expired. */
  session(idHash: Buffer): SessionRecord | null {
    const r = this.db.prepare('SELECT * FROM hh_sessions WHERE id_hash = ?').get(idHash) as
      | { user: string; csrf: string; created_at: number; last_seen_at: number; expires_at: number }
      | undefined;
    if (!r) return null;
    if (r.expires_at <= this.now()) {
      this.db.prepare('DELETE FROM hh_sessions WHERE id_hash = ?').run(idHash);
      return null;
    }
    return { user: r.user, csrf: r.csrf, createdAt: r.created_at, lastSeenAt: r.last_seen_at, expiresAt: r.expires_at };
  }

  touchSession(idHash: Buffer, expiresAt: number): void {
    this.db.prepare('UPDATE hh_sessions SET last_seen_at = ?, expires_at = ? WHERE id_hash = ?').run(this.now(), expiresAt, idHash);
  }

  deleteSession(idHash: Buffer): void {
    this.db.prepare('DELETE FROM hh_sessions WHERE id_hash = ?').run(idHash);
  }

  /**
   * Counts a failed sign-in (wrong password or setup code) by `client` (an address or /64). The web layer records
   * the failure before checking the password and forgets it on success, so concurrent guesses count at once.
   */
  recordLoginFailure(client: string, now: number = this.now()): number {
    const info = this.db.prepare('INSERT INTO hh_login_attempts (client, at) VALUES (?, ?)').run(client, now);
    // Only the last hour matters to any limit; older rows go.
    this.db.prepare('DELETE FROM hh_login_attempts WHERE at < ?').run(now - 3600_000);
    return Number(info.lastInsertRowid);
  }

  latestLoginFailure(): number | null {
    return (this.db.prepare('SELECT MAX(at) AS t FROM hh_login_attempts').get() as { t: number | null }).t;
  }

  /** Withdraws a failure recorded in advance (the password was right). */
  forgetLoginFailure(id: number): void {
    this.db.prepare('DELETE FROM hh_login_attempts WHERE id = ?').run(id);
  }

  /** Failed sign-ins since `since` (ms), by one client or (client undefined) by all. */
  loginFailuresSince(since: number, client?: string): number {
    const r = (
      client === undefined
        ? this.db.prepare('SELECT COUNT(*) AS n FROM hh_login_attempts WHERE at > ?').get(since)
        : this.db.prepare('SELECT COUNT(*) AS n FROM hh_login_attempts WHERE client = ? AND at > ?').get(client, since)
    ) as { n: number };
    return r.n;
  }

  /** The oldest failure since `since` by this client (to compute Retry-After), or null. */
  oldestLoginFailureSince(since: number, client: string): number | null {
    const r = this.db.prepare('SELECT MIN(at) AS t FROM hh_login_attempts WHERE client = ? AND at > ?').get(client, since) as { t: number | null };
    return r.t;
  }
}
