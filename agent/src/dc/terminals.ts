// The DC's table of terminals it manages (paper §2.2): identity, virtual addresses, where it was last seen and
// through what kind of NAT. In memory for the hot path, persisted in SQLite so a restarted DC (kill -9) gives every
// terminal back the same virtual addresses. Writes are grouped: the caller commits once per event-loop turn.
//
// A record is the terminal's address lease. A lease not renewed for dc.expireAfterS is released (dc/expiry.ts): the
// row goes, the addresses return to the pool, and the terminal's Node Transactions stay in the registry (the ledger's
// history is not this table). "Not renewed for" is measured in service time: milliseconds the DC has been running,
// persisted with every commit, so neither a wall clock set years ahead (issue 11 #3) nor a long outage expires anyone.
//
// Rows are keyed by `row`, a number the table hands out in creation order, not by the terminal's random ID (issue 15):
// a key by ID put every new terminal on a random page of its own, written to the WAL and again at the checkpoint; in
// creation order new rows fill the last page. The ID's uniqueness is the map in memory's (byId), this table's only
// reader: the rows are read once, at start. Rows are numbered by this process, so the file has one writer (the DC);
// a row found holding another terminal is never overwritten: the commit fails instead (flushSync). The DC's workers
// (dc.workers, issue 15) share the file: worker k numbers only rows ≡ k (mod N), hands out only those pool slots, and
// reads a row by ID (an index they add) before it decides on a terminal (refresh()).
import type { Endpoint } from '../types/net.js';
import type { Db, Migrations } from '../store/db.js';
import { migrate } from '../store/db.js';
import { IntegrityError, PoolExhaustedError } from '../types/errors.js';
import type { Cidr } from '../protocol/ip.js';
import { bytesToIp4, bytesToIp6, cidrContainsText, ip4ToBytes, ip6ToBytes, parseCidr } from '../protocol/ip.js';
import { formatEndpoint, parseEndpoint } from '../protocol/endpoint.js';
import type { NatKind } from './route.js';
import type { TunnelKeypair } from '../crypto/session.js';
import { keep } from '../util/keep.js';
import { poolCapacity } from './pools.js';

export const DC_MIGRATIONS: Migrations = {
  module: 'dc',
  steps: [
    `CREATE TABLE dc_terminals (
       id TEXT PRIMARY KEY,
       public_key BLOB NOT NULL,
       v4 TEXT NOT NULL UNIQUE,
       v6 TEXT NOT NULL UNIQUE,
       name TEXT NOT NULL DEFAULT '',
       nt BLOB NOT NULL,
       last_req_time INTEGER NOT NULL,
       observed TEXT,
       locals TEXT NOT NULL DEFAULT '',
       nat TEXT NOT NULL DEFAULT 'unknown',
       last_seen INTEGER NOT NULL,
       revoked INTEGER NOT NULL DEFAULT 0)`,
    `CREATE INDEX dc_terminals_name ON dc_terminals (name) WHERE name <> ''`,
    // IDs revoked before this DC ever saw them register (issue 11 #8): they have no address and no record above, yet
    // the revocation must hold when they come, whatever the order.
    `CREATE TABLE dc_revoked (id TEXT PRIMARY KEY, at INTEGER NOT NULL)`,
    // Address leases: the service time a terminal was last heard at, and the DC's service clock (see the header).
    `ALTER TABLE dc_terminals ADD COLUMN seen_service INTEGER NOT NULL DEFAULT 0;
     CREATE TABLE dc_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);`,
    // Keyed in creation order (see the header): the table is rebuilt, its rows in the order they were made (rowid).
    `CREATE TABLE dc_terminals_by_row (
       row INTEGER PRIMARY KEY,
       id TEXT NOT NULL,
       public_key BLOB NOT NULL,
       v4 TEXT NOT NULL UNIQUE,
       v6 TEXT NOT NULL UNIQUE,
       name TEXT NOT NULL DEFAULT '',
       nt BLOB NOT NULL,
       last_req_time INTEGER NOT NULL,
       observed TEXT,
       locals TEXT NOT NULL DEFAULT '',
       nat TEXT NOT NULL DEFAULT 'unknown',
       last_seen INTEGER NOT NULL,
       revoked INTEGER NOT NULL DEFAULT 0,
       seen_service INTEGER NOT NULL DEFAULT 0);
     INSERT INTO dc_terminals_by_row
       (row, id, public_key, v4, v6, name, nt, last_req_time, observed, locals, nat, last_seen, revoked, seen_service)
       SELECT rowid, id, public_key, v4, v6, name, nt, last_req_time, observed, locals, nat, last_seen, revoked, seen_service
       FROM dc_terminals ORDER BY rowid;
     DROP TABLE dc_terminals;
     ALTER TABLE dc_terminals_by_row RENAME TO dc_terminals;
     CREATE INDEX dc_terminals_name ON dc_terminals (name) WHERE name <> '';`,
  ],
};

