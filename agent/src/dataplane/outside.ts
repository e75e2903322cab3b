// Tunnel → LAN (nebula's outside.go). The terminal host receives tunnel datagrams on its UDP socket and opens them;
// each decrypted inner packet comes here: parsed, checked and translated by the agent's policy (virtual destination
// → the appliance's LAN address), then handed back to the kernel through the loopback carrier (reinject.ts), which
// sends it on as this host's own packet — delivered locally, or to the LAN — whatever the IP family of the tunnel.
// The carrier's queue handler swaps each carrier datagram for the packet it carries. Per packet: a verdict or a
// count, never a throw or an await.
import type { PacketHandler } from '../types/packet-source.js';
import { PROTO_UDP, PacketInfo, parsePacket } from './packet/parse.js';
import { Counters } from '../util/log.js';
import type { Reinjector } from './reinject.js';

export interface OutsideOptions {
  readonly reinject: Reinjector;
  /**
   * Agent only: applies the access policy for (peer → node) and rewrites the inner destination (virtual → LAN
   * address); returns a drop reason, or undefined to deliver.
   */
  readonly translate?: (inner: Buffer, info: PacketInfo, node: string, peer: string) => string | undefined;
  readonly counters?: Counters;
}

/** The host's `onInner`: delivers one decrypted packet (borrowed until it returns; translated in place). */
export function outsideDeliver(o: OutsideOptions): (inner: Buffer, node: string, peer: string) => void {
  const info = new PacketInfo();
  const c = o.counters ?? new Counters();
  return (inner, node, peer) => {
    const r = parsePacket(inner, info);
    if (!r.ok) return c.inc(`in-malformed-${r.reason}`);
    if (o.translate) {
      const why = o.translate(inner, info, node, peer);
      if (why) return c.inc(`in-${why}`);
    }
    const why = o.reinject.inject(inner, info.version);
    c.inc(why === undefined ? 'in-delivered' : `in-${why}`);
  };
}

/** The carrier queue (mangle OUTPUT, loopback): each carrier datagram becomes the packet it carries. */
export function carrierHandler(o: { readonly reinject: Reinjector; readonly counters?: Counters }): PacketHandler {
  const outer = new PacketInfo();
  const c = o.counters ?? new Counters();
  return (pkt) => {
    const d = pkt.data;
    const buf = Buffer.isBuffer(d) ? d : Buffer.from(d.buffer, d.byteOffset, d.byteLength);
    const r = parsePacket(buf, outer);
    if (!r.ok || outer.protocol !== PROTO_UDP || outer.payloadOffset < 0 || !o.reinject.isCarrier(outer.version, outer.srcPort, outer.dstPort)) {
      c.inc('carrier-unexpected');
      return 'drop';
    }
    pkt.replacePayload(buf.subarray(outer.payloadOffset, outer.end));
    return 'accept';
  };
}
