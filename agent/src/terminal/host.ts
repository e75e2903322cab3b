// The terminal host: one UDP socket shared by one or many NTM identities (a phone has one; the agent has one per paired
// appliance) and all their tunnels. It runs the tunnels' lifecycle (directions, handshakes, on-demand connects,
// replacement, failure), answers every signalling datagram by type and index, and notices moves. It is the data-path
// engine's TunnelTable (dataplane/engine.ts reads the socket and handles DATA itself); the routing tables are in
// routes.ts, RS round trips in relay-probe.ts.
import { randomBytes } from 'node:crypto';
import type { Bind, Endpoint } from '../types/net.js';
import { NO_NODE, type DataTunnel, type LocalEnd, type OutboundResult, type TunnelTable } from '../types/tunnels.js';
import type { Identity } from '../protocol/identity.js';
import { CONTROL_TYPE, DATA_TYPE, TunnelKeypair } from '../crypto/session.js';
import { parseRequestHeader, TUNNEL_REQUEST_TYPE, TUNNEL_RESPONSE_TYPE } from '../crypto/noise.js';
import { formatId } from '../crypto/secp256k1.js';
import { HINT, NAT_PROBE, REGISTRATION_RESPONSE, decodeHint } from '../protocol/registration.js';
import { RELAY_BIND_ACK, RELAY_FRAME, RELAY_HEADER, RS_PING, decodeRelayBindAck } from '../protocol/relay.js';
import type { Route, Target } from '../protocol/control.js';
import { DEFAULT_RETRY, type RetryPolicy } from '../protocol/retransmit.js';
import { bytesToIp4, bytesToIp6 } from '../protocol/ip.js';
import { formatEndpoint } from '../protocol/endpoint.js';
import { Counters, silentLogger, type Logger } from '../util/log.js';
import { Node, type DcRef } from './node.js';
import { PUNCH, PUNCH_TTL, Tunnel, type PathNow, type TunnelIo, type TunnelOptions } from './tunnel.js';
import type { SessionLimits } from '../crypto/session.js';
import { be32 } from '../util/bytes.js';
import { RouteTable } from './routes.js';
import { RelayProbe } from './relay-probe.js';

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

export type HostEvent =
  | { readonly kind: 'registered'; readonly node: string; readonly v4: string; readonly v6: string; readonly ms: number }
  | { readonly kind: 'tunnel-up'; readonly node: string; readonly peer: string; readonly path: string; readonly setupMs: number }
  | { readonly kind: 'tunnel-moved'; readonly node: string; readonly peer: string; readonly path: string; readonly interruptionMs: number }
  | { readonly kind: 'tunnel-failed'; readonly node: string; readonly peer: string; readonly why: string }
  | { readonly kind: 'moved'; readonly locals: string[] }
  | { readonly kind: 'revoked'; readonly node: string };

/** How long a replaced tunnel keeps accepting packets sealed before the switch (ms). */
const RETIRE_MS = 5000;


