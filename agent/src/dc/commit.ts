// The DC's per-turn commit (its outbox): every change of one event-loop turn (terminal records, registry entries) is
// written in one SQLite transaction before any answer that tells of them leaves, so a kill -9 never loses what a
// terminal was told. The registry stages its entries inside that transaction (types/registry.ts: SQLite appends to its
// chain, an EVM backend to its outbox) and is told how it ended.
import type { Bind, Endpoint } from '../types/net.js';
import type { Registry, RegistryEntry } from '../types/registry.js';
import type { Db } from '../store/db.js';
import type { Logger } from '../util/log.js';
import type { TerminalTable } from './terminals.js';

/** The database's busy timeout (store/db.ts), restored after a commit tried without waiting. */
const BUSY_TIMEOUT_MS = 5000;
/** How long end-of-turn commits are tried without waiting before one waits for the lock. */
const BUSY_WAIT_MS = 1000;

export class TurnCommit {
  private readonly entries: RegistryEntry[] = [];
  private readonly revocations: string[] = [];
  private readonly outbox: Array<[Uint8Array, Endpoint, Bind]> = [];
  private readonly announced: Buffer[] = [];
  private scheduled = false;
  /** After each successful commit, with the Node Transactions of our own terminals it recorded (to tell peer DCs). */
  onCommitted: (announce: Buffer[]) => void = () => {};

  constructor(
    private readonly db: Db,
    private readonly terminals: TerminalTable,
    private readonly registry: Registry,
    private readonly log: Logger,
    private readonly send: (data: Uint8Array, to: Endpoint, bind: Bind) => void,
    /**
     * Other processes write the same file (the DC's workers, issue 15): each turn takes the write lock when it begins
     * (BEGIN IMMEDIATE, waiting up to the busy timeout), so what it read inside (the registry's head) is what it
     * appends to. A deferred transaction would fail with SQLITE_BUSY when another worker wrote since its read.
     */
    private readonly shared = false,
  ) {}

  /** A verified entry for the registry, committed with this turn. */
  stage(entry: RegistryEntry): void {
    this.entries.push(entry);
    this.schedule();
  }

  /** This DC's revocation of one of its terminals without the terminal's signature, for the ledger, with this turn. */
  revokeByDc(id: string): void {
    this.revocations.push(id);
    this.schedule();
  }

  /** One of our terminals' new Node Transaction, announced to peer DCs once committed. */
  announce(nt: Buffer): void {
    this.announced.push(nt);
  }

  /** Queues a send for after this turn's commit. */
  sendAfter(data: Uint8Array, to: Endpoint, bind: Bind): void {
    this.outbox.push([data, to, bind]);
    this.schedule();
  }

  /** Commits at the end of this turn (changes made by touch() alone need it too). */
  schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.endOfTurn);
  }

  /**
   * Shared (the DC's workers): the end-of-turn commit does not wait for another worker's write lock. SQLite's busy
   * handler would sleep (1, 2, 5, 10 ms…) with the event loop blocked; instead the turn's changes stay queued, packets
   * go on being read, and the commit is tried again next turn (answers still wait for it). After BUSY_WAIT_MS of
   * trying it waits for the lock as before (the busy timeout).
   */
  private busySince = -1;
  private readonly endOfTurn = (): void => this.flush(!this.shared || (this.busySince >= 0 && performance.now() - this.busySince > BUSY_WAIT_MS));

  /**
   * Commits the turn's changes in one transaction, then releases the answers that depend on them. `wait` false
   * (shared, end of turn): another writer's lock leaves everything queued for the next turn.
   */
  flush(wait = true): void {
    this.scheduled = false;
    const entries = this.entries.splice(0);
    const revocations = this.revocations.splice(0);
    if (this.terminals.pendingWrites > 0 || entries.length > 0 || revocations.length > 0) {
      try {
        const turn = this.db.transaction(() => {
          this.terminals.flushSync();
          for (const e of entries) this.registry.stage(e);
          for (const id of revocations) this.registry.revokeByDc(id);
        });
        if (!this.shared) turn();
        else if (wait) turn.immediate();
        else if (!this.tryImmediate(turn)) {
          // Nothing was written (BEGIN IMMEDIATE failed before the transaction's body ran): all of it again next turn.
          this.entries.unshift(...entries);
          this.revocations.unshift(...revocations);
          if (this.busySince < 0) this.busySince = performance.now();
          this.schedule();
          return;
        }
        this.busySince = -1;
      } catch (e) {
        this.registry.rolledBack();
        this.log.error('commit failed; answers withheld (terminals will retransmit)', { err: e });
        this.outbox.length = 0;
        return;
      }
      this.registry.committed();
    }
    for (const [d, to, b] of this.outbox.splice(0)) this.send(d, to, b);
    if (this.announced.length > 0) this.onCommitted(this.announced.splice(0));
  }

  /** BEGIN IMMEDIATE without waiting: false when another process holds the write lock (SQLITE_BUSY at BEGIN). */
  private tryImmediate(turn: { immediate(): void }): boolean {
    this.db.pragma('busy_timeout = 0');
    try {
      turn.immediate();
      return true;
    } catch (e) {
      if ((e as { code?: string }).code === 'SQLITE_BUSY' && !this.db.inTransaction) return false;
      throw e;
    } finally {
      this.db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    }
  }
}