export interface TerminalRecord {
  /** Its row in dc_terminals (see the header), given when the record is made. */
  readonly row: number;
  readonly id: string;
  readonly idBytes: Buffer;
  readonly publicKey: Buffer;
  readonly v4: string;
  readonly v6: string;
  /**
   * The pools' slot both addresses are at (network + slot): their bytes without parsing the text. −1 when they are
   * not (a record loaded from a table written with other pools).
   */
  readonly slot: number;
  name: string;
  /** The latest Node Transaction bytes this DC accepted for it. */
  nt: Buffer;
  lastReqTime: number;
  observed: Endpoint | undefined;
  locals: readonly Endpoint[];
  nat: NatKind;
  /** Wall-clock ms of the last authentic packet. */
  lastSeen: number;
  /** The DC's service time (ms) of the last authentic packet: what expiry compares (see the header). */
  seenService: number;
  revoked: boolean;
  // Volatile state (lost on restart; the terminal re-registers).
  /** seenService as last written (the sweep writes a lease renewed by control packets alone now and then). */
  seenSaved: number;
  kss?: Buffer;
  channel?: TunnelKeypair;
  /** The cached answer to the last registration (retransmissions get it again). */
  lastReg?: { readonly txid: bigint; readonly time: number; readonly src: string; readonly response: Buffer };
  /** The txid of the NAT probe that came with the last registration, and the mapping it showed. */
  probe?: { readonly txid: bigint; readonly mapping: Endpoint | undefined; readonly regMapping: Endpoint | undefined };
  /** RTTs to RSs this terminal reported (NO_RTTS until its first report: memory for 100,000 terminals). */
  rsRtt: ReadonlyMap<string, number>;
  /** Answers to control requests by txid, for retransmitted requests (idempotency). */
  replies: Map<bigint, Buffer> | undefined;
  /** Next keep-alive due (monotonic ms). */
  keepaliveDue: number;
}

interface Row {
  row: number;
  id: string;
  public_key: Buffer;
  v4: string;
  v6: string;
  name: string;
  nt: Buffer;
  last_req_time: number;
  observed: string | null;
  locals: string;
  nat: string;
  last_seen: number;
  seen_service: number;
  revoked: number;
}

type Persistent = Omit<TerminalRecord, 'slot' | 'seenSaved' | 'kss' | 'channel' | 'lastReg' | 'probe' | 'rsRtt' | 'replies' | 'keepaliveDue'>;

/**
 * Every record is this one complete literal, volatile fields included, so V8 gives all of them one compact shape. A
 * record built with a spread and given kss/channel/lastReg later carried a ~800-byte property array of its own:
 * ~70 MB more heap at 100,000 terminals (tests/bench, dc_capacity).
 */
function newRecord(f: Persistent, slot: number): TerminalRecord {
  return {
    row: f.row,
    id: f.id,
    idBytes: f.idBytes,
    publicKey: f.publicKey,
    v4: f.v4,
    v6: f.v6,
    slot,
    name: f.name,
    nt: f.nt,
    lastReqTime: f.lastReqTime,
    observed: f.observed,
    locals: f.locals,
    nat: f.nat,
    lastSeen: f.lastSeen,
    seenService: f.seenService,
    revoked: f.revoked,
    seenSaved: f.seenService,
    kss: undefined,
    channel: undefined,
    lastReg: undefined,
    probe: undefined,
    rsRtt: NO_RTTS,
    replies: undefined,
    keepaliveDue: 0,
  };
}

