// Tunnel → LAN (nebula's outside.go): a UDP datagram queued in raw PREROUTING on its way to our port is handed to the
// overlay; a decrypted inner packet replaces it (ACCEPT with the new payload: the kernel routes it on, to a local
// socket or to the LAN), optionally translated (the agent swaps the appliance's virtual address for its LAN address);
// signalling passes unchanged to the socket; anything else is dropped and counted.
import type { PacketHandler } from '../types/packet-source.js';
import type { Overlay } from '../types/overlay.js';
import { PROTO_UDP, PacketInfo, parsePacket } from './packet/parse.js';
import { bytesToIp4, bytesToIp6 } from '../protocol/ip.js';
import { Counters } from '../util/log.js';
import type { Reinjector } from './reinject.js';

export interface OutsideOptions {
  readonly overlay: Overlay;
  /**
   * Agent only: applies the access policy for (peer → node) and rewrites the inner destination (virtual → LAN
   * address); returns a drop reason, or undefined to deliver.
   */
  readonly translate?: (inner: Buffer, info: PacketInfo, node: string, peer: string) => string | undefined;
  readonly counters?: Counters;
  /** Delivers inner packets of the other IP family than their tunnel datagram (see reinject.ts). */
  readonly reinject?: Reinjector;
}

export function outsideHandler(o: OutsideOptions): PacketHandler {
  const outer = new PacketInfo();
  const inner = new PacketInfo();
  const c = o.counters ?? new Counters();
  return (pkt) => {
    const d = pkt.data;
    const buf = Buffer.isBuffer(d) ? d : Buffer.from(d.buffer, d.byteOffset, d.byteLength);
    const r = parsePacket(buf, outer);
    if (!r.ok || outer.protocol !== PROTO_UDP || outer.payloadOffset < 0) {
      // Fragments and oddities are not tunnel packets we can open: let the stack (and the socket) deal with them.
      c.inc('in-not-udp');
      return 'accept';
    }
    const payload = buf.subarray(outer.payloadOffset, outer.end);
    if (o.reinject?.isCarrier(outer.version, outer.srcPort, outer.dstPort)) {
      // Our own loopback carrier: its payload is a decrypted packet of this hook's family.
      c.inc('in-reinjected');
      pkt.replacePayload(payload);
      return 'accept';
    }
    const from = outer.version === 4 ? bytesToIp4(buf, outer.start + 12) : bytesToIp6(buf, outer.start + 8);
    const res = o.overlay.receiveOuter(payload, outer.version, from, outer.srcPort);
    switch (res.kind) {
      case 'pass':
        return 'accept';
      case 'consumed':
        c.inc('in-keepalive');
        return 'drop';
      case 'drop':
        c.inc(`in-${res.reason}`);
        return 'drop';
      case 'inner': {
        const ir = parsePacket(res.packet, inner);
        if (!ir.ok) {
          c.inc(`in-inner-${ir.reason}`);
          return 'drop';
        }
        if (o.translate) {
          const why = o.translate(res.packet, inner, res.node, res.peer);
          if (why) {
            c.inc(`in-${why}`);
            return 'drop';
          }
        }
        if (inner.version !== outer.version) {
          // Another family's stack: by way of the carrier; this datagram itself is done.
          c.inc(o.reinject?.inject(res.packet, inner.version) ? 'in-delivered-cross-family' : 'in-cross-family-unavailable');
          return 'drop';
        }
        c.inc('in-delivered');
        pkt.replacePayload(res.packet);
        return 'accept';
      }
    }
  };
}
