// The lifecycle of a terminal host's tunnels (paper §2.3, Fig. 4): a Route Direction creates a tunnel; it comes up
// (its waiters resolve, the routing tables point at it, packets held for it go out), goes stale and is rebuilt from a
// new direction, is replaced by a newer one to the same peer (the old one keeps receiving for RETIRE_MS), fails, or is
// closed with its identity or its peer. First packets to a peer without a tunnel start one on demand. After a move,
// the first authentic packet on a tunnel ends the handover interruption this measures.
import type { Endpoint } from '../types/net.js';
import type { OutboundResult } from '../types/tunnels.js';
import type { Route, Target } from '../protocol/control.js';
import { formatId } from '../crypto/secp256k1.js';
import type { Counters, Logger } from '../util/log.js';
import type { Node } from './node.js';
import { Tunnel, type PathNow, type TunnelIo, type TunnelOptions } from './tunnel.js';
import type { RouteTable } from './routes.js';

export type HostEvent =
  | { readonly kind: 'registered'; readonly node: string; readonly v4: string; readonly v6: string; readonly ms: number }
  | { readonly kind: 'tunnel-up'; readonly node: string; readonly peer: string; readonly path: string; readonly setupMs: number }
  | { readonly kind: 'tunnel-moved'; readonly node: string; readonly peer: string; readonly path: string; readonly interruptionMs: number }
  | { readonly kind: 'tunnel-failed'; readonly node: string; readonly peer: string; readonly why: string }
  | { readonly kind: 'moved'; readonly locals: string[] }
  | { readonly kind: 'revoked'; readonly node: string };

/** How long a replaced tunnel keeps accepting packets sealed before the switch (ms). */
const RETIRE_MS = 5000;
/** A handshake request that outran our Route Direction is kept this long (ms), at most STASH_MAX of them. */
const STASH_MS = 3000;
const STASH_MAX = 256;
/** A move whose interruption was never measured (no traffic) is forgotten after this long (ms). */
const MOVE_TTL_MS = 30_000;

interface StashedRequest {
  readonly packet: Buffer;
  readonly from: Endpoint;
  readonly via: PathNow;
  readonly at: number;
}

/** What the lifecycle needs from its host. */
export interface LifecycleDeps {
  readonly nodes: ReadonlyMap<string, Node>;
  readonly routes: RouteTable;
  readonly tunnel: TunnelOptions;
  /** The host's sockets and indexes, for every tunnel (the lifecycle adds its own event handlers). */
  readonly io: Omit<TunnelIo, 'onUp' | 'onFailed' | 'onStale' | 'onPathLost' | 'onRelayLost'>;
  /** `node`'s tunnel lost RS `rsId`: report it unreachable to the DC (resolves once the DC has it). */
  readonly relayLost?: (node: Node, rsId: Uint8Array) => Promise<void>;
  readonly counts: Counters;
  readonly drops: Counters;
  readonly log: Logger;
  readonly onEvent?: (e: HostEvent) => void;
}

export class TunnelLifecycle {
  /** Tunnels by tunnel ID (hex), as signalling names them. */
  readonly tunnels = new Map<string, Tunnel>();
  /** Handover interruptions measured (ms): from the move until an authentic packet arrived on the new path. */
  readonly interruptions: number[] = [];
  private readonly byPeer = new Map<string, Tunnel>();
  private readonly tunnelOwner = new Map<Tunnel, string>();
  /** Replaced tunnels still receiving (see retire()), with the timer that closes them. */
  private readonly retired = new Map<Tunnel, NodeJS.Timeout>();
  private readonly refreshing = new Set<string>();
  private readonly connecting = new Map<string, { promise: Promise<Tunnel>; queue: Buffer[] }>();
  private readonly stash = new Map<string, StashedRequest>();
  private readonly waiters = new Map<Tunnel, Array<{ resolve(t: Tunnel): void; reject(e: Error): void }>>();
  /** When the last move was noticed (ms, monotonic), for the interruption figure; 0 when none pending. */
  private movedAt = 0;
  private staleLoggedAt = -Infinity;
  private readonly io: TunnelIo;

  constructor(private readonly d: LifecycleDeps) {
    this.io = {
      ...d.io,
      onUp: (t) => this.onTunnelUp(t),
      onFailed: (t, why) => this.onTunnelFailed(t, why),
      onStale: (t) => this.onTunnelStale(t),
      onPathLost: (t) => this.onPathLost(t),
      onRelayLost: (t) => this.onRelayLost(t),
    };
  }

  /**
   * A TUNNEL_REQUEST refused: counted; a replayed or clock-stale one (timestamp not newer than the last accepted)
   * is also logged, at most every 10 s (a replay flood must not flood the log), since it silently stops a rekey.
   */
  requestRefused(t: Tunnel, why: string): void {
    this.d.drops.inc(`handshake-${why}`);
    const now = performance.now();
    if (why !== 'stale' || now - this.staleLoggedAt < 10_000) return;
    this.staleLoggedAt = now;
    this.d.log.warn('tunnel request refused: its timestamp is not newer than the last accepted (a replay, or the peer\'s clock went back)', {
      peer: t.peerId,
      tunnel: t.tunnelId.toString(16),
      refused: this.d.drops.get('handshake-stale'),
    });
  }

