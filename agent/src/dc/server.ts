// The DC (Direction Coordinator, paper §2.1–2.3): registers terminals (Registration Request → virtual addresses,
// Node Transaction to the registry, NAT mapping learnt and kept alive), answers Direction Requests by computing the
// tunnel route with the peer's DC and sending Route Directions to both ends, and federates with other DCs.
// Runs alone (`ntm dc`) or embedded in the agent; whoever starts it hands it its registry and its two sockets.
// All state changes of one event-loop turn commit in one SQLite transaction before any answer leaves, so a kill -9
// never loses what a terminal was told.
//
// This file owns the state (dc/core.ts) and the packet dispatch; the work is in one module per seam:
// registration.ts (§2.2), channel.ts (the sealed control channel), direction.ts (§2.3), federation.ts (other DCs and
// RSs), commit.ts (the per-turn transaction and the answers held until it commits).
import type { Bind, Endpoint } from '../types/net.js';
import type { Registry } from '../types/registry.js';
import type { Counters } from '../util/log.js';
import { CONTROL_TYPE } from '../crypto/session.js';
import { REGISTRATION_REQUEST } from '../protocol/registration.js';
import { PEER_FRAME } from '../protocol/peer-frame.js';
import { HELLO, signServerRecord } from '../protocol/dc-record.js';
import { formatEndpoint, parseEndpoint } from '../protocol/endpoint.js';
import { IntegrityError, StickyRevocationError } from '../types/errors.js';
import { keep } from '../util/keep.js';
import * as NT from '../protocol/node-transaction.js';
import { formatId } from '../crypto/secp256k1.js';
import type { TerminalTable } from './terminals.js';
import { DcCore, type DcServerOptions } from './core.js';
import { ControlChannel } from './channel.js';
import { Registration } from './registration.js';
import { Direction } from './direction.js';
import { Federation } from './federation.js';
import { Relays } from './relays.js';
import { RS_PING } from '../protocol/relay.js';
import { LeaseExpiry } from './expiry.js';

export type { Admission, DcEvent, DcServerOptions } from './core.js';
export { defaultPools } from './pools.js';

/**
 * Whether `latest` (the ledger's newest Node Transaction of a terminal) is a valid one naming another DC than `self`,
 * newer than `ours` (what this DC's table holds): the terminal moved.
 */
function movedAway(latest: Uint8Array, ours: Uint8Array, self: string): boolean {
  const theirs = NT.decode(latest);
  const mine = NT.decode(ours);
  if (theirs instanceof NT.NodeTransactionDecodeError || mine instanceof NT.NodeTransactionDecodeError) return false;
  return formatId(theirs.dcId) !== self && theirs.timestamp > mine.timestamp && NT.check(theirs) === 'ok';
}

export class DcServer {
  readonly idHex: string;
  private readonly core: DcCore;
  private readonly channel: ControlChannel;
  private readonly registration: Registration;
  private readonly federation: Federation;
  private readonly relays: Relays;
  private readonly direction: Direction;
  private readonly expiry: LeaseExpiry;
  private timers: NodeJS.Timeout[] = [];
  /** Stops the directory subscription (set at start). */
  private unsubscribe: () => void = () => {};
  /** The registry as verified at start: entries and head (status, tests). */
  private startReport: { entries: number; head: string } = { entries: 0, head: '' };

  private constructor(
    opts: DcServerOptions,
    readonly bind: Bind,
    readonly probeBind: Bind,
  ) {
    this.idHex = opts.identity.idHex;
    this.core = new DcCore(opts);
    this.channel = new ControlChannel(this.core);
    this.registration = new Registration(this.core, this.channel, probeBind);
    this.relays = new Relays(this.core);
    this.federation = new Federation(this.core, this.relays);
    this.expiry = new LeaseExpiry(this.core, this.channel);
    const direction = new Direction(this.core, this.channel, this.federation, this.relays);
    this.direction = direction;
    this.channel.handler = direction;
    this.federation.onPeerInfo = (peer, from, m) => direction.peerInfo(peer, from, m);
    this.federation.onRouteUpdate = (peer, from, m) => direction.routeUpdate(peer, from, m);
    if (opts.worker) {
      opts.worker.onPeerInfo = (m, reply) => direction.workerPeerInfo(m, reply);
      opts.worker.onProbe = (txid, id, mapping) => this.registration.probeMapping(txid, id, mapping);
    }
  }

