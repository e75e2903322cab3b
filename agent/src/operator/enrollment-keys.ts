// Enrollment keys of an ISP-run DC, as operators know them from Tailscale auth keys and NetBird setup keys: a secret
// that lets a new terminal register with a DC that is closed to strangers (`operator.admission = "key"`), with an
// expiry, a use limit, revocation and tags (the subscriber's plan, …).
//
// What a key enrolls, precisely: one use admits one terminal identity (an `ntm up` phone or laptop, a key pair it made
// itself) to the DC that issued the key, on that identity's first registration. The key travels in the phone
// enrollment token's format (agent/enrollment.ts: DC public key, DC addresses, 16-byte secret, expiry), so `ntm enroll
// KEY` works unchanged and refuses an expired key before sending anything. The DC sees only the secret (the
// registration request's token field, docs/protocol.md §3.2); this store keeps its SHA-256. Once admitted, a terminal
// re-registers by its own key: revoking the key stops new enrollments, not terminals already in (revoke those one by
// one, `DELETE`-like, through the operator API). A key does not provision a household agent (that is `ntm provision`'s
// bundle, installed by the ISP itself) and is not a household's phone token (the household's own DC issues those).
import { newSecret, encodeEnrollment, secretHash, SECRET_LENGTH } from '../agent/enrollment.js';
import { migrate, type Db } from '../store/db.js';
import { InputError, NotFoundError } from '../types/errors.js';
import type { Endpoint } from '../types/net.js';
import { randomBytes } from 'node:crypto';

const MIGRATIONS = {
  module: 'enrollment-keys',
  steps: [
    `CREATE TABLE enrollment_keys (
       id TEXT PRIMARY KEY,
       secret_hash BLOB NOT NULL UNIQUE,
       subscriber TEXT NOT NULL,
       tags TEXT NOT NULL,
       description TEXT NOT NULL,
       created_at INTEGER NOT NULL,
       expires_at INTEGER NOT NULL,
       max_uses INTEGER NOT NULL,
       uses INTEGER NOT NULL DEFAULT 0,
       revoked_at INTEGER);
     CREATE TABLE enrollment_key_uses (
       terminal_id TEXT PRIMARY KEY,
       key_id TEXT NOT NULL REFERENCES enrollment_keys(id),
       at INTEGER NOT NULL);`,
  ],
};

export type KeyState = 'valid' | 'revoked' | 'expired' | 'used-up';

export interface KeyInfo {
  /** "k" + 12 hex digits: names the key in lists, logs and the API (never the secret). */
  readonly id: string;
  readonly subscriber: string;
  readonly tags: string[];
  readonly description: string;
  readonly createdAt: number;
  readonly expiresAt: number;
  /** 0: any number of terminals (Tailscale's "reusable"). */
  readonly maxUses: number;
  readonly uses: number;
  readonly revokedAt: number | null;
  readonly state: KeyState;
}

export interface NewKeyInput {
  readonly subscriber?: string;
  readonly tags?: readonly string[];
  readonly description?: string;
  readonly ttlMs: number;
  readonly maxUses: number;
  /** The issuing DC as terminals reach it (written into the key). */
  readonly dcPublicKey: Uint8Array;
  readonly dcEndpoints: readonly Endpoint[];
}

/** Why a registration was not admitted; each is counted (ntm_dc_enrollment_refusals_total) and logged with the key's id. */
export type RefusalReason = 'no-key' | 'unknown-key' | 'revoked' | 'expired' | 'used-up';

/** `again`: the terminal was admitted before (its address lease expired since, dc/expiry.ts); no use is counted. */
export type AdmitVerdict = { readonly ok: true; readonly keyId: string; readonly again?: boolean } | { readonly ok: false; readonly reason: RefusalReason; readonly keyId?: string };

export interface TerminalEnrollment {
  readonly keyId: string;
  readonly subscriber: string;
  readonly tags: string[];
  readonly at: number;
}

/** The longest a key may live: Tailscale's limit too (90 days); a forgotten key should not admit strangers forever. */
export const MAX_KEY_TTL_MS = 90 * 86_400_000;
const TAG = /^[a-z0-9][a-z0-9:_.-]{0,63}$/;
const SUBSCRIBER = /^[A-Za-z0-9_-]{0,64}$/;

interface Row {
  id: string;
  subscriber: string;
  tags: string;
  description: string;
  created_at: number;
  expires_at: number;
  max_uses: number;
  uses: number;
  revoked_at: number | null;
}

export class EnrollmentKeys {
  constructor(
    private readonly db: Db,
    private readonly now: () => number = Date.now,
  ) {
    migrate(db, MIGRATIONS);
  }

