// Direction (paper §2.3, Fig. 3): a terminal asks its DC for a route to a target (ID, name or virtual address). If the
// target is ours, the DC plans the route from both ends' views and directs both at once; if not, it finds the target's
// DC (from the registry by ID, or from the DCs' pools by address) and asks it: that DC (DC_CN) has both ends then, so
// it plans the route and directs its own terminal itself (peerInfo), saving a round trip.
import { randomPublicBytes } from '../crypto/random.js';
import type { Endpoint } from '../types/net.js';
import * as NT from '../protocol/node-transaction.js';
import { formatId } from '../crypto/secp256k1.js';
import { Ctl, Status, type Route, type Target } from '../protocol/control.js';
import { Peer, type TerminalInfo } from '../protocol/peer.js';
import { signTicket } from '../protocol/relay.js';
import { newTxid } from '../protocol/retransmit.js';
import { cidrContainsText, parseCidr } from '../protocol/ip.js';
import type { TerminalRecord } from './terminals.js';
import { planRoute, type EndView, type RelayCandidate, type RoutePlan } from './route.js';
import type { Relays } from './relays.js';
import type { DcCore, PeerState } from './core.js';
import type { ControlChannel, ChannelRequests } from './channel.js';
import type { Federation, PeerInfoRequest, RouteUpdate } from './federation.js';
import type { PeerInfoResponse } from './siblings.js';

function endView(rec: TerminalRecord): EndView {
  return { id: rec.id, observed: rec.observed!, nat: rec.nat, locals: rec.locals, rsRtt: rec.rsRtt };
}

function infoOf(rec: TerminalRecord): TerminalInfo {
  return {
    id: rec.idBytes,
    publicKey: rec.publicKey,
    v4: rec.v4,
    v6: rec.v6,
    name: rec.name,
    observed: rec.observed!,
    nat: rec.nat,
    locals: rec.locals,
    rsRtts: [...rec.rsRtt].map(([id, ms]) => [Buffer.from(id.slice(2), 'hex'), ms] as const),
  };
}

function viewOfInfo(t: TerminalInfo): EndView {
  return {
    id: formatId(t.id),
    observed: t.observed,
    nat: t.nat,
    locals: t.locals,
    rsRtt: new Map(t.rsRtts.map(([id, ms]) => [formatId(id), ms])),
  };
}

function targetText(t: Target): string {
  return t.kind === 'id' ? formatId(t.id) : t.kind === 'name' ? t.name : t.address;
}

export class Direction implements ChannelRequests {
  constructor(
    private readonly dc: DcCore,
    private readonly channel: ControlChannel,
    private readonly federation: Federation,
    private readonly relays: Relays,
  ) {}

  findLocal(t: Target): TerminalRecord | undefined {
    const { terminals } = this.dc;
    switch (t.kind) {
      case 'id':
        return terminals.byId.get(formatId(t.id));
      case 'v4':
        return terminals.byV4.get(t.address);
      case 'v6':
        return terminals.byV6.get(t.address);
      case 'name': {
        const n = t.name.toLowerCase().replace(/\.ntm\.?$/, '');
        return terminals.byName.get(n);
      }
    }
  }

  /** The peer DC that manages the target, from the registry (IDs: may ask the ledger) or the DCs' pools (addresses). */
  private async findRemoteDc(t: Target): Promise<PeerState | 'revoked' | undefined> {
    if (t.kind === 'id') {
      const id = formatId(t.id);
      const entry = await this.dc.registry.lookup('node', id).catch((e: unknown) => {
        this.dc.log.warn('registry lookup failed; asking every peer DC', { err: e });
        return undefined;
      });
      if (!entry) return undefined;
      const nt = NT.decode(entry.bytes);
      if (nt instanceof NT.NodeTransactionDecodeError) return undefined;
      // The ledger's word on revocation is final (sticky on the contract): no need to ask the target's DC.
      if (nt.revoked || this.dc.registry.revoked(id)) {
        this.dc.counts.inc('direction-revoked-by-ledger');
        return 'revoked';
      }
      return this.dc.peers.get(formatId(nt.dcId));
    }
    if (t.kind === 'v4' || t.kind === 'v6') {
      for (const p of this.dc.peers.values()) {
        const pool = t.kind === 'v4' ? p.record?.poolV4 : p.record?.poolV6;
        if (pool && cidrContainsText(parseCidr(pool), t.address)) return p;
      }
    }
    return undefined;
  }