  /**
   * Verifies the registry (and that it holds every terminal's Node Transaction), then serves on the binds it is
   * handed and starts the timers. From here on the DC owns the binds and the registry: stop() closes them, and so does
   * a failed start. A registry that does not verify is an IntegrityError: the DC does not start on it.
   */
  static async start(opts: DcServerOptions): Promise<DcServer> {
    const closeAll = () => Promise.all([opts.bind.close(), opts.probeBind.close(), opts.registry.close()]);
    // Before any handler is set: a DC with a broken registry must not answer anyone.
    const report = await opts.registry.verify();
    if (!report.ok) {
      await closeAll();
      throw new IntegrityError(`registry chain broken at entry ${report.at}: ${report.reason}`);
    }
    // A worker (issue 15) reads the table and the registry in one read transaction: the other workers commit meanwhile.
    const snapshot = <T>(f: () => T): T => (opts.worker ? opts.db.transaction(f)() : f());
    const [dc, failure] = snapshot((): [DcServer, string | undefined] => {
      const dc = new DcServer(opts, opts.bind, opts.probeBind);
      const { core } = dc;
      // The terminal table and the registry are written in one transaction per turn, so each terminal's Node
      // Transaction is the latest registry entry of its ID; one that is not was removed from the end of the chain
      // (which the hash links alone cannot show) or changed in the table.
      for (const rec of [...core.terminals.byId.values()]) {
        const entry = core.registry.latest('node', rec.id);
        if (entry && movedAway(entry.bytes, rec.nt, dc.idHex)) {
          // The terminal registered at another DC since (a shared ledger carried its newer Node Transaction here):
          // it is that DC's now, not a tampered table.
          core.log.info('terminal moved to another dc; its record here is dropped', { id: rec.id });
          core.terminals.forget(rec);
          continue;
        }
        if (!entry || !rec.nt.equals(entry.bytes)) {
          return [
            dc,
            entry
              ? `terminal ${rec.id}: its Node Transaction in the terminal table differs from its latest registry entry`
              : `terminal ${rec.id} is in the terminal table but has no Node Transaction in the registry`,
          ];
        }
      }
      return [dc, undefined];
    });
    const { core } = dc;
    if (failure) {
      await closeAll();
      throw new IntegrityError(failure);
    }
    dc.startReport = { entries: report.entries, head: report.head };
    dc.bind.onMessage((d, f) => dc.onPacket(d, f, dc.bind));
    dc.probeBind.onMessage((d, f) => dc.registration.onProbe(d, f));
    core.log.info('dc started', {
      id: dc.idHex,
      port: dc.bind.port,
      probePort: dc.probeBind.port,
      terminals: core.terminals.size,
      registry: report.entries,
      pools: { v4: core.terminals.pools.v4.text, v6: core.terminals.pools.v6.text },
    });
    const record = signServerRecord(opts.identity, {
      role: 'dc',
      time: core.clock.now(),
      endpoints: opts.config.advertise.map(parseEndpoint),
      poolV4: core.terminals.pools.v4.text,
      poolV6: core.terminals.pools.v6.text,
    });
    dc.federation.record = record;
    core.commit.stage({ kind: 'dc', id: dc.idHex, bytes: keep(record) });
    core.commit.flush();
    // DCs in the ledger's directory are peers too (the EVM ledger's: found through the contract, no --peer).
    for (const e of core.registry.directory()) dc.federation.learnPeer(e);
    const unPeers = core.registry.onChange((e) => dc.federation.learnPeer(e));
    // RSs listed for this DC on the ledger (EVM: announceRelay, paper §3.1) are taken without dc.acceptRelays.
    // Greeted at once (HELLO, answer wanted): the RS answers with its record and its load, without waiting for its
    // next report period; its own HELLOs may have come before the DC read the chain, and were not taken then.
    const unRelays = core.registry.onRelays?.((a) => {
      const r = dc.relays.onLedger(a);
      const to = r?.v4 ?? r?.v6;
      if (to) dc.federation.greet(to);
    });
    dc.unsubscribe = () => {
      unPeers();
      unRelays?.();
    };
    dc.timers.push(setInterval(() => dc.tick(), 1000));
    dc.federation.sayHello();
    dc.channel.hintRestart();
    return dc;
  }

