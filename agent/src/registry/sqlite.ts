// The embedded node-transaction ledger: an append-only, hash-chained SQLite table in the DC's own database (paper
// §2.2's chain, kept locally; the default for a single household). Every entry stores keccak256(prevHash ‖ kind ‖
// bytes); the chain is verified at start, so a changed, removed or reordered entry is found. One writer (this DC): the
// change feed never fires. Entries are verified by the DC (signatures) before they are staged.
//
// The table has no index by ID (issue 15): one keyed by the random ID put every new terminal's entry on a random page
// of its own, written to the WAL and again at the checkpoint. The latest entry of each ID is found through a map in
// memory (ID → seq), built from the table when it opens and kept with every staged entry: right because this DC is
// the table's only writer (as the chain's head in memory already assumes). `shared` (the DC's worker processes on one
// file, issue 15; one transaction at a time, BEGIN IMMEDIATE): the map catches up with the rows appended since
// (a range of seq) before it answers or appends, and the head is read from the table before each append.
import { keccak256 } from '../crypto/hex.js';
import type { Registry, RegistryEntry, RegistryKind, RegistryReport } from '../types/registry.js';
import type { Db, Migrations } from '../store/db.js';
import { migrate } from '../store/db.js';
import { checkEntry, sameBytes } from './entry.js';

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
    // latest() is answered from memory (see the header); the entries and their chain stay as they are.
    `DROP INDEX registry_by_id`,
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

const toEntry = (r: Pick<Row, 'kind' | 'id' | 'bytes'>): RegistryEntry => ({ kind: r.kind, id: r.id, bytes: r.bytes });

/** The SQLite registry. Synchronous underneath (better-sqlite3), so `stage` joins the DC's per-turn transaction. */
export class SqliteRegistry implements Registry {
  /** The hash of the last entry written, committed or staged (reloaded from the table after a rollback). */
  private head: Uint8Array;
  private readonly stmt;
  /** The seq of the latest entry of every ID, per kind, staged entries included. */
  private readonly latestSeq: Record<RegistryKind, Map<string, number>> = { node: new Map(), dc: new Map() };
  /** What this transaction's stage calls replaced in latestSeq (kind, ID, the seq before or 0), for a rollback. */
  private readonly undo: Array<[RegistryKind, string, number]> = [];
  private readonly db: Db;
  /** Shared: the highest seq the map holds, and the seq of this transaction's first append (for a rollback). */
  private seenSeq = 0;
  private firstStaged = 0;

  /**
   * `db` stays the caller's: the DC's database, so staging joins the DC's transaction. `shared`: other processes
   * append to the same file (see the header).
   */
  constructor(
    db: Db,
    private readonly shared = false,
  ) {
    migrate(db, REGISTRY_MIGRATIONS);
    this.db = db;
    this.stmt = {
      insert: db.prepare('INSERT INTO registry (kind, id, bytes, prev_hash, hash) VALUES (?, ?, ?, ?, ?)'),
      bySeq: db.prepare('SELECT kind, id, bytes FROM registry WHERE seq = ?'),
      head: db.prepare('SELECT hash FROM registry ORDER BY seq DESC LIMIT 1'),
      all: db.prepare('SELECT * FROM registry ORDER BY seq'),
      since: db.prepare('SELECT seq, kind, id FROM registry WHERE seq > ? ORDER BY seq'),
    };
    this.catchUp();
    this.head = this.readHead();
  }

  /** Takes the rows appended after the last one the map holds (all of them when it opens). */
  private catchUp(): void {
    for (const r of this.stmt.since.iterate(this.seenSeq) as IterableIterator<Pick<Row, 'seq' | 'kind' | 'id'>>) {
      this.latestSeq[r.kind].set(r.id, r.seq);
      this.seenSeq = r.seq;
    }
  }

  private readHead(): Uint8Array {
    const h = this.stmt.head.get() as { hash: Buffer } | undefined;
    return h ? new Uint8Array(h.hash) : GENESIS;
  }