  /** The route between `a` (requester) and `b`; a relayed one's RS choice counts as its load and is kept for the status. */
  private plan(a: EndView, b: EndView, tunnelId: bigint, local: boolean): RoutePlan | undefined {
    const candidates: RelayCandidate[] = [];
    const plan = planRoute(a, b, this.relays.views(), candidates);
    const rsId = plan?.kind === 'relay' ? plan.relay?.rsId : undefined;
    if (rsId) this.relays.chosen(tunnelId, a.id, b.id, rsId, candidates);
    if (plan) this.relays.routed(a.id, b.id, rsId, local);
    return plan;
  }

  /**
   * Drain (paper §3.1: an RS retired without breaking tunnels): every pair of our terminals whose latest route goes
   * through `rsId` gets a new route, planned as any (the draining RS only if nothing else can serve), pushed to both
   * ends as DC-initiated Route Directions. Each end builds the new tunnel and moves its traffic there once it is up
   * (the old one keeps receiving for a moment, terminal/lifecycle.ts), so flows carry on. Returns how many moved.
   */
  moveOff(rsId: string): number {
    const { dc } = this;
    let moved = 0;
    for (const p of [...this.relays.pairs.values()]) {
      if (p.rsId !== rsId) continue;
      const a = dc.terminals.byId.get(p.a);
      const b = dc.terminals.byId.get(p.b);
      if (!a || !b || a.revoked || b.revoked || !this.channel.online(a) || !this.channel.online(b)) continue;
      if (dc.opts.allowDirection && !dc.opts.allowDirection(a.id, b.id)) continue;
      const tunnelId = randomPublicBytes(8).readBigUInt64BE(0);
      const plan = this.plan(endView(a), endView(b), tunnelId, true);
      if (!plan || (plan.kind === 'relay' && plan.relay?.rsId === rsId)) continue;
      const [ra, rb] = this.routesFor(tunnelId, infoOf(a), infoOf(b), plan);
      this.directOurs(a, ra);
      this.directOurs(b, rb);
      this.routed(a.id, b.id, plan.kind, tunnelId);
      dc.counts.inc('relay-moves');
      moved++;
    }
    if (moved > 0) dc.log.info('routes moved off a draining relay', { rs: rsId, moved });
    return moved;
  }

  /** The two Route Directions of a plan: `a` is the requester (MN), `b` the target (CN). Tickets are signed here. */
  private routesFor(tunnelId: bigint, a: TerminalInfo, b: TerminalInfo, plan: RoutePlan): [Route, Route] {
    const { config, identity } = this.dc;
    const natOnPath = a.nat !== 'none' || b.nat !== 'none';
    const keepaliveS = natOnPath ? 15 : 0;
    let ticket: Uint8Array | undefined;
    if (plan.relay) {
      ticket = signTicket(
        {
          tunnelId,
          rsId: Buffer.from(plan.relay.rsId.slice(2), 'hex'),
          endA: a.id,
          endB: b.id,
          expiresAt: this.dc.clock.now() + config.relayTicketS * 1000,
          byteQuota: config.relayQuotaBytes,
          packetQuota: config.relayQuotaPackets,
          dcId: identity.id,
        },
        identity,
      );
    }
    const leg = (forMe: Endpoint | undefined) =>
      plan.relay && ticket && forMe ? { relay: { rsId: Buffer.from(plan.relay.rsId.slice(2), 'hex'), endpoint: forMe, ticket } } : {};
    const base = (peer: TerminalInfo) => ({
      tunnelId,
      peerId: peer.id,
      peerPublicKey: peer.publicKey,
      peerV4: peer.v4,
      peerV6: peer.v6,
      peerName: peer.name,
      kind: plan.kind,
      keepaliveS,
    });
    const ra: Route = { ...base(b), initiator: plan.initiator === 'a', endpoints: plan.toB, ...leg(plan.relay?.forA) };
    const rb: Route = { ...base(a), initiator: plan.initiator === 'b', endpoints: plan.toA, ...leg(plan.relay?.forB) };
    return [ra, rb];
  }