  get port(): number {
    return this.bind.port;
  }

  get probePort(): number {
    return this.probeBind.port;
  }

  get terminals(): TerminalTable {
    return this.core.terminals;
  }

  get registry(): Registry {
    return this.core.registry;
  }

  /** Packets dropped, by reason. */
  get drops(): Counters {
    return this.core.drops;
  }

  get counts(): Counters {
    return this.core.counts;
  }

  async stop(): Promise<void> {
    if (this.core.stopped) return;
    this.core.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.unsubscribe();
    this.channel.requests.cancelAll('dc stopping');
    this.federation.requests.cancelAll('dc stopping');
    this.core.terminals.saveService();
    this.core.commit.flush();
    this.core.opts.worker?.close();
    await Promise.all([this.bind.close(), this.probeBind.close(), this.core.registry.close(), this.core.ec?.close()]);
  }

  // Dispatch: every packet gets a decision; bad ones are counted by reason, never thrown.
  private onPacket(data: Buffer, from: Endpoint, bind: Bind): void {
    const { core } = this;
    core.counts.inc('rx');
    if (data.length < 4 || data.length > 4096) return core.drops.inc('length');
    try {
      switch (data[0]) {
        case REGISTRATION_REQUEST:
          return this.registration.onRegistration(data, from, bind);
        case CONTROL_TYPE:
          return this.channel.onControl(data, from);
        case PEER_FRAME:
          return this.federation.onPeerFrame(data, from);
        case HELLO:
          return this.federation.onHello(data, from);
        case RS_PING:
          return this.relays.onPong(data);
        default:
          return core.drops.inc('type');
      }
    } catch (e) {
      // A bug, not bad input: keep serving everyone else, say it once with context.
      core.drops.inc('internal');
      core.log.error('packet handler failed', { err: e, type: data[0], from: formatEndpoint(from) });
    }
  }

  // Timers: keep-alives through NATs (paper §2.2), hellos, expiry of half-finished state and of address leases.
  private tick(): void {
    this.channel.keepalives();
    this.registration.expire();
    this.federation.sayHello();
    this.relays.tick();
    this.expiry.tick();
  }

  /** Takes the RS `id` when it announces itself (the autoscaler's new instances; dc.acceptRelays at start). */
  acceptRelay(id: string): void {
    this.core.acceptedRelays.add(id.toLowerCase());
  }

  /**
   * The autoscaler retires `id`: no new routes through it while another RS can serve, and the pairs of our terminals
   * whose latest route goes through it get a new one (Direction.moveOff). false: it may be chosen again.
   */
  drainRelay(id: string, draining = true): void {
    const r = this.core.relays.get(id.toLowerCase());
    if (!r) return;
    r.draining = draining;
    if (draining) this.direction.moveOff(r.id);
  }

  /** Forgets an RS now and takes no more announcements from it (a retired instance). */
  forgetRelay(id: string): void {
    this.core.acceptedRelays.delete(id.toLowerCase());
    this.core.relays.delete(id.toLowerCase());
  }

