// The terminal host: one UDP socket shared by one or many NTM identities (a phone has one; the agent has one per paired
// appliance) and all their tunnels. It runs the tunnels' lifecycle (directions, handshakes, on-demand connects,
// replacement, failure), answers every signalling datagram by type and index, and notices moves. It is the data-path
// engine's TunnelTable (dataplane/engine.ts reads the socket and handles DATA itself); the routing tables are in
// routes.ts, RS round trips in relay-probe.ts.
import type { Bind, Endpoint } from '../types/net.js';
import { NO_NODE, type DataTunnel, type LocalEnd, type OutboundResult, type TunnelTable } from '../types/tunnels.js';
import type { Identity } from '../protocol/identity.js';
import { CONTROL_TYPE, DATA_TYPE, TunnelKeypair } from '../crypto/session.js';
import { randomU32 } from '../crypto/random.js';
import { parseRequestHeader, reserveEphemeral, TUNNEL_REQUEST_TYPE, TUNNEL_RESPONSE_TYPE } from '../crypto/noise.js';
import { HINT, NAT_PROBE, REGISTRATION_COOKIE, REGISTRATION_RESPONSE, decodeHint } from '../protocol/registration.js';
import { RELAY_BIND_ACK, RELAY_CHALLENGE, RELAY_FRAME, RELAY_HEADER, RS_PING, decodeRelayBindAck, decodeRelayChallenge } from '../protocol/relay.js';
import type { Target } from '../protocol/control.js';
import { DEFAULT_RETRY, type RetryPolicy } from '../protocol/retransmit.js';
import { bytesToIp4, bytesToIp6 } from '../protocol/ip.js';
import { formatEndpoint } from '../protocol/endpoint.js';
import { Counters, silentLogger, type Logger } from '../util/log.js';
import { Node, type DcRef } from './node.js';
import { PUNCH, PUNCH_TTL, TUNNEL_TICK_MS, Tunnel, type PathNow, type TunnelIo } from './tunnel.js';
import { SourceLimiter } from '../util/source-limit.js';
import type { SessionLimits } from '../crypto/session.js';
import { be32 } from '../util/bytes.js';
import { RouteTable } from './routes.js';
import { RelayProbe } from './relay-probe.js';
import { TunnelLifecycle, type HostEvent } from './lifecycle.js';
import { jobNow } from '../util/job-clock.js';

export interface TerminalHostOptions {
  readonly bind: Bind;
  /** The host's own addresses with the socket port. */
  readonly locals: () => Endpoint[];
  readonly log?: Logger;
  readonly punchTimeoutMs?: number;
  /** How long both ends of a hole-punched tunnel wait after their short-TTL punch before the real packets (ms). */
  readonly punchHoldMs?: number;
  readonly tunnelDeadlineMs?: number;
  readonly retry?: RetryPolicy;
  readonly limits?: Partial<SessionLimits>;
  /** Timestamps of our TUNNEL_REQUESTs: a clock that only goes up (terminal/handshake-clock.ts); default Date.now. */
  readonly handshakeTime?: () => number;
  readonly onEvent?: (e: HostEvent) => void;
}

export type { HostEvent };

/**
 * TUNNEL_REQUESTs one source (an IPv4 address, an IPv6 /64) may have answered: a phone opening tunnels to every
 * appliance of a household at once fits in the burst; a flood from one address costs 5 ECDHs a second at most.
 */
const HANDSHAKES_PER_SOURCE = { burst: 50, perMinute: 300, maxSources: 10_000 } as const;

/** The socket's view from the data path: DATA datagrams it received and dropped (dataplane/counts.ts). */
export interface DataSocketView {
  readonly rx: number;
  readonly drops: Record<string, number>;
}

export class TerminalHost implements TunnelTable {
  readonly drops = new Counters();
  readonly counts = new Counters();
  readonly nodes = new Map<string, Node>();
  private readonly log: Logger;
  private readonly indexes = new Map<number, Node | Tunnel>();
  /** Data-path lookups: our virtual address → node; (our virtual, peer virtual) → tunnel. */
  private readonly routes = new RouteTable();
  private readonly lifecycle: TunnelLifecycle;
  private readonly relays: RelayProbe;
  private timer: NodeJS.Timeout | undefined;
  /** Tunnel handshakes answered per source (each an ECDH): wireguard-go's ratelimiter, util/source-limit.ts. */
  private readonly handshakesPerSource = new SourceLimiter(HANDSHAKES_PER_SOURCE);
  private ticks = 0;

