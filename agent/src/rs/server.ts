// The RS (Relay Server, paper §2.1, §2.3 Fig. 4): a dual-stack relay between two tunnel ends that cannot reach each
// other (both behind NATs, or IPv4-only vs IPv6-only). It relays only tunnels a trusted DC directed through it (a
// DC-signed ticket; no open relay), with the ticket's byte/packet quotas, and never holds tunnel keys: it forwards
// RELAY frames unchanged between the two bound addresses. It reports its load to its DCs (paper §2.4: RS choice).
import type { Bind, Clock, Endpoint } from '../types/net.js';
import type { SectionConfig } from '../config/schema.js';
import type { Identity } from '../protocol/identity.js';
import { UdpBind } from '../dataplane/conn/udp.js';
import { Counters, silentLogger, type Logger } from '../util/log.js';
import { formatId } from '../crypto/secp256k1.js';
import {
  RELAY_BIND,
  RELAY_FRAME,
  RELAY_HEADER,
  RS_PING,
  decodeRelayBind,
  decodeRsPing,
  encodeRelayBindAck,
  encodeRelayChallenge,
  splitBindCookie,
  encodeRsPing,
  verifyRelayBind,
  verifyTicket,
} from '../protocol/relay.js';
import { PEER_FRAME, PeerSealer } from '../protocol/peer-frame.js';
import { HELLO, decodeHello, encodeHello, signServerRecord } from '../protocol/dc-record.js';
import { Peer, encodePeer } from '../protocol/peer.js';
import { newTxid } from '../protocol/retransmit.js';
import { formatEndpoint, sameEndpoint } from '../protocol/endpoint.js';
import { SourceCookies } from '../crypto/source-cookie.js';
import { SourceLimiter } from '../util/source-limit.js';

export interface RsServerOptions {
  readonly identity: Identity;
  readonly config: SectionConfig<'rs'>;
  /** Addresses this RS tells its DCs (one per family); default: derived from the listen address. */
  readonly advertise?: readonly Endpoint[];
  readonly log?: Logger;
  readonly clock?: Clock;
}

const SYSTEM_CLOCK: Clock = { now: () => Date.now(), monotonic: () => performance.now() };
/** A tunnel with no traffic this long is forgotten (its ends re-bind when they need it again). */
const IDLE_MS = 10 * 60_000;

interface RelayedTunnel {
  readonly key: string;
  /** The verified ticket (a later bind with the same bytes needs no second signature check). */
  readonly ticket: Buffer;
  readonly endA: Buffer;
  readonly endB: Buffer;
  readonly expiresAt: number;
  readonly byteQuota: number;
  readonly packetQuota: number;
  a?: Endpoint;
  b?: Endpoint;
  bindTimeA: number;
  bindTimeB: number;
  bytes: number;
  packets: number;
  lastActive: number;
  /** Frames that arrived before the other end bound (docs/protocol.md §3.5), bounded by config.pendingFrames. */
  pending: Array<{ readonly data: Buffer; readonly toB: boolean }>;
}

interface DcLink {
  readonly id: string;
  readonly endpoint: Endpoint;
  publicKey?: Buffer;
}

export class RsServer {
  readonly drops = new Counters();
  readonly counts = new Counters();
  readonly idHex: string;
  private readonly tunnels = new Map<string, RelayedTunnel>();
  /** Tunnels created from each DC's tickets since start (mod 2^32), reported to it (LOAD_REPORT `bound`). */
  private readonly boundFrom = new Map<string, number>();
  private readonly trust: Set<string>;
  private readonly dcs: DcLink[];
  private readonly sealer: PeerSealer;
  private readonly log: Logger;
  private readonly clock: Clock;
  /** Its signed record (role RS, its advertised endpoints): in its HELLOs, and on the chain (rs/ledger.ts). */
  readonly record: Uint8Array;
  private timers: NodeJS.Timeout[] = [];
  private packetsSinceReport = 0;
  private readonly cookies: SourceCookies;
  /** Binds that reach a signature check, and new tunnels, per source (util/source-limit.ts). */
  private readonly bindsPerSource: SourceLimiter;
  private readonly tunnelsPerSource: SourceLimiter;
  private lastReport = 0;

