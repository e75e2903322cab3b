// The household's state in SQLite (module "household"): devices (discovered and paired, with the NTM identity the
// agent holds for each), phones, access grants, one-time enrollments, the web owner's password hash, sessions,
// login attempts and a bounded event log. Every change that touches more than one row is one transaction, so a
// crash or a refused step never leaves half of it saved; validation errors are InputError (with the field),
// NotFoundError or ConflictError and carry messages fit to show to the household.
//
// Threading: synchronous, on the event loop (better-sqlite3). Secrets: enrollment secrets and session ids are kept
// only as SHA-256 hashes; the paired devices' private keys are stored as hex (the agent must sign for them after a
// restart) and leave this module only through pairedIdentities().
import { timingSafeEqual } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import type { DiscoveredDevice } from '../discovery/types.js';
import { normaliseMac } from '../discovery/neighbours.js';
import { canonicalIp } from '../protocol/ip.js';
import { migrate, openDb, type Db } from '../store/db.js';
import { ConflictError, InputError, NotFoundError } from '../types/errors.js';
import type { AgentEvent, DeviceSource, DeviceView, GrantView, PairInput, PhoneView } from '../types/household.js';
import { SECRET_LENGTH, secretHash } from './enrollment.js';
import { nameLabel, ntmHostName } from './names.js';

export const HOUSEHOLD_MIGRATIONS = {
  module: 'household',
  steps: [
    `CREATE TABLE hh_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE hh_devices (
       id INTEGER PRIMARY KEY AUTOINCREMENT,
       name TEXT NOT NULL DEFAULT '' COLLATE NOCASE,
       name_by_user INTEGER NOT NULL DEFAULT 0,
       kind TEXT NOT NULL DEFAULT '',
       kind_by_user INTEGER NOT NULL DEFAULT 0,
       mac TEXT UNIQUE,
       ipv4 TEXT,
       ipv6 TEXT,
       host TEXT,
       sources TEXT NOT NULL DEFAULT '',
       online INTEGER NOT NULL DEFAULT 0,
       last_seen INTEGER,
       created_at INTEGER NOT NULL,
       paired INTEGER NOT NULL DEFAULT 0,
       ntm_private_key TEXT,
       ntm_id TEXT UNIQUE,
       virtual_v4 TEXT UNIQUE,
       virtual_v6 TEXT UNIQUE,
       paired_at INTEGER,
       unpaired_at INTEGER,
       CHECK (paired = 0 OR (ntm_private_key IS NOT NULL AND ntm_id IS NOT NULL)));
     CREATE UNIQUE INDEX hh_devices_name ON hh_devices(name) WHERE name <> '';
     CREATE TABLE hh_phones (
       ntm_id TEXT PRIMARY KEY,
       name TEXT NOT NULL COLLATE NOCASE,
       enrolled_at INTEGER NOT NULL,
       removed_at INTEGER,
       enrollment_id INTEGER);
     CREATE UNIQUE INDEX hh_phones_name ON hh_phones(name) WHERE removed_at IS NULL;
     CREATE TABLE hh_grants (
       phone_id TEXT NOT NULL REFERENCES hh_phones(ntm_id),
       device_id INTEGER NOT NULL REFERENCES hh_devices(id),
       ports TEXT NOT NULL,
       updated_at INTEGER NOT NULL,
       PRIMARY KEY (phone_id, device_id));
     CREATE TABLE hh_enrollments (
       id INTEGER PRIMARY KEY AUTOINCREMENT,
       secret_hash BLOB NOT NULL UNIQUE,
       name TEXT NOT NULL,
       created_at INTEGER NOT NULL,
       expires_at INTEGER NOT NULL,
       used_by TEXT,
       used_at INTEGER);
     CREATE TABLE hh_users (
       name TEXT PRIMARY KEY,
       password_hash TEXT NOT NULL,
       created_at INTEGER NOT NULL,
       updated_at INTEGER NOT NULL);
     CREATE TABLE hh_sessions (
       id_hash BLOB PRIMARY KEY,
       user TEXT NOT NULL REFERENCES hh_users(name) ON DELETE CASCADE,
       csrf TEXT NOT NULL,
       created_at INTEGER NOT NULL,
       last_seen_at INTEGER NOT NULL,
       expires_at INTEGER NOT NULL);
     CREATE TABLE hh_login_attempts (
       id INTEGER PRIMARY KEY AUTOINCREMENT,
       client TEXT NOT NULL,
       at INTEGER NOT NULL);
     CREATE INDEX hh_login_attempts_client ON hh_login_attempts(client, at);
     CREATE TABLE hh_events (
       id INTEGER PRIMARY KEY AUTOINCREMENT,
       at INTEGER NOT NULL,
       kind TEXT NOT NULL,
       message TEXT NOT NULL);`,
  ],
} as const;

