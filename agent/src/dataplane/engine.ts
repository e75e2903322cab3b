// The data-path engine: the one place packets cross between the LAN (or this host's own stack) and the tunnels, for
// both a terminal (`ntm up`) and the household agent. Each direction is one routine, read top to bottom in the order
// the packet goes (nebula's inside.go / outside.go, wireguard-go's device/send.go / receive.go):
//
//   LAN → tunnel  fromLan():  parse → policy (translate source, grants) → lookup (tunnel by virtual addresses)
//                             → crypto + write (the tunnel seals and sends on the host's UDP socket)
//   tunnel → LAN  receive():  lookup (tunnel and keypair by receiver index) → crypto (open, replay, roaming)
//                             → cryptokey routing (inner source is the peer's, destination ours) → parse
//                             → policy (grants, translate destination, or answer ICMP unreachable) → write (reinject)
//
// The engine reads the host's UDP socket (as wireguard-go's device reads its conn.Bind): DATA datagrams take the path
// above, every other datagram is signalling and goes to the tunnel table (terminal/host.ts) whole. The packet policy
// is one immutable value, swapped at once by reconfig(). Per packet: an outcome counted by index (counts.ts), never a
// throw, an await or a string built.
//
// Threading: everything runs on the JS thread that created the engine; NFQUEUE handlers and socket messages are
// delivered there one at a time, so the scratch buffers below are reused without locks.
import type { Bind, Endpoint, OpenedDatagram } from '../types/net.js';
import type { PacketHandler, PacketSource, QueuedPacket } from '../types/packet-source.js';
import { NO_NODE, type DataTunnel, type InnerWriter, type OutboundResult, type TunnelTable, type Via } from '../types/tunnels.js';
import type { OpenDrop } from '../crypto/session.js';
import { DATA_TYPE, TunnelKeypair } from '../crypto/session.js';
import { RELAY_FRAME, RELAY_HEADER } from '../protocol/relay.js';
import { PROTO_UDP, PacketInfo, parsePacket } from './packet/parse.js';
import { buildDestinationUnreachable, ICMP4_ERROR_MAX, ICMP6_ERROR_MAX } from './packet/icmp.js';
import { C, DATA_OPEN, DataCounts, ICMP_RESULT, ICMP_UNREACHABLE, IN_MALFORMED, OUT_MALFORMED, OUT_RESULT } from './counts.js';
import type { PacketPolicy } from './policy.js';
import { OverlayFirewall, type OverlayRuleSpec } from './nfqueue/rules.js';
import { gsoSourceAvailable, openPacketSource } from './nfqueue/open.js';
import { Reinjector } from './reinject.js';
import { silentLogger, type Logger } from '../util/log.js';
import { be32 } from '../util/bytes.js';
import { nativeAddon } from '../native.js';

/** ICMP errors the engine may originate (RFC 4443 §2.4(f), RFC 1812 §4.3.2.8: rate-limited): a burst, then this many a second. */
const ICMP_BURST = 10;
const ICMP_PER_S = 10;
/** A 64 KB GSO packet cut at the smallest MSS: 1,366 segments of up to 120 bytes of headers, 8-byte aligned. */
const GSO_SCRATCH = 256 << 10;

export interface EngineOptions {
  /** The host's UDP socket: the engine is its one reader. */
  readonly bind: Bind;
  /** The host's tunnels (terminal/host.ts). */
  readonly tunnels: TunnelTable;
  readonly policy: PacketPolicy;
  /** Largest inner packet a tunnel carries; bigger ones from the LAN are dropped and counted (TCP is clamped before). */
  readonly mtu?: number;
  /** Where decrypted packets go until start() opens the kernel's way back (unit tests: an in-memory fake). */
  readonly writer?: InnerWriter;
  readonly log?: Logger;
}