/** The locals column: "addr:port" joined by commas. */
function formatLocals(locals: readonly Endpoint[]): string {
  if (locals.length === 0) return '';
  if (locals.length === 1) return formatEndpoint(locals[0]!);
  return locals.map(formatEndpoint).join(',');
}

/** Shared by every record that has reported no RS round trips yet (most): replaced by its own map on the first report. */
export const NO_RTTS: ReadonlyMap<string, number> = new Map();

/** The address at `index` in `pool`, written into `out` (the pool's length: 4 or 16 bytes). */
function slotBytes(pool: Cidr, index: number, out: Uint8Array): Uint8Array {
  out.set(pool.network);
  let carry = index;
  for (let i = out.length - 1; i >= 0 && carry > 0; i--) {
    const v = out[i]! + (carry & 0xff);
    out[i] = v & 0xff;
    carry = (carry >>> 8) + (v >> 8);
  }
  return out;
}

function ipAt(pool: Cidr, index: number): string {
  const b = slotBytes(pool, index, new Uint8Array(pool.network.length));
  return pool.family === 4 ? bytesToIp4(b) : bytesToIp6(b);
}

export class TerminalTable {
  readonly byId = new Map<string, TerminalRecord>();
  readonly byV4 = new Map<string, TerminalRecord>();
  readonly byV6 = new Map<string, TerminalRecord>();
  readonly byName = new Map<string, TerminalRecord>();
  /**
   * Terminals by where they were last seen ("addr:port"; the last one seen there when several share a socket, as the
   * agent's appliances do). Only for deciding whether an unauthenticated packet may get a HINT (dc/channel.ts).
   */
  private readonly byObserved = new Map<string, TerminalRecord>();
  private readonly used = new Set<number>();
  private readonly pool4: Cidr;
  private readonly pool6: Cidr;
  private readonly dirty = new Set<TerminalRecord>();
  private readonly upsert;
  /** IDs revoked that have no record (persisted in dc_revoked); a record's own flag covers the others. */
  private readonly revokedIds = new Set<string>();
  /** dc_revoked rows to write (true) or delete (false) with the next flush. */
  private readonly revokedDirty = new Map<string, boolean>();
  private readonly revokedAt = new Map<string, number>();
  private readonly revokedInsert;
  private readonly revokedDelete;
  /** Rows of released leases to delete with the next flush (before any upsert: an address may be reused at once). */
  private readonly released = new Set<number>();
  /** The highest row in the table or handed out since (a new record takes the next: no row is in use twice). */
  private lastRow = 0;
  private readonly rowDelete;
  private readonly serviceSave;
  /** Service time persisted at start, and the monotonic time it was read at. */
  private readonly serviceBase: number;
  private readonly serviceStart: number;
  private nextHint = 2;
  /** The service clock is to be written with the next flush even if nothing else is. */
  private serviceDirty = false;

  /** Reads one row (shared: refresh()), or finds its ID by an indexed column (refreshWhere()). */
  private readonly rowById;
  private readonly idWhere;

