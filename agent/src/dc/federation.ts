// Federation (paper §2.3): the DC's exchanges with other DCs and with RSs. HELLO frames carry each server's signed
// record (protocol/dc-record.ts), which the DC keeps in the registry's directory; peer frames are sealed to the
// receiver's key (protocol/peer-frame.ts). A DC tells its peers the Node Transactions of its terminals (NT_ANNOUNCE),
// so they find a terminal's DC in their own registry; it answers their PEER_INFO_REQUESTs (dc/direction.ts); RSs send
// it their load.
import type { Endpoint } from '../types/net.js';
import * as NT from '../protocol/node-transaction.js';
import { formatId } from '../crypto/secp256k1.js';
import { Peer, decodePeer, encodePeer, type PeerMessage } from '../protocol/peer.js';
import { PeerSealer } from '../protocol/peer-frame.js';
import { decodeHello, decodeServerRecord, encodeHello } from '../protocol/dc-record.js';
import type { RegistryEntry } from '../types/registry.js';
import { PendingRequests, newTxid } from '../protocol/retransmit.js';
import { formatEndpoint } from '../protocol/endpoint.js';
import type { DcCore, PeerState } from './core.js';
import type { Relays } from './relays.js';

export type PeerInfoRequest = Extract<PeerMessage, { type: typeof Peer.PEER_INFO_REQUEST }>;
export type RouteUpdate = Extract<PeerMessage, { type: typeof Peer.ROUTE_UPDATE }>;

/** Node Transactions per NT_ANNOUNCE frame. */
const ANNOUNCE_BATCH = 8;

export class Federation {
  readonly requests = new PendingRequests<PeerMessage>();
  private readonly sealer: PeerSealer;
  /** Our own signed record, sent in every HELLO (set at start). */
  record: Uint8Array = new Uint8Array(0);
  /** Set once the direction part exists: a peer DC asks about one of our terminals. */
  onPeerInfo: ((peer: PeerState, from: Endpoint, m: PeerInfoRequest) => void) | undefined;
  /** Set once the direction part exists: a peer DC's terminal lost its direct path to one of ours (rebinding). */
  onRouteUpdate: ((peer: PeerState, from: Endpoint, m: RouteUpdate) => void) | undefined;

  constructor(
    private readonly dc: DcCore,
    private readonly relays: Relays,
  ) {
    this.sealer = new PeerSealer(dc.identity, (id) => dc.peers.has(id) || relays.trusts(id));
    dc.commit.onCommitted = (nts) => this.announce(nts);
  }

  /** A HELLO with our record to a server just learnt of (an RS the ledger lists), asking for its own. */
  greet(to: Endpoint): void {
    this.dc.send(encodeHello(this.record, true), to);
  }

  /**
   * A DC record from the ledger's directory (EVM: the contract, issue 12): the DC becomes a peer with the key and
   * endpoint it published, no --peer needed. Its signature is checked, and it must be that DC's own record.
   */
  learnPeer(entry: RegistryEntry): void {
    const { dc } = this;
    if (entry.kind !== 'dc' || entry.id === dc.identity.idHex) return;
    const d = decodeServerRecord(entry.bytes);
    if (!d.ok || d.value.role !== 'dc' || formatId(d.value.id) !== entry.id || d.value.endpoints.length === 0) return void dc.drops.inc('directory-record-invalid');
    const rec = d.value;
    const known = dc.peers.get(entry.id);
    if (known?.record && known.record.time >= rec.time) return;
    dc.peers.set(entry.id, { id: entry.id, endpoint: rec.endpoints[0]!, source: known?.source ?? 'ledger', publicKey: Buffer.from(rec.publicKey), record: rec, helloAt: -Infinity, answered: false });
    dc.log.info('peer dc found in the ledger', { id: entry.id, endpoints: rec.endpoints.map(formatEndpoint) });
  }

  /** HELLO to the peers that have not answered yet (every 5 s) and to all of them every 5 minutes. */
  sayHello(): void {
    const now = this.dc.clock.monotonic();
    for (const p of this.dc.peers.values()) {
      const period = p.answered ? 300_000 : 5_000;
      if (now - p.helloAt >= period) {
        p.helloAt = now;
        this.dc.send(encodeHello(this.record, !p.answered), p.endpoint);
      }
    }
  }