/** The kernel side, opened by start(): NFQUEUE queues, their firewall rules, the way back in. */
export interface EngineIo {
  readonly queueOut: number;
  readonly queueIn: number;
  /**
   * Outgoing TCP, handed over unsegmented (up to 64 KB per queue round trip) and cut into segments of at most `mtu`
   * by the native reader (agent/native/gso.c) before fromLan() sees them. Absent, 0, or without the native addon: TCP
   * goes to queueOut, segmented by the kernel.
   */
  readonly queueTcp?: number;
  /**
   * With queueTcp: its GSO packets are handed over whole and the tunnel's socket cuts and seals them (issue 15;
   * DataTunnel.sendGso). Default true; false: cut by the queue, each segment sealed on its own.
   */
  readonly sealWholeGso?: boolean;
  /**
   * Decrypted TCP goes back through a TUN device of this name (opened with a virtio-net header; "%d": the kernel
   * numbers it), its segments coalesced per flow as GRO does (dataplane/reinject.ts, agent/native/tun.c). '' or
   * absent: the raw socket carries everything.
   */
  readonly receiveTun?: string;
  /** The overlay's rules (a terminal captures its own packets, the agent forwards its LAN's). */
  readonly rules: Omit<OverlayRuleSpec, 'queueIn' | 'queueOut' | 'carrierPorts'>;
}

interface Opened {
  readonly reinject: Reinjector;
  readonly firewall: OverlayFirewall;
  readonly sources: readonly PacketSource[];
}

export class DataEngine {
  readonly counts = new DataCounts();
  private policy: PacketPolicy;
  private writer: InnerWriter | undefined;
  private io: Opened | undefined;
  private readonly tunnels: TunnelTable;
  private readonly mtu: number;
  private readonly log: Logger;
  /** Parse results, one per direction and one for carriers: each is overwritten by the next packet of its kind. */
  private readonly outInfo = new PacketInfo();
  private readonly inInfo = new PacketInfo();
  private readonly carrierInfo = new PacketInfo();
  /** Where DATA packets are opened: the inner packet is borrowed from here until receive() returns. */
  private readonly openScratch = Buffer.allocUnsafe(65_536);
  /** Where ICMP answers are built (sealed before unreachable() returns; a queued one is copied by the tunnel). */
  private readonly icmpScratch = Buffer.allocUnsafe(Math.max(ICMP4_ERROR_MAX, ICMP6_ERROR_MAX));
  /** Where a GSO packet no socket could take is cut (made at the first). */
  private gsoScratch: Buffer | undefined;
  private icmpTokens = ICMP_BURST;
  private icmpRefilledAt = 0;

  constructor(o: EngineOptions) {
    this.tunnels = o.tunnels;
    this.policy = o.policy;
    this.writer = o.writer;
    this.mtu = o.mtu ?? 65_535;
    this.log = (o.log ?? silentLogger).child({ role: 'dataplane' });
    o.bind.onMessage((d, from, opened) => this.onDatagram(d, from, opened));
  }

  /** A whole new policy, in force from the next packet (tailscale's Engine.Reconfig). */
  reconfig(policy: PacketPolicy): void {
    this.policy = policy;
  }

  // ---------------------------------------------------------------------------------------------------------------
  // LAN → tunnel.

  /**
   * One inner packet (borrowed; translated in place) from the LAN or this host, to a virtual address. Returns the
   * outcome it was counted under. The plaintext never leaves as it is: it is sealed, held for its tunnel, or dropped.
   */
  fromLan(buf: Buffer, whole = false): number {
    const info = this.outInfo;
    // Parse.
    const r = parsePacket(buf, info);
    if (!r.ok) return this.count(OUT_MALFORMED[r.reason]);
    if (info.totalLength > this.mtu && !whole) return this.count(C.OUT_TOO_BIG);
    // Policy: a GSO packet's headers are each of its segments' headers.
    const verdict = this.policy.outbound(buf, info);
    if (verdict !== C.PASS) return this.count(verdict);
    // Lookup, crypto, write.
    if (whole) return this.wholeToTunnel(buf, info.version);
    const sent = this.toTunnel(buf, info.version);
    return this.count(sent === NO_NODE ? C.OUT_NO_NODE : OUT_RESULT[sent]);
  }

