// An in-memory registry for fast tests (as wireguard-go's conn/bindtest is for sockets): several FakeRegistry
// instances on one FakeLedger behave as DCs sharing a chain. An entry reaches the ledger when the transaction that
// staged it commits; the other instances then see it in their change feed and local view on a later event-loop turn
// (as contract events arrive), and at once through lookup(). Passes registry/testing/compliance.ts.
import type { Registry, RegistryEntry, RegistryKind, RegistryReport } from '../types/registry.js';
import { checkEntry, checkId, ntRevoked, sameBytes } from './entry.js';

const key = (kind: RegistryKind, id: string): string => `${kind}:${id}`;

/** The shared ledger: every committed entry in order. Outlives the registries attached to it (a DC restart). */
export class FakeLedger {
  readonly entries: RegistryEntry[] = [];
  /** IDs a DC revoked without the terminal's signature (revokeByDc): sticky. */
  readonly revokedByDc = new Set<string>();
  private readonly members = new Set<FakeRegistry>();

  latest(kind: RegistryKind, id: string): RegistryEntry | undefined {
    for (let i = this.entries.length - 1; i >= 0; i--) {
      const e = this.entries[i]!;
      if (e.kind === kind && e.id === id) return e;
    }
    return undefined;
  }

  /** @internal */
  attach(r: FakeRegistry): void {
    this.members.add(r);
  }

  /** @internal */
  detach(r: FakeRegistry): void {
    this.members.delete(r);
  }

  /** @internal Appends what `from` committed and tells every other member on a later turn. */
  append(from: FakeRegistry, entries: readonly RegistryEntry[], revoked: readonly string[] = []): void {
    this.entries.push(...entries);
    for (const id of revoked) this.revokedByDc.add(id);
    for (const m of this.members) if (m !== from) setImmediate(() => m.deliver(entries));
  }
}

export interface FakeRegistryOptions {
  /** Makes verify() report this failure (a tampered ledger, for the DC's refusal to start). */
  readonly broken?: string;
}

export class FakeRegistry implements Registry {
  private readonly view = new Map<string, RegistryEntry>();
  private readonly handlers = new Set<(e: RegistryEntry) => void>();
  /** Entries staged in the open transaction, and what they replaced in the view (for a rollback). */
  private staged: Array<{ entry: RegistryEntry; before: RegistryEntry | undefined }> = [];
  private stagedRevocations: string[] = [];
  private closed = false;

  constructor(
    readonly ledger: FakeLedger = new FakeLedger(),
    private readonly opts: FakeRegistryOptions = {},
  ) {
    // A restarted DC rebuilds its view from the ledger's history, as an EVM backend replays the contract's events.
    for (const e of ledger.entries) this.view.set(key(e.kind, e.id), e);
    ledger.attach(this);
  }

  async verify(): Promise<RegistryReport> {
    if (this.opts.broken) return { ok: false, entries: this.ledger.entries.length, at: this.ledger.entries.length, reason: this.opts.broken };
    return { ok: true, entries: this.ledger.entries.length, head: `fake:${this.ledger.entries.length}` };
  }

  stage(entry: RegistryEntry): void {
    checkEntry(entry);
    const k = key(entry.kind, entry.id);
    const before = this.view.get(k);
    if (before && sameBytes(before.bytes, entry.bytes)) return;
    const copy: RegistryEntry = { kind: entry.kind, id: entry.id, bytes: Uint8Array.from(entry.bytes) };
    this.staged.push({ entry: copy, before });
    this.view.set(k, copy);
  }

  committed(): void {
    const done = this.staged.splice(0);
    const revoked = this.stagedRevocations.splice(0);
    if (done.length > 0 || revoked.length > 0) this.ledger.append(this, done.map((s) => s.entry), revoked);
  }

  rolledBack(): void {
    this.stagedRevocations = [];
    const undo = this.staged.splice(0);
    for (let i = undo.length - 1; i >= 0; i--) {
      const { entry, before } = undo[i]!;
      const k = key(entry.kind, entry.id);
      if (before) this.view.set(k, before);
      else this.view.delete(k);
    }
  }

  latest(kind: RegistryKind, id: string): RegistryEntry | undefined {
    return this.view.get(key(kind, id));
  }

  async lookup(kind: RegistryKind, id: string): Promise<RegistryEntry | undefined> {
    const local = this.latest(kind, id);
    if (local) return local;
    const found = this.ledger.latest(kind, id);
    if (found) this.view.set(key(kind, id), found);
    return found;
  }

  directory(): RegistryEntry[] {
    return [...this.view.values()].filter((e) => e.kind === 'dc');
  }

  revokeByDc(id: string): void {
    checkId(id);
    this.stagedRevocations.push(id);
  }

  revoked(id: string): boolean {
    return this.ledger.revokedByDc.has(id) || ntRevoked(this.view.get(key('node', id))?.bytes);
  }

  onChange(handler: (entry: RegistryEntry) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  /** @internal Entries another member committed. */
  deliver(entries: readonly RegistryEntry[]): void {
    if (this.closed) return;
    for (const e of entries) {
      this.view.set(key(e.kind, e.id), e);
      for (const h of this.handlers) h(e);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.handlers.clear();
    this.ledger.detach(this);
  }
}