  /**
   * `partition`: this process is worker `index` of `count` sharing the file (the DC's workers, issue 15). It takes only
   * the pool slots ≡ index (mod count), so no two workers hand out one address, and reads a record from the file
   * before it decides on it (refresh()).
   */
  constructor(
    private readonly db: Db,
    pool4: string,
    pool6: string,
    private readonly monotonic: () => number = () => performance.now(),
    private readonly partition: { readonly index: number; readonly count: number } = { index: 0, count: 1 },
  ) {
    migrate(db, DC_MIGRATIONS);
    // Workers (issue 15) read a terminal's row by its ID before each registration (refresh()), and each numbers the
    // rows it creates itself: an index by ID for them, made by the first worker (not a migration: one process has
    // no reader by ID and goes without its page writes; see the header).
    if (partition.count > 1) db.exec('CREATE INDEX IF NOT EXISTS dc_terminals_by_id ON dc_terminals (id)');
    this.pool4 = parseCidr(pool4);
    this.pool6 = parseCidr(pool6);
    this.upsert = db.prepare(`INSERT INTO dc_terminals
      (row, id, public_key, v4, v6, name, nt, last_req_time, observed, locals, nat, last_seen, seen_service, revoked)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT(row) DO UPDATE SET name = excluded.name, nt = excluded.nt, last_req_time = excluded.last_req_time,
        observed = excluded.observed, locals = excluded.locals, nat = excluded.nat, last_seen = excluded.last_seen,
        seen_service = excluded.seen_service, revoked = excluded.revoked
      WHERE dc_terminals.id = excluded.id`);
    this.rowDelete = db.prepare('DELETE FROM dc_terminals WHERE row = ?');
    this.rowById = db.prepare('SELECT * FROM dc_terminals WHERE id = ? ORDER BY row DESC LIMIT 1');
    this.idWhere = {
      v4: db.prepare('SELECT id FROM dc_terminals WHERE v4 = ?'),
      v6: db.prepare('SELECT id FROM dc_terminals WHERE v6 = ?'),
      name: db.prepare("SELECT id FROM dc_terminals WHERE name = ? AND name <> ''"),
    };
    this.serviceSave = db.prepare(`INSERT INTO dc_meta (key, value) VALUES ('service_ms', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`);
    this.serviceBase = (db.prepare(`SELECT value FROM dc_meta WHERE key = 'service_ms'`).get() as { value: number } | undefined)?.value ?? 0;
    this.serviceStart = monotonic();
    this.revokedInsert = db.prepare('INSERT OR REPLACE INTO dc_revoked (id, at) VALUES (?, ?)');
    this.revokedDelete = db.prepare('DELETE FROM dc_revoked WHERE id = ?');
    // In row order: were an ID ever in two rows, the later would be the one kept (load).
    for (const r of db.prepare('SELECT * FROM dc_terminals ORDER BY row').iterate() as IterableIterator<Row>) this.load(r);
    for (const r of db.prepare('SELECT id FROM dc_revoked').iterate() as IterableIterator<{ id: string }>) this.revokedIds.add(r.id);
  }

  /** Whether an ID without a record was revoked (a first registration of it is refused). */
  isRevokedId(id: string): boolean {
    return this.revokedIds.has(id);
  }

  /** Revokes an ID this DC has no record of; written with the next flush. */
  revokeId(id: string, now: number): void {
    this.revokedIds.add(id);
    this.revokedDirty.set(id, true);
    this.revokedAt.set(id, now);
  }

  /** Lifts the revocation of an ID without a record. */
  reinstateId(id: string): void {
    if (!this.revokedIds.delete(id)) return;
    this.revokedDirty.set(id, false);
  }

  get pools(): { v4: Cidr; v6: Cidr } {
    return { v4: this.pool4, v6: this.pool6 };
  }

  /** How many terminals the pool serves (its addresses less network, gateway and broadcast). */
  get capacity(): number {
    return poolCapacity(this.pool4.length);
  }

  /** The DC's service time (ms): running time summed over its lives (see the header). */
  serviceNow(): number {
    return this.serviceBase + (this.monotonic() - this.serviceStart);
  }

  /** Writes the service clock with the next flush (every few seconds and at stop: a kill -9 loses only that much). */
  saveService(): void {
    this.serviceDirty = true;
  }

  /**
   * An authentic packet from `rec` at wall-clock `now`: its lease is renewed, in memory (a write per keep-alive would
   * be thousands a second on an ISP's DC); registrations write it, and the expiry sweep writes leases renewed since.
   */
  seen(rec: TerminalRecord, now: number): void {
    rec.lastSeen = now;
    rec.seenService = this.serviceNow();
  }