  /** Creates a key; returns it with its text form (shown once: only the hash is kept). */
  create(input: NewKeyInput): { key: KeyInfo; token: string } {
    const tags = [...new Set(input.tags ?? [])];
    for (const t of tags) if (!TAG.test(t)) throw new InputError(`bad tag "${t}" (lowercase letters, digits and : _ . -, at most 64)`, 'tags');
    const subscriber = input.subscriber ?? '';
    if (!SUBSCRIBER.test(subscriber)) throw new InputError(`bad subscriber id "${subscriber}"`, 'subscriber');
    const description = input.description ?? '';
    if (Buffer.byteLength(description) > 63) throw new InputError('the description must be at most 63 bytes', 'description');
    if (!Number.isInteger(input.maxUses) || input.maxUses < 0 || input.maxUses > 1_000_000) throw new InputError('uses must be 0 (unlimited) to 1000000', 'maxUses');
    if (!(input.ttlMs >= 1000 && input.ttlMs <= MAX_KEY_TTL_MS)) throw new InputError('a key expires between 1 second and 90 days after its creation', 'ttl');
    if (input.dcEndpoints.length === 0) throw new InputError('the DC has no address to write into the key (give the DC --advertise)', 'advertise');
    const now = this.now();
    // Whole seconds, rounded down, as the token carries them: the store never outlives the printed expiry.
    const expiresAt = Math.floor((now + input.ttlMs) / 1000) * 1000;
    const secret = newSecret();
    const id = 'k' + randomBytes(6).toString('hex');
    const token = encodeEnrollment({
      dcPublicKey: input.dcPublicKey,
      dcEndpoints: input.dcEndpoints.slice(0, 4),
      secret,
      // What the terminal shows before joining ("Join …?").
      household: description || subscriber || 'ISP network',
      expiresAt,
    });
    this.db
      .prepare('INSERT INTO enrollment_keys (id, secret_hash, subscriber, tags, description, created_at, expires_at, max_uses) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(id, secretHash(secret), subscriber, JSON.stringify(tags), description, now, expiresAt, input.maxUses);
    return { key: this.get(id), token };
  }

  get(id: string): KeyInfo {
    const row = this.db.prepare('SELECT * FROM enrollment_keys WHERE id = ?').get(id) as Row | undefined;
    if (!row) throw new NotFoundError(`no enrollment key ${id}`);
    return this.info(row);
  }

  list(): KeyInfo[] {
    return (this.db.prepare('SELECT * FROM enrollment_keys ORDER BY created_at, id').all() as Row[]).map((r) => this.info(r));
  }

  /** Revokes a key (idempotent): no terminal enrolls with it any more. Terminals already admitted stay. */
  revoke(id: string): KeyInfo {
    const r = this.db.prepare('UPDATE enrollment_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(this.now(), id);
    if (r.changes === 0) this.get(id); // NotFoundError when there is no such key
    return this.get(id);
  }

  /**
   * The DC's admission decision for a terminal seen for the first time (DcServerOptions.admit): a valid key's use is
   * counted and the terminal remembered with its key's tags, in one transaction. Synchronous (the DC's packet path).
   */
  admit(terminalId: string, token: Uint8Array): AdmitVerdict {
    // A terminal this DC admitted once comes back without its key (spent) once its address lease has expired.
    const before = this.db.prepare('SELECT key_id FROM enrollment_key_uses WHERE terminal_id = ?').get(terminalId.toLowerCase()) as { key_id: string } | undefined;
    if (before) return { ok: true, keyId: before.key_id, again: true };
    if (token.length !== SECRET_LENGTH) return { ok: false, reason: 'no-key' };
    return this.db.transaction((): AdmitVerdict => {
      const row = this.db.prepare('SELECT * FROM enrollment_keys WHERE secret_hash = ?').get(secretHash(token)) as Row | undefined;
      if (!row) return { ok: false, reason: 'unknown-key' };
      const state = this.info(row).state;
      if (state !== 'valid') return { ok: false, reason: state, keyId: row.id };
      this.db.prepare('UPDATE enrollment_keys SET uses = uses + 1 WHERE id = ?').run(row.id);
      this.db.prepare('INSERT OR REPLACE INTO enrollment_key_uses (terminal_id, key_id, at) VALUES (?, ?, ?)').run(terminalId.toLowerCase(), row.id, this.now());
      return { ok: true, keyId: row.id };
    })();
  }

  /** Terminal ID → the key that admitted it (with the key's subscriber and tags). */
  enrollments(): Map<string, TerminalEnrollment> {
    const rows = this.db
      .prepare('SELECT u.terminal_id, u.key_id, u.at, k.subscriber, k.tags FROM enrollment_key_uses u JOIN enrollment_keys k ON k.id = u.key_id')
      .all() as Array<{ terminal_id: string; key_id: string; at: number; subscriber: string; tags: string }>;
    return new Map(rows.map((r) => [r.terminal_id, { keyId: r.key_id, subscriber: r.subscriber, tags: JSON.parse(r.tags) as string[], at: r.at }]));
  }

  private info(r: Row): KeyInfo {
    const state: KeyState =
      r.revoked_at !== null ? 'revoked' : r.expires_at <= this.now() ? 'expired' : r.max_uses > 0 && r.uses >= r.max_uses ? 'used-up' : 'valid';
    return {
      id: r.id,
      subscriber: r.subscriber,
      tags: JSON.parse(r.tags) as string[],
      description: r.description,
      createdAt: r.created_at,
      expiresAt: r.expires_at,
      maxUses: r.max_uses,
      uses: r.uses,
      revokedAt: r.revoked_at,
      state,
    };
  }
}

/** "90d", "12h", "30m", "45s" → ms (the CLI's and the API's --expires). */
export function parseDuration(text: string): number {
  const m = /^(\d+)\s*(s|m|h|d)$/.exec(text.trim());
  if (!m) throw new InputError(`"${text}" is not a duration (like 30m, 12h, 90d)`, 'expires');
  return Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 's' | 'm' | 'h' | 'd'];
}