  /** The NTM ID of the identity `t` belongs to. */
  ownerId(t: Tunnel): string | undefined {
    return this.tunnelOwner.get(t);
  }

  /** A handshake request for a tunnel we have no Route Direction for yet: kept a moment (bounded). */
  stashRequest(key: string, packet: Buffer, from: Endpoint, via: PathNow): void {
    if (this.stash.size < STASH_MAX) this.stash.set(key, { packet: Buffer.from(packet), from, via, at: performance.now() });
  }

  /** An authentic packet arrived on `t`: after a move, the first on the tunnel in use ends the interruption. */
  heard(t: Tunnel): void {
    if (this.movedAt > 0 && this.byPeer.get(`${this.tunnelOwner.get(t)}/${t.peerId}`) === t) this.onTunnelUp(t);
  }

  /** Closes every tunnel of `node` (unpaired or revoked). */
  closeOwnedBy(node: Node): void {
    for (const t of [...this.tunnels.values()]) if (this.ownerOf(t) === node) this.closeTunnel(t);
    this.closeRetired((t) => this.ownerOf(t) === node);
  }

  /** Closes every tunnel to `peerId` (a phone removed from the household); returns how many. */
  dropPeer(peerId: string): number {
    const peer = peerId.toLowerCase();
    let n = 0;
    for (const t of [...this.tunnels.values()]) {
      if (t.peerId !== peer) continue;
      this.closeTunnel(t);
      n++;
    }
    this.closeRetired((t) => t.peerId === peer);
    return n;
  }

  /** Our address changed (at `at`, performance.now()); `measure`: an interruption starts, unless one is pending. */
  moved(at: number, measure: boolean): void {
    if (measure && this.movedAt === 0) this.movedAt = at;
    for (const t of this.tunnels.values()) t.moved();
  }

  tick(now: number): void {
    for (const t of this.tunnels.values()) t.tick(now);
    for (const [k, s] of this.stash) if (now - s.at > STASH_MS) this.stash.delete(k);
    if (this.movedAt > 0 && now - this.movedAt > MOVE_TTL_MS) this.movedAt = 0;
  }

  close(): void {
    for (const t of [...this.tunnels.values()]) this.closeTunnel(t);
    this.closeRetired(() => true);
  }

  ownerOf(t: Tunnel): Node | undefined {
    return this.d.nodes.get(this.tunnelOwner.get(t) ?? '');
  }

