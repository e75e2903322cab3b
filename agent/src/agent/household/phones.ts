// The household's phones and their one-time enrollments: a phone joins by presenting, in its registration with the
// household's DC, the secret of an enrollment the owner made (agent/src/agent/enrollment.ts). Only the secrets'
// SHA-256 hashes are stored.
import { timingSafeEqual } from 'node:crypto';
import { ConflictError, NotFoundError } from '../../types/errors.js';
import type { PhoneView } from '../../types/household.js';
import { SECRET_LENGTH, secretHash } from '../enrollment.js';
import { iso, Part } from './journal.js';
import { LIMITS, validDeviceId, validName, validNtmId, validPorts } from './validate.js';

/** A phone as stored; the runtime adds what only the DC knows (online, virtual address). */
export type StoredPhone = Omit<PhoneView, 'online' | 'virtualV4'>;

interface PhoneRow {
  ntm_id: string;
  name: string;
  enrolled_at: number;
  removed_at: number | null;
  enrollment_id: number | null;
  kind: 'phone' | 'household';
}

interface EnrollmentRow {
  id: number;
  secret_hash: Buffer;
  name: string;
  expires_at: number;
  used_by: string | null;
  used_at: number | null;
  /** A share with another household (issue 13): the device and ports its peer is granted on enrolling. */
  share_device_id: number | null;
  share_ports: string | null;
}

/** What an enrollment that is a share invitation (issue 13 part 1) grants: one device, on these ports. */
export interface EnrollmentShare {
  readonly deviceId: number;
  readonly ports: readonly number[];
}

export class PhoneStore extends Part {
  private phoneView(r: PhoneRow): StoredPhone {
    return { id: r.ntm_id, name: r.name, enrolledAt: iso(r.enrolled_at) };
  }

  /** Enrolled (not removed) phones, by name; `kind` 'household': the other households a device is shared with. */
  phones(kind: 'phone' | 'household' | 'all' = 'phone'): StoredPhone[] {
    const rows = this.db.prepare("SELECT * FROM hh_phones WHERE removed_at IS NULL AND (kind = ? OR ? = 'all') ORDER BY name").all(kind, kind) as PhoneRow[];
    return rows.map((r) => this.phoneView(r));
  }

  phone(id: string): StoredPhone {
    const r = this.db.prepare('SELECT * FROM hh_phones WHERE ntm_id = ? AND removed_at IS NULL').get(validNtmId(id)) as PhoneRow | undefined;
    if (!r) throw new NotFoundError(`there is no phone ${id}`);
    return this.phoneView(r);
  }

  /** May this NTM ID register with the household's DC: an enrolled phone, or an identity of a paired device. */
  isAdmitted(ntmId: string): boolean {
    const id = ntmId.toLowerCase();
    return (
      this.db.prepare('SELECT 1 FROM hh_phones WHERE ntm_id = ? AND removed_at IS NULL').get(id) !== undefined ||
      this.db.prepare('SELECT 1 FROM hh_devices WHERE ntm_id = ? AND paired = 1').get(id) !== undefined
    );
  }