  /** Directs our terminal `rec` (CN's side of a route), retransmitting until it acknowledges. */
  private directOurs(rec: TerminalRecord, route: Route): void {
    this.channel.request(rec, { type: Ctl.ROUTE_DIRECTION, txid: newTxid(), route }, 'route direction').catch((e: Error) =>
      this.dc.log.warn('route direction not acknowledged', { to: rec.id, err: e }),
    );
  }

  private directionError(rec: TerminalRecord, txid: bigint, status: number, message: string, target: string): void {
    this.channel.reply(rec, { type: Ctl.DIRECTION_ERROR, txid, status, message });
    this.dc.opts.onEvent?.({ kind: 'direction-refused', from: rec.id, target, status: message });
  }

  private routed(from: string, to: string, kind: string, tunnelId: bigint): void {
    this.dc.counts.inc(`routes-${kind}`);
    this.dc.opts.onEvent?.({ kind: 'route', from, to, path: kind, tunnelId: tunnelId.toString(16) });
  }

  async direction(rec: TerminalRecord, txid: bigint, target: Target): Promise<void> {
    const { dc } = this;
    const tunnelId = randomPublicBytes(8).readBigUInt64BE(0);
    const tText = targetText(target);
    const local = this.findLocal(target);
    // With workers (issue 15) a target without a channel here may be another worker's terminal: that worker answers.
    if (dc.opts.worker && (!local || (local !== rec && !this.channel.online(local)))) {
      const a = await dc.opts.worker.peerInfo({ type: Peer.PEER_INFO_REQUEST, txid: newTxid(), time: dc.clock.now(), tunnelId, target, requester: infoOf(rec) });
      if (a?.status === Status.OK && a.route) {
        dc.counts.inc('direction-via-worker');
        this.channel.reply(rec, { type: Ctl.ROUTE_DIRECTION, txid, route: a.route });
        this.routed(rec.id, formatId(a.route.peerId), a.route.kind, tunnelId);
        return;
      }
      if (a && !local) return this.directionError(rec, txid, a.status, a.message, tText);
    }
    if (local) {
      if (local === rec) return this.directionError(rec, txid, Status.BAD_REQUEST, 'a terminal cannot direct to itself', tText);
      if (local.revoked) return this.directionError(rec, txid, Status.REVOKED, 'peer revoked', tText);
      if (dc.opts.allowDirection && !dc.opts.allowDirection(rec.id, local.id))
        return this.directionError(rec, txid, Status.NOT_ALLOWED, 'not allowed by the access policy', tText);
      if (!this.channel.online(local)) return this.directionError(rec, txid, Status.OFFLINE, 'peer offline', tText);
      const plan = this.plan(endView(rec), endView(local), tunnelId, true);
      if (!plan) return this.directionError(rec, txid, Status.NO_ROUTE, 'no route (no common family and no relay)', tText);
      const [ra, rb] = this.routesFor(tunnelId, infoOf(rec), infoOf(local), plan);
      // Both ends at once: the overlap that the paper's sequential sequence lacks (§2.4: transit dominates).
      this.directOurs(local, rb);
      this.channel.reply(rec, { type: Ctl.ROUTE_DIRECTION, txid, route: ra });
      this.routed(rec.id, local.id, plan.kind, tunnelId);
      return;
    }
    const known = await this.findRemoteDc(target);
    if (known === 'revoked') return this.directionError(rec, txid, Status.REVOKED, 'peer revoked', tText);
    const candidates = known ? [known] : [...dc.peers.values()];
    const usable = candidates.filter((p) => p.publicKey);
    if (usable.length === 0) return this.directionError(rec, txid, Status.NOT_FOUND, 'unknown peer', tText);
    const requester = infoOf(rec);
    const asks = usable.map((p) =>
      this.federation.request(p, { type: Peer.PEER_INFO_REQUEST, txid: newTxid(), time: dc.clock.now(), tunnelId, target, requester }, 'peer info'),
    );
    const answers = await Promise.allSettled(asks);
    let refusal: { status: number; message: string } | undefined;
    for (const a of answers) {
      if (a.status !== 'fulfilled' || a.value.type !== Peer.PEER_INFO_RESPONSE) continue;
      if (a.value.status === Status.OK && a.value.route) {
        const route = a.value.route;
        this.channel.reply(rec, { type: Ctl.ROUTE_DIRECTION, txid, route });
        this.routed(rec.id, formatId(route.peerId), route.kind, tunnelId);
        return;
      }
      if (a.value.status !== Status.NOT_FOUND || !refusal) refusal = { status: a.value.status, message: a.value.message };
    }
    if (refusal) return this.directionError(rec, txid, refusal.status, refusal.message, tText);
    return this.directionError(rec, txid, Status.PEER_DC_UNREACHABLE, "the peer's DC did not answer", tText);
  }

