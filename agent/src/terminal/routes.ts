// The terminal host's routing tables for the data path: which of our identities owns a virtual source address, and
// which tunnel is up between (our virtual address, a peer's virtual address). Keys are the addresses as they sit in
// the packet (a uint32 for IPv4, hex for IPv6), so a lookup reads the packet's bytes and builds nothing else.
// Single-threaded: the host changes these on tunnel and registration events, the engine reads them per packet.
import { NO_NODE } from '../types/tunnels.js';
import type { LocalEnd } from '../types/tunnels.js';
import { ip4ToBytes, ip6ToBytes } from '../protocol/ip.js';
import { be32 } from '../util/bytes.js';
import type { Node } from './node.js';
import type { Tunnel } from './tunnel.js';

export class RouteTable {
  private readonly nodeBy4 = new Map<number, Node>();
  private readonly nodeBy6 = new Map<string, Node>();
  private readonly route4 = new Map<number, Map<number, Tunnel>>();
  private readonly route6 = new Map<string, Map<string, Tunnel>>();
  /** A registration's virtual addresses as bytes (made once per registration). */
  private readonly ends = new WeakMap<object, LocalEnd>();

  /** Our end for `node`: its ID and virtual addresses as the wire has them; undefined before it registered. */
  localEnd(node: Node): LocalEnd | undefined {
    const r = node.registration;
    if (!r) return undefined;
    let e = this.ends.get(r);
    if (e === undefined) this.ends.set(r, (e = { node: node.id, v4: be32(ip4ToBytes(r.v4), 0), v6: Buffer.from(ip6ToBytes(r.v6)) }));
    return e;
  }

  /** `node` registered (again): packets from its virtual addresses are its own. */
  addNode(node: Node): void {
    const e = this.localEnd(node);
    if (!e) return;
    this.nodeBy4.set(e.v4, node);
    this.nodeBy6.set(e.v6.toString('hex'), node);
  }

  removeNode(node: Node): void {
    const e = this.localEnd(node);
    if (!e) return;
    this.nodeBy4.delete(e.v4);
    this.nodeBy6.delete(e.v6.toString('hex'));
  }

  /** `t` is now the tunnel that carries `node`'s packets to its peer's virtual addresses. */
  setTunnel(node: Node, t: Tunnel): void {
    const e = this.localEnd(node);
    if (!e) return;
    let m4 = this.route4.get(e.v4);
    if (!m4) this.route4.set(e.v4, (m4 = new Map()));
    m4.set(be32(t.peerV4, 0), t);
    const k6 = e.v6.toString('hex');
    let m6 = this.route6.get(k6);
    if (!m6) this.route6.set(k6, (m6 = new Map()));
    m6.set(t.peerV6.toString('hex'), t);
  }

  deleteTunnel(node: Node, t: Tunnel): void {
    const e = this.localEnd(node);
    if (!e) return;
    this.route4.get(e.v4)?.delete(be32(t.peerV4, 0));
    this.route6.get(e.v6.toString('hex'))?.delete(t.peerV6.toString('hex'));
  }

  /** The identity whose virtual address is this packet's source (header at 0, at least a full IP header long). */
  nodeFor(packet: Buffer, family: 4 | 6): Node | undefined {
    return family === 4 ? this.nodeBy4.get(be32(packet, 12)) : this.nodeBy6.get(packet.toString('hex', 8, 24));
  }

  /** The tunnel between the packet's source and destination; NO_NODE when the source is none of ours. */
  tunnelFor(packet: Buffer, family: 4 | 6): Tunnel | typeof NO_NODE | undefined {
    if (family === 4) {
      if (packet.length < 20) return NO_NODE;
      const src = be32(packet, 12);
      if (!this.nodeBy4.has(src)) return NO_NODE;
      return this.route4.get(src)?.get(be32(packet, 16));
    }
    if (packet.length < 40) return NO_NODE;
    const src = packet.toString('hex', 8, 24);
    if (!this.nodeBy6.has(src)) return NO_NODE;
    return this.route6.get(src)?.get(packet.toString('hex', 24, 40));
  }
}