  private constructor(
    private readonly opts: RsServerOptions,
    readonly bind: Bind,
  ) {
    this.log = (opts.log ?? silentLogger).child({ role: 'rs' });
    this.clock = opts.clock ?? SYSTEM_CLOCK;
    this.cookies = new SourceCookies(() => this.clock.monotonic());
    const c = opts.config;
    this.bindsPerSource = new SourceLimiter({ burst: c.bindPerSourceBurst, perMinute: c.bindPerSourcePerMin, maxSources: c.limitSources });
    this.tunnelsPerSource = new SourceLimiter({ burst: c.newTunnelsPerSourceBurst, perMinute: c.newTunnelsPerSourcePerMin, maxSources: c.limitSources });
    this.idHex = opts.identity.idHex;
    this.dcs = opts.config.reportTo.map((r) => ({ id: r.id, endpoint: r.endpoint }));
    this.trust = new Set(opts.config.trust.length > 0 ? opts.config.trust : this.dcs.map((d) => d.id));
    this.sealer = new PeerSealer(opts.identity, (id) => this.trust.has(id));
    this.record = signServerRecord(opts.identity, {
      role: 'rs',
      time: this.clock.now(),
      endpoints: opts.advertise ?? [],
      poolV4: '',
      poolV6: '',
    });
    bind.onMessage((d, f) => this.onPacket(d, f));
  }

  static async start(opts: RsServerOptions): Promise<RsServer> {
    const bind = await UdpBind.open({ listen: opts.config.listen });
    const rs = new RsServer(opts, bind);
    rs.timers.push(setInterval(() => rs.tick(), opts.config.reportS * 1000));
    rs.tick();
    rs.log.info('rs started', { id: rs.idHex, port: bind.port, trust: [...rs.trust] });
    return rs;
  }

  get port(): number {
    return this.bind.port;
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    await this.bind.close();
  }

  private onPacket(data: Buffer, from: Endpoint): void {
    this.counts.inc('rx');
    if (data.length < 4) return this.drops.inc('length');
    switch (data[0]) {
      case RELAY_FRAME:
        return this.relay(data, from);
      case RELAY_BIND:
        return this.onBind(data, from);
      case RS_PING:
        return this.onPing(data, from);
      case HELLO:
        return this.onHello(data, from);
      case PEER_FRAME:
        // DCs only answer hellos here; nothing sealed is expected yet.
        return this.drops.inc('peer-unexpected');
      default:
        return this.drops.inc('type');
    }
  }

  /** The hot path: forward a frame from one bound end to the other, unchanged. No throw, no allocation of our own. */
  private relay(data: Buffer, from: Endpoint): void {
    if (data.length < RELAY_HEADER + 1) return this.drops.inc('relay-length');
    const t = this.tunnels.get(data.toString('latin1', 4, 12));
    if (!t) return this.drops.inc('relay-unknown-tunnel');
    const fromA = sameEndpoint(t.a, from);
    if (!fromA && !sameEndpoint(t.b, from)) return this.drops.inc('relay-not-bound');
    if (t.packets >= t.packetQuota || t.bytes + data.length > t.byteQuota) return this.drops.inc('relay-quota');
    const now = this.clock.now();
    if (now > t.expiresAt) return this.drops.inc('relay-expired');
    t.packets++;
    t.bytes += data.length;
    t.lastActive = now;
    this.packetsSinceReport++;
    const to = fromA ? t.b : t.a;
    if (!to) {
      // `data` is borrowed from the socket: a frame kept for later needs its own copy.
      if (t.pending.length < this.opts.config.pendingFrames) t.pending.push({ data: Buffer.from(data), toB: fromA });
      else this.drops.inc('relay-pending-full');
      return;
    }
    this.counts.inc('relayed');
    this.counts.inc('relayed-bytes', data.length);
    this.bind.send(data, to);
  }