/** The one web user: the household's owner (a household has one admin password, like a router). */
export const OWNER = 'owner';

export const LIMITS = {
  nameChars: 63,
  kindChars: 32,
  ports: 64,
  pendingEnrollments: 10,
  sessions: 20,
  /** An unpaired device not seen for this long is forgotten (ms). */
  forgetAfterMs: 30 * 86400_000,
} as const;

/** A paired device's identity as the runtime gets it: enough to sign, register and carry its traffic. */
export interface PairedIdentity {
  readonly deviceId: number;
  readonly name: string;
  readonly mac: string | null;
  readonly ipv4: string | null;
  readonly ipv6: string | null;
  readonly ntmId: string;
  readonly privateKeyHex: string;
  readonly virtualV4: string | null;
  readonly virtualV6: string | null;
}

/** What the runtime created for a device it pairs: a fresh NTM identity, registered with the DC. */
export interface NewIdentity {
  readonly privateKeyHex: string;
  readonly ntmId: string;
  readonly virtualV4: string | null;
  readonly virtualV6: string | null;
}

/** A validated pairing request: which row (null: a new, hand-described device) and what it will be called. */
export interface PairTarget {
  readonly deviceId: number | null;
  readonly name: string;
  readonly kind: string;
  readonly mac: string | null;
  readonly ipv4: string | null;
  readonly ipv6: string | null;
}

/** A phone as stored; the runtime adds what only the DC knows (online, virtual address). */
export type StoredPhone = Omit<PhoneView, 'online' | 'virtualV4'>;

export interface AccessRule {
  readonly phoneId: string;
  readonly deviceId: number;
  readonly deviceNtmId: string;
  /** Empty: every port. */
  readonly ports: readonly number[];
}

export interface SessionRecord {
  readonly user: string;
  readonly csrf: string;
  readonly createdAt: number;
  readonly lastSeenAt: number;
  readonly expiresAt: number;
}

export interface DiscoveryResult {
  readonly added: DeviceView[];
  readonly updated: number;
  readonly wentOffline: number;
}

export interface HouseholdStoreOptions {
  readonly now?: () => number;
  /** Events kept (older ones are dropped); default 1000. */
  readonly eventLimit?: number;
}

interface DeviceRow {
  id: number;
  name: string;
  name_by_user: number;
  kind: string;
  kind_by_user: number;
  mac: string | null;
  ipv4: string | null;
  ipv6: string | null;
  host: string | null;
  sources: string;
  online: number;
  last_seen: number | null;
  created_at: number;
  paired: number;
  ntm_private_key: string | null;
  ntm_id: string | null;
  virtual_v4: string | null;
  virtual_v6: string | null;
  paired_at: number | null;
  unpaired_at: number | null;
}

interface PhoneRow {
  ntm_id: string;
  name: string;
  enrolled_at: number;
  removed_at: number | null;
  enrollment_id: number | null;
}

interface EnrollmentRow {
  id: number;
  secret_hash: Buffer;
  name: string;
  expires_at: number;
  used_by: string | null;
  used_at: number | null;
}

const iso = (ms: number): string => new Date(ms).toISOString();

// ---------------------------------------------------------------------------------------------------------------
// Validation: one function per kind of value, each throwing InputError naming the field.

/** A display name: 1–63 characters after trimming, no control characters; NFC so look-alikes compare equal. */
export function validName(v: unknown, field = 'name'): string {
  if (typeof v !== 'string') throw new InputError(`${field} must be text`, field);
  const s = v.normalize('NFC').trim().replace(/\s+/g, ' ');
  if (s === '') throw new InputError(`${field} must not be empty`, field);
  if ([...s].length > LIMITS.nameChars) throw new InputError(`${field} must be at most ${LIMITS.nameChars} characters`, field);
  if (/\p{Cc}|\p{Cf}/u.test(s)) throw new InputError(`${field} must not contain control characters`, field);
  return s;
}

/** A household name: a name that also fits the 63 bytes an enrollment token gives it. */
export function validHouseholdName(v: unknown, field = 'name'): string {
  const n = validName(v, field);
  if (Buffer.byteLength(n) > 63) throw new InputError(`${field} is too long (at most 63 bytes; fewer characters for non-Latin scripts)`, field);
  return n;
}

