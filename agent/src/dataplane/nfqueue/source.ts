// The real PacketSource: Linux NFQUEUE (nfnetlink_queue, libnetfilter_queue) through node-nfqueue 0.3.2.
//
// What the binding does and does not do, read from its source (node_modules/nfqueue/src/node_nfqueue.cpp):
// - `createQueueHandler(num, bufsize, cb)` opens the netlink socket, binds queue `num` in copy-packet mode (up to
//   65,535 bytes), sets SO_RCVBUF(FORCE) to `bufsize` and NETLINK_NO_ENOBUFS, and polls the socket on the default
//   libuv loop: the main thread only (a worker would poll the main loop and call back on the wrong isolate).
// - Each wakeup reads one netlink message, i.e. one packet; `cb` gets `{info, payload}` where `payload` is a fresh
//   Buffer copy we may keep and modify. The C++ side calls `cb` synchronously and crashes if it throws, so the
//   callback below never lets an exception out.
// - `setVerdict(verdict, mark?, buffer?)` may be called any time later (by packet id); mark 0 means "unchanged".
// - There is no way to close: no nfq_destroy_queue, no uv_poll_stop. A closed source therefore keeps reading and
//   drops what arrives (the outcome the kernel gives when no one listens on a queue without --queue-bypass), and the
//   poll keeps the event loop alive: the process must exit explicitly.
// - No fail-open flag is set: once 1,024 packets (the kernel's default queue length) await a verdict, further ones
//   are dropped by the kernel, never passed unverdicted.
// - Interface names (`indev_name`…) come from a table read once at open and an unchecked C string: we expose the
//   interface indexes only.
import { createRequire } from 'node:module';
import type { PacketHandler, PacketSource, PacketSourceCounters } from '../../types/packet-source.js';
import { Dispatcher } from './dispatch.js';
import { QueueOpenError } from './errors.js';

interface NativeInfo {
  readonly id: number;
  readonly nfmark: number;
  readonly indev: number;
  readonly outdev: number;
}

interface NativePacket {
  readonly info: NativeInfo;
  readonly payload: Buffer;
  setVerdict(verdict: number, mark?: number, buffer?: Uint8Array | null): void;
}

interface NativeModule {
  readonly NF_DROP: number;
  readonly NF_ACCEPT: number;
  createQueueHandler(num: number, bufsize: number, cb: (packet: NativePacket) => void): unknown;
}

export interface NfqueueSourceOptions {
  /** NFQUEUE number (0..65535), as in the rules' `--queue-num`. */
  readonly queue: number;
  /**
   * Receive buffer of the netlink socket in bytes (set with SO_RCVBUFFORCE as root): packets wait there while
   * the JS thread is busy (GC, crypto). Default 8 MiB ≈ 5,000 full-size packets.
   */
  readonly socketBufferBytes?: number;
}

export const DEFAULT_SOCKET_BUFFER = 8 * 1024 * 1024;

let native: NativeModule | undefined;

/** Loads the addon on first use, so importing this module (or the fake next to it) never needs it. */
function load(): NativeModule {
  native ??= createRequire(import.meta.url)('nfqueue') as NativeModule;
  return native;
}

class NfqueueSource implements PacketSource {
  private readonly core: Dispatcher<NativePacket>;

  constructor(
    readonly queue: number,
    nf: NativeModule,
    bufferBytes: number,
  ) {
    const ACCEPT = nf.NF_ACCEPT;
    const DROP = nf.NF_DROP;
    this.core = new Dispatcher<NativePacket>(queue, (pkt, accept, mark, bytes) => {
      pkt.setVerdict(accept ? ACCEPT : DROP, mark, bytes);
    });
    const core = this.core;
    try {
      nf.createQueueHandler(queue, bufferBytes, (pkt) => {
        try {
          const i = pkt.info;
          core.dispatch(pkt, i.id, pkt.payload, i.nfmark >>> 0, i.indev, i.outdev);
        } catch {
          // Only a bug of ours gets here (the handler's own throws are caught by the dispatcher): fail closed.
          core.counters.errors++;
          try {
            pkt.setVerdict(DROP);
          } catch {
            /* nothing more can be done for this packet */
          }
        }
      });
    } catch (e) {
      throw new QueueOpenError(queue, (e as Error).message);
    }
  }

  get counters(): Readonly<PacketSourceCounters> {
    return this.core.counters;
  }

  onPacket(handler: PacketHandler): void {
    this.core.setHandler(handler);
  }

  close(): Promise<void> {
    this.core.close();
    return Promise.resolve();
  }
}

/**
 * Binds NFQUEUE `options.queue` in this process's network namespace and returns its packet source.
 * Throws `QueueOpenError` when the queue cannot be bound (not root / no CAP_NET_ADMIN, or another process holds
 * the queue number). Packets arriving before `onPacket` is called are dropped and counted as errors.
 */
export function openNfqueueSource(options: NfqueueSourceOptions): PacketSource {
  const { queue } = options;
  if (!Number.isInteger(queue) || queue < 0 || queue > 65535) throw new QueueOpenError(queue, 'queue number must be 0..65535');
  let nf: NativeModule;
  try {
    nf = load();
  } catch (e) {
    throw new QueueOpenError(queue, `cannot load the nfqueue addon: ${(e as Error).message}`);
  }
  return new NfqueueSource(queue, nf, options.socketBufferBytes ?? DEFAULT_SOCKET_BUFFER);
}