  /** The RSs this DC knows, with their figures (dc status `relays`). */
  relayStatus(): Array<Record<string, unknown>> {
    return this.relays.status();
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Embedding API (agent, status).

  /**
   * Revokes a terminal: no more registrations or routes; its channel is closed. `nt` is its signed revocation, if any.
   * Returns whether the DC knew the ID; an ID it did not know is revoked all the same (its first registration is refused).
   */
  revoke(id: string, nt?: Uint8Array): boolean {
    const key = id.toLowerCase();
    const rec = this.core.terminals.byId.get(key);
    if (!rec) {
      // Not registered here (yet): the revocation is kept and refuses its first registration (sticky in any order).
      this.core.terminals.revokeId(key, this.core.clock.now());
      if (nt) this.core.commit.stage({ kind: 'node', id: key, bytes: keep(nt) });
      this.core.commit.flush();
      return false;
    }
    rec.revoked = true;
    if (nt) {
      rec.nt = keep(nt);
      this.core.commit.stage({ kind: 'node', id: rec.id, bytes: rec.nt });
      // Without the terminal's signature the ledger takes the DC's word (a shared ledger: every DC refuses it too).
    } else this.core.commit.revokeByDc(rec.id);
    this.core.terminals.touch(rec);
    this.channel.revoked(rec);
    this.core.commit.flush();
    return true;
  }

  /**
   * Ends a terminal's address lease now (a household removed the device or phone): its addresses return to the pool;
   * a revoked terminal stays refused (dc/expiry.ts). Returns whether the DC had a lease for the ID.
   */
  release(id: string): boolean {
    const rec = this.core.terminals.byId.get(id.toLowerCase());
    if (!rec) return false;
    this.channel.drop(rec);
    this.core.terminals.release(rec, this.core.clock.now());
    this.core.commit.flush();
    return true;
  }

  /**
   * Lifts a revocation (an unpaired device paired again). Throws StickyRevocationError when the ledger holds the
   * revocation (a shared ledger: no DC can lift it, and every other DC goes on refusing the terminal).
   */
  reinstate(id: string): void {
    if (this.core.registry.revoked(id.toLowerCase())) throw new StickyRevocationError(id.toLowerCase());
    const rec = this.core.terminals.byId.get(id.toLowerCase());
    if (!rec) {
      this.core.terminals.reinstateId(id.toLowerCase());
      this.core.commit.flush();
      return;
    }
    if (!rec.revoked) return;
    rec.revoked = false;
    rec.lastReqTime = 0;
    this.core.terminals.touch(rec);
    this.core.commit.flush();
  }

  isOnline(id: string): boolean {
    const rec = this.core.terminals.byId.get(id.toLowerCase());
    return !!rec && this.channel.online(rec);
  }

  status(): Record<string, unknown> {
    const { core } = this;
    let online = 0;
    for (const r of core.terminals.byId.values()) if (this.channel.online(r)) online++;
    return {
      role: 'dc',
      id: this.idHex,
      port: this.port,
      probePort: this.probePort,
      pools: { v4: core.terminals.pools.v4.text, v6: core.terminals.pools.v6.text },
      capacity: core.terminals.capacity,
      terminals: core.terminals.size,
      online,
      peers: [...core.peers.values()].map((p) => ({ id: p.id, endpoint: formatEndpoint(p.endpoint), known: !!p.publicKey, source: p.source })),
      relays: this.relays.status(),
      relayChoices: core.relayChoices,
      counts: core.counts.toJSON(),
      drops: core.drops.toJSON(),
      retransmissions: this.channel.requests.retransmissions + this.federation.requests.retransmissions,
      // A ledger reached later (EVM): what is still in the outbox and what the contract took or refused.
      registry: { verifiedAtStart: this.startReport, backlog: core.registry.backlog?.() ?? null },
    };
  }
}