export function validKind(v: unknown, field = 'kind'): string {
  if (typeof v !== 'string') throw new InputError(`${field} must be text`, field);
  const s = v.trim().toLowerCase();
  if (s.length > LIMITS.kindChars || !/^[\p{L}\p{N} -]*$/u.test(s)) throw new InputError(`${field} must be up to ${LIMITS.kindChars} letters, digits, spaces or dashes`, field);
  return s;
}

export function validMac(v: unknown, field = 'mac'): string {
  const m = typeof v === 'string' ? normaliseMac(v) : null;
  if (m === null) throw new InputError(`${field} must be a MAC address like 02:00:00:aa:bb:cc`, field);
  return m;
}

export function validIpv4(v: unknown, field = 'ipv4'): string {
  if (typeof v !== 'string' || !isIPv4(v.trim())) throw new InputError(`${field} must be an IPv4 address like 192.168.1.20`, field);
  return v.trim();
}

export function validIpv6(v: unknown, field = 'ipv6'): string {
  if (typeof v !== 'string' || !isIPv6(v.trim()) || v.includes('%')) throw new InputError(`${field} must be an IPv6 address like fd00::20`, field);
  return canonicalIp(v.trim().toLowerCase());
}

export function validNtmId(v: unknown, field = 'phoneId'): string {
  if (typeof v !== 'string' || !/^0x[0-9a-fA-F]{40}$/.test(v)) throw new InputError(`${field} must be an NTM ID (0x and 40 hex digits)`, field);
  return v.toLowerCase();
}

export function validDeviceId(v: unknown, field = 'deviceId'): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) throw new InputError(`${field} must be a positive whole number`, field);
  return v;
}

/** Ports as a sorted set; an empty list means every port. */
export function validPorts(v: unknown, field = 'ports'): number[] {
  if (!Array.isArray(v)) throw new InputError(`${field} must be a list of port numbers`, field);
  if (v.length > LIMITS.ports) throw new InputError(`${field}: at most ${LIMITS.ports} ports (an empty list allows all)`, field);
  const set = new Set<number>();
  for (const p of v as unknown[]) {
    if (typeof p !== 'number' || !Number.isInteger(p) || p < 1 || p > 65535) throw new InputError(`${field}: ${String(p)} is not a port number (1–65535)`, field);
    set.add(p);
  }
  return [...set].sort((a, b) => a - b);
}

function validPrivateKeyHex(v: unknown): string {
  if (typeof v !== 'string' || !/^(0x)?[0-9a-fA-F]{64}$/.test(v)) throw new InputError('privateKeyHex must be 64 hex digits', 'privateKeyHex');
  return v.replace(/^0x/, '').toLowerCase();
}

function isUniqueViolation(e: unknown): boolean {
  return typeof e === 'object' && e !== null && String((e as { code?: unknown }).code).startsWith('SQLITE_CONSTRAINT');
}

// ---------------------------------------------------------------------------------------------------------------

export class HouseholdStore {
  private readonly now: () => number;
  private readonly eventLimit: number;
  private readonly listeners = new Set<(e: AgentEvent) => void>();
  /** Events written by the transaction in progress; announced only after it commits. */
  private pendingEvents: AgentEvent[] = [];
  private depth = 0;

  constructor(
    readonly db: Db,
    opts: HouseholdStoreOptions = {},
  ) {
    this.now = opts.now ?? Date.now;
    this.eventLimit = opts.eventLimit ?? 1000;
    migrate(db, HOUSEHOLD_MIGRATIONS);
  }

  /** Opens (creating if needed) the database file and the household schema in it. */
  static open(path: string, opts: HouseholdStoreOptions = {}): HouseholdStore {
    return new HouseholdStore(openDb(path), opts);
  }

  close(): void {
    this.db.close();
  }

  /** Runs `fn` in one transaction (nested calls join the outer one); events are announced after the commit. */
  private tx<T>(fn: () => T): T {
    if (this.depth > 0) return fn();
    this.depth++;
    let result: T;
    try {
      result = this.db.transaction(fn)();
    } catch (e) {
      this.pendingEvents = [];
      throw e;
    } finally {
      this.depth--;
    }
    const events = this.pendingEvents;
    this.pendingEvents = [];
    for (const ev of events) this.announce(ev);
    return result;
  }

  // --- household ----------------------------------------------------------------------------------------------

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

  // --- devices ------------------------------------------------------------------------------------------------

