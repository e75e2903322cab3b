// LAN → tunnel (nebula's inside.go): a packet queued on its way to a virtual address is parsed, optionally
// translated (the agent swaps an appliance's LAN source for its virtual address), sealed into its tunnel by the
// overlay, and the original is dropped. Per packet: a verdict, counted; never a throw or an await (STYLE habit 1).
import type { PacketHandler } from '../types/packet-source.js';
import type { Overlay } from '../types/overlay.js';
import { PacketInfo, parsePacket } from './packet/parse.js';
import { Counters } from '../util/log.js';

export interface InsideOptions {
  readonly overlay: Overlay;
  /** Largest inner packet a tunnel carries; bigger ones are dropped and counted (TCP is clamped before). */
  readonly mtu: number;
  /**
   * Agent only: rewrites the inner source (LAN address → the appliance's virtual address) and applies the access
   * policy; returns a drop reason, or undefined to go on. Absent on a terminal (its packets already come from
   * its virtual address).
   */
  readonly translate?: (buf: Buffer, info: PacketInfo) => string | undefined;
  readonly counters?: Counters;
}

export function insideHandler(o: InsideOptions): PacketHandler {
  const info = new PacketInfo();
  const c = o.counters ?? new Counters();
  return (pkt) => {
    const d = pkt.data;
    const buf = Buffer.isBuffer(d) ? d : Buffer.from(d.buffer, d.byteOffset, d.byteLength);
    const r = parsePacket(buf, info);
    if (!r.ok) {
      c.inc(`out-malformed-${r.reason}`);
      return 'drop';
    }
    if (info.totalLength > o.mtu) {
      c.inc('out-too-big');
      return 'drop';
    }
    if (o.translate) {
      const why = o.translate(buf, info);
      if (why) {
        c.inc(`out-${why}`);
        return 'drop';
      }
    }
    c.inc(`out-${o.overlay.sendInner(buf, info.version)}`);
    // The plaintext never leaves: it is sealed (or held for its tunnel, or refused).
    return 'drop';
  };
}
