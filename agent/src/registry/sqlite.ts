// The embedded node-transaction ledger: an append-only, hash-chained SQLite table (paper §2.2's chain, kept locally).
// Every entry stores keccak256(prevHash ‖ kind ‖ bytes); the chain is verified at start, so a changed, removed or
// reordered entry is found. Entries are verified by the DC (signatures) before they reach append().
import { keccak256 } from '../crypto/hex.js';
import type { ChainReport, Registry, RegistryKind, RegistryRecord } from '../types/registry.js';
import type { Db, Migrations } from '../store/db.js';
import { migrate } from '../store/db.js';

export const REGISTRY_MIGRATIONS: Migrations = {
  module: 'registry',
  steps: [
    `CREATE TABLE registry (
       seq INTEGER PRIMARY KEY,
       kind TEXT NOT NULL CHECK (kind IN ('node', 'dc')),
       id TEXT NOT NULL,
       bytes BLOB NOT NULL,
       prev_hash BLOB NOT NULL,
       hash BLOB NOT NULL)`,
    `CREATE INDEX registry_by_id ON registry (kind, id, seq)`,
    // Append-only, enforced by the database itself.
    `CREATE TRIGGER registry_no_update BEFORE UPDATE ON registry BEGIN SELECT RAISE(ABORT, 'registry is append-only'); END`,
    `CREATE TRIGGER registry_no_delete BEFORE DELETE ON registry BEGIN SELECT RAISE(ABORT, 'registry is append-only'); END`,
  ],
};

const GENESIS = new Uint8Array(32);
const KIND_BYTE: Record<RegistryKind, number> = { node: 1, dc: 2 };

export function chainHash(prev: Uint8Array, kind: RegistryKind, bytes: Uint8Array): Uint8Array {
  const buf = new Uint8Array(prev.length + 1 + bytes.length);
  buf.set(prev, 0);
  buf[prev.length] = KIND_BYTE[kind];
  buf.set(bytes, prev.length + 1);
  return keccak256(buf);
}

interface Row {
  seq: number;
  kind: RegistryKind;
  id: string;
  bytes: Buffer;
  prev_hash: Buffer;
  hash: Buffer;
}

const toRecord = (r: Row): RegistryRecord => ({
  seq: r.seq,
  kind: r.kind,
  id: r.id,
  bytes: r.bytes,
  hash: r.hash,
  prevHash: r.prev_hash,
});

/**
 * SQLite registry. Synchronous underneath (better-sqlite3), so `appendSync` can join the caller's transaction;
 * the async `Registry` methods wrap it for callers that must not care which backend they have.
 */
export class SqliteRegistry implements Registry {
  private head: Uint8Array;
  private readonly stmt;

  constructor(private readonly db: Db) {
    migrate(db, REGISTRY_MIGRATIONS);
    this.stmt = {
      insert: db.prepare('INSERT INTO registry (kind, id, bytes, prev_hash, hash) VALUES (?, ?, ?, ?, ?)'),
      latest: db.prepare('SELECT * FROM registry WHERE kind = ? AND id = ? ORDER BY seq DESC LIMIT 1'),
      head: db.prepare('SELECT hash FROM registry ORDER BY seq DESC LIMIT 1'),
      since: db.prepare('SELECT * FROM registry WHERE seq > ? ORDER BY seq LIMIT ?'),
      all: db.prepare('SELECT * FROM registry ORDER BY seq'),
      count: db.prepare('SELECT COUNT(*) AS n FROM registry'),
    };
    const h = this.stmt.head.get() as { hash: Buffer } | undefined;
    this.head = h ? new Uint8Array(h.hash) : GENESIS;
  }

  /** Appends inside whatever transaction is open (the DC commits an allocation and its entry together). */
  appendSync(kind: RegistryKind, id: string, bytes: Uint8Array): RegistryRecord {
    const latest = this.stmt.latest.get(kind, id) as Row | undefined;
    if (latest && Buffer.compare(latest.bytes, bytes) === 0) return toRecord(latest);
    const prev = this.head;
    const hash = chainHash(prev, kind, bytes);
    const info = this.stmt.insert.run(kind, id, bytes, prev, hash);
    this.head = hash;
    return { seq: Number(info.lastInsertRowid), kind, id, bytes, hash, prevHash: prev };
  }

  /** Must be called if a transaction that included appendSync rolled back. */
  reloadHead(): void {
    const h = this.stmt.head.get() as { hash: Buffer } | undefined;
    this.head = h ? new Uint8Array(h.hash) : GENESIS;
  }

  latestSync(kind: RegistryKind, id: string): RegistryRecord | undefined {
    const r = this.stmt.latest.get(kind, id) as Row | undefined;
    return r ? toRecord(r) : undefined;
  }

  async append(kind: RegistryKind, id: string, bytes: Uint8Array): Promise<RegistryRecord> {
    return this.db.transaction(() => this.appendSync(kind, id, bytes))();
  }

  async latest(kind: RegistryKind, id: string): Promise<RegistryRecord | undefined> {
    return this.latestSync(kind, id);
  }

  async since(seq: number, limit: number): Promise<RegistryRecord[]> {
    return (this.stmt.since.all(seq, limit) as Row[]).map(toRecord);
  }

  async length(): Promise<number> {
    return (this.stmt.count.get() as { n: number }).n;
  }

  verifySync(): ChainReport {
    let prev: Uint8Array = GENESIS;
    let n = 0;
    let expectSeq = 1;
    for (const row of this.stmt.all.iterate() as IterableIterator<Row>) {
      n++;
      if (row.seq !== expectSeq) return { ok: false, length: n, badSeq: row.seq, reason: `gap before seq ${row.seq}` };
      expectSeq++;
      if (Buffer.compare(row.prev_hash, prev) !== 0)
        return { ok: false, length: n, badSeq: row.seq, reason: 'previous-hash link broken' };
      const h = chainHash(prev, row.kind, row.bytes);
      if (Buffer.compare(Buffer.from(h), row.hash) !== 0)
        return { ok: false, length: n, badSeq: row.seq, reason: 'entry hash does not match its contents' };
      prev = h;
    }
    return { ok: true, length: n, head: prev };
  }

  async verify(): Promise<ChainReport> {
    return this.verifySync();
  }

  async close(): Promise<void> {
    // The database handle belongs to whoever opened it.
  }
}