  private deviceView(r: DeviceRow): DeviceView {
    const sources = r.sources.split(',').filter((s): s is DeviceSource => s === 'mdns' || s === 'neighbour' || s === 'manual');
    return {
      id: r.id,
      name: r.name,
      kind: r.kind,
      mac: r.mac,
      ipv4: r.ipv4,
      ipv6: r.ipv6,
      online: r.online === 1,
      sources,
      lastSeen: r.last_seen === null ? null : iso(r.last_seen),
      paired: r.paired === 1,
      ntmId: r.paired === 1 ? r.ntm_id : null,
      virtualV4: r.paired === 1 ? r.virtual_v4 : null,
      virtualV6: r.paired === 1 ? r.virtual_v6 : null,
      ntmName: r.paired === 1 && r.ntm_id !== null ? ntmHostName(r.name, r.ntm_id) : null,
    };
  }

  private row(id: number): DeviceRow {
    const r = this.db.prepare('SELECT * FROM hh_devices WHERE id = ?').get(id) as DeviceRow | undefined;
    if (!r) throw new NotFoundError(`there is no device ${id}`);
    return r;
  }

  /** Paired devices first, then by name (unnamed last). */
  devices(): DeviceView[] {
    const rows = this.db.prepare("SELECT * FROM hh_devices ORDER BY paired DESC, name = '', name, id").all() as DeviceRow[];
    return rows.map((r) => this.deviceView(r));
  }

  device(id: number): DeviceView {
    return this.deviceView(this.row(validDeviceId(id)));
  }

  deviceByNtmId(ntmId: string): DeviceView | null {
    const r = this.db.prepare('SELECT * FROM hh_devices WHERE ntm_id = ? AND paired = 1').get(ntmId.toLowerCase()) as DeviceRow | undefined;
    return r ? this.deviceView(r) : null;
  }

  /** A name no other device has: the wanted one, else "name (2)", "name (3)", … (discovered names may repeat). */
  private freeDeviceName(wanted: string, selfId: number | null): string {
    if (wanted === '') return '';
    const taken = (n: string): boolean => {
      const r = this.db.prepare('SELECT id FROM hh_devices WHERE name = ?').get(n) as { id: number } | undefined;
      return r !== undefined && r.id !== selfId;
    };
    if (!taken(wanted)) return wanted;
    for (let i = 2; i < 1000; i++) {
      const base = [...wanted].slice(0, LIMITS.nameChars - 6).join('');
      const n = `${base} (${i})`;
      if (!taken(n)) return n;
    }
    return '';
  }

  /**
   * The row a discovered (or hand-described) device is. A MAC decides; without a MAC match, an address or mDNS
   * host identifies a row only if that row has no other MAC (a DHCP address may have passed to another device) —
   * unless `byAddress`: a person typing only an address means whatever device has it now.
   */
  private findDiscoveredRow(d: DiscoveredDevice, byAddress = false): DeviceRow | undefined {
    const q = (sql: string, v: string): DeviceRow | undefined => this.db.prepare(sql).get(v) as DeviceRow | undefined;
    if (d.mac) {
      const r = q('SELECT * FROM hh_devices WHERE mac = ?', d.mac);
      if (r) return r;
    }
    const free = (r: DeviceRow | undefined): DeviceRow | undefined =>
      r && (r.mac === null || r.mac === d.mac || (byAddress && d.mac === null)) ? r : undefined;
    if (d.host) {
      const r = free(q('SELECT * FROM hh_devices WHERE host = ? ORDER BY paired DESC', d.host));
      if (r) return r;
    }
    if (d.ipv4) {
      const r = free(q('SELECT * FROM hh_devices WHERE ipv4 = ? ORDER BY paired DESC', d.ipv4));
      if (r) return r;
    }
    if (d.ipv6) return free(q('SELECT * FROM hh_devices WHERE ipv6 = ? ORDER BY paired DESC', d.ipv6));
    return undefined;
  }

