// The EVM ledger backend behind the DC's Registry (types/registry.ts; paper §2.2-§2.3 on the NtmRegistry contract,
// docs/ledger.md). The DC answers a terminal at once: stage() writes the entry to a local view and, when it is this
// DC's to submit, to an outbox, both in the DC's own per-turn SQLite transaction, so what the DC acknowledged is on
// disk before the answer leaves. A batcher commits the outbox to the contract in batches and deletes rows only after
// their receipt (kill -9 at any point: the rows are still there, or on the chain; a resubmission is 'duplicate').
// A follower reads the contract's events into the same view (others' Node Transactions, revocations, DC records) and
// the change feed. latest() reads the view only; lookup() asks the contract on a miss. The Relay Servers announced
// for this DC (announceRelay) are read from the contract's state at each connection, then kept by the same follower's
// RelayRecord / RelayWithdrawn events; they live in memory only (the chain is where they are, a restart reads it).
//
// Threading: everything runs on the DC's event loop. The follower and batcher write the database between the DC's
// turns (better-sqlite3 is synchronous, a DC turn never spans an await), each in its own transaction.
import type { Db, Migrations } from '../../store/db.js';
import { migrate } from '../../store/db.js';
import type { Identity } from '../../protocol/identity.js';
import type { Registry, RegistryBacklog, RegistryEntry, RegistryKind, RegistryReport, RelayAnnouncement } from '../../types/registry.js';
import { silentLogger, type Logger, Counters } from '../../util/log.js';
import { checkEntry, checkId, ntRevoked, sameBytes } from '../entry.js';
import { maxBatch, NT_STATUSES, RegistryContract, type LedgerEvent } from './contract.js';
import { ClientClosedError, ContractRevertError, NoContractError } from './errors.js';

export const EVM_REGISTRY_MIGRATIONS: Migrations = {
  module: 'registry-evm',
  steps: [
    // What this DC must still put on the chain, in staging order.
    `CREATE TABLE evm_outbox (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('node', 'dc')), id TEXT NOT NULL, bytes BLOB NOT NULL)`,
    // The local view: the latest entry per (kind, id), ours and the chain's.
    `CREATE TABLE evm_view (kind TEXT NOT NULL, id TEXT NOT NULL, bytes BLOB NOT NULL, PRIMARY KEY (kind, id)) WITHOUT ROWID`,
    // contract (the address the view belongs to), next_block (the follower's position), entries (history count).
    `CREATE TABLE evm_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID`,
    // Revocations by a DC without the terminal's signature (revokeByDc): this DC's own, 'pending' until mined (the
    // outbox of revokeByDc) or 'refused' (the contract will not take it: the terminal is not ours on the chain), and
    // every DC's from RevokedByDc events ('on-chain'). Sticky, like the contract's flag.
    `CREATE TABLE evm_revoked (id TEXT PRIMARY KEY, dc TEXT NOT NULL, state TEXT NOT NULL CHECK (state IN ('pending', 'on-chain', 'refused'))) WITHOUT ROWID`,
  ],
};

export interface EvmRegistryOptions {
  readonly rpcUrl: string;
  /** The NtmRegistry contract's address. */
  readonly contract: string;
  /** The block the contract was deployed in: where the follower starts on an empty view. */
  readonly deployBlock?: number;
  /** This DC: its identity key is its chain account. */
  readonly identity: Identity;
  readonly log?: Logger;
  /** Event and receipt polling period (ms). */
  readonly pollMs?: number;
  /** How long the batcher waits after a commit for more entries to join the batch (ms). */
  readonly batchDelayMs?: number;
  /** How long verify() waits for the chain before starting on the local view alone (ms). */
  readonly connectWaitMs?: number;
  /** A lookup miss asks the chain again for this long: an entry answered at another DC may be a block away (ms). */
  readonly missWaitMs?: number;
  /** Longest a lookup waits for a chain that does not answer (ms). */
  readonly lookupTimeoutMs?: number;
}