  /**
   * Stores a new enrollment for a phone to be called `name` (only the secret's hash is kept). At most 10 may be
   * pending; the name must be free among phones and pending enrollments.
   */
  createEnrollment(
    name: unknown,
    secret: Uint8Array,
    expiresAt: number,
    share?: EnrollmentShare,
  ): { id: number; name: string; expiresAt: string } {
    const n = validName(name);
    const ports = share ? validPorts(share.ports) : null;
    if (!(secret instanceof Uint8Array) || secret.length !== SECRET_LENGTH) throw new RangeError(`an enrollment secret is ${SECRET_LENGTH} bytes`);
    const now = this.now();
    if (!(expiresAt > now)) throw new RangeError('an enrollment must expire in the future');
    return this.tx(() => {
      if (this.db.prepare('SELECT 1 FROM hh_phones WHERE name = ? AND removed_at IS NULL').get(n)) throw new ConflictError(`a phone called "${n}" is already enrolled`);
      const pending = this.db.prepare('SELECT name FROM hh_enrollments WHERE used_at IS NULL AND expires_at > ?').all(now) as { name: string }[];
      if (pending.some((p) => p.name.toLowerCase() === n.toLowerCase())) throw new ConflictError(`a phone called "${n}" is already being added; use its code or wait until it expires`);
      if (pending.length >= LIMITS.pendingEnrollments) throw new ConflictError(`${LIMITS.pendingEnrollments} phones are already waiting to be added; wait until their codes expire`);
      // Expired and used enrollments older than a day are only history; keep the table small.
      this.db.prepare('DELETE FROM hh_enrollments WHERE expires_at < ? AND (used_at IS NULL OR used_at < ?)').run(now - 86400_000, now - 86400_000);
      let device = '';
      if (share) {
        const d = this.db.prepare('SELECT name, paired FROM hh_devices WHERE id = ?').get(validDeviceId(share.deviceId)) as { name: string; paired: number } | undefined;
        if (!d) throw new NotFoundError(`there is no device ${share.deviceId}`);
        if (d.paired !== 1) throw new ConflictError(`${d.name || 'this device'} is not paired; pair it first`);
        device = d.name;
      }
      const info = this.db
        .prepare('INSERT INTO hh_enrollments (secret_hash, name, created_at, expires_at, share_device_id, share_ports) VALUES (?, ?, ?, ?, ?, ?)')
        .run(secretHash(secret), n, now, expiresAt, share ? share.deviceId : null, ports ? JSON.stringify(ports) : null);
      const valid = `valid for ${Math.round((expiresAt - now) / 60_000)} min`;
      if (share) this.event('share.invited', `An invitation to share ${device} with the household "${n}" was made (${valid})`);
      else this.event('enrollment.created', `A code to add the phone "${n}" was made (${valid})`);
      return { id: Number(info.lastInsertRowid), name: n, expiresAt: iso(expiresAt) };
    });
  }

  /** Enrollments waiting for their phone. */
  pendingEnrollments(): { id: number; name: string; expiresAt: string }[] {
    const rows = this.db.prepare('SELECT id, name, expires_at FROM hh_enrollments WHERE used_at IS NULL AND expires_at > ? ORDER BY id').all(this.now()) as {
      id: number;
      name: string;
      expires_at: number;
    }[];
    return rows.map((r) => ({ id: r.id, name: r.name, expiresAt: iso(r.expires_at) }));
  }

  /**
   * Whether consumeEnrollment would admit this phone with this secret, changing nothing: the DC asks it before the
   * ECDH a request from an unknown ID costs (a request whose MAC is not yet checked must not spend a token).
   */
  enrollmentOpen(secret: Uint8Array, phoneId: string): boolean {
    if (!(secret instanceof Uint8Array) || secret.length !== SECRET_LENGTH) return false;
    const h = secretHash(secret);
    const candidates = this.db
      .prepare('SELECT secret_hash FROM hh_enrollments WHERE (used_at IS NULL AND expires_at > ?) OR used_by = ?')
      .all(this.now(), phoneId.toLowerCase()) as Pick<EnrollmentRow, 'secret_hash'>[];
    let match = false;
    for (const c of candidates) if (c.secret_hash.length === h.length && timingSafeEqual(c.secret_hash, h)) match = true;
    return match;
  }