  /**
   * The host does not read its socket: the data-path engine does, and hands every datagram that is not DATA to
   * onSignal (create a DataEngine on the same bind).
   */
  constructor(private readonly opts: TerminalHostOptions) {
    this.log = (opts.log ?? silentLogger).child({ role: 'terminal' });
    this.lifecycle = new TunnelLifecycle({
      nodes: this.nodes,
      routes: this.routes,
      tunnel: {
        punchTimeoutMs: opts.punchTimeoutMs ?? 1500,
        punchHoldMs: opts.punchHoldMs ?? 40,
        deadlineMs: opts.tunnelDeadlineMs ?? 10_000,
        ...(opts.limits ? { limits: opts.limits } : {}),
      },
      io: this.tunnelIo(),
      relayLost: (node, rsId) => this.relays.unreachable(node, rsId),
      counts: this.counts,
      drops: this.drops,
      log: this.log,
      ...(opts.onEvent ? { onEvent: opts.onEvent } : {}),
    });
    this.relays = new RelayProbe(
      (d, to) => this.send(d, to),
      () => new Set(opts.locals().map((l) => l.family)),
    );
    this.timer = setInterval(() => this.tick(), TUNNEL_TICK_MS);
    // The first tunnel's handshake, like every later one, takes an ephemeral key made ahead (crypto/noise.ts).
    reserveEphemeral();
  }