  /** A Route Direction for `node` (ours or the peer's request): the tunnel it names, started. */
  onRoute(node: Node, route: Route): Tunnel {
    const key = route.tunnelId.toString(16);
    let t = this.tunnels.get(key);
    if (t) {
      t.start(route);
      return t;
    }
    t = new Tunnel(node.identity, route, this.io, this.d.tunnel);
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

  /**
   * A direct path went silent for a keep-alive interval: Path Refresh to our DC (it learns our outside address of now
   * from the request and tells the peer); we probe where the DC says the peer is. The tunnel and its keys stay.
   */
  private onPathLost(t: Tunnel): void {
    const node = this.ownerOf(t);
    if (!node || this.byPeer.get(`${node.id}/${t.peerId}`) !== t) return;
    if (t.path === 'relay') {
      this.d.counts.inc('direct-retry');
      this.d.log.debug('relayed tunnel: asking the DC for a direct path', { node: node.id, peer: t.peerId });
    } else {
      this.d.counts.inc('path-refresh');
      this.d.log.info('tunnel path silent: asking the DC where the peer is now', { node: node.id, peer: t.peerId });
    }
    node
      .pathRefresh(t.tunnelId, Buffer.from(t.peerId.slice(2), 'hex'))
      .then((endpoints) => t.onPeerEndpoints(endpoints))
      .catch((e: Error) => this.d.log.warn('path refresh failed', { node: node.id, peer: t.peerId, err: e }));
  }

  /**
   * The RS of a relayed tunnel stopped answering (§3.5 "Failover"). Both ends tell their DC it is unreachable from
   * here (an RTT report: the DC then chooses another); the tunnel's initiator asks for a new direction once its DC has
   * that, the other end takes the route the peer's request brings (its stale timer is the backstop). One request per
   * tunnel: two crossing ones would give the ends different new tunnels.
   */
  private onRelayLost(t: Tunnel): void {
    const node = this.ownerOf(t);
    const rs = t.route.relay;
    if (!node || !rs || this.byPeer.get(`${node.id}/${t.peerId}`) !== t) return;
    this.d.counts.inc('relay-lost');
    this.d.log.warn('the RS of a relayed tunnel is not answering: asking for another relay', { node: node.id, peer: t.peerId, rs: formatId(rs.rsId) });
    const reported = this.d.relayLost?.(node, rs.rsId) ?? Promise.resolve();
    reported
      .catch((e: Error) => this.d.log.warn('reporting the lost RS failed', { node: node.id, err: e }))
      .finally(() => {
        if (t.route.initiator) this.onTunnelStale(t);
      });
  }

  /** The DC tells `node` where its peer on tunnel `tunnelId` is now (the peer asked, after its path went silent). */
  onPeerEndpoints(node: Node, tunnelId: bigint, peerId: Uint8Array, endpoints: readonly Endpoint[]): void {
    const t = this.tunnels.get(tunnelId.toString(16));
    if (!t || this.ownerOf(t) !== node || t.peerId !== formatId(peerId)) return this.d.drops.inc('peer-endpoints-unknown');
    t.onPeerEndpoints(endpoints);
  }

  /** A stale tunnel is rebuilt from a new Direction Request; the old one keeps carrying until the new one is up. */
  private onTunnelStale(t: Tunnel): void {
    const node = this.ownerOf(t);
    if (!node || this.byPeer.get(`${node.id}/${t.peerId}`) !== t) return;
    const key = `${node.id}/${t.peerId}`;
    if (this.refreshing.has(key)) return;
    this.refreshing.add(key);
    this.d.counts.inc('tunnel-refresh');
    this.d.log.info('tunnel stale: asking for a new direction', { node: node.id, peer: t.peerId });
    this.connect(node, { kind: 'id', id: Buffer.from(t.peerId.slice(2), 'hex') }, true)
      .catch((e: Error) => this.d.log.warn('tunnel refresh failed', { node: node.id, peer: t.peerId, err: e }))
      // At most one attempt per stale period.
      .finally(() => setTimeout(() => this.refreshing.delete(key), 3000).unref());
  }

  onTunnelUp(t: Tunnel): void {
    const node = this.ownerOf(t);
    if (!node || this.retired.has(t)) return;
    const peerKey = `${node.id}/${t.peerId}`;
    const old = this.byPeer.get(peerKey);
    const isNew = old !== t;
    if (isNew) {
      this.byPeer.set(peerKey, t);
      this.d.routes.setTunnel(node, t);
      if (old) this.retire(old);
      const setupMs = performance.now() - t.createdAt;
      this.d.counts.inc(`tunnels-${t.kind}`);
      this.d.log.info('tunnel up', { node: node.id, peer: t.peerId, path: t.kind, setupMs: Math.round(setupMs * 10) / 10 });
      this.d.onEvent?.({ kind: 'tunnel-up', node: node.id, peer: t.peerId, path: t.kind, setupMs });
      for (const w of this.waiters.get(t) ?? []) w.resolve(t);
      this.waiters.delete(t);
    } else if (this.movedAt > 0) {
      const interruptionMs = performance.now() - this.movedAt;
      this.interruptions.push(interruptionMs);
      this.d.log.info('tunnel moved', { node: node.id, peer: t.peerId, path: t.kind, interruptionMs: Math.round(interruptionMs * 10) / 10 });
      this.d.onEvent?.({ kind: 'tunnel-moved', node: node.id, peer: t.peerId, path: t.kind, interruptionMs });
      this.movedAt = 0;
    }
    t.flushQueue();
    const pend = this.connecting.get(`${node.id}/${t.peerId}`);
    if (pend) for (const p of pend.queue.splice(0)) t.sendInner(p);
  }

  private onTunnelFailed(t: Tunnel, why: string): void {
    const node = this.ownerOf(t);
    this.d.log.warn('tunnel failed', { node: node?.id, peer: t.peerId, why });
    this.d.onEvent?.({ kind: 'tunnel-failed', node: node?.id ?? '', peer: t.peerId, why });
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
  closeRetired(which: (t: Tunnel) => boolean): void {
    for (const [t, timer] of [...this.retired]) {
      if (!which(t)) continue;
      clearTimeout(timer);
      this.retired.delete(t);
      this.closeTunnel(t, false);
    }
  }

  closeTunnel(t: Tunnel, notify = true): void {
    const node = this.ownerOf(t);
    t.close();
    this.tunnels.delete(t.tunnelId.toString(16));
    if (node) {
      const peerKey = `${node.id}/${t.peerId}`;
      if (this.byPeer.get(peerKey) === t) {
        this.byPeer.delete(peerKey);
        this.d.routes.deleteTunnel(node, t);
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

  /** The tunnel in use between `node` and `peerId` (0x…), if any. */
  tunnelTo(node: Node, peerId: string): Tunnel | undefined {
    return this.byPeer.get(`${node.id}/${peerId.toLowerCase()}`);
  }

  all(): Tunnel[] {
    return [...this.tunnels.values()];
  }

  /** First packet to a virtual address without a tunnel: ask for a direction, hold a few packets meanwhile. */
  startOnDemand(node: Node, target: Target, packet: Buffer): OutboundResult {
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
          this.d.counts.inc('on-demand-failed');
          this.d.log.warn('no tunnel for traffic', { node: node.id, target: key, err: e });
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
}