  /**
   * With workers (issue 15): a target another worker registered since this one started is read from the shared file
   * (its row; the name as it was written). Its channel stays with that worker.
   */
  private findInFile(t: Target): TerminalRecord | undefined {
    const { terminals } = this.dc;
    switch (t.kind) {
      case 'id':
        return terminals.refresh(formatId(t.id));
      case 'v4':
      case 'v6':
        return terminals.refreshWhere(t.kind, t.address);
      case 'name':
        return terminals.refreshWhere('name', t.name.replace(/\.ntm\.?$/i, ''));
    }
  }

  resolve(rec: TerminalRecord, txid: bigint, target: Target): void {
    const t = this.findLocal(target) ?? (this.dc.opts.worker ? this.findInFile(target) : undefined);
    if (!t || t.revoked)
      return this.channel.reply(rec, { type: Ctl.RESOLVE_RESPONSE, txid, status: Status.NOT_FOUND, id: Buffer.alloc(20), v4: '0.0.0.0', v6: '::', name: '' });
    this.channel.reply(rec, { type: Ctl.RESOLVE_RESPONSE, txid, status: Status.OK, id: t.idBytes, v4: t.v4, v6: t.v6, name: t.name });
  }

  /**
   * A tunnel end heard nothing on its direct path for a keep-alive interval (docs/protocol.md §3.4, rebinding): a NAT
   * on the path may have given one end a new outside port. The DC tells each end where the other is now, as it would
   * plan it (the requester's address is this request's source), so both send there at once: each opens its own NAT
   * towards the other, which a NAT that filters by endpoint needs. Only for a pair that may have a tunnel (the access
   * policy either way); a tunnel ID the peer does not have with the requester is ignored by the peer. A peer of
   * another DC: that DC is told (ROUTE_UPDATE), tells its terminal, and answers with the requester's half.
   */
  pathRefresh(rec: TerminalRecord, txid: bigint, tunnelId: bigint, peerId: Uint8Array): void {
    const { dc } = this;
    const peer = dc.terminals.byId.get(formatId(peerId));
    const text = formatId(peerId);
    if (!peer) {
      void this.remotePathRefresh(rec, txid, tunnelId, peerId).catch((e: unknown) => {
        dc.log.warn('path refresh through the peer DC failed', { peer: text, err: e });
        this.directionError(rec, txid, Status.PEER_DC_UNREACHABLE, "the peer's DC did not answer", text);
      });
      return;
    }
    const refused = this.refreshRefusal(rec, peer);
    if (refused) return this.directionError(rec, txid, refused.status, refused.message, text);
    const plan = this.tellPeerEndpoints(endView(rec), rec.idBytes, peer, tunnelId);
    this.channel.reply(rec, { type: Ctl.PEER_ENDPOINTS, txid, tunnelId, peerId: peer.idBytes, endpoints: plan?.toB ?? [] });
  }