  async verify(): Promise<RegistryReport> {
    let prev: Uint8Array = GENESIS;
    let n = 0;
    let expectSeq = 1;
    for (const row of this.stmt.all.iterate() as IterableIterator<Row>) {
      n++;
      if (row.seq !== expectSeq) return { ok: false, entries: n, at: row.seq, reason: `gap before seq ${row.seq}` };
      expectSeq++;
      if (Buffer.compare(row.prev_hash, prev) !== 0) return { ok: false, entries: n, at: row.seq, reason: 'previous-hash link broken' };
      const h = chainHash(prev, row.kind, row.bytes);
      if (Buffer.compare(Buffer.from(h), row.hash) !== 0)
        return { ok: false, entries: n, at: row.seq, reason: 'entry hash does not match its contents' };
      prev = h;
    }
    this.head = prev;
    return { ok: true, entries: n, head: Buffer.from(prev).toString('hex') };
  }

  stage(entry: RegistryEntry): void {
    checkEntry(entry);
    const latest = this.latest(entry.kind, entry.id);
    if (latest && sameBytes(latest.bytes, entry.bytes)) return;
    // Shared: latest() caught up inside this transaction, which holds the write lock; the head is the table's.
    if (this.shared) this.head = this.readHead();
    const hash = chainHash(this.head, entry.kind, entry.bytes);
    const seq = Number(this.stmt.insert.run(entry.kind, entry.id, entry.bytes, this.head, hash).lastInsertRowid);
    if (this.shared) {
      if (this.firstStaged === 0 && this.db.inTransaction) this.firstStaged = seq;
      this.seenSeq = seq;
    }
    const seqs = this.latestSeq[entry.kind];
    // Outside a transaction the row is committed already: nothing to undo.
    if (this.db.inTransaction) this.undo.push([entry.kind, entry.id, seqs.get(entry.id) ?? 0]);
    seqs.set(entry.id, seq);
    this.head = hash;
  }

  committed(): void {
    // The rows are the ledger; the map already holds them.
    this.undo.length = 0;
    this.firstStaged = 0;
  }

  rolledBack(): void {
    this.head = this.readHead();
    // Newest first: an ID staged twice in the transaction gets back the seq it had before the first.
    for (let i = this.undo.length - 1; i >= 0; i--) {
      const [kind, id, seq] = this.undo[i]!;
      if (seq > 0) this.latestSeq[kind].set(id, seq);
      else this.latestSeq[kind].delete(id);
    }
    this.undo.length = 0;
    // Shared: the rows from this transaction's first append on were ours (it held the write lock): gone.
    if (this.firstStaged > 0) this.seenSeq = this.firstStaged - 1;
    this.firstStaged = 0;
  }

  latest(kind: RegistryKind, id: string): RegistryEntry | undefined {
    if (this.shared) this.catchUp();
    const seq = this.latestSeq[kind].get(id);
    if (seq === undefined) return undefined;
    const r = this.stmt.bySeq.get(seq) as Row | undefined;
    return r ? toEntry(r) : undefined;
  }

  async lookup(kind: RegistryKind, id: string): Promise<RegistryEntry | undefined> {
    // The table is the whole ledger: there is nowhere else to ask.
    return this.latest(kind, id);
  }

  directory(): RegistryEntry[] {
    if (this.shared) this.catchUp();
    const out: RegistryEntry[] = [];
    for (const seq of this.latestSeq.dc.values()) {
      const r = this.stmt.bySeq.get(seq) as Row | undefined;
      if (r) out.push(toEntry(r));
    }
    return out;
  }

  revokeByDc(): void {
    // The DC's terminal table is where this DC's own revocations live; nobody else reads this ledger.
  }

  revoked(): boolean {
    return false;
  }

  onChange(): () => void {
    // This DC is the only writer of its chain: nobody else's entries arrive.
    return () => {};
  }

  async close(): Promise<void> {
    // No background work; the database handle belongs to whoever opened it.
  }
}