interface StashedRequest {
  readonly packet: Buffer;
  readonly from: Endpoint;
  readonly via: PathNow;
  readonly at: number;
}

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
  private readonly tunnels = new Map<string, Tunnel>();
  private readonly byPeer = new Map<string, Tunnel>();
  /** Data-path lookups: our virtual address → node; (our virtual, peer virtual) → tunnel. */
  private readonly routes = new RouteTable();
  private readonly connecting = new Map<string, { promise: Promise<Tunnel>; queue: Buffer[] }>();
  private readonly stash = new Map<string, StashedRequest>();
  private readonly waiters = new Map<Tunnel, Array<{ resolve(t: Tunnel): void; reject(e: Error): void }>>();
  private readonly relays: RelayProbe;
  private timer: NodeJS.Timeout | undefined;
  /** When the last move was noticed (ms, monotonic), for the interruption figure; 0 when none pending. */
  private movedAt = 0;
  /** Handover interruptions measured (ms): from the move until an authentic packet arrived on the new path. */
  readonly interruptions: number[] = [];
  /** Where tunnels seal DATA packets, when the socket copies each datagram at send (the native one does). */
  private readonly sealScratch: Buffer | undefined;

  /**
   * The host does not read its socket: the data-path engine does, and hands every datagram that is not DATA to
   * onSignal (create a DataEngine on the same bind).
   */
  constructor(private readonly opts: TerminalHostOptions) {
    this.sealScratch = (opts.bind as Bind & { copiesOnSend?: boolean }).copiesOnSend === true ? Buffer.allocUnsafe(65_536) : undefined;
    this.log = (opts.log ?? silentLogger).child({ role: 'terminal' });
    this.relays = new RelayProbe(
      (d, to) => this.send(d, to),
      () => new Set(opts.locals().map((l) => l.family)),
    );
    this.timer = setInterval(() => this.tick(), 1000);
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
        onRoute: (n, r) => this.onRoute(n, r),
        onRegistered: (n, r, first) => this.onRegistered(n, r.v4, r.v6, first),
        onRevoked: (n) => this.onRevoked(n),
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
    for (const t of [...this.tunnels.values()]) if (this.ownerOf(t) === node) this.closeTunnel(t);
    this.closeRetired((t) => this.ownerOf(t) === node);
    this.routes.removeNode(node);
    node.close();
    this.nodes.delete(id);
  }

  /** Closes every tunnel to `peerId` (a phone removed from the household). */
  dropPeer(peerId: string): number {
    let n = 0;
    for (const t of [...this.tunnels.values()]) {
      if (t.peerId === peerId.toLowerCase()) {
        this.closeTunnel(t);
        n++;
      }
    }
    this.closeRetired((t) => t.peerId === peerId.toLowerCase());
    return n;
  }

  private onRegistered(node: Node, v4: string, v6: string, first: boolean): void {
    this.routes.addNode(node);
    this.opts.onEvent?.({ kind: 'registered', node: node.id, v4, v6, ms: node.registrationMs });
    if (first) this.log.info('registered', { node: node.id, v4, v6, ms: Math.round(node.registrationMs * 10) / 10 });
    this.relays.probe(node);
  }

  private onRevoked(node: Node): void {
    this.log.warn('the DC revoked this identity', { node: node.id });
    for (const t of [...this.tunnels.values()]) if (this.ownerOf(t) === node) this.closeTunnel(t);
    this.closeRetired((t) => this.ownerOf(t) === node);
    this.opts.onEvent?.({ kind: 'revoked', node: node.id });
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Indexes (control channels, handshakes, keypairs) share one random uint32 space.

  private allocIndex(owner: Node | Tunnel): number {
    for (;;) {
      const i = randomBytes(4).readUInt32BE(0);
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

  // ---------------------------------------------------------------------------------------------------------------
  // Tunnels.

  private tunnelOptions(): TunnelOptions {
    return {
      punchTimeoutMs: this.opts.punchTimeoutMs ?? 1500,
      punchHoldMs: this.opts.punchHoldMs ?? 40,
      deadlineMs: this.opts.tunnelDeadlineMs ?? 10_000,
      ...(this.opts.limits ? { limits: this.opts.limits } : {}),
    };
  }

  private ownerOf(t: Tunnel): Node | undefined {
    return this.nodes.get(this.tunnelOwner.get(t) ?? '');
  }
  private readonly tunnelOwner = new Map<Tunnel, string>();
  /** Replaced tunnels still receiving (see retire()), with the timer that closes them. */
  private readonly retired = new Map<Tunnel, NodeJS.Timeout>();

  private onRoute(node: Node, route: Route): Tunnel {
    const key = route.tunnelId.toString(16);
    let t = this.tunnels.get(key);
    if (t) {
      t.start(route);
      return t;
    }
    t = new Tunnel(node.identity, route, this.tunnelIo(), this.tunnelOptions());
    this.tunnels.set(key, t);
    this.tunnelOwner.set(t, node.id);
    t.start();
    const early = this.stash.get(key);
    if (early) {
      this.stash.delete(key);
      const why = t.onRequest(early.packet, early.from, early.via);
      if (why) this.requestRefused(t, why);
    }
    return t;
  }

  private tunnelIo(): TunnelIo {
    // A bind that can set a datagram's TTL (the real UdpBind) enables short-TTL punches; fakes simply lack it.
    const ttlBind = this.opts.bind as Bind & { sendWithTtl?: (d: Uint8Array, to: Endpoint, ttl: number) => boolean };
    const withTtl = typeof ttlBind.sendWithTtl === 'function' ? ttlBind.sendWithTtl.bind(ttlBind) : undefined;
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
      onUp: (t: Tunnel) => this.onTunnelUp(t),
      onFailed: (t: Tunnel, why: string) => this.onTunnelFailed(t, why),
      onStale: (t: Tunnel) => this.onTunnelStale(t),
      now: () => performance.now(),
      ...(this.opts.handshakeTime ? { handshakeTime: this.opts.handshakeTime } : {}),
      ...(this.sealScratch ? { sealScratch: this.sealScratch } : {}),
    };
  }

  private readonly refreshing = new Set<string>();
  private staleLoggedAt = -Infinity;

  /**
   * A TUNNEL_REQUEST refused: counted; a replayed or clock-stale one (timestamp not newer than the last accepted)
   * is also logged, at most every 10 s (a replay flood must not flood the log), since it silently stops a rekey.
   */
  private requestRefused(t: Tunnel, why: string): void {
    this.drops.inc(`handshake-${why}`);
    const now = performance.now();
    if (why !== 'stale' || now - this.staleLoggedAt < 10_000) return;
    this.staleLoggedAt = now;
    this.log.warn('tunnel request refused: its timestamp is not newer than the last accepted (a replay, or the peer\'s clock went back)', {
      peer: t.peerId,
      tunnel: t.tunnelId.toString(16),
      refused: this.drops.get('handshake-stale'),
    });
  }

  /** A stale tunnel is rebuilt from a new Direction Request; the old one keeps carrying until the new one is up. */
  private onTunnelStale(t: Tunnel): void {
    const node = this.ownerOf(t);
    if (!node || this.byPeer.get(`${node.id}/${t.peerId}`) !== t) return;
    const key = `${node.id}/${t.peerId}`;
    if (this.refreshing.has(key)) return;
    this.refreshing.add(key);
    this.counts.inc('tunnel-refresh');
    this.log.info('tunnel stale: asking for a new direction', { node: node.id, peer: t.peerId });
    this.connect(node, { kind: 'id', id: Buffer.from(t.peerId.slice(2), 'hex') }, true)
      .catch((e: Error) => this.log.warn('tunnel refresh failed', { node: node.id, peer: t.peerId, err: e }))
      // At most one attempt per stale period.
      .finally(() => setTimeout(() => this.refreshing.delete(key), 3000).unref());
  }

  private onTunnelUp(t: Tunnel): void {
    const node = this.ownerOf(t);
    if (!node || this.retired.has(t)) return;
    const peerKey = `${node.id}/${t.peerId}`;
    const old = this.byPeer.get(peerKey);
    const isNew = old !== t;
    if (isNew) {
      this.byPeer.set(peerKey, t);
      this.routes.setTunnel(node, t);
      if (old) this.retire(old);
      const setupMs = performance.now() - t.createdAt;
      this.counts.inc(`tunnels-${t.kind}`);
      this.log.info('tunnel up', { node: node.id, peer: t.peerId, path: t.kind, setupMs: Math.round(setupMs * 10) / 10 });
      this.opts.onEvent?.({ kind: 'tunnel-up', node: node.id, peer: t.peerId, path: t.kind, setupMs });
      for (const w of this.waiters.get(t) ?? []) w.resolve(t);
      this.waiters.delete(t);
    } else if (this.movedAt > 0) {
      const interruptionMs = performance.now() - this.movedAt;
      this.interruptions.push(interruptionMs);
      this.log.info('tunnel moved', { node: node.id, peer: t.peerId, path: t.kind, interruptionMs: Math.round(interruptionMs * 10) / 10 });
      this.opts.onEvent?.({ kind: 'tunnel-moved', node: node.id, peer: t.peerId, path: t.kind, interruptionMs });
      this.movedAt = 0;
    }
    t.flushQueue();
    const pend = this.connecting.get(`${node.id}/${t.peerId}`);
    if (pend) for (const p of pend.queue.splice(0)) t.sendInner(p);
  }

  private onTunnelFailed(t: Tunnel, why: string): void {
    const node = this.ownerOf(t);
    this.log.warn('tunnel failed', { node: node?.id, peer: t.peerId, why });
    this.opts.onEvent?.({ kind: 'tunnel-failed', node: node?.id ?? '', peer: t.peerId, why });
    for (const w of this.waiters.get(t) ?? []) w.reject(new Error(`tunnel to ${t.peerId} failed: ${why}`));
    this.waiters.delete(t);
    this.closeTunnel(t);
  }

  /**
   * A tunnel replaced by a newer one to the same peer (a new Direction Request, or the peer's) stops sending at once but
   * keeps receiving for RETIRE_MS: packets the peer sealed before it switched are still on their way.
   */
  private retire(t: Tunnel): void {
    this.tunnels.delete(t.tunnelId.toString(16));
    for (const w of this.waiters.get(t) ?? []) w.reject(new Error(`tunnel to ${t.peerId} replaced`));
    this.waiters.delete(t);
    const timer = setTimeout(() => {
      this.retired.delete(t);
      this.closeTunnel(t, false);
    }, RETIRE_MS);
    timer.unref();
    this.retired.set(t, timer);
  }

  /** Closes retired tunnels at once (the identity or the peer is gone: no grace). */
  private closeRetired(which: (t: Tunnel) => boolean): void {
    for (const [t, timer] of [...this.retired]) {
      if (!which(t)) continue;
      clearTimeout(timer);
      this.retired.delete(t);
      this.closeTunnel(t, false);
    }
  }

  private closeTunnel(t: Tunnel, notify = true): void {
    const node = this.ownerOf(t);
    t.close();
    this.tunnels.delete(t.tunnelId.toString(16));
    if (node) {
      const peerKey = `${node.id}/${t.peerId}`;
      if (this.byPeer.get(peerKey) === t) {
        this.byPeer.delete(peerKey);
        this.routes.deleteTunnel(node, t);
      }
    }
    this.tunnelOwner.delete(t);
    if (notify) for (const w of this.waiters.get(t) ?? []) w.reject(new Error(`tunnel to ${t.peerId} closed`));
    this.waiters.delete(t);
  }

  private whenUp(t: Tunnel): Promise<Tunnel> {
    if (t.state === 'up') return Promise.resolve(t);
    return new Promise((resolve, reject) => {
      const list = this.waiters.get(t) ?? [];
      list.push({ resolve, reject });
      this.waiters.set(t, list);
    });
  }

  /**
   * Direction Request + tunnel setup (paper §2.3): resolves when both ends can send. A tunnel already up to the same
   * peer (asked by ID) is reused unless `fresh` (the stale-tunnel refresh needs a new route).
   */
  async connect(node: Node, target: Target, fresh = false): Promise<Tunnel> {
    if (!fresh && target.kind === 'id') {
      const up = this.byPeer.get(`${node.id}/${formatId(target.id)}`);
      if (up?.state === 'up') return up;
    }
    const route = await node.direction(target);
    const existing = this.byPeer.get(`${node.id}/${formatId(route.peerId)}`);
    if (existing && existing.state === 'up' && existing.tunnelId === route.tunnelId) return existing;
    const t = this.onRoute(node, route);
    return this.whenUp(t);
  }

  tunnelTo(node: Node, peerId: string): Tunnel | undefined {
    return this.byPeer.get(`${node.id}/${peerId.toLowerCase()}`);
  }

  allTunnels(): Tunnel[] {
    return [...this.tunnels.values()];
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
    return this.startOnDemand(node, { kind: family === 4 ? 'v4' : 'v6', address: dst }, packet);
  }

  byIndex(index: number): DataTunnel | undefined {
    const owner = this.indexes.get(index);
    return owner instanceof Tunnel ? owner : undefined;
  }

  localEnd(t: DataTunnel): LocalEnd | undefined {
    const node = this.nodes.get(this.tunnelOwner.get(t as Tunnel) ?? '');
    return node && this.routes.localEnd(node);
  }

  heard(t: DataTunnel): void {
    if (this.movedAt === 0) return;
    const tunnel = t as Tunnel;
    if (this.byPeer.get(`${this.tunnelOwner.get(tunnel)}/${tunnel.peerId}`) === tunnel) this.onTunnelUp(tunnel);
  }

  /** First packet to a virtual address without a tunnel: ask for a direction, hold a few packets meanwhile. */
  private startOnDemand(node: Node, target: Target, packet: Buffer): OutboundResult {
    const key = `${node.id}/${target.kind === 'id' ? formatId(target.id) : target.kind === 'name' ? target.name : target.address}`;
    let c = this.connecting.get(key);
    if (!c) {
      const queue: Buffer[] = [];
      const promise = this.connect(node, target);
      c = { promise, queue };
      this.connecting.set(key, c);
      const entry = c;
      promise
        .then((t) => {
          for (const p of entry.queue.splice(0)) t.sendInner(p);
        })
        .catch((e: Error) => {
          this.counts.inc('on-demand-failed');
          this.log.warn('no tunnel for traffic', { node: node.id, target: key, err: e });
        })
        .finally(() => {
          // A failed attempt is remembered briefly, so a burst of packets does not become a burst of requests.
          setTimeout(() => this.connecting.delete(key), 1000).unref();
        });
    }
    if (c.queue.length >= 16) return 'dropped';
    c.queue.push(Buffer.from(packet));
    return 'queued';
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
        const t = this.tunnels.get(key);
        if (!t) {
          // The request outran our Route Direction: keep it a moment (bounded).
          if (this.stash.size < 256) this.stash.set(key, { packet: Buffer.from(data), from, via, at: performance.now() });
          return this.drops.inc('handshake-early');
        }
        const why = t.onRequest(data, from, via);
        if (why) this.requestRefused(t, why);
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
        const t = this.tunnels.get(data.readBigUInt64BE(4).toString(16));
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
        const t = this.tunnels.get(a.value.tunnelId.toString(16));
        t?.onBindAck(a.value.ok);
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
    if (o.pathChanged !== false && this.movedAt === 0) this.movedAt = o.at ?? performance.now();
    this.relays.clear();
    const locals = this.opts.locals().map(formatEndpoint);
    this.log.info('address changed', { locals });
    this.opts.onEvent?.({ kind: 'moved', locals });
    for (const t of this.tunnels.values()) t.moved();
    for (const n of this.nodes.values()) {
      n.resend();
      n.locationUpdate()
        .then(() => this.relays.probe(n))
        .catch((e: Error) => this.log.warn('location update failed', { err: e }));
    }
  }

  private tick(): void {
    const now = performance.now();
    for (const n of this.nodes.values()) n.tick();
    for (const t of this.tunnels.values()) t.tick(now);
    for (const [k, s] of this.stash) if (now - s.at > 3000) this.stash.delete(k);
    this.relays.tick(now);
    if (this.movedAt > 0 && now - this.movedAt > 30_000) this.movedAt = 0;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    for (const t of [...this.tunnels.values()]) this.closeTunnel(t);
    this.closeRetired(() => true);
    for (const n of this.nodes.values()) n.close();
    await this.opts.bind.close();
  }

  /** `data`: what the engine saw of DATA on this socket (counted among the host's datagrams and drops). */
  status(data?: DataSocketView): Record<string, unknown> {
    const counts = this.counts.toJSON();
    if (data) counts.rx = (counts.rx ?? 0) + data.rx;
    return {
      nodes: [...this.nodes.values()].map((n) => n.describe()),
      tunnels: [...this.tunnels.values()].map((t) => ({ node: this.tunnelOwner.get(t), ...t.describe() })),
      rsRttMs: this.relays.toJSON(),
      interruptionsMs: this.interruptions.map((x) => Math.round(x * 10) / 10),
      counts,
      drops: { ...this.drops.toJSON(), ...data?.drops },
    };
  }
}