  /**
   * Takes a whole discovery snapshot (LanDiscovery.snapshot()): adds new devices, updates addresses, names and
   * online state of known ones, marks devices missing from it offline, and forgets unpaired devices unseen for
   * 30 days. One transaction. Names and kinds the household gave are kept.
   */
  applyDiscovery(found: readonly DiscoveredDevice[]): DiscoveryResult {
    const now = this.now();
    return this.tx(() => {
      const added: DeviceView[] = [];
      const seen = new Set<number>();
      let updated = 0;
      for (const d of found) {
        const mac = d.mac === null ? null : normaliseMac(d.mac);
        const ipv4 = d.ipv4 !== null && isIPv4(d.ipv4) ? d.ipv4 : null;
        const ipv6 = d.ipv6 !== null && isIPv6(d.ipv6) ? canonicalIp(d.ipv6.toLowerCase()) : null;
        if (mac === null && ipv4 === null && ipv6 === null) continue;
        let name = '';
        try {
          name = d.name === '' ? '' : validName(d.name);
        } catch {
          // An appliance's announced name is untrusted input; an unusable one is simply not shown.
        }
        let kind = '';
        try {
          kind = validKind(d.kind);
        } catch {
          // As for names.
        }
        const sources = [...new Set(d.sources.filter((s) => s === 'mdns' || s === 'neighbour'))];
        const lastSeen = d.online ? Math.max(d.lastSeen, 0) || now : null;
        const rec = { ...d, mac, ipv4, ipv6 };
        const r = this.findDiscoveredRow(rec);
        if (r === undefined) {
          const info = this.db
            .prepare(`INSERT INTO hh_devices (name, kind, mac, ipv4, ipv6, host, sources, online, last_seen, created_at)
              VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
            .run(this.freeDeviceName(name, null), kind, mac, ipv4, ipv6, d.host, sources.join(','), d.online ? 1 : 0, lastSeen, now);
          const id = Number(info.lastInsertRowid);
          seen.add(id);
          const v = this.deviceView(this.row(id));
          added.push(v);
          this.event('device.discovered', `New device on the network: ${v.name || v.ipv4 || v.ipv6 || v.mac}`);
          continue;
        }
        if (seen.has(r.id)) continue;
        seen.add(r.id);
        const keepManual = r.sources.split(',').includes('manual') ? ['manual'] : [];
        const next = {
          name: r.name_by_user === 1 || r.paired === 1 || name === '' ? r.name : this.freeDeviceName(name, r.id),
          kind: r.kind_by_user === 1 || kind === '' ? r.kind : kind,
          mac: r.mac ?? mac,
          ipv4: ipv4 ?? r.ipv4,
          ipv6: ipv6 ?? r.ipv6,
          host: d.host ?? r.host,
          sources: [...new Set([...keepManual, ...sources])].join(','),
          online: d.online ? 1 : 0,
          last_seen: lastSeen ?? r.last_seen,
        };
        const changed =
          next.name !== r.name || next.kind !== r.kind || next.mac !== r.mac || next.ipv4 !== r.ipv4 || next.ipv6 !== r.ipv6 ||
          next.host !== r.host || next.sources !== r.sources || next.online !== r.online;
        this.db
          .prepare('UPDATE hh_devices SET name = ?, kind = ?, mac = ?, ipv4 = ?, ipv6 = ?, host = ?, sources = ?, online = ?, last_seen = ? WHERE id = ?')
          .run(next.name, next.kind, next.mac, next.ipv4, next.ipv6, next.host, next.sources, next.online, next.last_seen, r.id);
        if (changed) updated++;
        if (r.paired === 1 && r.online !== next.online) this.event(next.online ? 'device.online' : 'device.offline', `${r.name} is ${next.online ? 'online' : 'offline'}`);
        // A device first known only by mDNS (no MAC) and now matched by MAC leaves a stale duplicate: drop it.
        if (mac !== null && d.host) {
          this.db.prepare("DELETE FROM hh_devices WHERE host = ? AND mac IS NULL AND paired = 0 AND id <> ? AND sources NOT LIKE '%manual%'").run(d.host, r.id);
        }
      }
      let wentOffline = 0;
      const online = this.db.prepare('SELECT id, name, paired FROM hh_devices WHERE online = 1').all() as { id: number; name: string; paired: number }[];
      for (const r of online) {
        if (seen.has(r.id)) continue;
        this.db.prepare('UPDATE hh_devices SET online = 0 WHERE id = ?').run(r.id);
        wentOffline++;
        if (r.paired === 1) this.event('device.offline', `${r.name} is offline`);
      }
      this.db.prepare('DELETE FROM hh_devices WHERE paired = 0 AND online = 0 AND COALESCE(last_seen, created_at) < ?').run(now - LIMITS.forgetAfterMs);
      return { added, updated, wentOffline };
    });
  }

  /**
   * Checks a pairing request without changing anything (the runtime calls it before creating an identity, so a
   * bad request costs no registration). Throws InputError / NotFoundError / ConflictError.
   */
  resolvePair(input: PairInput): PairTarget {
    if (typeof input !== 'object' || input === null) throw new InputError('a pairing request is an object', 'body');
    const name = input.name === undefined ? undefined : validName(input.name);
    const kind = input.kind === undefined ? undefined : validKind(input.kind);
    if (input.deviceId !== undefined) {
      const r = this.row(validDeviceId(input.deviceId));
      if (r.paired === 1) throw new ConflictError(`${r.name || 'this device'} is already paired`);
      const finalName = name ?? r.name;
      if (finalName === '') throw new InputError('this device has no name yet: give it one', 'name');
      this.checkNameFree(finalName, r.id);
      return { deviceId: r.id, name: finalName, kind: kind ?? r.kind, mac: r.mac, ipv4: r.ipv4, ipv6: r.ipv6 };
    }
    const mac = input.mac === undefined || input.mac === '' ? null : validMac(input.mac);
    const ipv4 = input.ipv4 === undefined || input.ipv4 === '' ? null : validIpv4(input.ipv4);
    const ipv6 = input.ipv6 === undefined || input.ipv6 === '' ? null : validIpv6(input.ipv6);
    if (name === undefined) throw new InputError('give the device a name', 'name');
    if (mac === null && ipv4 === null && ipv6 === null) throw new InputError('give the device\'s MAC address or IP address', 'ipv4');
    // A hand-described device that discovery already knows is that row, not a second one.
    const same = this.findDiscoveredRow({ name: '', kind: '', mac, ipv4, ipv6, host: null, online: false, sources: [], lastSeen: 0, services: [] }, true);
    if (same) {
      if (same.paired === 1) throw new ConflictError(`that address belongs to ${same.name}, which is already paired`);
      this.checkNameFree(name, same.id);
      return { deviceId: same.id, name, kind: kind ?? same.kind, mac: same.mac ?? mac, ipv4: ipv4 ?? same.ipv4, ipv6: ipv6 ?? same.ipv6 };
    }
    this.checkNameFree(name, null);
    return { deviceId: null, name, kind: kind ?? '', mac, ipv4, ipv6 };
  }

  private checkNameFree(name: string, selfId: number | null): void {
    const r = this.db.prepare('SELECT id FROM hh_devices WHERE name = ?').get(name) as { id: number } | undefined;
    if (r && r.id !== selfId) throw new ConflictError(`another device is already called "${name}"`);
    // Phones reach a paired device by its name as a DNS label: two paired names must not make the same one.
    const label = nameLabel(name);
    if (label === null) return;
    const paired = this.db.prepare('SELECT id, name FROM hh_devices WHERE paired = 1 AND id IS NOT ?').all(selfId) as { id: number; name: string }[];
    const other = paired.find((d) => nameLabel(d.name) === label);
    if (other) throw new ConflictError(`phones would reach "${name}" as ${label}.ntm, like ${other.name}; choose another name`);
  }

  /**
   * Records a pairing: the device (existing or new) with the identity the runtime created for it. Re-validates the
   * request inside the transaction (the state may have changed since resolvePair).
   */
  pair(input: PairInput, identity: NewIdentity): DeviceView {
    const privateKey = validPrivateKeyHex(identity.privateKeyHex);
    const ntmId = validNtmId(identity.ntmId, 'ntmId');
    const v4 = identity.virtualV4 === null ? null : validIpv4(identity.virtualV4, 'virtualV4');
    const v6 = identity.virtualV6 === null ? null : validIpv6(identity.virtualV6, 'virtualV6');
    const now = this.now();
    try {
      return this.tx(() => {
        const t = this.resolvePair(input);
        let id = t.deviceId;
        if (id === null) {
          const info = this.db
            .prepare("INSERT INTO hh_devices (name, mac, ipv4, ipv6, sources, created_at) VALUES ('', ?, ?, ?, 'manual', ?)")
            .run(t.mac, t.ipv4, t.ipv6, now);
          id = Number(info.lastInsertRowid);
        } else {
          this.db.prepare('UPDATE hh_devices SET mac = ?, ipv4 = ?, ipv6 = ? WHERE id = ?').run(t.mac, t.ipv4, t.ipv6, id);
        }
        this.db
          .prepare(`UPDATE hh_devices SET name = ?, name_by_user = name_by_user OR ?, kind = ?, kind_by_user = kind_by_user OR ?,
              paired = 1, ntm_private_key = ?, ntm_id = ?, virtual_v4 = ?, virtual_v6 = ?, paired_at = ?, unpaired_at = NULL WHERE id = ?`)
          .run(t.name, input.name !== undefined ? 1 : 0, t.kind, input.kind !== undefined ? 1 : 0, privateKey, ntmId, v4, v6, now, id);
        const v = this.deviceView(this.row(id));
        this.event('device.paired', `${v.name} is paired (${ntmId})`);
        return v;
      });
    } catch (e) {
      if (isUniqueViolation(e)) throw new ConflictError('that NTM identity or virtual address is already in use');
      throw e;
    }
  }

  /** Unpairs: removes the device's grants and forgets its identity (the runtime revokes it first). Returns the old identity. */
  unpair(deviceId: number): { device: DeviceView; ntmId: string } {
    const id = validDeviceId(deviceId);
    return this.tx(() => {
      const r = this.row(id);
      if (r.paired !== 1 || r.ntm_id === null) throw new ConflictError(`${r.name || 'this device'} is not paired`);
      this.db.prepare('DELETE FROM hh_grants WHERE device_id = ?').run(id);
      this.db
        .prepare(`UPDATE hh_devices SET paired = 0, ntm_private_key = NULL, ntm_id = NULL, virtual_v4 = NULL, virtual_v6 = NULL,
            unpaired_at = ? WHERE id = ?`)
        .run(this.now(), id);
      this.event('device.unpaired', `${r.name} is no longer paired`);
      return { device: this.deviceView(this.row(id)), ntmId: r.ntm_id };
    });
  }

  /** Every paired device with its private key: what the runtime loads at start. */
  pairedIdentities(): PairedIdentity[] {
    const rows = this.db.prepare('SELECT * FROM hh_devices WHERE paired = 1 ORDER BY id').all() as DeviceRow[];
    return rows.map((r) => ({
      deviceId: r.id,
      name: r.name,
      mac: r.mac,
      ipv4: r.ipv4,
      ipv6: r.ipv6,
      ntmId: r.ntm_id!,
      privateKeyHex: r.ntm_private_key!,
      virtualV4: r.virtual_v4,
      virtualV6: r.virtual_v6,
    }));
  }

  // --- phones and enrollments ---------------------------------------------------------------------------------

  private phoneView(r: PhoneRow): StoredPhone {
    return { id: r.ntm_id, name: r.name, enrolledAt: iso(r.enrolled_at) };
  }

  /** Enrolled (not removed) phones, by name. */
  phones(): StoredPhone[] {
    const rows = this.db.prepare('SELECT * FROM hh_phones WHERE removed_at IS NULL ORDER BY name').all() as PhoneRow[];
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
  createEnrollment(name: unknown, secret: Uint8Array, expiresAt: number): { id: number; name: string; expiresAt: string } {
    const n = validName(name);
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
      const info = this.db
        .prepare('INSERT INTO hh_enrollments (secret_hash, name, created_at, expires_at) VALUES (?, ?, ?, ?)')
        .run(secretHash(secret), n, now, expiresAt);
      this.event('enrollment.created', `A code to add the phone "${n}" was made (valid for ${Math.round((expiresAt - now) / 60_000)} min)`);
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
      this.db
        .prepare(`INSERT INTO hh_phones (ntm_id, name, enrolled_at, removed_at, enrollment_id) VALUES (?, ?, ?, NULL, ?)
            ON CONFLICT(ntm_id) DO UPDATE SET name = excluded.name, enrolled_at = excluded.enrolled_at, removed_at = NULL,
            enrollment_id = excluded.enrollment_id`)
        .run(id, name, now, match.id);
      this.event('phone.enrolled', `The phone "${name}" was added (${id})`);
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
      this.event('phone.removed', `The phone "${p.name}" was removed`);
      return p;
    });
  }

  // --- access grants ------------------------------------------------------------------------------------------

  grants(): GrantView[] {
    const rows = this.db
      .prepare(`SELECT g.phone_id, g.device_id, g.ports FROM hh_grants g JOIN hh_phones p ON p.ntm_id = g.phone_id
          JOIN hh_devices d ON d.id = g.device_id WHERE p.removed_at IS NULL AND d.paired = 1 ORDER BY p.name, d.name`)
      .all() as { phone_id: string; device_id: number; ports: string }[];
    return rows.map((r) => ({ phoneId: r.phone_id, deviceId: r.device_id, ports: JSON.parse(r.ports) as number[] }));
  }

  /** Lets a phone reach a paired device on `ports` (empty: all), replacing an earlier grant for the pair. */
  setGrant(phoneId: string, deviceId: number, ports: readonly number[]): GrantView {
    const pid = validNtmId(phoneId);
    const did = validDeviceId(deviceId);
    const list = validPorts(ports);
    return this.tx(() => {
      const p = this.phone(pid);
      const d = this.row(did);
      if (d.paired !== 1) throw new ConflictError(`${d.name || 'this device'} is not paired; pair it first`);
      this.db
        .prepare(`INSERT INTO hh_grants (phone_id, device_id, ports, updated_at) VALUES (?, ?, ?, ?)
            ON CONFLICT(phone_id, device_id) DO UPDATE SET ports = excluded.ports, updated_at = excluded.updated_at`)
        .run(pid, did, JSON.stringify(list), this.now());
      const what = list.length === 0 ? 'all ports' : `port${list.length > 1 ? 's' : ''} ${list.join(', ')}`;
      this.event('access.granted', `"${p.name}" may reach ${d.name} (${what})`);
      return { phoneId: pid, deviceId: did, ports: list };
    });
  }

  revokeGrant(phoneId: string, deviceId: number): void {
    const pid = validNtmId(phoneId);
    const did = validDeviceId(deviceId);
    this.tx(() => {
      const p = this.phone(pid);
      const d = this.row(did);
      const r = this.db.prepare('DELETE FROM hh_grants WHERE phone_id = ? AND device_id = ?').run(pid, did);
      if (r.changes === 0) throw new NotFoundError(`"${p.name}" has no access to ${d.name || 'this device'}`);
      this.event('access.revoked', `"${p.name}" may no longer reach ${d.name}`);
    });
  }

  /** The data path's question for a new flow: may this phone reach this paired device's port? */
  grantAllows(phoneId: string, deviceNtmId: string, port: number): boolean {
    const r = this.db
      .prepare(`SELECT g.ports FROM hh_grants g JOIN hh_phones p ON p.ntm_id = g.phone_id JOIN hh_devices d ON d.id = g.device_id
          WHERE g.phone_id = ? AND d.ntm_id = ? AND d.paired = 1 AND p.removed_at IS NULL`)
      .get(phoneId.toLowerCase(), deviceNtmId.toLowerCase()) as { ports: string } | undefined;
    if (!r) return false;
    const ports = JSON.parse(r.ports) as number[];
    return ports.length === 0 || ports.includes(port);
  }

  /** Every grant with the device's NTM ID: for a runtime that keeps the access table in memory. */
  accessRules(): AccessRule[] {
    const rows = this.db
      .prepare(`SELECT g.phone_id, g.device_id, d.ntm_id, g.ports FROM hh_grants g JOIN hh_phones p ON p.ntm_id = g.phone_id
          JOIN hh_devices d ON d.id = g.device_id WHERE p.removed_at IS NULL AND d.paired = 1`)
      .all() as { phone_id: string; device_id: number; ntm_id: string; ports: string }[];
    return rows.map((r) => ({ phoneId: r.phone_id, deviceId: r.device_id, deviceNtmId: r.ntm_id, ports: JSON.parse(r.ports) as number[] }));
  }

  // --- events -------------------------------------------------------------------------------------------------

  private event(kind: string, message: string): AgentEvent {
    const at = this.now();
    this.db.prepare('INSERT INTO hh_events (at, kind, message) VALUES (?, ?, ?)').run(at, kind, message);
    this.db.prepare('DELETE FROM hh_events WHERE id <= (SELECT MAX(id) FROM hh_events) - ?').run(this.eventLimit);
    const ev = { at: iso(at), kind, message };
    this.pendingEvents.push(ev);
    return ev;
  }

  /** Records an event of the runtime's (tunnel up, DC restarted, …); kept among the last 1000. */
  addEvent(kind: string, message: string): AgentEvent {
    return this.tx(() => this.event(kind.slice(0, 64), message.slice(0, 500)));
  }

  /** The most recent events, newest first. */
  events(limit = 50): AgentEvent[] {
    const n = Math.max(1, Math.min(Math.floor(limit) || 50, this.eventLimit));
    const rows = this.db.prepare('SELECT at, kind, message FROM hh_events ORDER BY id DESC LIMIT ?').all(n) as { at: number; kind: string; message: string }[];
    return rows.map((r) => ({ at: iso(r.at), kind: r.kind, message: r.message }));
  }

  /** Listens to events as they are committed; returns the unsubscribe function. */
  onEvent(listener: (e: AgentEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private announce(ev: AgentEvent): void {
    for (const l of this.listeners) {
      try {
        l(ev);
      } catch {
        // A listener's failure is its own; the change is committed and the other listeners still hear of it.
      }
    }
  }

  // --- web owner, sessions, login attempts --------------------------------------------------------------------

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
  recordLoginFailure(client: string): number {
    const now = this.now();
    const info = this.db.prepare('INSERT INTO hh_login_attempts (client, at) VALUES (?, ?)').run(client, now);
    // Only the last hour matters to any limit; older rows go.
    this.db.prepare('DELETE FROM hh_login_attempts WHERE at < ?').run(now - 3600_000);
    return Number(info.lastInsertRowid);
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