  /**
   * The DC calls this with the secret from a registration request's token field and the registering phone's ID.
   * Returns the enrolled phone, or null when the secret matches no unused, unexpired enrollment. One-time: a
   * secret admits one phone; the same phone presenting it again (a retransmitted registration whose answer was
   * lost) gets its phone back. Every candidate is compared in constant time, without stopping at a match.
   */
  consumeEnrollment(secret: Uint8Array, phoneId: string): StoredPhone | null {
    const id = validNtmId(phoneId);
    if (!(secret instanceof Uint8Array) || secret.length !== SECRET_LENGTH) return null;
    const now = this.now();
    const h = secretHash(secret);
    return this.tx(() => {
      const candidates = this.db
        .prepare('SELECT * FROM hh_enrollments WHERE (used_at IS NULL AND expires_at > ?) OR used_by = ?')
        .all(now, id) as EnrollmentRow[];
      let match: EnrollmentRow | undefined;
      for (const c of candidates) {
        if (c.secret_hash.length === h.length && timingSafeEqual(c.secret_hash, h) && match === undefined) match = c;
      }
      if (!match) return null;
      if (match.used_at !== null) {
        const p = this.db.prepare('SELECT * FROM hh_phones WHERE ntm_id = ? AND removed_at IS NULL').get(id) as PhoneRow | undefined;
        return p && p.enrollment_id === match.id ? this.phoneView(p) : null;
      }
      const marked = this.db.prepare('UPDATE hh_enrollments SET used_by = ?, used_at = ? WHERE id = ? AND used_at IS NULL').run(id, now, match.id);
      if (marked.changes !== 1) return null;
      const existing = this.db.prepare('SELECT * FROM hh_phones WHERE ntm_id = ?').get(id) as PhoneRow | undefined;
      if (existing && existing.removed_at === null) {
        // Already enrolled: the token is spent, the phone stays as it was.
        this.db.prepare('UPDATE hh_phones SET enrollment_id = ? WHERE ntm_id = ?').run(match.id, id);
        return this.phoneView({ ...existing, enrollment_id: match.id });
      }
      let name = match.name;
      for (let i = 2; this.db.prepare('SELECT 1 FROM hh_phones WHERE name = ? AND removed_at IS NULL').get(name); i++) name = `${match.name} (${i})`;
      const share = match.share_device_id !== null;
      this.db
        .prepare(`INSERT INTO hh_phones (ntm_id, name, enrolled_at, removed_at, enrollment_id, kind) VALUES (?, ?, ?, NULL, ?, ?)
            ON CONFLICT(ntm_id) DO UPDATE SET name = excluded.name, enrolled_at = excluded.enrolled_at, removed_at = NULL,
            enrollment_id = excluded.enrollment_id, kind = excluded.kind`)
        .run(id, name, now, match.id, share ? 'household' : 'phone');
      if (share) {
        // The other household's agent accepted the invitation: its grant is the one the invitation named, in the same
        // transaction (a share is never half made).
        this.db
          .prepare(`INSERT INTO hh_grants (phone_id, device_id, ports, updated_at) VALUES (?, ?, ?, ?)
              ON CONFLICT(phone_id, device_id) DO UPDATE SET ports = excluded.ports, updated_at = excluded.updated_at`)
          .run(id, match.share_device_id, match.share_ports ?? '[]', now);
        this.event('share.accepted', `The household "${name}" accepted the share (${id})`);
      } else this.event('phone.enrolled', `The phone "${name}" was added (${id})`);
      return this.phoneView(this.db.prepare('SELECT * FROM hh_phones WHERE ntm_id = ?').get(id) as PhoneRow);
    });
  }

  /** Removes a phone and every grant it had, in one transaction; its ID is no longer admitted. */
  removePhone(phoneId: string): StoredPhone {
    const id = validNtmId(phoneId);
    return this.tx(() => {
      const p = this.phone(id);
      this.db.prepare('DELETE FROM hh_grants WHERE phone_id = ?').run(id);
      this.db.prepare('UPDATE hh_phones SET removed_at = ? WHERE ntm_id = ?').run(this.now(), id);
      const kind = (this.db.prepare('SELECT kind FROM hh_phones WHERE ntm_id = ?').get(id) as { kind: string }).kind;
      this.event(kind === 'household' ? 'share.revoked' : 'phone.removed', kind === 'household' ? `The share with "${p.name}" was revoked` : `The phone "${p.name}" was removed`);
      return p;
    });
  }
}