  /** Why `rec` (a terminal of ours or of a peer DC) may not have its path to our terminal `peer` refreshed, if so. */
  private refreshRefusal(rec: { id: string }, peer: TerminalRecord): { status: number; message: string } | undefined {
    const { dc } = this;
    if (peer.id === rec.id) return { status: Status.BAD_REQUEST, message: 'a terminal has no tunnel to itself' };
    if (peer.revoked) return { status: Status.REVOKED, message: 'peer revoked' };
    if (dc.opts.allowDirection && !dc.opts.allowDirection(rec.id, peer.id) && !dc.opts.allowDirection(peer.id, rec.id))
      return { status: Status.NOT_ALLOWED, message: 'not allowed by the access policy' };
    if (!this.channel.online(peer)) return { status: Status.OFFLINE, message: 'peer offline' };
    return undefined;
  }

  /**
   * Plans the direct path between `mover` and our terminal `peer` and, if there is one, tells `peer` where the mover
   * is now (PEER_ENDPOINTS, retransmitted until acknowledged). Returns where the mover should send: empty when only
   * the relay is left (the ends keep their stale timer and ask for a new direction). A relayed tunnel asks as well,
   * looking for a direct path (§3.5 "Upgrade"): a NAT seen mapping per destination at registration may not any more,
   * so both ends are planned as endpoint-independent here. The probes decide.
   */
  private tellPeerEndpoints(mover: EndView, moverId: Uint8Array, peer: TerminalRecord, tunnelId: bigint): RoutePlan | undefined {
    const loose = (v: EndView): EndView => ({ ...v, nat: v.nat === 'symmetric' || v.nat === 'unknown' ? 'eim' : v.nat });
    const plan = planRoute(loose(mover), loose(endView(peer)), []);
    if (!plan || plan.kind === 'relay') return undefined;
    this.channel
      .request(peer, { type: Ctl.PEER_ENDPOINTS, txid: newTxid(), tunnelId, peerId: moverId, endpoints: plan.toA }, 'peer endpoints')
      .catch((e: Error) => this.dc.log.warn('peer endpoints not acknowledged', { to: peer.id, err: e }));
    return plan;
  }

  /** DC_MN's side of a path refresh whose peer is another DC's: ROUTE_UPDATE to that DC, its answer to our terminal. */
  private async remotePathRefresh(rec: TerminalRecord, txid: bigint, tunnelId: bigint, peerId: Uint8Array): Promise<void> {
    const text = formatId(peerId);
    const remote = await this.findRemoteDc({ kind: 'id', id: peerId });
    if (remote === 'revoked') return this.directionError(rec, txid, Status.REVOKED, 'peer revoked', text);
    if (!remote?.publicKey) return this.directionError(rec, txid, Status.NOT_FOUND, 'unknown peer', text);
    const m = { type: Peer.ROUTE_UPDATE, txid: newTxid(), time: this.dc.clock.now(), tunnelId, target: peerId, mover: infoOf(rec) } as const;
    const a = await this.federation.request(remote, m, 'route update');
    if (a.type !== Peer.PEER_INFO_RESPONSE) return this.directionError(rec, txid, Status.PEER_DC_UNREACHABLE, "the peer's DC did not answer", text);
    if (a.status !== Status.OK) return this.directionError(rec, txid, a.status, a.message, text);
    this.dc.counts.inc('path-refresh-remote');
    this.channel.reply(rec, { type: Ctl.PEER_ENDPOINTS, txid, tunnelId, peerId, endpoints: a.route?.endpoints ?? [] });
  }

