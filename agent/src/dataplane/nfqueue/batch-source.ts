// The fast PacketSource: NFQUEUE read in bursts by the native addon (agent/native/nfqueue.c). One event-loop wakeup
// drains every queued packet into a shared arena and calls JavaScript once; the handler sees each packet through the
// same borrowed view as with node-nfqueue (source.ts), and the verdicts go back together (one batch verdict when they
// all agree, as the data plane's "drop after sealing" always does). Same contract, same compliance suite.
import type { PacketHandler, PacketSource, PacketSourceCounters } from '../../types/packet-source.js';
import { nativeAddon, type NativeNfqSource } from '../../native.js';
import { Dispatcher } from './dispatch.js';
import { QueueOpenError } from './errors.js';

export interface BatchSourceOptions {
  readonly queue: number;
  /** Most packets handed over per wakeup. */
  readonly maxBatch?: number;
  /** Bytes of the packet arena (and of the replacement arena). */
  readonly arenaBytes?: number;
  readonly socketBufferBytes?: number;
  /** Kernel queue length (packets waiting for a verdict) before the kernel drops. */
  readonly queueMaxlen?: number;
  /**
   * Packets come unsegmented (up to 64 KB: the kernel's GSO/GRO packets) and TCP ones are cut, in the addon, into
   * segments of at most this many bytes (agent/native/gso.c), each handed to the handler as a packet of its own sharing
   * the original's id. Only for a handler that consumes (drops) what it is given: the packet is accepted only when
   * every segment was accepted unchanged, and a segment cannot be replaced, re-marked or deferred (that drops it).
   * Absent: the kernel segments first, as for any queue.
   */
  readonly gsoMtu?: number;
  /**
   * With gsoMtu: TCP GSO packets are handed over uncut instead, each as one packet marked `whole` (issue 15), for a
   * handler that cuts them where it seals them.
   */
  readonly whole?: boolean;
}

/** A GSO source's burst: room for the segments of many 64 KB packets (the addon keeps 1,400 entries in reserve). */
const GSO_MAX_BATCH = 4096;
const GSO_ARENA_BYTES = 4 << 20;

const META = 7;
const VERD = 4;
const V_DROP = 0;
const V_ACCEPT = 1;
const V_REPLACE = 2;
const V_DEFERRED = 3;

class BatchSource implements PacketSource {
  private readonly core: Dispatcher<number>;
  /** A Buffer over the native arena, so each packet's view is a Buffer already (the handlers want one). */
  private readonly arena: Buffer;
  private readonly out: Uint8Array;
  private readonly meta: Int32Array;
  private readonly verdicts: Int32Array;
  /** Index of the packet being dispatched in the current burst (-1 outside a burst). */
  private cur = -1;
  private outUsed = 0;

  constructor(
    readonly queue: number,
    private readonly src: NativeNfqSource,
  ) {
    this.arena = Buffer.from(src.arena);
    this.out = new Uint8Array(src.out);
    this.meta = src.meta;
    this.verdicts = src.verdicts;
    this.core = new Dispatcher<number>(
      queue,
      (id, accept, mark, bytes) => this.issue(id, accept, mark, bytes),
      (p) => {
        // The arena is refilled at the next wakeup: a packet kept past this burst needs bytes of its own.
        p.data = Buffer.from(p.data);
      },
    );
    src.start((n) => this.burst(n));
  }

  private burst(n: number): void {
    this.outUsed = 0;
    const m = this.meta;
    for (let i = 0; i < n; i++) {
      const o = i * META;
      this.cur = i;
      this.verdicts[i * VERD] = V_DEFERRED;
      this.verdicts[i * VERD + 3] = 0;
      this.core.dispatch(m[o + 2]! >>> 0, m[o + 2]! >>> 0, this.arena.subarray(m[o]!, m[o]! + m[o + 1]!), m[o + 3]! >>> 0, m[o + 4]!, m[o + 5]!, m[o + 6] === 1);
    }
    this.cur = -1;
  }

  private issue(id: number, accept: boolean, mark: number, bytes: Uint8Array | null): void {
    const i = this.cur;
    if (i < 0 || (this.meta[i * META + 2]! >>> 0) !== id) {
      // A deferred packet, settled after its burst.
      this.src.settle(id, accept ? 1 : 0, mark, bytes ?? undefined);
      return;
    }
    const v = i * VERD;
    this.verdicts[v + 3] = mark | 0;
    if (!accept) {
      this.verdicts[v] = V_DROP;
      return;
    }
    if (bytes === null) {
      this.verdicts[v] = V_ACCEPT;
      return;
    }
    if (this.outUsed + bytes.length > this.out.length) {
      // No room left for replacements in this burst: fail closed, as for any contract the source cannot keep.
      this.core.counters.errors++;
      this.verdicts[v] = V_DROP;
      return;
    }
    this.out.set(bytes, this.outUsed);
    this.verdicts[v] = V_REPLACE;
    this.verdicts[v + 1] = this.outUsed;
    this.verdicts[v + 2] = bytes.length;
    this.outUsed += (bytes.length + 7) & ~7;
  }

  get counters(): Readonly<PacketSourceCounters> {
    return this.core.counters;
  }

  /** The native side's own figures (bursts, batch verdicts, overflow drops). */
  nativeStats(): Record<string, number> {
    return this.src.stats();
  }

  onPacket(handler: PacketHandler): void {
    this.core.setHandler(handler);
  }

  close(): Promise<void> {
    this.core.close();
    this.src.close();
    return Promise.resolve();
  }
}

/** True when the native addon is built (otherwise use openNfqueueSource). */
export function batchSourceAvailable(): boolean {
  return nativeAddon() !== null;
}

export function openBatchSource(o: BatchSourceOptions): PacketSource {
  const addon = nativeAddon();
  if (!addon) throw new QueueOpenError(o.queue, 'the native data-plane addon is not built (npm run build:native)');
  if (!Number.isInteger(o.queue) || o.queue < 0 || o.queue > 65535) throw new QueueOpenError(o.queue, 'queue number must be 0..65535');
  try {
    const gso = o.gsoMtu ?? 0;
    const src = new addon.NfqSource(
      o.queue,
      o.maxBatch ?? (gso ? GSO_MAX_BATCH : 256),
      o.arenaBytes ?? (gso ? GSO_ARENA_BYTES : 1 << 20),
      o.socketBufferBytes ?? 8 << 20,
      o.queueMaxlen ?? 4096,
      gso,
      gso !== 0 && o.whole === true,
    );
    return new BatchSource(o.queue, src);
  } catch (e) {
    throw new QueueOpenError(o.queue, (e as Error).message);
  }
}