  onHello(data: Buffer, from: Endpoint): void {
    const { dc } = this;
    const d = decodeHello(data);
    if (!d.ok) return dc.drops.inc('hello-malformed');
    const rec = d.value.record;
    const id = formatId(rec.id);
    const peer = dc.peers.get(id);
    if (rec.role === 'dc' && peer) {
      if (peer.record && rec.time <= peer.record.time && peer.publicKey) {
        if (d.value.wantAnswer) dc.send(encodeHello(this.record, false), from);
        return;
      }
      const restarted = !!peer.record;
      peer.publicKey = Buffer.from(rec.publicKey);
      peer.record = rec;
      peer.answered = true;
      dc.commit.stage({ kind: 'dc', id, bytes: Buffer.from(rec.bytes) });
      if (d.value.wantAnswer || restarted) dc.send(encodeHello(this.record, false), from);
      dc.log.info('peer dc known', { id, endpoints: rec.endpoints.map(formatEndpoint) });
      // Give it every Node Transaction of ours, so it finds our terminals from its own registry.
      this.pushOwnNts(peer);
      return;
    }
    // An RS announcing itself (paper §3.1): one the DC was configured with, or whose ID it accepts.
    if (rec.role === 'rs' && this.relays.onRecord(rec, id, from)) {
      if (d.value.wantAnswer) dc.send(encodeHello(this.record, false), from);
      return;
    }
    dc.drops.inc('hello-unknown');
  }

  private pushOwnNts(peer: PeerState): void {
    const own = [...this.dc.terminals.byId.values()].map((r) => r.nt);
    for (let i = 0; i < own.length; i += ANNOUNCE_BATCH)
      this.send(peer, { type: Peer.NT_ANNOUNCE, txid: newTxid(), time: this.dc.clock.now(), entries: own.slice(i, i + ANNOUNCE_BATCH) });
  }

  /** Our terminals' new Node Transactions, just committed, to every peer DC we know the key of. */
  private announce(nts: Buffer[]): void {
    for (const p of this.dc.peers.values()) {
      if (!p.publicKey) continue;
      for (let i = 0; i < nts.length; i += ANNOUNCE_BATCH)
        this.send(p, { type: Peer.NT_ANNOUNCE, txid: newTxid(), time: this.dc.clock.now(), entries: nts.slice(i, i + ANNOUNCE_BATCH) });
    }
  }

  private send(p: { endpoint: Endpoint; publicKey?: Buffer }, m: PeerMessage): void {
    if (!p.publicKey) return;
    this.dc.send(this.sealer.seal(p.publicKey, encodePeer(m)), p.endpoint);
  }

  /** A request to a peer DC, retransmitted until answered or the deadline passes. */
  request(p: PeerState, m: PeerMessage, what: string): Promise<PeerMessage> {
    return this.requests.request(m.txid, what, () => this.send(p, m), { initialMs: 600, maxMs: 3000, deadlineMs: 8000 });
  }

  /** Answers a peer's request at the address it came from. */
  answer(peer: PeerState, from: Endpoint, m: PeerMessage): void {
    this.dc.send(this.sealer.seal(peer.publicKey!, encodePeer(m)), from);
  }

  onPeerFrame(data: Buffer, from: Endpoint): void {
    const { dc } = this;
    const o = this.sealer.open(data);
    if (!o.ok) return dc.drops.inc(`peer-${o.reason}`);
    const d = decodePeer(o.plaintext);
    if (!d.ok) return dc.drops.inc('peer-malformed');
    const m = d.value;
    if (Math.abs(m.time - dc.clock.now()) > 60_000) return dc.drops.inc('peer-stale');
    const peer = dc.peers.get(o.senderId);
    switch (m.type) {
      case Peer.PEER_INFO_RESPONSE:
      case Peer.ACK:
        this.requests.resolve(m.txid, m);
        return;
      case Peer.NT_ANNOUNCE:
        if (!peer) return dc.drops.inc('peer-not-dc');
        return this.acceptAnnounce(o.senderId, m.entries);
      case Peer.PEER_INFO_REQUEST:
        if (!peer) return dc.drops.inc('peer-not-dc');
        peer.publicKey ??= o.senderPublicKey;
        return this.onPeerInfo?.(peer, from, m);
      case Peer.ROUTE_UPDATE:
        if (!peer) return dc.drops.inc('peer-not-dc');
        peer.publicKey ??= o.senderPublicKey;
        return this.onRouteUpdate?.(peer, from, m);
      case Peer.LOAD_REPORT:
        if (!this.relays.onLoad(o.senderId, o.senderPublicKey, m, from)) return dc.drops.inc('peer-not-rs');
        return;
      default:
        return dc.drops.inc('peer-unexpected');
    }
  }

  private acceptAnnounce(senderId: string, entries: readonly Uint8Array[]): void {
    for (const bytes of entries) {
      const nt = NT.decode(bytes);
      if (nt instanceof NT.NodeTransactionDecodeError) {
        this.dc.drops.inc('announce-malformed');
        continue;
      }
      // A DC may only announce the terminals it manages.
      if (formatId(nt.dcId) !== senderId || NT.check(nt) !== 'ok') {
        this.dc.drops.inc('announce-invalid');
        continue;
      }
      this.dc.commit.stage({ kind: 'node', id: formatId(nt.id), bytes: Buffer.from(bytes) });
    }
    this.dc.commit.schedule();
  }
}
