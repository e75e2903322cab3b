// What every part of the household store shares (devices.ts, phones.ts, grants.ts, owner.ts): the database, one
// transaction at a time (nested calls join the outer one), and the bounded event log, whose entries are announced to
// listeners only after the transaction that wrote them commits, so nobody hears of a change that was rolled back.
//
// Threading: synchronous, on the event loop (better-sqlite3).
import type { Db } from '../../store/db.js';
import type { AgentEvent } from '../../types/household.js';

export const iso = (ms: number): string => new Date(ms).toISOString();

export interface JournalOptions {
  readonly now?: () => number;
  /** Events kept (older ones are dropped); default 1000. */
  readonly eventLimit?: number;
}

export class Journal {
  readonly now: () => number;
  private readonly eventLimit: number;
  private readonly listeners = new Set<(e: AgentEvent) => void>();
  /** Events written by the transaction in progress; announced only after it commits. */
  private pendingEvents: AgentEvent[] = [];
  private depth = 0;

  constructor(
    readonly db: Db,
    opts: JournalOptions = {},
  ) {
    this.now = opts.now ?? Date.now;
    this.eventLimit = opts.eventLimit ?? 1000;
  }

  /** Runs `fn` in one transaction (nested calls join the outer one); events are announced after the commit. */
  tx<T>(fn: () => T): T {
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

  /** Writes an event inside the caller's transaction; it is announced once that commits. */
  event(kind: string, message: string): AgentEvent {
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
}

/** Base of the store's parts: the shared journal under the names the parts' SQL code uses. */
export abstract class Part {
  constructor(protected readonly journal: Journal) {}

  protected get db(): Db {
    return this.journal.db;
  }

  protected now(): number {
    return this.journal.now();
  }

  protected tx<T>(fn: () => T): T {
    return this.journal.tx(fn);
  }

  protected event(kind: string, message: string): AgentEvent {
    return this.journal.event(kind, message);
  }
}
