// The SQLite database (better-sqlite3 v12, WAL): opening, durability settings and per-module migrations.
// synchronous=NORMAL in WAL mode: a committed transaction survives a kill -9 of the process (it is in the WAL
// in the OS page cache); only a power loss can take the last commits. Each module owns its migrations.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { createRequire } from 'node:module';
import type BetterSqlite3 from 'better-sqlite3';
import { DIR_MODE, precreatePrivateFile } from './private-dir.js';

const require = createRequire(import.meta.url);
const Database = require('better-sqlite3') as typeof BetterSqlite3;

export type Db = BetterSqlite3.Database;

/** One module's schema history: statements applied in order, each version once. */
export interface Migrations {
  readonly module: string;
  readonly steps: readonly string[];
}

/** Opens (creating) the database; a new file is 0600 in a 0700 directory (it holds private keys and sessions). */
export function openDb(path: string): Db {
  if (path !== ':memory:') {
    mkdirSync(dirname(path), { recursive: true, mode: DIR_MODE });
    precreatePrivateFile(path);
  }
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    module TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (module, version))`);
  return db;
}

/** Applies the module's missing steps, all in one transaction (a crash leaves the old schema whole). */
export function migrate(db: Db, m: Migrations): void {
  const done = db.prepare('SELECT MAX(version) AS v FROM schema_migrations WHERE module = ?').get(m.module) as {
    v: number | null;
  };
  const from = done.v ?? 0;
  if (from >= m.steps.length) return;
  const mark = db.prepare('INSERT INTO schema_migrations (module, version) VALUES (?, ?)');
  db.transaction(() => {
    for (let i = from; i < m.steps.length; i++) {
      db.exec(m.steps[i]!);
      mark.run(m.module, i + 1);
    }
  })();
}