  /**
   * DC_CN's side of a remote path refresh (ROUTE_UPDATE): a peer DC's terminal (the mover) lost its direct path to
   * ours. Ours is told where the mover is now; the answer carries, as the route's endpoints, where the mover should
   * send (none when only the relay is left).
   */
  routeUpdate(peer: PeerState, from: Endpoint, m: RouteUpdate): void {
    const { dc } = this;
    const answer = (status: number, message: string, route?: Route): void => this.answerPeer(peer, from, m.txid, status, message, route);
    const local = dc.terminals.byId.get(formatId(m.target));
    if (!local) return answer(Status.NOT_FOUND, 'unknown peer');
    const refused = this.refreshRefusal({ id: formatId(m.mover.id) }, local);
    if (refused) return answer(refused.status, refused.message);
    const plan = this.tellPeerEndpoints(viewOfInfo(m.mover), m.mover.id, local, m.tunnelId);
    // The mover's DC reads only the route's endpoints (where the mover probes); no route: only the relay is left.
    answer(Status.OK, '', plan ? this.routesFor(m.tunnelId, m.mover, infoOf(local), plan)[0] : undefined);
    dc.counts.inc('route-update');
  }

  /** Answers a peer DC's PEER_INFO_REQUEST or ROUTE_UPDATE (PEER_INFO_RESPONSE; a route only when there is one). */
  private answerPeer(peer: PeerState, from: Endpoint, txid: bigint, status: number, message: string, route?: Route): void {
    this.federation.answer(peer, from, { type: Peer.PEER_INFO_RESPONSE, txid, time: this.dc.clock.now(), status, message, ...(route ? { route } : {}) });
  }

  /** DC_CN's side: it has both ends now, so it computes the route and directs its terminal itself (saves a round trip). */
  peerInfo(peer: PeerState, from: Endpoint, m: PeerInfoRequest): void {
    this.answerPeerInfo(m, (status, message, route) => this.answerPeer(peer, from, m.txid, status, message, route));
  }

  /** Another worker of this DC asks for a route to one of our terminals (issue 15, dc/siblings.ts): as a peer DC would. */
  workerPeerInfo(m: PeerInfoRequest, reply: (r: PeerInfoResponse) => void): void {
    this.answerPeerInfo(m, (status, message, route) => reply({ type: Peer.PEER_INFO_RESPONSE, txid: m.txid, time: this.dc.clock.now(), status, message, ...(route ? { route } : {}) }));
  }

  private answerPeerInfo(m: PeerInfoRequest, answer: (status: number, message: string, route?: Route) => void): void {
    const { dc } = this;
    const local = this.findLocal(m.target);
    const requesterId = formatId(m.requester.id);
    if (!local) return answer(Status.NOT_FOUND, 'unknown peer');
    if (local.revoked) return answer(Status.REVOKED, 'peer revoked');
    if (dc.opts.allowDirection && !dc.opts.allowDirection(requesterId, local.id)) return answer(Status.NOT_ALLOWED, 'not allowed by the access policy');
    if (!this.channel.online(local)) return answer(Status.OFFLINE, 'peer offline');
    const plan = this.plan(viewOfInfo(m.requester), endView(local), m.tunnelId, false);
    if (!plan) return answer(Status.NO_ROUTE, 'no route (no common family and no relay)');
    const [ra, rb] = this.routesFor(m.tunnelId, m.requester, infoOf(local), plan);
    this.directOurs(local, rb);
    answer(Status.OK, '', ra);
    this.routed(requesterId, local.id, plan.kind, m.tunnelId);
  }
}