  /**
   * Ends `rec`'s lease: its addresses return to the pool and its row is deleted with the next flush. A revoked
   * terminal's revocation is kept (dc_revoked), so it stays refused whatever comes later. The caller drops its channel.
   */
  release(rec: TerminalRecord, now: number): void {
    if (this.byId.get(rec.id) !== rec) return;
    this.byId.delete(rec.id);
    this.byV4.delete(rec.v4);
    this.byV6.delete(rec.v6);
    if (rec.name && this.byName.get(rec.name.toLowerCase()) === rec) this.byName.delete(rec.name.toLowerCase());
    if (rec.observed) {
      const at = formatEndpoint(rec.observed);
      if (this.byObserved.get(at) === rec) this.byObserved.delete(at);
    }
    const idx = this.indexOf(rec.v4);
    if (idx >= 0) {
      this.used.delete(idx);
      if (idx < this.nextHint) this.nextHint = idx;
    }
    this.dirty.delete(rec);
    this.released.add(rec.row);
    if (rec.revoked) this.revokeId(rec.id, now);
  }

  private load(r: Row): void {
    this.lastRow = Math.max(this.lastRow, r.row);
    // Nothing writes an ID twice (create() is for IDs without a record); were it there twice, the later row stands.
    const older = this.byId.get(r.id);
    if (older) this.release(older, 0);
    const at = this.indexOf(r.v4);
    const rec = newRecord({
      row: r.row,
      id: r.id,
      idBytes: keep(Buffer.from(r.id.slice(2), 'hex')),
      publicKey: keep(r.public_key),
      v4: r.v4,
      v6: r.v6,
      name: r.name,
      nt: keep(r.nt),
      lastReqTime: r.last_req_time,
      observed: r.observed ? parseEndpoint(r.observed) : undefined,
      locals: r.locals ? r.locals.split(',').map(parseEndpoint) : [],
      nat: r.nat as NatKind,
      lastSeen: r.last_seen,
      seenService: r.seen_service,
      revoked: r.revoked === 1,
    }, at >= 0 && ipAt(this.pool6, at) === r.v6 ? at : -1);
    this.index(rec, at);
  }

  /** `idx`: the slot of rec.v4 in the v4 pool (taken), or −1 when it lies outside. */
  private index(rec: TerminalRecord, idx: number): void {
    this.byId.set(rec.id, rec);
    this.byV4.set(rec.v4, rec);
    this.byV6.set(rec.v6, rec);
    if (rec.name) this.byName.set(rec.name.toLowerCase(), rec);
    if (rec.observed) this.byObserved.set(formatEndpoint(rec.observed), rec);
    if (idx >= 0) this.used.add(idx);
  }

  /** The terminal's virtual addresses as bytes, into `v4` (4 bytes) and `v6` (16): from its slot, no text parsed. */
  addressBytes(rec: TerminalRecord, v4: Uint8Array, v6: Uint8Array): void {
    if (rec.slot >= 0) {
      slotBytes(this.pool4, rec.slot, v4);
      slotBytes(this.pool6, rec.slot, v6);
    } else {
      ip4ToBytes(rec.v4, v4);
      ip6ToBytes(rec.v6, v6);
    }
  }

  private indexOf(v4: string): number {
    if (!cidrContainsText(this.pool4, v4)) return -1;
    const a = v4.split('.').map(Number);
    const n = this.pool4.network;
    return ((a[0]! - n[0]!) * 2 ** 24 + (a[1]! - n[1]!) * 2 ** 16 + (a[2]! - n[2]!) * 2 ** 8 + (a[3]! - n[3]!)) >>> 0;
  }

  /** Creates the record of a terminal seen for the first time, with the lowest free virtual addresses. */
  create(init: { id: string; idBytes: Buffer; publicKey: Buffer; nt: Buffer; lastReqTime: number; now: number }): TerminalRecord {
    const size = 2 ** (32 - this.pool4.length);
    let idx = -1;
    const { index, count } = this.partition;
    // .0 is the network, .1 is kept for a future virtual gateway, the last is the broadcast address. A worker takes
    // only its own slots (≡ index mod count).
    const from = this.nextHint + ((index - (this.nextHint % count) + count) % count);
    for (let i = from; i < size - 1; i += count) {
      if (!this.used.has(i)) {
        idx = i;
        break;
      }
    }
    if (idx < 0) throw new PoolExhaustedError(`virtual address pool ${this.pool4.text} is exhausted (${this.capacity} terminals)`);
    this.nextHint = idx + 1;
    const rec = newRecord({
      row: this.nextRow(),
      id: init.id,
      idBytes: init.idBytes,
      publicKey: init.publicKey,
      v4: ipAt(this.pool4, idx),
      v6: ipAt(this.pool6, idx),
      name: '',
      nt: init.nt,
      lastReqTime: init.lastReqTime,
      observed: undefined,
      locals: [],
      nat: 'unknown',
      lastSeen: init.now,
      seenService: this.serviceNow(),
      revoked: false,
    }, idx);
    this.index(rec, idx);
    this.dirty.add(rec);
    return rec;
  }

