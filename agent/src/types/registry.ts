// The node-transaction ledger boundary, as the DC uses it (paper §2.2: the DC records each terminal's Node Transaction
// through a smart contract; §2.3: DC_MN finds CN's managing DC there). Implementations: registry/sqlite.ts (embedded
// default: a hash-chained table in the DC's own database), registry/fake.ts (in memory, for tests), an EVM contract
// backend (issue 12: an outbox table in the DC's database, batched to the chain; a cache fed by contract events).
// Every implementation passes registry/testing/compliance.ts. No dependencies.
//
// Writes are staged inside the DC's per-turn SQLite transaction (the DC commits a terminal's record and its entry
// together, before any answer leaves): the SQLite backend appends to its chain there, an EVM backend to its outbox.
// So a DC answers at once and a backend may reach its ledger later; what was staged in a committed transaction is never
// lost (kill -9 included). Reads the DC makes per packet are synchronous, from the backend's local view.

/** What an entry holds: a terminal's Node Transaction, or a DC's signed directory record (protocol/dc-record.ts). */
export type RegistryKind = 'node' | 'dc';

export interface RegistryEntry {
  readonly kind: RegistryKind;
  /** The subject's ID: `0x` + 40 lowercase hex digits (a terminal's or a DC's; both are EVM addresses). */
  readonly id: string;
  /** The signed encoding (the 148-byte Node Transaction, or the DC record), verified by the DC before staging. */
  readonly bytes: Uint8Array;
}

/** The outcome of `verify()`: how many entries the local view holds and an opaque name for the state verified. */
export type RegistryReport =
  | { readonly ok: true; readonly entries: number; readonly head: string }
  | { readonly ok: false; readonly entries: number; readonly at: number; readonly reason: string };

export interface Registry {
  /**
   * Checks what the backend holds before the DC serves anyone (SQLite: recomputes the hash chain; EVM: the outbox and
   * cache against the contract). Async; call once, before any other method. `ok: false` means the DC must not start.
   * `at` names the first bad entry in the backend's own numbering; `head` is the verified state (SQLite: the chain
   * head's hash in hex), shown in the DC's status.
   */
  verify(): Promise<RegistryReport>;

  /**
   * Stages an entry, synchronously, inside the transaction the caller has open on the database the backend was
   * opened on; it becomes durable when that transaction commits, and is gone if it rolls back. The caller has
   * verified the signature. Idempotent: bytes equal to the latest entry for (kind, id) stage nothing. A newer entry
   * for the same (kind, id) supersedes the older for `latest`. Throws RangeError on a malformed ID (a bug, not input).
   */
  stage(entry: RegistryEntry): void;
  /** The transaction that held `stage` calls committed (an EVM backend wakes its batcher). Synchronous, cheap. */
  committed(): void;
  /** The transaction that held `stage` calls rolled back: forget what they changed in memory. Synchronous. */
  rolledBack(): void;

  /**
   * The latest entry for (kind, id) in the local view: this DC's own staged entries (read-your-writes, even before the
   * commit), and what the backend learnt of others' (SQLite: entries the DC staged from peers' announcements; EVM:
   * the event cache). Synchronous and never touches the network: fit for per-packet use. Undefined if not known here.
   */
  latest(kind: RegistryKind, id: string): RegistryEntry | undefined;
  /**
   * As `latest`, but a miss may ask the ledger itself (EVM: a contract lookup), and what it finds joins the local
   * view. Async; resolves undefined when the ledger has nothing either; rejects only when the ledger cannot be asked.
   */
  lookup(kind: RegistryKind, id: string): Promise<RegistryEntry | undefined>;
  /** The DC directory: the latest 'dc' entry of every DC in the local view (ours included), in no fixed order. */
  directory(): RegistryEntry[];

  /**
   * Stages, in the caller's open transaction as `stage` does, a revocation this DC makes without the terminal's
   * signature (its operator's: an owner unpairing a lost device) of a terminal it manages. A ledger shared by several
   * DCs carries it to all of them (EVM: the contract's revokeByDc, after the terminal's Node Transaction); a ledger one
   * DC writes alone (SQLite) records nothing: the DC's own terminal table holds the revocation.
   */
  revokeByDc(id: string): void;
  /**
   * Whether the ledger holds `id` revoked for good, by a signed revocation or a DC's (revocation is sticky on a shared
   * ledger: no DC can lift it, docs/ledger.md). Synchronous, from the local view. A ledger one DC writes alone
   * answers false: its revocations are that DC's own record, which the DC may lift.
   */
  revoked(id: string): boolean;

  /**
   * Entries that others put on the ledger (another DC's revocation, a DC joining), once each, after they joined the
   * local view; never this instance's own `stage` calls. A backend with one writer (SQLite) has none to deliver.
   * Handlers run on the event loop, never inside `stage`. Returns the unsubscribe function.
   */
  onChange(handler: (entry: RegistryEntry) => void): () => void;

  /**
   * The Relay Servers the ledger lists for this DC (paper §3.1: RSs that come and go announce themselves to their DC;
   * EVM: the contract's announceRelay, from the RS's own account). The handler gets each one listed now, then every
   * change: a new or updated announcement with the RS's signed record (protocol/dc-record.ts, role RS, not yet
   * verified), a withdrawal without one. Handlers run on the event loop. Absent where the ledger lists no RSs (SQLite:
   * the DC takes RSs from its configuration and their HELLOs). Returns the unsubscribe function.
   */
  onRelays?(handler: (r: RelayAnnouncement) => void): () => void;

  /** Stops background work (an EVM backend's batcher and event watch). Idempotent. The database stays the caller's. */
  close(): Promise<void>;

  /**
   * What a backend that reaches its ledger later (EVM: the outbox) still owes it, and what the ledger made of what it
   * was sent since this process started (the DC's status). Absent where staging is committing (SQLite).
   */
  backlog?(): RegistryBacklog;
}

/** A Relay Server the ledger lists for this DC, or (no record) one it no longer lists. */
export interface RelayAnnouncement {
  /** The RS's ID (its account): `0x` + 40 lowercase hex digits. */
  readonly id: string;
  /** Its signed record as announced; absent: withdrawn (drained, retired, shut down, or moved to another DC). */
  readonly record?: Uint8Array;
}

export interface RegistryBacklog {
  /** Staged entries not yet on the ledger. */
  readonly pending: number;
  /** Entries the ledger took. */
  readonly committed: number;
  /** Entries the ledger already held (a resubmission after a crash between the commit and the outbox delete). */
  readonly duplicates: number;
  /** Entries the ledger refused (they are not retried: the DC checked them, so each is a disagreement to look at). */
  readonly refused: number;
  /** The same by the ledger's reason (the contract's status: 'signature', 'stale', 'revoked', …). */
  readonly refusedBy: Readonly<Record<string, number>>;
  /** Submissions that failed as a whole and wait in the outbox to be retried. */
  readonly failedBatches: number;
}