  /**
   * A TCP GSO packet (nfqueue "whole", up to 64 KB; issue 15): the tunnel's socket cuts and seals it (one call for
   * all its segments); where it cannot (no keys yet, a socket without it), it is cut here and each segment goes as any
   * packet does. Counted per segment; returns the last outcome.
   */
  private wholeToTunnel(buf: Buffer, family: 4 | 6): number {
    const t = this.tunnels.tunnelFor(buf, family);
    if (t === NO_NODE) return this.count(C.OUT_NO_NODE);
    const n = t?.sendGso?.(buf, this.mtu) ?? 'unsupported';
    if (typeof n === 'number') {
      this.counts.inc(C.OUT_GSO_WHOLE);
      this.counts.inc(OUT_RESULT.sent, n);
      return OUT_RESULT.sent;
    }
    if (n === 'dropped') return this.count(OUT_RESULT.dropped);
    this.gsoScratch ??= Buffer.allocUnsafe(GSO_SCRATCH);
    const segs = nativeAddon()?.gsoSegment(buf, this.mtu, this.gsoScratch);
    if (!segs) return this.count(C.OUT_TOO_BIG);
    let outcome: number = C.OUT_TOO_BIG;
    for (let i = 0; i < segs.length; i += 2) {
      const sent = this.toTunnel(this.gsoScratch.subarray(segs[i]!, segs[i]! + segs[i + 1]!), family);
      outcome = this.count(sent === NO_NODE ? C.OUT_NO_NODE : OUT_RESULT[sent]);
    }
    return outcome;
  }

  /** The tunnel between the packet's virtual source and destination seals and sends it; none up yet: start one. */
  private toTunnel(buf: Buffer, family: 4 | 6): OutboundResult | typeof NO_NODE {
    const t = this.tunnels.tunnelFor(buf, family);
    if (t === NO_NODE) return NO_NODE;
    return t ? t.sendInner(buf) : this.tunnels.connectOnDemand(buf, family);
  }

  /** NFQUEUE handler of queueOut: every packet is consumed here (the original is always dropped). */
  private readonly onQueued: PacketHandler = (pkt: QueuedPacket) => {
    this.fromLan(asBuffer(pkt.data), pkt.whole);
    return 'drop';
  };

  // ---------------------------------------------------------------------------------------------------------------
  // Tunnel → LAN.

  /**
   * The socket's reader: DATA (straight or framed by the RS) takes the data path; the rest is signalling. `opened`:
   * the socket's opening thread opened this datagram already (only straight DATA: a relayed frame is opened here).
   */
  private onDatagram(d: Buffer, from: Endpoint, opened?: OpenedDatagram): void {
    try {
      if (d.length >= 4 && d[0] === DATA_TYPE) return this.receive(d, from, 'direct', opened);
      if (d.length >= RELAY_HEADER + 4 && d[0] === RELAY_FRAME && d[RELAY_HEADER] === DATA_TYPE) return this.receive(d.subarray(RELAY_HEADER), from, 'relay');
    } catch (e) {
      // A bug, not a bad packet (those are counted above): keep serving.
      this.counts.inc(C.DATA_INTERNAL);
      return this.log.error('data packet handler failed', { err: e });
    }
    this.tunnels.onSignal(d, from, 'direct');
  }