  /**
   * The DC's workers share the file (issue 15): another worker may have written `id`'s row since this one read it (a
   * terminal the kernel sends here now, after a worker came or went). The record as the file has it, in memory and
   * indexed (undefined when there is none); a record with changes not yet written is this worker's newest and is kept.
   */
  refresh(id: string): TerminalRecord | undefined {
    const mine = this.byId.get(id);
    if (mine && this.dirty.has(mine)) return mine;
    const r = this.rowById.get(id) as Row | undefined;
    if (!r) {
      // Released elsewhere: gone from memory here too (its slot stays taken until this worker restarts).
      if (mine) this.unindex(mine);
      return undefined;
    }
    if (!mine || mine.v4 !== r.v4) {
      if (mine) this.unindex(mine);
      this.load(r);
      return this.byId.get(id);
    }
    if (!mine.nt.equals(r.nt)) mine.nt = keep(r.nt);
    // Marks only go forward: the file's are older where this worker heard from the terminal since (seen() is not written).
    mine.lastReqTime = Math.max(mine.lastReqTime, r.last_req_time);
    mine.revoked = r.revoked === 1;
    mine.nat = r.nat as NatKind;
    mine.lastSeen = Math.max(mine.lastSeen, r.last_seen);
    mine.seenService = Math.max(mine.seenService, r.seen_service);
    if (r.name.toLowerCase() !== mine.name.toLowerCase()) {
      if (mine.name && this.byName.get(mine.name.toLowerCase()) === mine) this.byName.delete(mine.name.toLowerCase());
      mine.name = r.name;
      if (r.name) this.byName.set(r.name.toLowerCase(), mine);
    }
    const observed = r.observed ? parseEndpoint(r.observed) : undefined;
    if (observed && (!mine.observed || formatEndpoint(mine.observed) !== r.observed)) this.observeClean(mine, observed, r.observed!);
    mine.locals = r.locals ? r.locals.split(',').map(parseEndpoint) : [];
    return mine;
  }

  /** refresh() of the terminal whose v4, v6 or name (as written) is `value` in the file, if any (indexed columns). */
  refreshWhere(column: 'v4' | 'v6' | 'name', value: string): TerminalRecord | undefined {
    const r = this.idWhere[column].get(value) as { id: string } | undefined;
    return r ? this.refresh(r.id) : undefined;
  }

  /** observe() without marking the record for writing (it comes from the file). */
  private observeClean(rec: TerminalRecord, at: Endpoint, atText: string): void {
    if (rec.observed) {
      const old = formatEndpoint(rec.observed);
      if (this.byObserved.get(old) === rec) this.byObserved.delete(old);
    }
    rec.observed = at;
    this.byObserved.set(atText, rec);
  }

  /** Out of every index (its row and its pool slot are left as they are). */
  private unindex(rec: TerminalRecord): void {
    this.byId.delete(rec.id);
    this.byV4.delete(rec.v4);
    this.byV6.delete(rec.v6);
    if (rec.name && this.byName.get(rec.name.toLowerCase()) === rec) this.byName.delete(rec.name.toLowerCase());
    if (rec.observed && this.byObserved.get(formatEndpoint(rec.observed)) === rec) this.byObserved.delete(formatEndpoint(rec.observed));
  }

