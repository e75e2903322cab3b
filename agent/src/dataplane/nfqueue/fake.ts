// In-memory PacketSource with the kernel-facing behaviour of NFQUEUE (as tun/tuntest is to a TUN device): packets are
// injected by tests, delivered one per event-loop turn, and their verdicts come back as promises.
//
// Modelled on the real queue: a copy of each packet is lent to the handler; at most `maxLength` packets await a
// verdict, further ones are dropped without reaching the handler (no fail-open); after `close()` arrivals are
// dropped. Stricter than the real one on purpose: a lent buffer is overwritten with 0xEE once its verdict is issued,
// so a handler that keeps borrowed bytes fails its tests instead of working by luck.
import type { PacketHandler, PacketSource, PacketSourceCounters } from '../../types/packet-source.js';
import { Dispatcher } from './dispatch.js';

export interface FakeVerdict {
  /** False when the packet never reached the handler (queue full): the kernel dropped it. */
  readonly delivered: boolean;
  readonly verdict: 'accept' | 'drop';
  /** The bytes that continue (a copy): replaced ones, or the original. Empty for a drop. */
  readonly data: Uint8Array;
  /** The mark the packet continues with (the arrival mark when the verdict left it unchanged). */
  readonly mark: number;
  readonly replaced: boolean;
}

export interface FakeInjectMeta {
  readonly mark?: number;
  readonly inIfindex?: number;
  readonly outIfindex?: number;
}

export interface FakePacketSourceOptions {
  readonly queue?: number;
  /** Packets that may await a verdict at once (the kernel's default queue length is 1,024). */
  readonly maxLength?: number;
}

interface Entry {
  readonly data: Uint8Array;
  readonly mark: number;
  readonly resolve: (v: FakeVerdict) => void;
}

const POISON = 0xee;

export class FakePacketSource implements PacketSource {
  readonly queue: number;
  readonly maxLength: number;
  private readonly core: Dispatcher<Entry>;
  private inFlight = 0;
  private nextId = 1;

  constructor(options: FakePacketSourceOptions = {}) {
    this.queue = options.queue ?? 0;
    this.maxLength = options.maxLength ?? 1024;
    this.core = new Dispatcher<Entry>(this.queue, (e, accept, mark, bytes) => {
      this.inFlight--;
      const out = accept ? (bytes ?? e.data).slice() : new Uint8Array(0);
      e.data.fill(POISON);
      e.resolve({ delivered: true, verdict: accept ? 'accept' : 'drop', data: out, mark: accept && mark !== 0 ? mark : e.mark, replaced: accept && bytes !== null });
    });
  }

  get counters(): Readonly<PacketSourceCounters> {
    return this.core.counters;
  }

  onPacket(handler: PacketHandler): void {
    this.core.setHandler(handler);
  }

  /** Queues a copy of `packet` as the kernel would; resolves with its fate once a verdict is issued. */
  inject(packet: Uint8Array, meta: FakeInjectMeta = {}): Promise<FakeVerdict> {
    const mark = (meta.mark ?? 0) >>> 0;
    if (this.inFlight >= this.maxLength)
      return Promise.resolve({ delivered: false, verdict: 'drop', data: new Uint8Array(0), mark, replaced: false });
    this.inFlight++;
    const id = this.nextId++;
    return new Promise<FakeVerdict>((resolve) => {
      const entry: Entry = { data: packet.slice(), mark, resolve };
      setImmediate(() => this.core.dispatch(entry, id, entry.data, mark, meta.inIfindex ?? 0, meta.outIfindex ?? 0));
    });
  }

  close(): Promise<void> {
    this.core.close();
    return Promise.resolve();
  }
}