  /** One DATA datagram (borrowed) from the socket. */
  private receive(d: Buffer, from: Endpoint, via: Via, opened?: OpenedDatagram): void {
    this.counts.inc(C.DATA_RX);
    // Lookup: the receiver index names both the tunnel and the keypair (wireguard-go's receive.go).
    const idx = TunnelKeypair.receiverIndex(d);
    const t: DataTunnel | undefined = this.tunnels.byIndex(idx);
    if (!t) return this.counts.inc(C.DATA_UNKNOWN_INDEX);
    const kp = t.keypairs.byIndex(idx);
    if (kp === undefined) return this.counts.inc(C.DATA_STALE_INDEX);
    // Crypto: open, replay window, roaming (the peer's new address is learnt from authentic packets only).
    const inner = t.onData(d, kp, from, via, this.openScratch, opened);
    if (typeof inner === 'string') return this.counts.inc(DATA_OPEN[inner as OpenDrop] ?? C.DATA_INVALID);
    this.tunnels.heard(t);
    if (inner.length === 0 || (inner.length === 1 && inner[0] === 0)) return; // a keep-alive or a probe (the tunnel answered)
    // Cryptokey routing: the inner source must be the peer's virtual address, the destination ours.
    const me = this.tunnels.localEnd(t);
    if (!me) return this.counts.inc(C.NO_REGISTRATION);
    const v = inner[0]! >> 4;
    if (v === 4) {
      if (inner.length < 20 || be32(inner, 12) !== be32(t.peerV4, 0)) return this.counts.inc(C.INNER_SOURCE);
      if (be32(inner, 16) !== me.v4) return this.counts.inc(C.INNER_DESTINATION);
    } else if (v === 6) {
      if (inner.length < 40 || inner.compare(t.peerV6, 0, 16, 8, 24) !== 0) return this.counts.inc(C.INNER_SOURCE);
      if (inner.compare(me.v6, 0, 16, 24, 40) !== 0) return this.counts.inc(C.INNER_DESTINATION);
    } else return this.counts.inc(C.INNER_VERSION);
    // Parse.
    const info = this.inInfo;
    const r = parsePacket(inner, info);
    if (!r.ok) return this.counts.inc(IN_MALFORMED[r.reason]);
    // Policy.
    const verdict = this.policy.inbound(inner, info, me.node, t.peerId);
    if (verdict !== C.PASS) {
      if (verdict === C.IN_NO_LAN_ADDRESS) this.unreachable(inner, info);
      return this.counts.inc(verdict);
    }
    // Write: back into the kernel, which delivers it locally or forwards it to the LAN.
    if (!this.writer) return this.counts.inc(C.INNER_NO_DATAPLANE);
    this.counts.inc(this.writer.write(inner, info.version) ? C.IN_DELIVERED : C.IN_WRITE_FAILED);
  }

  /**
   * The phone asked an appliance for a family it does not have on the LAN (an IPv4-only lamp at its virtual IPv6
   * address, which the name also resolves to): answer "unreachable" through the tunnel, from that virtual address, so
   * the phone's stack fails the attempt at once and falls back to the other family (RFC 8305) instead of waiting.
   */
  private unreachable(inner: Buffer, info: PacketInfo): void {
    const now = performance.now();
    this.icmpTokens = Math.min(ICMP_BURST, this.icmpTokens + ((now - this.icmpRefilledAt) / 1000) * ICMP_PER_S);
    this.icmpRefilledAt = now;
    if (this.icmpTokens < 1) return this.counts.inc(C.ICMP_UNREACHABLE_LIMITED);
    this.icmpTokens--;
    const s = info.start;
    const ours = info.version === 4 ? inner.subarray(s + 16, s + 20) : inner.subarray(s + 24, s + 40);
    const r = buildDestinationUnreachable(inner, info, ours, this.icmpScratch);
    if (!r.ok) return this.counts.inc(ICMP_UNREACHABLE[r.reason]);
    const sent = this.toTunnel(this.icmpScratch.subarray(0, r.length), info.version);
    this.counts.inc(sent === NO_NODE ? C.ICMP_UNREACHABLE_NO_NODE : ICMP_RESULT[sent]);
  }

  /** NFQUEUE handler of queueIn when the way back is the loopback carrier: each carrier becomes the packet it carries. */
  private readonly onCarrier = (reinject: Reinjector): PacketHandler => (pkt) => {
    const buf = asBuffer(pkt.data);
    const outer = this.carrierInfo;
    const r = parsePacket(buf, outer);
    if (!r.ok || outer.protocol !== PROTO_UDP || outer.payloadOffset < 0 || !reinject.isCarrier(outer.version, outer.srcPort, outer.dstPort)) {
      this.counts.inc(C.CARRIER_UNEXPECTED);
      return 'drop';
    }
    pkt.replacePayload(buf.subarray(outer.payloadOffset, outer.end));
    return 'accept';
  };