  /** The row a new record takes: the next after every row known here, ≡ index (mod count) for a worker (no two share one). */
  private nextRow(): number {
    const { index, count } = this.partition;
    let r = this.lastRow + 1;
    r += (index - (r % count) + count) % count;
    this.lastRow = r;
    return r;
  }

  /** Claims a name for the terminal if nobody else has it; returns whether it now has that name. */
  setName(rec: TerminalRecord, name: string): boolean {
    const key = name.toLowerCase();
    if (rec.name.toLowerCase() === key) return true;
    const other = this.byName.get(key);
    if (other && other !== rec) return false;
    if (rec.name) this.byName.delete(rec.name.toLowerCase());
    rec.name = name;
    if (name) this.byName.set(key, rec);
    this.dirty.add(rec);
    return true;
  }

  /** Records where the terminal is now (every change of `observed` goes through here); `atText`: formatEndpoint(at). */
  observe(rec: TerminalRecord, at: Endpoint, atText = formatEndpoint(at)): void {
    if (rec.observed) {
      const old = formatEndpoint(rec.observed);
      if (this.byObserved.get(old) === rec) this.byObserved.delete(old);
    }
    rec.observed = at;
    this.byObserved.set(atText, rec);
    this.dirty.add(rec);
  }

  /** The terminal last seen at `at`, if any. */
  atEndpoint(at: Endpoint): TerminalRecord | undefined {
    return this.byObserved.get(formatEndpoint(at));
  }

  /**
   * Removes a terminal that another DC manages now (its newer Node Transaction on the ledger names that DC): its row
   * at once (outside the per-turn commit: the DC calls this at start, before it serves) and its addresses.
   */
  forget(rec: TerminalRecord): void {
    this.rowDelete.run(rec.row);
    this.byId.delete(rec.id);
    this.byV4.delete(rec.v4);
    this.byV6.delete(rec.v6);
    if (rec.name && this.byName.get(rec.name.toLowerCase()) === rec) this.byName.delete(rec.name.toLowerCase());
    if (rec.observed && this.byObserved.get(formatEndpoint(rec.observed)) === rec) this.byObserved.delete(formatEndpoint(rec.observed));
    const idx = this.indexOf(rec.v4);
    if (idx >= 0) this.used.delete(idx);
    this.dirty.delete(rec);
  }

  touch(rec: TerminalRecord): void {
    this.dirty.add(rec);
  }

  /** Writes every changed record; call inside the DC's per-turn transaction. */
  flushSync(): number {
    const n = this.dirty.size + this.revokedDirty.size + this.released.size;
    // Deletes first: a released address may already be another terminal's in this same turn (v4 and v6 are UNIQUE).
    for (const row of this.released) this.rowDelete.run(row);
    this.released.clear();
    this.serviceSave.run(Math.round(this.serviceNow()));
    this.serviceDirty = false;
    for (const [id, revoked] of this.revokedDirty) {
      if (revoked) this.revokedInsert.run(id, this.revokedAt.get(id) ?? 0);
      else this.revokedDelete.run(id);
    }
    this.revokedDirty.clear();
    this.revokedAt.clear();
    for (const rec of this.dirty) {
      // Positional, in the column order above (binding a named object costs a property lookup per column and row).
      const written = this.upsert.run(
        rec.row,
        rec.id,
        rec.publicKey,
        rec.v4,
        rec.v6,
        rec.name,
        rec.nt,
        rec.lastReqTime,
        rec.observed ? formatEndpoint(rec.observed) : null,
        formatLocals(rec.locals),
        rec.nat,
        rec.lastSeen,
        Math.round(rec.seenService),
        rec.revoked ? 1 : 0,
      ).changes;
      // Only another writer of the file could have put another terminal at this row (see the header).
      if (written === 0) throw new IntegrityError(`dc_terminals row ${rec.row} holds another terminal than ${rec.id}: the file has another writer`);
      rec.seenSaved = rec.seenService;
    }
    this.dirty.clear();
    return n;
  }

  get pendingWrites(): number {
    return this.dirty.size + this.revokedDirty.size + this.released.size + (this.serviceDirty ? 1 : 0);
  }

  get size(): number {
    return this.byId.size;
  }
}