  private onBind(data: Buffer, from: Endpoint): void {
    const { bind, cookie } = splitBindCookie(data);
    const d = decodeRelayBind(bind);
    if (!d.ok) return this.drops.inc('bind-malformed');
    const b = d.value;
    const t = b.ticket;
    const dcId = formatId(t.dcId);
    if (!this.trust.has(dcId)) return this.drops.inc('bind-untrusted-dc');
    if (!this.opts.identity.id.equals(t.rsId)) return this.drops.inc('bind-wrong-rs');
    const now = this.clock.now();
    if (now > t.expiresAt) return this.drops.inc('bind-expired');
    if (Math.abs(b.timestamp - now) > 60_000) return this.drops.inc('bind-stale');
    const key = Buffer.from(t.bytes.subarray(0, 8)).toString('latin1');
    let tun = this.tunnels.get(key);
    const lastBind = tun ? (b.role === 0 ? tun.bindTimeA : tun.bindTimeB) : 0;
    if (tun && b.timestamp <= lastBind) {
      // A retransmitted bind from the same address is answered again; an older one from elsewhere is a replay.
      const cur = b.role === 0 ? tun.a : tun.b;
      if (!sameEndpoint(cur, from)) return this.drops.inc('bind-replay');
      const peerBound = !!(b.role === 0 ? tun.b : tun.a);
      return this.bind.send(encodeRelayBindAck({ tunnelId: t.tunnelId, ok: true, peerBound, observed: from }), from);
    }
    // Relayed traffic goes only where a bind came from: a new source address first proves it receives there.
    if (!sameEndpoint(b.role === 0 ? tun?.a : tun?.b, from) && !this.cookies.valid(cookie, from)) {
      this.counts.inc('bind-challenged');
      return this.bind.send(encodeRelayChallenge({ tunnelId: t.tunnelId, cookie: this.cookies.issue(from) }), from);
    }
    // Signature recoveries (~70 µs each, native) only for binds that passed every cheap check, and so many per source
    // (a source here has echoed our cookie: it is no spoofed one); the ticket's only once per tunnel (the second end
    // presents the same ticket: on the critical path of the tunnel's setup).
    const mono = this.clock.monotonic();
    if (!this.bindsPerSource.take(from, mono)) return this.drops.inc('bind-source-limit');
    if (!(tun && tun.ticket.equals(t.bytes)) && !verifyTicket(t)) return this.drops.inc('bind-ticket-signature');
    if (!verifyRelayBind(b)) return this.drops.inc('bind-signature');
    if (!tun) {
      if (this.tunnels.size >= this.opts.config.capacityTunnels) return this.drops.inc('bind-capacity');
      // Each tunnel holds a slot of the RS's capacity until its ticket expires: one source may not take them all.
      if (!this.tunnelsPerSource.take(from, mono)) return this.drops.inc('bind-tunnel-limit');
      tun = {
        key,
        ticket: Buffer.from(t.bytes),
        endA: Buffer.from(t.endA),
        endB: Buffer.from(t.endB),
        expiresAt: t.expiresAt,
        byteQuota: t.byteQuota,
        packetQuota: t.packetQuota,
        bindTimeA: 0,
        bindTimeB: 0,
        bytes: 0,
        packets: 0,
        lastActive: now,
        pending: [],
      };
      this.tunnels.set(key, tun);
      this.counts.inc('tunnels');
      this.boundFrom.set(dcId, ((this.boundFrom.get(dcId) ?? 0) + 1) >>> 0);
    }
    if (b.role === 0) {
      if (tun.a && !sameEndpoint(tun.a, from)) this.counts.inc('rebinds');
      tun.a = from;
      tun.bindTimeA = b.timestamp;
    } else {
      if (tun.b && !sameEndpoint(tun.b, from)) this.counts.inc('rebinds');
      tun.b = from;
      tun.bindTimeB = b.timestamp;
    }
    tun.lastActive = now;
    const peerBound = !!(b.role === 0 ? tun.b : tun.a);
    this.bind.send(encodeRelayBindAck({ tunnelId: t.tunnelId, ok: true, peerBound, observed: from }), from);
    // Frames that waited for this end go now, in order.
    if (tun.pending.length > 0) {
      const waiting = tun.pending.filter((p) => p.toB === (b.role === 1));
      tun.pending = tun.pending.filter((p) => p.toB !== (b.role === 1));
      for (const p of waiting) this.bind.send(p.data, from);
    }
  }

