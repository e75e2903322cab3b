// Address and port translation for a device another household shared with this one (issue 13; paper §3.2.2, last
// paragraph: two agents let two non-NTM devices talk). The sharing household's agent knows this household as ONE
// peer (one identity registered at its DC, one virtual address per family), so the flows of this household's LAN
// devices that may use the share are translated to that address, as a NAPT does (RFC 3022 §2.2, RFC 4787 for UDP,
// RFC 5382 for TCP, RFC 5508 for ICMP echo): the LAN source address and port (ICMP: the echo identifier) become the
// share's virtual address and a port of its own, and replies are translated back. The sharing side then sees one
// household and applies its grant (device, ports); this side decides which of its devices may use it.
//
// The table is mutable state of the data path (the immutable policy holds a reference to it and survives being
// replaced): one per accepted share, owned by the runtime. Per packet: no allocation on a hit, no throw, no await.
// A mapping is kept while used, and forgotten after IDLE_MS without a packet (RFC 4787 REQ-5: at least 2 minutes).
import { u16 } from './packet/checksum.js';
import { PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, type PacketInfo } from './packet/parse.js';
import { rewriteAddress, rewritePort } from './packet/rewrite.js';

/** A mapping unused this long is forgotten (RFC 4787 REQ-5 asks for ≥ 2 min; RFC 5382 wants ≥ 2 h 4 min for an
 * established TCP connection, which the keep-alive-less appliances here rarely need; kept at 10 min for both). */
const IDLE_MS = 600_000;
/** Ports the share's address uses for translated flows. */
const FIRST_PORT = 20_000;
const PORTS = 40_000;

interface Mapping {
  readonly proto: number;
  /** The LAN source: address bytes (4 or 16) and port (or echo identifier). */
  readonly lan: Buffer;
  readonly lanPort: number;
  readonly port: number;
  used: number;
}

/** Where the port (or ICMP echo identifier) of a packet's source (out) or destination (in) is, or -1. */
function portOffset(info: PacketInfo, dir: 'src' | 'dst'): number {
  if (info.l4Offset < 0 || info.isFragment) return -1;
  const p = info.protocol;
  if (p === PROTO_TCP || p === PROTO_UDP) return info.l4Offset + (dir === 'src' ? 0 : 2);
  // ICMP echo request (out) and echo reply (in): the identifier plays the port (RFC 5508 §3.1).
  if (p === PROTO_ICMP && info.icmpType === (dir === 'src' ? 8 : 0)) return info.l4Offset + 4;
  if (p === PROTO_ICMPV6 && info.icmpType === (dir === 'src' ? 128 : 129)) return info.l4Offset + 4;
  return -1;
}

export class ShareNat {
  /** (proto, LAN address, LAN port) → mapping; and (proto, port) → mapping. Keys are numbers for IPv4, strings for IPv6. */
  private readonly byLan = new Map<string, Mapping>();
  private readonly byPort = new Map<number, Mapping>();
  private next = 0;
  private sweptAt = 0;

  constructor(private readonly now: () => number = () => performance.now()) {}

  get size(): number {
    return this.byPort.size;
  }

  /**
   * LAN → tunnel: rewrites the source to `addr` (the share's virtual address of the packet's family) and a port of
   * ours. False when the packet cannot be translated (a fragment, an ICMP error or other protocol, no free port).
   */
  outbound(buf: Buffer, info: PacketInfo, addr: Buffer): boolean {
    const off = portOffset(info, 'src');
    if (off < 0) return false;
    const alen = info.version === 4 ? 4 : 16;
    const srcAt = info.start + 12 + (info.version === 4 ? 0 : -4);
    const lanPort = u16(buf, off);
    const key = `${info.protocol}|${buf.toString('hex', srcAt, srcAt + alen)}|${lanPort}`;
    const t = this.now();
    let m = this.byLan.get(key);
    if (!m) {
      this.sweep(t);
      const port = this.freePort(info.protocol);
      if (port < 0) return false;
      m = { proto: info.protocol, lan: Buffer.from(buf.subarray(srcAt, srcAt + alen)), lanPort, port, used: t };
      this.byLan.set(key, m);
      this.byPort.set(info.protocol * 65_536 + port, m);
    }
    m.used = t;
    if (!rewriteAddress(buf, info, 'src', addr).ok) return false;
    rewritePort(buf, info, off, m.port);
    return true;
  }

  /** Tunnel → LAN: the destination (the share's address and our port) back to the LAN device's; false: no such flow. */
  inbound(buf: Buffer, info: PacketInfo): boolean {
    const off = portOffset(info, 'dst');
    if (off < 0) return false;
    const m = this.byPort.get(info.protocol * 65_536 + u16(buf, off));
    if (!m || m.lan.length !== (info.version === 4 ? 4 : 16)) return false;
    m.used = this.now();
    if (!rewriteAddress(buf, info, 'dst', m.lan).ok) return false;
    rewritePort(buf, info, off, m.lanPort);
    return true;
  }

  /** Forgets every mapping of these LAN addresses (a device no longer allowed: its flows stop at once). */
  forget(keep: (lan: Buffer) => boolean): void {
    for (const [k, m] of this.byLan) {
      if (keep(m.lan)) continue;
      this.byLan.delete(k);
      this.byPort.delete(m.proto * 65_536 + m.port);
    }
  }

  private freePort(proto: number): number {
    for (let i = 0; i < PORTS; i++) {
      const port = FIRST_PORT + ((this.next + i) % PORTS);
      if (!this.byPort.has(proto * 65_536 + port)) {
        this.next = (this.next + i + 1) % PORTS;
        return port;
      }
    }
    return -1;
  }

  /** Drops idle mappings, at most once a second (on a new flow only: a hit costs nothing). */
  private sweep(t: number): void {
    if (t - this.sweptAt < 1000) return;
    this.sweptAt = t;
    for (const [k, m] of this.byLan) {
      if (t - m.used < IDLE_MS) continue;
      this.byLan.delete(k);
      this.byPort.delete(m.proto * 65_536 + m.port);
    }
  }
}