  // ---------------------------------------------------------------------------------------------------------------
  // The kernel side.

  /** Opens the queues and the way back, then installs the rules that send packets to them. */
  async start(o: EngineIo): Promise<void> {
    if (this.io) throw new Error('the data plane is already started');
    const reinject = await Reinjector.open({ tun: { name: o.receiveTun ?? '', local: o.rules.captureLocal ?? false } });
    const queueTcp = o.queueTcp && gsoSourceAvailable() ? o.queueTcp : undefined;
    const firewall = new OverlayFirewall({
      ...o.rules,
      queueIn: o.queueIn,
      queueOut: o.queueOut,
      ...(queueTcp !== undefined ? { queueTcp } : {}),
      ...(reinject.mode === 'carrier' ? { carrierPorts: { 4: reinject.port4, 6: reinject.port6 } } : {}),
    });
    const sources: PacketSource[] = [];
    try {
      const out = openPacketSource({ queue: o.queueOut });
      sources.push(out);
      out.onPacket(this.onQueued);
      if (queueTcp !== undefined) {
        const tcp = openPacketSource({ queue: queueTcp, gsoMtu: Math.min(this.mtu, 65_535), whole: o.sealWholeGso !== false });
        sources.push(tcp);
        tcp.onPacket(this.onQueued);
      }
      if (reinject.mode === 'carrier') {
        const carrier = openPacketSource({ queue: o.queueIn });
        sources.push(carrier);
        carrier.onPacket(this.onCarrier(reinject));
      }
      this.writer = reinject;
      this.io = { reinject, firewall, sources };
      await firewall.install();
    } catch (e) {
      this.io = undefined;
      this.writer = undefined;
      await firewall.remove().catch(() => undefined);
      await Promise.all(sources.map((s) => s.close()));
      reinject.close();
      throw e;
    }
    if (reinject.tunNote) this.log.info('receive TUN', { note: reinject.tunNote });
    this.log.info('data plane up', { mode: reinject.mode, ...(reinject.tunStatus() ? { receiveTun: reinject.tunStatus() } : {}), queues: [o.queueOut, o.queueIn, ...(queueTcp !== undefined ? [queueTcp] : [])] });
  }

  /** Whether start() succeeded (and stop() was not called since). */
  get started(): boolean {
    return this.io !== undefined;
  }

  /** The agent's appliances moved or were (un)paired: the firewall queues their LAN addresses' packets. */
  async setPairedSources(sources: readonly string[]): Promise<void> {
    await this.io?.firewall.setPairedSources(sources);
  }

  async stop(): Promise<void> {
    const io = this.io;
    if (!io) return;
    this.io = undefined;
    this.writer = undefined;
    await io.firewall.remove().catch((e: Error) => this.log.error('removing firewall rules failed', { err: e }));
    await Promise.all(io.sources.map((s) => s.close()));
    io.reinject.close();
  }

  status(): Record<string, unknown> {
    return {
      counters: this.counts.toJSON(),
      reinjected: this.io?.reinject.counters.toJSON() ?? null,
      receiveTun: this.io?.reinject.tunStatus() ?? null,
      // The native reader's own figures too (bursts, GSO packets and segments, MSS learnt or defaulted).
      queues: this.io?.sources.map((s) => ({ queue: s.queue, ...s.counters, ...(hasNativeStats(s) ? { native: s.nativeStats() } : {}) })) ?? [],
    };
  }

  private count(outcome: number): number {
    this.counts.inc(outcome);
    return outcome;
  }
}

function hasNativeStats(s: PacketSource): s is PacketSource & { nativeStats(): Record<string, number> } {
  return typeof (s as { nativeStats?: unknown }).nativeStats === 'function';
}

function asBuffer(d: Uint8Array): Buffer {
  return Buffer.isBuffer(d) ? d : Buffer.from(d.buffer, d.byteOffset, d.byteLength);
}
