// The verdict bookkeeping every packet source shares (real NFQUEUE and the fake): hands each packet to the handler
// through one reused view, turns its result into exactly one verdict, counts, and fails closed on any misuse.
import type {
  PacketHandler,
  PacketSourceCounters,
  PacketVerdict,
  PendingPacket,
  QueuedPacket,
} from '../../types/packet-source.js';

/** Issues the verdict for the packet identified by `token`. `mark` 0: unchanged; `bytes` null: original. */
export type IssueVerdict<T> = (token: T, accept: boolean, mark: number, bytes: Uint8Array | null) => void;

const EMPTY = new Uint8Array(0);

/** The view lent to the handler; one instance per source, refilled for every packet (no allocation). */
class View<T> implements QueuedPacket {
  data: Uint8Array = EMPTY;
  id = 0;
  mark = 0;
  inIfindex = 0;
  outIfindex = 0;
  whole = false;
  token: T | null = null;
  newPayload: Uint8Array | null = null;
  newMark = 0;
  pending: Pending<T> | null = null;

  constructor(
    private readonly owner: Dispatcher<T>,
    readonly queue: number,
  ) {}

  replacePayload(bytes: Uint8Array): void {
    this.newPayload = bytes;
  }

  setMark(mark: number): void {
    this.newMark = mark >>> 0;
  }

  defer(): PendingPacket {
    if (this.token === null) throw new Error('defer() outside the handler call: the view is borrowed');
    this.pending ??= new Pending(this.owner, this.token, this.data, this.id);
    return this.pending;
  }
}

class Pending<T> implements PendingPacket {
  settled = false;

  constructor(
    private readonly owner: Dispatcher<T>,
    readonly token: T,
    /** Replaced by a stable copy when the source reuses its buffers after the handler returns (batched sources). */
    public data: Uint8Array,
    readonly id: number,
  ) {}

  accept(mark = 0): void {
    this.owner.settle(this, true, mark >>> 0, null);
  }

  acceptWith(bytes: Uint8Array, mark = 0): void {
    this.owner.settle(this, true, mark >>> 0, bytes);
  }

  drop(): void {
    this.owner.settle(this, false, 0, null);
  }
}

export class Dispatcher<T> {
  readonly counters: PacketSourceCounters = {
    received: 0,
    accepted: 0,
    replaced: 0,
    dropped: 0,
    deferred: 0,
    pending: 0,
    errors: 0,
    lateVerdicts: 0,
  };
  private handler: PacketHandler | null = null;
  private closed = false;
  private readonly waiting = new Set<Pending<T>>();
  private readonly view: View<T>;

  constructor(
    readonly queue: number,
    private readonly issue: IssueVerdict<T>,
    /** Called when a packet is deferred past the handler call; a source whose buffers are reused copies the data. */
    private readonly onDefer?: (p: { data: Uint8Array }) => void,
  ) {
    this.view = new View(this, queue);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  setHandler(handler: PacketHandler): void {
    this.handler = handler;
  }

  /** One packet arrived. `data` is lent to the handler under the rules of `QueuedPacket.data`. */
  dispatch(token: T, id: number, data: Uint8Array, mark: number, inIfindex: number, outIfindex: number, whole = false): void {
    const c = this.counters;
    c.received++;
    const handler = this.handler;
    if (this.closed || handler === null) {
      if (!this.closed) c.errors++;
      this.finish(token, false, 0, null);
      return;
    }
    const v = this.view;
    v.token = token;
    v.data = data;
    v.id = id;
    v.mark = mark;
    v.inIfindex = inIfindex;
    v.outIfindex = outIfindex;
    v.whole = whole;
    v.newPayload = null;
    v.newMark = 0;
    v.pending = null;
    let result: PacketVerdict | 'threw';
    try {
      result = handler(v);
    } catch {
      result = 'threw';
    }
    // The handler may have set these through the view (TypeScript cannot see that across the call).
    const pending = v.pending as Pending<T> | null;
    const newPayload = v.newPayload as Uint8Array | null;
    const newMark = v.newMark;
    v.token = null;
    v.data = EMPTY;
    v.newPayload = null;
    v.pending = null;

    if (pending !== null) {
      c.deferred++;
      if (result === 'deferred') {
        if (!pending.settled) {
          this.waiting.add(pending);
          c.pending++;
          this.onDefer?.(pending);
        }
        return;
      }
      // Deferred and then returned something else, or threw: the contract is broken, fail closed.
      c.errors++;
      if (!pending.settled) {
        pending.settled = true;
        this.finish(token, false, 0, null);
      }
      return;
    }
    if (result === 'accept') this.finish(token, true, newMark, newPayload);
    else if (result === 'drop') this.finish(token, false, 0, null);
    else {
      c.errors++;
      this.finish(token, false, 0, null);
    }
  }

  /** Settles a deferred packet (called through `PendingPacket`). */
  settle(p: Pending<T>, accept: boolean, mark: number, bytes: Uint8Array | null): void {
    if (p.settled) {
      this.counters.lateVerdicts++;
      return;
    }
    p.settled = true;
    // Settled inside the handler call, before the dispatcher registered it as waiting: nothing to remove.
    if (this.waiting.delete(p)) this.counters.pending--;
    this.finish(p.token, accept, mark, bytes);
  }

  /** Stops delivery: drops everything still pending; later arrivals are dropped by `dispatch`. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.waiting) {
      p.settled = true;
      this.finish(p.token, false, 0, null);
    }
    this.waiting.clear();
    this.counters.pending = 0;
  }

  private finish(token: T, accept: boolean, mark: number, bytes: Uint8Array | null): void {
    const c = this.counters;
    if (accept) {
      c.accepted++;
      if (bytes !== null) c.replaced++;
    } else c.dropped++;
    this.issue(token, accept, mark, bytes);
  }
}
