// The household database's schema (module "household" of store/db.ts's migrations). Append-only: a database made by
// any earlier version is brought up to date by running the steps it has not seen, in order, so a step once released is
// never edited or removed; a change of schema is a new step at the end.
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
    // Issue 13, part 2: QoS rules per device ("device:ID") and per phone ("phone:0x…"); link rates live in hh_meta.
    `CREATE TABLE hh_qos (
       target TEXT PRIMARY KEY,
       class TEXT NOT NULL CHECK (class IN ('priority', 'normal', 'background')),
       up_kbit INTEGER,
       down_kbit INTEGER,
       updated_at INTEGER NOT NULL);`,
    // Issue 13, part 1: a device shared with another household (paper §3.2.2, two agents). The sharing side keeps the
    // other household as a peer of kind 'household' in hh_phones, made by an enrollment that names the shared device
    // and ports (the grant it gets); the accepting side keeps what it accepted and which of its devices may use it.
    `ALTER TABLE hh_phones ADD COLUMN kind TEXT NOT NULL DEFAULT 'phone' CHECK (kind IN ('phone', 'household'));
     ALTER TABLE hh_enrollments ADD COLUMN share_device_id INTEGER REFERENCES hh_devices(id);
     ALTER TABLE hh_enrollments ADD COLUMN share_ports TEXT;
     CREATE TABLE hh_remote_shares (
       id INTEGER PRIMARY KEY AUTOINCREMENT,
       household TEXT NOT NULL,
       device TEXT NOT NULL,
       dc_public_key TEXT NOT NULL,
       dc_endpoints TEXT NOT NULL,
       secret BLOB NOT NULL,
       ntm_private_key TEXT NOT NULL,
       ntm_id TEXT NOT NULL UNIQUE,
       device_v4 TEXT,
       device_v6 TEXT,
       accepted_at INTEGER NOT NULL,
       UNIQUE (household, device));
     CREATE TABLE hh_remote_share_users (
       share_id INTEGER NOT NULL REFERENCES hh_remote_shares(id) ON DELETE CASCADE,
       device_id INTEGER NOT NULL REFERENCES hh_devices(id),
       PRIMARY KEY (share_id, device_id));`,
  ],
} as const;