/** What a DC wants of one family: a configured pool, or a /len of range picked from slot `hint` on. */
export interface BlockWish {
  readonly pool: string;
  readonly range: string;
  readonly len: number;
  readonly hint: number;
}

interface Row {
  kind: RegistryKind;
  id: string;
  bytes: Buffer;
}

const OFF_DC = 54;
const OFF_TS = 75;
const ntDc = (b: Uint8Array): string => `0x${Buffer.from(b.buffer, b.byteOffset + OFF_DC, 20).toString('hex')}`;
const ntTime = (b: Uint8Array): number => Buffer.from(b.buffer, b.byteOffset, b.byteLength).readUIntBE(OFF_TS + 2, 6);

export class EvmRegistry implements Registry {
  readonly counts = new Counters();
  private readonly self: string;
  private readonly log: Logger;
  private readonly stmt;
  private readonly handlers = new Set<(e: RegistryEntry) => void>();
  /** RSs announced for this DC: ID → signed record (from the contract, not yet verified: the DC does). */
  private readonly relays = new Map<string, Uint8Array>();
  private readonly relayHandlers = new Set<(r: RelayAnnouncement) => void>();
  private client: RegistryContract | undefined;
  private connecting: Promise<RegistryContract> | undefined;
  private stopFollow: (() => void) | undefined;
  private ownStaged = false;
  private draining = false;
  private drainTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly db: Db,
    private readonly opts: EvmRegistryOptions,
  ) {
    migrate(db, EVM_REGISTRY_MIGRATIONS);
    this.self = opts.identity.idHex;
    this.log = (opts.log ?? silentLogger).child({ part: 'ledger' });
    this.stmt = {
      view: db.prepare('SELECT kind, id, bytes FROM evm_view WHERE kind = ? AND id = ?'),
      put: db.prepare('INSERT INTO evm_view (kind, id, bytes) VALUES (?, ?, ?) ON CONFLICT (kind, id) DO UPDATE SET bytes = excluded.bytes'),
      directory: db.prepare("SELECT kind, id, bytes FROM evm_view WHERE kind = 'dc'"),
      clearView: db.prepare('DELETE FROM evm_view'),
      outbox: db.prepare('INSERT INTO evm_outbox (kind, id, bytes) VALUES (?, ?, ?)'),
      pending: db.prepare('SELECT seq, kind, id, bytes FROM evm_outbox WHERE kind = ? ORDER BY seq LIMIT ?'),
      pendingCount: db.prepare('SELECT COUNT(*) AS n FROM evm_outbox'),
      done: db.prepare('DELETE FROM evm_outbox WHERE seq = ?'),
      getMeta: db.prepare('SELECT value FROM evm_meta WHERE key = ?'),
      setMeta: db.prepare('INSERT INTO evm_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
      revokedState: db.prepare("SELECT state FROM evm_revoked WHERE id = ? AND state != 'refused'"),
      revoke: db.prepare("INSERT INTO evm_revoked (id, dc, state) VALUES (?, ?, 'pending') ON CONFLICT (id) DO NOTHING"),
      revokedOnChain: db.prepare("INSERT INTO evm_revoked (id, dc, state) VALUES (?, ?, 'on-chain') ON CONFLICT (id) DO UPDATE SET state = 'on-chain', dc = excluded.dc"),
      revokeFate: db.prepare('UPDATE evm_revoked SET state = ? WHERE id = ?'),
      pendingRevocations: db.prepare("SELECT id FROM evm_revoked WHERE state = 'pending' AND dc = ? LIMIT ?"),
    };
  }

  private meta(key: string): string | undefined {
    return (this.stmt.getMeta.get(key) as { value: string } | undefined)?.value;
  }

  private bumpEntries(): void {
    this.stmt.setMeta.run('entries', String(Number(this.meta('entries') ?? '0') + 1));
  }

  /** Outbox rows not yet on the chain (status, tests). */
  pending(): number {
    return (this.stmt.pendingCount.get() as { n: number }).n;
  }

  /** This DC's revocations (revokeByDc) not yet on the chain. */
  pendingRevocations(): number {
    return this.stmt.pendingRevocations.all(this.self, 1_000_000).length;
  }

  revokeByDc(id: string): void {
    checkId(id);
    this.stmt.revoke.run(id, this.self);
    this.ownStaged = true;
  }

  revoked(id: string): boolean {
    return !!this.stmt.revokedState.get(id) || ntRevoked(this.latest('node', id)?.bytes);
  }

  backlog(): RegistryBacklog {
    const refusedBy: Record<string, number> = {};
    for (const s of NT_STATUSES) if (s !== 'accepted' && s !== 'duplicate' && this.counts.get(s) > 0) refusedBy[s] = this.counts.get(s);
    if (this.counts.get('revoke-not-managed') > 0) refusedBy['revoke-not-managed'] = this.counts.get('revoke-not-managed');
    return {
      // This DC's revocations (revokeByDc) wait in the outbox too; one the contract would not take is refused.
      pending: this.pending() + this.pendingRevocations(),
      committed: this.counts.get('accepted'),
      duplicates: this.counts.get('duplicate'),
      refused: Object.values(refusedBy).reduce((a, b) => a + b, 0),
      refusedBy,
      failedBatches: this.counts.get('batch-failed'),
    };
  }

  async verify(): Promise<RegistryReport> {
    const contract = this.opts.contract.toLowerCase();
    if (this.meta('contract') !== contract) {
      // A view of another contract (the DC was pointed at a new one) is not this ledger: start it again. The outbox
      // stays: what this DC acknowledged must reach whichever ledger it now records to.
      this.db.transaction(() => {
        this.stmt.clearView.run();
        this.stmt.setMeta.run('contract', contract);
        this.stmt.setMeta.run('next_block', String(this.opts.deployBlock ?? 0));
        this.stmt.setMeta.run('entries', String(this.pending()));
      })();
    }
    // verify() may be called again (a status check): the chain is connected to once.
    if (!this.connecting) {
      const key = this.opts.identity.exportPrivateKey();
      const connecting = RegistryContract.connect({
        rpcUrl: this.opts.rpcUrl,
        address: contract,
        privateKey: key,
        pollMs: this.opts.pollMs ?? 500,
        log: this.log,
        abandoned: () => this.closed,
      }).finally(() => key.fill(0));
      this.connecting = connecting;
      const waited = await Promise.race([
        connecting.then((c) => c, (e: unknown) => e as Error),
        new Promise<'waiting'>((r) => setTimeout(() => r('waiting'), this.opts.connectWaitMs ?? 5000).unref()),
      ]);
      if (waited instanceof NoContractError) return { ok: false, entries: 0, at: 0, reason: waited.message };
      if (waited instanceof Error) throw waited;
      if (waited === 'waiting') {
        this.log.warn('chain not answering; starting on the local view, the outbox waits', { rpcUrl: this.opts.rpcUrl });
        connecting.then(
          (c) => this.connected(c),
          (e: unknown) => {
            if (!(e instanceof ClientClosedError)) this.log.error('ledger unusable', { err: e });
          },
        );
      } else this.connected(waited);
    }
    return { ok: true, entries: Number(this.meta('entries') ?? '0'), head: `evm:${contract}@${this.meta('next_block') ?? '0'}` };
  }

  private connected(c: RegistryContract): void {
    if (this.closed) return c.close();
    this.client = c;
    // The RSs listed now first; the follower's events from next_block on replay what changed since in order, so
    // the set ends as the chain's (an older event replayed over the list read is undone by the newer one after it).
    // A contract without relay records (an older deployment) reverts the read: the DC follows it all the same.
    void c
      .relays()
      .then(({ relays }) => {
        for (const r of relays) if (r.dc === this.self && !this.closed) this.relayChanged(r.id, r.record);
      })
      .catch((e: unknown) => {
        if (!(e instanceof ClientClosedError)) this.log.error('relay servers not read from the chain', { err: e });
      })
      .finally(() => {
        if (!this.closed) this.stopFollow = c.follow(Number(this.meta('next_block') ?? '0'), (evs, next) => this.apply(evs, next));
      });
    this.scheduleDrain(0);
  }

  onRelays(handler: (r: RelayAnnouncement) => void): () => void {
    this.relayHandlers.add(handler);
    for (const [id, record] of this.relays) handler({ id, record });
    return () => this.relayHandlers.delete(handler);
  }

  /** An RS announced for this DC (record) or no longer (undefined): the set, and the handlers when it changed. */
  private relayChanged(id: string, record: Uint8Array | undefined): void {
    const have = this.relays.get(id);
    if (record ? have && sameBytes(have, record) : !have) return;
    if (record) this.relays.set(id, record);
    else this.relays.delete(id);
    for (const h of this.relayHandlers) h(record ? { id, record } : { id });
  }

  stage(entry: RegistryEntry): void {
    checkEntry(entry);
    const before = this.stmt.view.get(entry.kind, entry.id) as Row | undefined;
    if (before && sameBytes(before.bytes, entry.bytes)) return;
    const bytes = Buffer.from(entry.bytes);
    this.stmt.put.run(entry.kind, entry.id, bytes);
    this.bumpEntries();
    // Only our own entries go to the chain: the contract takes Node Transactions from the DC they name, and a DC
    // record from that DC's account. Others' (from HELLOs and announcements) stay in the view.
    const ours = entry.kind === 'dc' ? entry.id === this.self : bytes.length === 148 && ntDc(bytes) === this.self;
    if (ours) {
      this.stmt.outbox.run(entry.kind, entry.id, bytes);
      this.ownStaged = true;
    }
  }

  committed(): void {
    if (!this.ownStaged) return;
    this.ownStaged = false;
    this.scheduleDrain(this.opts.batchDelayMs ?? 200);
  }

  rolledBack(): void {
    // The view and outbox rows went with the transaction.
    this.ownStaged = false;
  }

  latest(kind: RegistryKind, id: string): RegistryEntry | undefined {
    const r = this.stmt.view.get(kind, id) as Row | undefined;
    return r ? { kind: r.kind, id: r.id, bytes: r.bytes } : undefined;
  }

  async lookup(kind: RegistryKind, id: string): Promise<RegistryEntry | undefined> {
    const local = this.latest(kind, id);
    if (local) return local;
    const c = this.client;
    if (!c) throw new ContractRevertError('lookup', 'not connected to the chain yet');
    const timeout = this.opts.lookupTimeoutMs ?? 3000;
    const end = Date.now() + (this.opts.missWaitMs ?? 1500);
    for (;;) {
      const bytes = kind === 'node' ? await c.nodeTransaction(id, this.opts.deployBlock ?? 0, timeout) : (await c.dc(id, timeout))?.record;
      // The follower may have brought it in while we asked.
      const now = this.latest(kind, id);
      if (now) return now;
      if (bytes && bytes.length > 0) {
        // A DC's revocation (revokeByDc) is not in the Node Transaction's bytes: the contract's flag says it.
        const byDc = kind === 'node' && !ntRevoked(bytes) ? await c.terminal(id, timeout) : undefined;
        this.db.transaction(() => {
          this.stmt.put.run(kind, id, bytes);
          if (byDc?.revoked) this.stmt.revokedOnChain.run(id, byDc.dc);
          this.bumpEntries();
        })();
        return { kind, id, bytes };
      }
      if (Date.now() >= end || this.closed) return undefined;
      await new Promise((r) => setTimeout(r, this.opts.pollMs ?? 500));
    }
  }

  directory(): RegistryEntry[] {
    return (this.stmt.directory.all() as Row[]).map((r) => ({ kind: r.kind, id: r.id, bytes: r.bytes }));
  }

  onChange(handler: (entry: RegistryEntry) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.drainTimer);
    this.stopFollow?.();
    this.client?.close();
  }

  /**
   * This DC's virtual address blocks, claimed on the contract so no two DCs hand out the same address (issue 12).
   * Kept from an earlier start (the database remembers them; the chain need not answer), else the blocks the chain
   * already lists for this DC, else claimed now: exactly `pool` when configured (an overlap is a
   * ContractRevertError('BlockOverlaps')), or the first free block of `range` from the slot `hint`. Waits for the chain.
   */
  async claimBlocks(want: { readonly v4: BlockWish; readonly v6: BlockWish }): Promise<{ v4: string; v6: string }> {
    const k4 = `pool_v4:${this.opts.contract.toLowerCase()}`;
    const k6 = `pool_v6:${this.opts.contract.toLowerCase()}`;
    const kept = { v4: this.meta(k4), v6: this.meta(k6) };
    if (kept.v4 && kept.v6 && (!want.v4.pool || want.v4.pool === kept.v4) && (!want.v6.pool || want.v6.pool === kept.v6)) return { v4: kept.v4, v6: kept.v6 };
    const key = this.opts.identity.exportPrivateKey();
    const c = await RegistryContract.connect({ rpcUrl: this.opts.rpcUrl, address: this.opts.contract, privateKey: key, pollMs: this.opts.pollMs ?? 500, log: this.log }).finally(() => key.fill(0));
    try {
      // The contract lets only registered DCs claim: a first start registers with an empty record, replaced by the
      // DC's signed record (which names these blocks) as soon as the DC stages it.
      if (!(await c.dc(this.self))) await c.registerDc(this.opts.identity.publicKeyUncompressed, new Uint8Array(0));
      const mine = (await c.blocks()).filter((b) => b.dc === this.self).map((b) => b.cidr);
      const pick = async (w: BlockWish, family: 4 | 6): Promise<string> => {
        const inFamily = mine.filter((m) => m.includes(':') === (family === 6));
        if (w.pool) return inFamily.includes(w.pool) ? w.pool : c.claimBlock(w.pool);
        if (inFamily[0]) return inFamily[0];
        return c.claimFreeBlock(w.range, w.len, w.hint);
      };
      const v4 = await pick(want.v4, 4);
      const v6 = await pick(want.v6, 6);
      this.db.transaction(() => {
        this.stmt.setMeta.run(k4, v4);
        this.stmt.setMeta.run(k6, v6);
      })();
      return { v4, v6 };
    } finally {
      c.close();
    }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // The follower: contract events into the view and the change feed.

  private apply(events: LedgerEvent[], next: number): void {
    if (this.closed) return;
    const news: RegistryEntry[] = [];
    const relays: Array<[string, Uint8Array | undefined]> = [];
    this.db.transaction(() => {
      for (const e of events) {
        let entry: RegistryEntry | undefined;
        if (e.kind === 'revoked-by-dc') {
          this.stmt.revokedOnChain.run(e.id, e.dc);
          continue;
        }
        if (e.kind === 'relay' || e.kind === 'relay-withdrawn') {
          if (e.dc === this.self) relays.push([e.id, e.kind === 'relay' ? e.record : undefined]);
          continue;
        }
        if (e.kind === 'node' && e.dc !== this.self) entry = { kind: 'node', id: e.id, bytes: e.nt };
        // An empty record is a DC's placeholder while it claims its blocks (claimBlocks), not yet a directory entry.
        else if (e.kind === 'dc' && e.id !== this.self && e.record.length > 0) entry = { kind: 'dc', id: e.id, bytes: e.record };
        if (!entry) continue;
        const have = this.stmt.view.get(entry.kind, entry.id) as Row | undefined;
        // The chain's order is the ledger's; only a newer Node Transaction we staged ourselves is kept over it.
        const keepOurs = entry.kind === 'node' && have && have.bytes.length === 148 && ntDc(have.bytes) === this.self && ntTime(have.bytes) > ntTime(entry.bytes);
        if (!have || (!keepOurs && !sameBytes(have.bytes, entry.bytes))) {
          this.stmt.put.run(entry.kind, entry.id, Buffer.from(entry.bytes));
          this.bumpEntries();
        }
        news.push(entry);
      }
      this.stmt.setMeta.run('next_block', String(next));
    })();
    for (const e of news) for (const h of this.handlers) h(e);
    for (const [id, record] of relays) this.relayChanged(id, record);
  }

  /**
   * This DC's revocations onto the chain (revokeByDc), after the Node Transactions above: the contract takes a DC's
   * revocation only of a terminal the chain says it manages, and reverts the whole call otherwise, so each is
   * checked first and one the contract would refuse is marked so and counted, never retried.
   */
  private async drainRevocations(c: RegistryContract, limit: number): Promise<void> {
    for (;;) {
      const ids = (this.stmt.pendingRevocations.all(this.self, limit) as Array<{ id: string }>).map((r) => r.id);
      if (ids.length === 0) return;
      const send: string[] = [];
      const fate = new Map<string, 'on-chain' | 'refused'>();
      for (const id of ids) {
        const t = await c.terminal(id);
        if (t?.revoked) fate.set(id, 'on-chain');
        else if (t?.dc === this.self) send.push(id);
        else {
          fate.set(id, 'refused');
          this.counts.inc('revoke-not-managed');
          this.log.warn('revocation not put on the chain: the chain does not list this DC as the terminal\'s', { id, managingDc: t?.dc ?? null });
        }
      }
      if (send.length > 0) {
        await c.revokeByDc(send);
        for (const id of send) fate.set(id, 'on-chain');
        this.counts.inc('revoked-by-dc', send.length);
      }
      this.db.transaction(() => {
        for (const [id, state] of fate) this.stmt.revokeFate.run(state, id);
      })();
    }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // The batcher: the outbox onto the chain, one transaction at a time, rows deleted after their receipt.

  private scheduleDrain(delayMs: number): void {
    if (this.closed || this.drainTimer) return;
    this.drainTimer = setTimeout(() => {
      this.drainTimer = undefined;
      void this.drain();
    }, delayMs);
  }

  private async drain(): Promise<void> {
    const c = this.client;
    if (!c || this.draining || this.closed) return;
    this.draining = true;
    try {
      // Our DC record first: the contract takes Node Transactions only from a registered DC.
      const dcRows = this.stmt.pending.all('dc', 1000) as Array<Row & { seq: number }>;
      const newest = dcRows.at(-1);
      if (newest) {
        await c.registerDc(this.opts.identity.publicKeyUncompressed, newest.bytes);
        this.db.transaction(() => {
          for (const r of dcRows) this.stmt.done.run(r.seq);
        })();
      }
      const limit = maxBatch(await c.blockGasLimit());
      for (;;) {
        const rows = this.stmt.pending.all('node', limit * 2) as Array<Row & { seq: number }>;
        if (rows.length === 0) break;
        // An ID staged twice needs only its newer Node Transaction on the chain; the older row is done with it.
        const newestOf = new Map<string, Row & { seq: number }>();
        for (const r of rows) newestOf.set(r.id, r);
        const batch = [...newestOf.values()].sort((a, b) => a.seq - b.seq).slice(0, limit);
        const cutoff = batch.at(-1)!.seq;
        const superseded = rows.filter((r) => r.seq <= cutoff && newestOf.get(r.id) !== r);
        const result = await c.submit(batch.map((r) => r.bytes));
        this.db.transaction(() => {
          for (const r of batch) this.stmt.done.run(r.seq);
          for (const r of superseded) this.stmt.done.run(r.seq);
        })();
        result.statuses.forEach((s, i) => {
          this.counts.inc(s);
          if (s !== 'accepted' && s !== 'duplicate') this.log.warn('Node Transaction refused by the contract', { id: batch[i]!.id, status: s });
        });
        this.log.debug('batch on the chain', { entries: batch.length, block: result.blockNumber, gas: result.gasUsed });
      }
      await this.drainRevocations(c, limit);
    } catch (e) {
      if (e instanceof ClientClosedError) return;
      // A refusal of the whole call (our record not yet on the chain, a permission): keep the rows, try again later.
      this.log.error('ledger batch failed; the outbox keeps it', { err: e });
      this.counts.inc('batch-failed');
      this.draining = false;
      this.scheduleDrain(2000);
      return;
    } finally {
      this.draining = false;
    }
    if (this.pending() > 0 || this.pendingRevocations() > 0) this.scheduleDrain(0);
  }
}