  /** Tunnels that relayed a frame or bound within rs.activeS: the load it reports (a tunnel idle since is no load). */
  private active(): number {
    const since = this.clock.now() - this.opts.config.activeS * 1000;
    let n = 0;
    for (const t of this.tunnels.values()) if (t.lastActive >= since) n++;
    return n;
  }

  private load(): number {
    return Math.min(1, this.active() / this.opts.config.capacityTunnels);
  }

  private onPing(data: Buffer, from: Endpoint): void {
    const d = decodeRsPing(data);
    if (!d.ok || d.value.kind !== 0) return this.drops.inc('ping-malformed');
    // A padded ping asks for our cookie for its source: a bind that echoes it is not challenged (§3.5).
    const cookie = d.value.cookie ? this.cookies.issue(from) : undefined;
    this.bind.send(encodeRsPing(1, d.value.nonce, Math.round(this.load() * 1000), cookie), from);
  }

  private onHello(data: Buffer, from: Endpoint): void {
    const d = decodeHello(data);
    if (!d.ok || d.value.record.role !== 'dc') return this.drops.inc('hello-malformed');
    const id = formatId(d.value.record.id);
    const dc = this.dcs.find((x) => x.id === id);
    if (!dc) return this.drops.inc('hello-unknown');
    dc.publicKey = Buffer.from(d.value.record.publicKey);
    if (d.value.wantAnswer) this.bind.send(encodeHello(this.record, false), from);
    this.report();
  }

  private report(): void {
    const now = this.clock.monotonic();
    const secs = Math.max(0.001, (now - this.lastReport) / 1000);
    const pps = this.packetsSinceReport / secs;
    this.packetsSinceReport = 0;
    this.lastReport = now;
    const adv = this.opts.advertise ?? [];
    const v4 = adv.find((e) => e.family === 4);
    const v6 = adv.find((e) => e.family === 6);
    for (const dc of this.dcs) {
      if (!dc.publicKey) continue;
      const m = encodePeer({
        type: Peer.LOAD_REPORT,
        txid: newTxid(),
        time: this.clock.now(),
        tunnels: this.active(),
        capacity: this.opts.config.capacityTunnels,
        packetsPerS: pps,
        ...(v4 ? { v4 } : {}),
        ...(v6 ? { v6 } : {}),
        bound: this.boundFrom.get(dc.id) ?? 0,
      });
      this.bind.send(this.sealer.seal(dc.publicKey, m), dc.endpoint);
    }
  }

  private tick(): void {
    const now = this.clock.now();
    for (const [k, t] of this.tunnels) if (now - t.lastActive > IDLE_MS || now > t.expiresAt) this.tunnels.delete(k);
    for (const dc of this.dcs) if (!dc.publicKey) this.bind.send(encodeHello(this.record, true), dc.endpoint);
    this.report();
  }

  status(): Record<string, unknown> {
    return {
      role: 'rs',
      id: this.idHex,
      port: this.port,
      tunnels: [...this.tunnels.values()].map((t) => ({
        endA: formatId(t.endA),
        endB: formatId(t.endB),
        a: t.a ? formatEndpoint(t.a) : null,
        b: t.b ? formatEndpoint(t.b) : null,
        bytes: t.bytes,
        packets: t.packets,
      })),
      dcs: this.dcs.map((d) => ({ id: d.id, endpoint: formatEndpoint(d.endpoint), known: !!d.publicKey })),
      active: this.active(),
      load: this.load(),
      counts: this.counts.toJSON(),
      drops: this.drops.toJSON(),
    };
  }
}