  get bind(): Bind {
    return this.opts.bind;
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Identities.

  addNode(identity: Identity, dc: DcRef, o: { name?: string; token?: Uint8Array; nt?: Uint8Array } = {}): Node {
    const existing = this.nodes.get(identity.idHex);
    if (existing) return existing;
    const node = new Node(
      identity,
      dc,
      {
        send: (d, to) => this.send(d, to),
        allocIndex: (n) => this.allocIndex(n),
        freeIndex: (i) => this.freeIndex(i),
        locals: () => this.opts.locals(),
        onRoute: (n, r) => this.lifecycle.onRoute(n, r),
        onRegistered: (n, r, first) => this.onRegistered(n, r.v4, r.v6, first),
        onRevoked: (n) => this.onRevoked(n),
        onPeerEndpoints: (n, tunnelId, peerId, endpoints) => this.lifecycle.onPeerEndpoints(n, tunnelId, peerId, endpoints),
        now: () => Date.now(),
      },
      {
        retry: this.opts.retry ?? DEFAULT_RETRY,
        ...(o.name ? { name: o.name } : {}),
        ...(o.token ? { token: o.token } : {}),
        log: this.log,
      },
    );
    if (o.nt) node.useNt(o.nt);
    this.nodes.set(identity.idHex, node);
    return node;
  }

  /** Forgets an identity and every tunnel of it (unpairing). */
  removeNode(id: string): void {
    const node = this.nodes.get(id);
    if (!node) return;
    this.lifecycle.closeOwnedBy(node);
    this.routes.removeNode(node);
    node.close();
    this.nodes.delete(id);
  }

  /** Closes every tunnel to `peerId` (a phone removed from the household). */
  dropPeer(peerId: string): number {
    return this.lifecycle.dropPeer(peerId);
  }

  private onRegistered(node: Node, v4: string, v6: string, first: boolean): void {
    this.routes.addNode(node);
    this.opts.onEvent?.({ kind: 'registered', node: node.id, v4, v6, ms: node.registrationMs });
    if (first) this.log.info('registered', { node: node.id, v4, v6, ms: Math.round(node.registrationMs * 10) / 10 });
    this.relays.probe(node);
  }

  private onRevoked(node: Node): void {
    this.log.warn('the DC revoked this identity', { node: node.id });
    this.lifecycle.closeOwnedBy(node);
    this.opts.onEvent?.({ kind: 'revoked', node: node.id });
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Indexes (control channels, handshakes, keypairs) share one random uint32 space. They are public (every packet
  // names one), so they come from the pooled CSPRNG output (crypto/random.ts), as the DC's do: a CSPRNG call each
  // cost tens of microseconds on the way of every registration and handshake.

  private allocIndex(owner: Node | Tunnel): number {
    for (;;) {
      const i = randomU32();
      if (i !== 0 && !this.indexes.has(i)) {
        this.indexes.set(i, owner);
        return i;
      }
    }
  }

  private freeIndex(i: number): void {
    this.indexes.delete(i);
  }

  private send(data: Uint8Array, to: Endpoint): void {
    this.counts.inc('tx');
    this.opts.bind.send(data, to);
  }

  /** The sockets and indexes every tunnel uses (built once, before the lifecycle that adds its event handlers). */
  private tunnelIo(): Omit<TunnelIo, 'onUp' | 'onFailed' | 'onStale' | 'onPathLost' | 'onRelayLost'> {
    // A bind that can set a datagram's TTL (the real UdpBind) enables short-TTL punches; fakes simply lack it.
    const ttlBind = this.opts.bind as Bind & { sendWithTtl?: (d: Uint8Array, to: Endpoint, ttl: number) => boolean };
    const withTtl = typeof ttlBind.sendWithTtl === 'function' ? ttlBind.sendWithTtl.bind(ttlBind) : undefined;
    // A bind that seals DATA on a thread of its own (the native one, issue 15) gets the packets unsealed.
    const sealing = this.opts.bind as Bind & { seals?: boolean; sealsGso?: boolean; sendSealing?: NonNullable<TunnelIo['sendSealing']>; sendSealingGso?: NonNullable<TunnelIo['sendSealingGso']> };
    const sendSealing = sealing.seals === true && sealing.sendSealing ? sealing.sendSealing.bind(sealing) : undefined;
    const sendSealingGso = sendSealing && sealing.sealsGso === true && sealing.sendSealingGso ? sealing.sendSealingGso.bind(sealing) : undefined;
    return {
      send: (d: Uint8Array, to: Endpoint) => this.send(d, to),
      ...(withTtl
        ? {
            sendLowTtl: (d: Uint8Array, to: Endpoint): boolean => {
              const ok = withTtl(d, to, PUNCH_TTL);
              if (ok) this.counts.inc('tx');
              return ok;
            },
          }
        : {}),
      allocIndex: (t: Tunnel) => this.allocIndex(t),
      freeIndex: (i: number) => this.freeIndex(i),
      // Read once per job: a burst of packets is one job (util/job-clock.ts).
      now: jobNow,
      relayCookie: (rs: Endpoint) => this.relays.cookieFor(rs),
      requestAllowed: (from: Endpoint, via: PathNow) => via !== 'direct' || this.handshakesPerSource.take(from, performance.now()),
      ...(this.opts.handshakeTime ? { handshakeTime: this.opts.handshakeTime } : {}),
      ...(sendSealing
        ? {
            sendSealing: (prefix: Buffer, key: Uint8Array, counter: number, plaintext: Uint8Array, to: Endpoint): void => {
              this.counts.inc('tx');
              sendSealing(prefix, key, counter, plaintext, to);
            },
          }
        : {}),
      ...(sendSealingGso
        ? {
            sendSealingGso: (prefix: Buffer, key: Uint8Array, counter: number, packet: Uint8Array, mtu: number, maxSegs: number, to: Endpoint): number => {
              const n = sendSealingGso(prefix, key, counter, packet, mtu, maxSegs, to);
              if (n > 0) this.counts.inc('tx', n);
              return n;
            },
          }
        : {}),
      // Where tunnels seal DATA packets, when the socket copies each datagram at send (the native one does).
      ...((this.opts.bind as Bind & { copiesOnSend?: boolean }).copiesOnSend === true ? { sealScratch: Buffer.allocUnsafe(65_536) } : {}),
    };
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Tunnels.

  /**
   * Direction Request + tunnel setup (paper §2.3): resolves when both ends can send. A tunnel already up to the same
   * peer (asked by ID) is reused unless `fresh` (a benchmark of communication start asks for a new route).
   */
  connect(node: Node, target: Target, fresh = false): Promise<Tunnel> {
    return this.lifecycle.connect(node, target, fresh);
  }

  tunnelTo(node: Node, peerId: string): Tunnel | undefined {
    return this.lifecycle.tunnelTo(node, peerId);
  }

  allTunnels(): Tunnel[] {
    return this.lifecycle.all();
  }

  // ---------------------------------------------------------------------------------------------------------------
  // TunnelTable: the data-path engine's lookups (per packet: no await, no throw, nothing built).

  tunnelFor(packet: Buffer, family: 4 | 6): DataTunnel | typeof NO_NODE | undefined {
    const t = this.routes.tunnelFor(packet, family);
    return t === NO_NODE || t?.state === 'up' ? t : undefined;
  }

  connectOnDemand(packet: Buffer, family: 4 | 6): OutboundResult {
    const node = this.routes.nodeFor(packet, family);
    if (!node) return 'dropped';
    const dst = family === 4 ? bytesToIp4(packet, 16) : bytesToIp6(packet, 24);
    return this.lifecycle.startOnDemand(node, { kind: family === 4 ? 'v4' : 'v6', address: dst }, packet);
  }

  byIndex(index: number): DataTunnel | undefined {
    const owner = this.indexes.get(index);
    return owner instanceof Tunnel ? owner : undefined;
  }

  localEnd(t: DataTunnel): LocalEnd | undefined {
    const node = this.nodes.get(this.lifecycle.ownerId(t as Tunnel) ?? '');
    return node && this.routes.localEnd(node);
  }

  heard(t: DataTunnel): void {
    this.lifecycle.heard(t as Tunnel);
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Signalling: every datagram the engine does not take as DATA.

  onSignal(data: Buffer, from: Endpoint, via: PathNow): void {
    this.counts.inc('rx');
    try {
      this.dispatch(data, from, via);
    } catch (e) {
      this.drops.inc('internal');
      this.log.error('packet handler failed', { err: e, type: data[0], from: formatEndpoint(from) });
    }
  }

  private dispatch(data: Buffer, from: Endpoint, via: PathNow): void {
    if (data.length < 4) return this.drops.inc('length');
    switch (data[0]) {
      case DATA_TYPE:
        // Too short for the engine to have taken it (an RS frame of one is opened here, then comes back as DATA).
        return this.drops.inc('length');
      case RELAY_FRAME:
        if (via === 'relay' || data.length <= RELAY_HEADER) return this.drops.inc('relay-malformed');
        return this.dispatch(data.subarray(RELAY_HEADER), from, 'relay');
      case TUNNEL_REQUEST_TYPE: {
        const h = parseRequestHeader(data);
        if (!h) return this.drops.inc('handshake-malformed');
        const key = h.tunnelId.readBigUInt64BE(0).toString(16);
        const t = this.lifecycle.tunnels.get(key);
        if (!t) {
          // The request outran our Route Direction: keep it a moment.
          this.lifecycle.stashRequest(key, data, from, via);
          return this.drops.inc('handshake-early');
        }
        const why = t.onRequest(data, from, via);
        if (why) this.lifecycle.requestRefused(t, why);
        return;
      }
      case TUNNEL_RESPONSE_TYPE: {
        const t = this.indexes.get(data.length >= 12 ? be32(data, 8) : 0);
        if (!(t instanceof Tunnel)) return this.drops.inc('handshake-unknown-index');
        const why = t.onResponse(data, from, via);
        if (why) this.drops.inc(`handshake-${why}`);
        return;
      }
      case PUNCH: {
        if (data.length !== 32) return this.drops.inc('punch-malformed');
        const t = this.lifecycle.tunnels.get(data.readBigUInt64BE(4).toString(16));
        if (!t || Buffer.compare(data.subarray(12, 32), Buffer.from(t.peerId.slice(2), 'hex')) !== 0) return this.drops.inc('punch-unknown');
        // Unauthenticated: it can only make a connecting initiator send its (authenticated) request once more.
        if (t.state !== 'connecting') return this.drops.inc('punch-late');
        return t.onPunch(from);
      }
      case CONTROL_TYPE: {
        const n = this.indexes.get(TunnelKeypair.receiverIndex(data));
        if (!(n instanceof Node)) return this.drops.inc('ctl-unknown-index');
        // No source check: the channel's AEAD authenticates, and a DC on a multihomed host (the vCPE: WAN and LAN)
        // answers from the address nearest to us, not necessarily the one we sent to.
        return n.onControl(data);
      }
      case REGISTRATION_RESPONSE: {
        const idx = data.length >= 8 ? be32(data, 4) : 0;
        const n = this.indexes.get(idx);
        if (!(n instanceof Node)) return this.drops.inc('reg-unknown-index');
        return n.onRegistrationResponse(data, idx);
      }
      case REGISTRATION_COOKIE: {
        const n = this.indexes.get(data.length >= 8 ? be32(data, 4) : 0);
        if (!(n instanceof Node)) return this.drops.inc('cookie-unknown-index');
        return n.onRegistrationCookie(data);
      }
      case HINT: {
        const h = decodeHint(data);
        if (!h.ok) return this.drops.inc('hint-malformed');
        // Unauthenticated by design (it only prompts an authenticated re-registration, at most once a second); the
        // source address is not checked for the same reason as CONTROL's.
        for (const n of this.nodes.values()) if (h.value.dcId.equals(Buffer.from(n.dc.id))) n.onHint();
        return;
      }
      case NAT_PROBE:
        return this.counts.inc('probe-replies');
      case RELAY_BIND_ACK: {
        const a = decodeRelayBindAck(data);
        if (!a.ok) return this.drops.inc('bind-ack-malformed');
        const t = this.lifecycle.tunnels.get(a.value.tunnelId.toString(16));
        t?.onBindAck(a.value.ok);
        return;
      }
      case RELAY_CHALLENGE: {
        const c = decodeRelayChallenge(data);
        if (!c.ok) return this.drops.inc('bind-challenge-malformed');
        this.lifecycle.tunnels.get(c.value.tunnelId.toString(16))?.onBindChallenge(c.value.cookie);
        return;
      }
      case RS_PING:
        if (!this.relays.onPong(data)) this.drops.inc('pong-malformed');
        return;
      default:
        return this.drops.inc('type');
    }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Mobility (the point of NTMobile): our real address changed; virtual addresses and tunnels stay.

  /**
   * `at`: when the move happened (performance.now(); default now). `pathChanged: false` when only an address came or
   * went and our packets still leave the same way (the old uplink going down after the new one took the default
   * route): the DC learns the new address list, but no interruption is measured. A move noticed while the last one
   * has not yet carried traffic keeps the earlier start time.
   */
  moved(o: { readonly pathChanged?: boolean; readonly at?: number } = {}): void {
    this.relays.clear();
    const locals = this.opts.locals().map(formatEndpoint);
    this.log.info('address changed', { locals });
    this.opts.onEvent?.({ kind: 'moved', locals });
    this.lifecycle.moved(o.at ?? performance.now(), o.pathChanged !== false);
    for (const n of this.nodes.values()) {
      n.resend();
      n.locationUpdate()
        .then(() => this.relays.probe(n))
        .catch((e: Error) => this.log.warn('location update failed', { err: e }));
    }
  }

  /** Tunnels every TUNNEL_TICK_MS (their path liveness is that fine); identities and RS probes once a second. */
  private tick(): void {
    const now = performance.now();
    this.lifecycle.tick(now);
    if (++this.ticks % Math.round(1000 / TUNNEL_TICK_MS) !== 0) return;
    for (const n of this.nodes.values()) n.tick();
    this.relays.tick(now);
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.lifecycle.close();
    for (const n of this.nodes.values()) n.close();
    await this.opts.bind.close();
  }

  /** `data`: what the engine saw of DATA on this socket (counted among the host's datagrams and drops). */
  status(data?: DataSocketView): Record<string, unknown> {
    const counts = this.counts.toJSON();
    if (data) counts.rx = (counts.rx ?? 0) + data.rx;
    return {
      nodes: [...this.nodes.values()].map((n) => n.describe()),
      tunnels: this.lifecycle.all().map((t) => ({ node: this.lifecycle.ownerId(t), ...t.describe() })),
      rsRttMs: this.relays.toJSON(),
      interruptionsMs: this.lifecycle.interruptions.map((x) => Math.round(x * 10) / 10),
      counts,
      drops: { ...this.drops.toJSON(), ...data?.drops },
    };
  }
}
