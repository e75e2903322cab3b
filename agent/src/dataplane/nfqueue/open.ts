// Chooses the packet source: the native batched reader when the addon is built (one JS call per burst), node-nfqueue
// otherwise (one event-loop turn per packet). Both pass the same compliance suite.
import type { PacketSource } from '../../types/packet-source.js';
import { batchSourceAvailable, openBatchSource } from './batch-source.js';
import { openNfqueueSource } from './source.js';

export function openPacketSource(o: { readonly queue: number; readonly engine?: 'auto' | 'batch' | 'nfqueue'; readonly gsoMtu?: number; readonly whole?: boolean }): PacketSource {
  const engine = o.engine ?? 'auto';
  if (engine === 'batch' || (engine === 'auto' && batchSourceAvailable()))
    return openBatchSource({ queue: o.queue, ...(o.gsoMtu ? { gsoMtu: o.gsoMtu, whole: o.whole === true } : {}) });
  return openNfqueueSource({ queue: o.queue });
}

/** Whether a queue opened here can take unsegmented (GSO) packets: only the native batched reader segments them. */
export function gsoSourceAvailable(): boolean {
  return batchSourceAvailable();
}
