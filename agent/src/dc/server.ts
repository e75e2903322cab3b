// The DC (Direction Coordinator, paper §2.1–2.3): registers terminals (Registration Request → virtual addresses,
// Node Transaction to the registry, NAT mapping learnt and kept alive), answers Direction Requests by computing the
// tunnel route with the peer's DC and sending Route Directions to both ends, and federates with other DCs.
// Runs alone (`ntm dc`) or embedded in the agent. All state changes of one event-loop turn commit in one SQLite
// transaction before any answer leaves, so a kill -9 never loses what a terminal was told.
import { randomBytes } from 'node:crypto';
import type { Bind, Clock, Endpoint } from '../types/net.js';
import type { Db } from '../store/db.js';
import type { SectionConfig } from '../config/schema.js';
import type { Identity } from '../protocol/identity.js';
import { SqliteRegistry } from '../registry/sqlite.js';
import { UdpBind } from '../dataplane/conn/udp.js';
import { Counters, silentLogger, type Logger } from '../util/log.js';
import * as NT from '../protocol/node-transaction.js';
import { CONTROL_LIMITS, CONTROL_TYPE, TunnelKeypair } from '../crypto/session.js';
import { defaultAead } from '../crypto/aead.js';
import { formatId, tryIdFromPublicKey } from '../crypto/secp256k1.js';
import {
  HintReason,
  REGISTRATION_REQUEST,
  channelKeys,
  checkRegistrationMac,
  decodeNatProbe,
  decodeRegistrationRequest,
  encodeHint,
  encodeNatProbe,
  encodeRegistrationBody,
  encodeRegistrationResponseHeader,
  registrationKey,
  type RelayEntry,
} from '../protocol/registration.js';
import { Ctl, Status, decodeControl, encodeControl, type ControlMessage, type Route, type Target } from '../protocol/control.js';
import { Peer, decodePeer, encodePeer, type PeerMessage, type TerminalInfo } from '../protocol/peer.js';
import { PEER_FRAME, PeerSealer } from '../protocol/peer-frame.js';
import { HELLO, decodeHello, encodeHello, signServerRecord, type ServerRecord } from '../protocol/dc-record.js';
import { signTicket } from '../protocol/relay.js';
import { PendingRequests, newTxid } from '../protocol/retransmit.js';
import { formatEndpoint, parseEndpoint, sameEndpoint } from '../protocol/endpoint.js';
import { cidrContainsText, parseCidr } from '../protocol/ip.js';
import { TerminalTable, type TerminalRecord } from './terminals.js';
import { planRoute, type EndView, type RelayView, type RoutePlan } from './route.js';
import { IntegrityError } from '../types/errors.js';
import { keep } from '../util/keep.js';

export interface DcServerOptions {
  readonly identity: Identity;
  readonly db: Db;
  readonly config: SectionConfig<'dc'>;
  readonly log?: Logger;
  readonly clock?: Clock;
  /**
   * Whether an ID seen for the first time may register (with the token it presented). Absent: an open DC, as the
   * paper's public DCs. The agent's household DC admits only paired appliances and enrolled phones.
   */
  readonly admit?: (id: string, token: Uint8Array) => boolean;
  /** Whether `from` may get a route to `to` (the household's access policy); absent: allowed. */
  readonly allowDirection?: (from: string, to: string) => boolean;
  /** Events for the web UI's live view. */
  readonly onEvent?: (e: DcEvent) => void;
}

export type DcEvent =
  | { readonly kind: 'registered'; readonly id: string; readonly v4: string; readonly observed: string; readonly nat: string; readonly first: boolean }
  | { readonly kind: 'route'; readonly from: string; readonly to: string; readonly path: string; readonly tunnelId: string }
  | { readonly kind: 'direction-refused'; readonly from: string; readonly target: string; readonly status: string };

const SYSTEM_CLOCK: Clock = { now: () => Date.now(), monotonic: () => performance.now() };
/** Control answers kept for retransmitted requests. */
const REPLY_CACHE = 16;

interface PeerState {
  readonly id: string;
  readonly endpoint: Endpoint;
  publicKey?: Buffer;
  record?: ServerRecord;
  helloAt: number;
  answered: boolean;
}

interface RelayState {
  readonly id: string;
  v4?: Endpoint;
  v6?: Endpoint;
  publicKey?: Buffer;
  load?: number;
  loadAt?: number;
  tunnels?: number;
}

function views(rec: TerminalRecord): EndView {
  return {
    id: rec.id,
    observed: rec.observed!,
    nat: rec.nat,
    locals: rec.locals,
    rsRtt: rec.rsRtt,
  };
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

/** Default /24 of 198.18.0.0/15 and /48 of fd4e:544d::/32 picked from the DC's ID (config can set them). */
export function defaultPools(cfg: SectionConfig<'dc'>, id: Uint8Array): { v4: string; v6: string } {
  const r4 = parseCidr(cfg.virtualV4);
  const r6 = parseCidr(cfg.virtualV6);
  let v4 = cfg.poolV4;
  if (!v4) {
    const slots = 2 ** Math.max(0, 24 - r4.length);
    const slot = ((id[0]! << 8) | id[1]!) % slots;
    const n = r4.network;
    const base = ((n[0]! << 24) | (n[1]! << 16) | (n[2]! << 8)) >>> 0;
    const a = (base + slot * 256) >>> 0;
    v4 = `${a >>> 24}.${(a >>> 16) & 0xff}.${(a >>> 8) & 0xff}.0/24`;
  }
  let v6 = cfg.poolV6;
  if (!v6) {
    const n = Buffer.from(r6.network);
    // The /48 below the range's /32: 16 bits from the ID.
    n[4] = id[2]!;
    n[5] = id[3]!;
    v6 = parseCidr(`${[0, 2, 4, 6, 8, 10, 12, 14].map((i) => n.readUInt16BE(i).toString(16)).join(':')}/48`).text;
  }
  return { v4, v6 };
}

export class DcServer {
  readonly drops = new Counters();
  readonly counts = new Counters();
  readonly terminals: TerminalTable;
  readonly registry: SqliteRegistry;
  readonly idHex: string;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly byIndex = new Map<number, TerminalRecord>();
  private readonly probes = new Map<bigint, { mapping?: Endpoint; rec?: TerminalRecord; regMapping?: Endpoint; at: number }>();
  private readonly pendingNt: Array<[string, Buffer]> = [];
  private readonly announce: Buffer[] = [];
  private readonly outbox: Array<[Uint8Array, Endpoint, Bind]> = [];
  private flushScheduled = false;
  private readonly termRequests = new PendingRequests<ControlMessage>();
  private readonly peerRequests = new PendingRequests<PeerMessage>();
  private readonly peers = new Map<string, PeerState>();
  private readonly relays = new Map<string, RelayState>();
  private readonly sealer: PeerSealer;
  private readonly hintAt = new Map<string, number>();
  private timers: NodeJS.Timeout[] = [];
  private record: Uint8Array = new Uint8Array(0);
  private stopped = false;
  /** The registry as verified at start: entries and head hash (status, tests). */
  private startReport: { entries: number; head: string } = { entries: 0, head: '' };

  private constructor(
    private readonly opts: DcServerOptions,
    readonly bind: Bind,
    readonly probeBind: Bind,
    private readonly advertise: Endpoint[],
  ) {
    this.log = (opts.log ?? silentLogger).child({ role: 'dc' });
    this.clock = opts.clock ?? SYSTEM_CLOCK;
    this.idHex = opts.identity.idHex;
    this.registry = new SqliteRegistry(opts.db);
    const pools = defaultPools(opts.config, opts.identity.id);
    this.terminals = new TerminalTable(opts.db, pools.v4, pools.v6);
    for (const p of opts.config.peers) this.peers.set(p.id, { id: p.id, endpoint: p.endpoint, helloAt: 0, answered: false });
    for (const r of opts.config.relays) {
      const st = this.relays.get(r.id) ?? { id: r.id };
      if (r.endpoint.family === 4) st.v4 = r.endpoint;
      else st.v6 = r.endpoint;
      this.relays.set(r.id, st);
    }
    this.sealer = new PeerSealer(opts.identity, (id) => this.peers.has(id) || this.relays.has(id));
    bind.onMessage((d, f) => this.onPacket(d, f, bind));
    probeBind.onMessage((d, f) => this.onProbe(d, f));
  }

  /**
   * Verifies the registry chain (and that it holds every terminal's Node Transaction), opens the sockets and starts
   * the timers. A registry that does not verify is an IntegrityError: the DC does not start on it.
   */
  static async start(opts: DcServerOptions): Promise<DcServer> {
    // Before any socket: a DC with a broken chain must not answer anyone.
    const report = new SqliteRegistry(opts.db).verifySync();
    if (!report.ok) throw new IntegrityError(`registry chain broken at entry ${report.badSeq}: ${report.reason}`);
    const bind = await UdpBind.open({ listen: opts.config.listen });
    const m = /:(\d+)$/.exec(opts.config.listen);
    const host = opts.config.listen.slice(0, opts.config.listen.length - (m?.[0].length ?? 0));
    const probePort = opts.config.probePort || bind.port + 1;
    const probeBind = await UdpBind.open({ listen: `${host}:${probePort}` });
    const advertise = opts.config.advertise.map(parseEndpoint);
    const dc = new DcServer(opts, bind, probeBind, advertise);
    // The terminal table and the chain are written in one transaction per turn, so each terminal's Node Transaction
    // is the latest registry entry of its ID; one that is not was removed from the end of the chain (which the
    // hash links alone cannot show) or changed in the table.
    for (const rec of dc.terminals.byId.values()) {
      const entry = dc.registry.latestSync('node', rec.id);
      if (!entry || !rec.nt.equals(entry.bytes)) {
        await Promise.all([bind.close(), probeBind.close()]);
        throw new IntegrityError(
          entry
            ? `terminal ${rec.id}: its Node Transaction in the terminal table differs from its latest registry entry (seq ${entry.seq})`
            : `terminal ${rec.id} is in the terminal table but has no Node Transaction in the registry`,
        );
      }
    }
    dc.startReport = { entries: report.length, head: Buffer.from(report.head!).toString('hex') };
    dc.log.info('dc started', {
      id: dc.idHex,
      port: bind.port,
      probePort: probeBind.port,
      terminals: dc.terminals.size,
      registry: report.length,
      pools: { v4: dc.terminals.pools.v4.text, v6: dc.terminals.pools.v6.text },
    });
    dc.record = signServerRecord(opts.identity, {
      role: 'dc',
      time: dc.clock.now(),
      endpoints: advertise,
      poolV4: dc.terminals.pools.v4.text,
      poolV6: dc.terminals.pools.v6.text,
    });
    dc.registry.appendSync('dc', dc.idHex, dc.record);
    dc.timers.push(setInterval(() => dc.tick(), 1000));
    dc.sayHello();
    dc.hintRestart();
    return dc;
  }

  get port(): number {
    return this.bind.port;
  }

  get probePort(): number {
    return this.probeBind.port;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.termRequests.cancelAll('dc stopping');
    this.peerRequests.cancelAll('dc stopping');
    this.flush();
    await Promise.all([this.bind.close(), this.probeBind.close()]);
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Dispatch: every packet gets a decision; bad ones are counted by reason, never thrown.

  private onPacket(data: Buffer, from: Endpoint, bind: Bind): void {
    this.counts.inc('rx');
    if (data.length < 4 || data.length > 4096) return this.drops.inc('length');
    try {
      switch (data[0]) {
        case REGISTRATION_REQUEST:
          return this.onRegistration(data, from, bind);
        case CONTROL_TYPE:
          return this.onControl(data, from);
        case PEER_FRAME:
          return this.onPeerFrame(data, from);
        case HELLO:
          return this.onHello(data, from);
        default:
          return this.drops.inc('type');
      }
    } catch (e) {
      // A bug, not bad input: keep serving everyone else, say it once with context.
      this.drops.inc('internal');
      this.log.error('packet handler failed', { err: e, type: data[0], from: formatEndpoint(from) });
    }
  }

  private send(data: Uint8Array, to: Endpoint, bind: Bind = this.bind): void {
    this.counts.inc('tx');
    bind.send(data, to);
  }

  /** Queues a send for after the current turn's commit. */
  private sendAfterCommit(data: Uint8Array, to: Endpoint, bind: Bind = this.bind): void {
    this.outbox.push([data, to, bind]);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  /** Commits the turn's changes in one transaction, then releases the answers that depend on them. */
  private flush(): void {
    this.flushScheduled = false;
    const nts = this.pendingNt.splice(0);
    if (this.terminals.pendingWrites > 0 || nts.length > 0) {
      try {
        this.opts.db.transaction(() => {
          this.terminals.flushSync();
          for (const [id, bytes] of nts) this.registry.appendSync('node', id, bytes);
        })();
      } catch (e) {
        this.registry.reloadHead();
        this.log.error('commit failed; answers withheld (terminals will retransmit)', { err: e });
        this.outbox.length = 0;
        return;
      }
    }
    for (const [d, to, b] of this.outbox.splice(0)) this.send(d, to, b);
    if (this.announce.length > 0) this.announceNts(this.announce.splice(0));
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Registration (paper §2.2, Fig. 2; docs/protocol.md §3.2).

  private onRegistration(data: Buffer, from: Endpoint, bind: Bind): void {
    const d = decodeRegistrationRequest(data);
    if (!d.ok) return this.drops.inc('reg-malformed');
    const req = d.value;
    const idBytes = req.nt.subarray(1, 21);
    const idHex = formatId(idBytes);
    const src = formatEndpoint(from);
    let rec = this.terminals.byId.get(idHex);
    if (rec?.lastReg && rec.lastReg.txid === req.txid && rec.lastReg.time === req.time) {
      if (rec.lastReg.src !== src) return this.drops.inc('reg-replay');
      this.counts.inc('reg-retransmission');
      return this.send(rec.lastReg.response, from, bind);
    }
    const now = this.clock.now();
    if (Math.abs(req.time - now) > this.opts.config.freshnessS * 1000) return this.drops.inc('reg-stale');
    if (rec && req.time <= rec.lastReqTime) return this.drops.inc('reg-replay');

    const ntChanged = !rec || !rec.nt.equals(req.nt);
    let nt: NT.NodeTransaction | undefined;
    if (ntChanged) {
      const d = NT.decode(req.nt);
      if (d instanceof NT.NodeTransactionDecodeError) return this.drops.inc('nt-malformed');
      if (!d.dcId.equals(this.opts.identity.id)) return this.drops.inc('nt-wrong-dc');
      // The ID is the hash of the key: the same ID with another key, or a key that does not hash to the ID, is forged.
      if (rec ? !d.publicKey.equals(rec.publicKey) : !tryIdFromPublicKey(d.publicKey)?.equals(d.id)) return this.drops.inc('nt-signature');
      nt = d;
    }
    const publicKey = rec?.publicKey ?? nt!.publicKey;
    // The MAC comes before the Node Transaction's signature: for a terminal we know it is one HMAC (K_ss cached), so a
    // flood of altered copies of a genuine request costs no signature recovery. Only the key's owner can make it hold.
    let kss = rec?.kss;
    if (!kss) {
      const x = this.opts.identity.dh(publicKey);
      if (!x) return this.drops.inc('reg-key');
      kss = registrationKey(x);
    }
    if (!checkRegistrationMac(req, kss)) return this.drops.inc('reg-mac');
    if (nt && NT.check(nt) !== 'ok') return this.drops.inc('nt-signature');
    const revoking = nt?.revoked ?? false;
    if (!rec && this.opts.admit && !this.opts.admit(idHex, req.token)) {
      this.log.warn('registration refused: not admitted', { id: idHex, from: src });
      return this.drops.inc('reg-not-admitted');
    }
    if (revoking) {
      // A terminal revoking itself (signed by its own key): record it; it gets no channel.
      this.pendingNt.push([idHex, Buffer.from(req.nt)]);
      if (rec) {
        rec.revoked = true;
        rec.nt = keep(req.nt);
        this.terminals.touch(rec);
        this.dropChannel(rec);
      }
      this.scheduleFlush();
      return;
    }
    if (rec?.revoked) return this.drops.inc('reg-revoked');

    const first = !rec;
    if (!rec) {
      try {
        rec = this.terminals.create({
          id: idHex,
          idBytes: keep(idBytes),
          publicKey: keep(publicKey),
          nt: keep(req.nt),
          lastReqTime: req.time,
          now,
        });
      } catch (e) {
        this.log.error('registration failed', { err: e, id: idHex });
        return this.drops.inc('reg-pool-exhausted');
      }
    }
    if (ntChanged) {
      rec.nt = keep(req.nt);
      this.pendingNt.push([idHex, rec.nt]);
      this.announce.push(rec.nt);
    }
    if (rec.kss !== kss) rec.kss = keep(kss);
    rec.lastReqTime = req.time;
    rec.lastSeen = now;
    this.learnLocation(rec, from, req.locals, req.txid);
    if (req.name) this.terminals.setName(rec, req.name);
    this.terminals.touch(rec);

    const nonceDc = randomBytes(16);
    const [kT2Dc, kDc2T, kResp] = channelKeys(kss, req.nonce, nonceDc);
    this.dropChannel(rec);
    const dcIndex = this.newIndex();
    rec.channel = new TunnelKeypair({
      packetType: CONTROL_TYPE,
      sendKey: kDc2T,
      receiveKey: kT2Dc,
      localIndex: dcIndex,
      remoteIndex: req.terminalIndex,
      isInitiator: false,
      limits: CONTROL_LIMITS,
    });
    this.byIndex.set(dcIndex, rec);
    rec.replies = undefined;
    const body = encodeRegistrationBody({
      txid: req.txid,
      status: Status.OK,
      v4: rec.v4,
      v4Len: this.terminals.pools.v4.length,
      v6: rec.v6,
      v6Len: this.terminals.pools.v6.length,
      observed: from,
      behindNat: rec.nat !== 'none',
      keepaliveS: rec.nat !== 'none' ? this.opts.config.keepaliveS : 0,
      dcTime: now,
      relays: this.relayEntries(),
    });
    const header = encodeRegistrationResponseHeader(req.terminalIndex, dcIndex, nonceDc);
    const response = Buffer.concat([header, defaultAead.seal(kResp, 0, body)]);
    rec.lastReg = { txid: req.txid, time: req.time, src, response: keep(response) };
    rec.keepaliveDue = this.clock.monotonic() + this.opts.config.keepaliveS * 1000;
    this.counts.inc(first ? 'registrations-new' : 'registrations-renewed');
    this.sendAfterCommit(response, from, bind);
    this.opts.onEvent?.({ kind: 'registered', id: idHex, v4: rec.v4, observed: src, nat: rec.nat, first });
  }

  private newIndex(): number {
    for (;;) {
      const i = randomBytes(4).readUInt32BE(0);
      if (i !== 0 && !this.byIndex.has(i)) return i;
    }
  }

  private dropChannel(rec: TerminalRecord): void {
    if (!rec.channel) return;
    this.byIndex.delete(rec.channel.localIndex);
    rec.channel.destroy();
    rec.channel = undefined;
  }

  /** Where the terminal is and what is in front of it: NAT if the observed address is none of its own. */
  private learnLocation(rec: TerminalRecord, from: Endpoint, locals: readonly Endpoint[], txid: bigint | undefined): void {
    rec.observed = from;
    rec.locals = [...locals];
    const behindNat = !locals.some((l) => sameEndpoint(l, from));
    if (!behindNat) rec.nat = 'none';
    else {
      rec.nat = 'unknown';
      if (txid !== undefined) {
        const p = this.probes.get(txid);
        if (p?.mapping) {
          rec.nat = sameEndpoint(p.mapping, from) ? 'eim' : 'symmetric';
          this.probes.delete(txid);
        } else this.probes.set(txid, { rec, regMapping: from, at: this.clock.monotonic() });
      }
    }
  }

  /** NAT_PROBE on the second port: the mapping seen here vs. the one the registration came from. */
  private onProbe(data: Buffer, from: Endpoint): void {
    const d = decodeNatProbe(data);
    if (!d.ok || d.value.kind !== 0) return this.drops.inc('probe-malformed');
    const { txid, id } = d.value;
    this.send(encodeNatProbe(1, txid, id, from), from, this.probeBind);
    const p = this.probes.get(txid);
    if (p?.rec && p.regMapping) {
      if (formatId(id) === p.rec.id && p.rec.nat === 'unknown' && sameEndpoint(p.rec.observed, p.regMapping)) {
        p.rec.nat = sameEndpoint(from, p.regMapping) ? 'eim' : 'symmetric';
        this.terminals.touch(p.rec);
        this.scheduleFlush();
      }
      this.probes.delete(txid);
    } else if (this.probes.size < 100_000) this.probes.set(txid, { mapping: from, at: this.clock.monotonic() });
  }

  private relayEntries(): RelayEntry[] {
    return [...this.relays.values()].map((r) => ({
      id: Buffer.from(r.id.slice(2), 'hex'),
      ...(r.v4 ? { v4: r.v4 } : {}),
      ...(r.v6 ? { v6: r.v6 } : {}),
    }));
  }

  // ---------------------------------------------------------------------------------------------------------------
  // The sealed channel with terminals.

  private onControl(data: Buffer, from: Endpoint): void {
    const rec = this.byIndex.get(TunnelKeypair.receiverIndex(data));
    if (!rec?.channel) {
      this.drops.inc('ctl-unknown-session');
      return this.hint(HintReason.UNKNOWN_SESSION, from);
    }
    const pt = rec.channel.open(data);
    if (typeof pt === 'string') return this.drops.inc(`ctl-${pt}`);
    const d = decodeControl(pt);
    if (!d.ok) return this.drops.inc('ctl-malformed');
    const m = d.value;
    rec.lastSeen = this.clock.now();
    if (!sameEndpoint(rec.observed, from)) {
      // An authentic packet from a new address: the terminal moved (or its NAT rebound). Follow it at once.
      rec.observed = from;
      if (rec.nat === 'none') rec.nat = rec.locals.some((l) => sameEndpoint(l, from)) ? 'none' : 'unknown';
      this.terminals.touch(rec);
      this.scheduleFlush();
    }
    const cached = rec.replies?.get(m.txid);
    if (cached && m.type !== Ctl.KEEPALIVE_ACK && m.type !== Ctl.ROUTE_ACK && m.type !== Ctl.ACK) {
      this.counts.inc('ctl-retransmission');
      return this.sendControlRaw(rec, cached);
    }
    switch (m.type) {
      case Ctl.KEEPALIVE_ACK:
      case Ctl.ROUTE_ACK:
      case Ctl.ACK:
        this.termRequests.resolve(m.txid, m);
        return;
      case Ctl.KEEPALIVE:
        return this.reply(rec, { type: Ctl.ACK, txid: m.txid });
      case Ctl.DIRECTION_REQUEST:
        this.counts.inc('directions');
        // Mark as in progress so retransmissions do not start a second route computation.
        (rec.replies ??= new Map()).set(m.txid, Buffer.alloc(0));
        void this.direction(rec, m.txid, m.target);
        return;
      case Ctl.LOCATION_UPDATE:
        this.learnLocation(rec, from, m.locals, m.txid);
        this.terminals.touch(rec);
        this.counts.inc('location-updates');
        return this.reply(rec, { type: Ctl.LOCATION_ACK, txid: m.txid, observed: from, behindNat: rec.nat !== 'none' }, true);
      case Ctl.RTT_REPORT:
        {
          const rtts = new Map(rec.rsRtt);
          for (const [id, ms] of m.rtts) rtts.set(formatId(id), ms);
          rec.rsRtt = rtts;
        }
        return this.reply(rec, { type: Ctl.ACK, txid: m.txid });
      case Ctl.RESOLVE_REQUEST:
        return this.resolve(rec, m.txid, m.target);
      case Ctl.DEREGISTER:
        this.reply(rec, { type: Ctl.ACK, txid: m.txid });
        this.dropChannel(rec);
        return;
      default:
        return this.drops.inc('ctl-unexpected');
    }
  }

  private sendControlRaw(rec: TerminalRecord, plaintext: Uint8Array, afterCommit = false): void {
    if (!rec.channel || !rec.observed || plaintext.length === 0) return;
    const frame = rec.channel.seal(plaintext);
    if (typeof frame === 'string') return this.drops.inc(`ctl-seal-${frame}`);
    if (afterCommit) this.sendAfterCommit(frame, rec.observed);
    else this.send(frame, rec.observed);
  }

  /** Answers a terminal's request and remembers the answer for its retransmissions. */
  private reply(rec: TerminalRecord, m: ControlMessage, afterCommit = false): void {
    const pt = encodeControl(m);
    const replies = (rec.replies ??= new Map());
    replies.set(m.txid, pt);
    if (replies.size > REPLY_CACHE) replies.delete(replies.keys().next().value!);
    this.sendControlRaw(rec, pt, afterCommit);
  }

  /** A DC-initiated request to a terminal (Route Direction to CN, keep-alive), retransmitted until acknowledged. */
  private requestTerminal(rec: TerminalRecord, m: ControlMessage, what: string): Promise<ControlMessage> {
    const pt = encodeControl(m);
    return this.termRequests.request(m.txid, what, () => this.sendControlRaw(rec, pt), {
      initialMs: 400,
      maxMs: 3000,
      deadlineMs: 10_000,
    });
  }

  private hint(reason: number, to: Endpoint): void {
    const key = formatEndpoint(to);
    const now = this.clock.monotonic();
    if ((this.hintAt.get(key) ?? -Infinity) > now - 1000) return;
    if (this.hintAt.size > 50_000) this.hintAt.clear();
    this.hintAt.set(key, now);
    this.send(encodeHint(reason, this.opts.identity.id), to);
  }

  /** After a restart the channels are gone: invite recently seen terminals to re-register now, not at their next keep-alive. */
  private hintRestart(): void {
    const cutoff = this.clock.now() - this.opts.config.registrationTtlS * 1000;
    const targets = [...this.terminals.byId.values()].filter((r) => r.observed && !r.revoked && r.lastSeen >= cutoff);
    let i = 0;
    const batch = (): void => {
      if (this.stopped) return;
      for (const end = Math.min(i + 500, targets.length); i < end; i++) {
        const r = targets[i]!;
        if (!r.channel) this.send(encodeHint(HintReason.DC_RESTARTED, this.opts.identity.id), r.observed!);
      }
      if (i < targets.length) setTimeout(batch, 10);
    };
    if (targets.length > 0) {
      this.log.info('inviting terminals to re-register', { count: targets.length });
      batch();
    }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Direction (paper §2.3, Fig. 3): resolve the target, compute the route with the target's DC, direct both ends.

  private online(rec: TerminalRecord): boolean {
    if (!rec.channel || !rec.observed || rec.revoked) return false;
    const limit = rec.nat === 'none' ? this.opts.config.registrationTtlS : this.opts.config.keepaliveS * 3;
    return this.clock.now() - rec.lastSeen < limit * 1000;
  }

  private findLocal(t: Target): TerminalRecord | undefined {
    switch (t.kind) {
      case 'id':
        return this.terminals.byId.get(formatId(t.id));
      case 'v4':
        return this.terminals.byV4.get(t.address);
      case 'v6':
        return this.terminals.byV6.get(t.address);
      case 'name': {
        const n = t.name.toLowerCase().replace(/\.ntm\.?$/, '');
        return this.terminals.byName.get(n);
      }
    }
  }

  /** The peer DC that manages the target, from the registry (IDs) or the DCs' pools (virtual addresses). */
  private findRemoteDc(t: Target): PeerState | undefined {
    if (t.kind === 'id') {
      const entry = this.registry.latestSync('node', formatId(t.id));
      if (!entry) return undefined;
      const nt = NT.decode(entry.bytes);
      if (nt instanceof NT.NodeTransactionDecodeError) return undefined;
      return this.peers.get(formatId(nt.dcId));
    }
    if (t.kind === 'v4' || t.kind === 'v6') {
      for (const p of this.peers.values()) {
        const pool = t.kind === 'v4' ? p.record?.poolV4 : p.record?.poolV6;
        if (pool && cidrContainsText(parseCidr(pool), t.address)) return p;
      }
    }
    return undefined;
  }

  private relayViews(): RelayView[] {
    const now = this.clock.monotonic();
    return [...this.relays.values()].map((r) => ({
      id: r.id,
      ...(r.v4 ? { v4: r.v4 } : {}),
      ...(r.v6 ? { v6: r.v6 } : {}),
      // A report older than 4 periods is no longer trusted.
      ...(r.load !== undefined && r.loadAt !== undefined && now - r.loadAt < 60_000 ? { load: r.load } : {}),
    }));
  }

  /** The two Route Directions of a plan: `a` is the requester (MN), `b` the target (CN). Tickets are signed here. */
  private routesFor(tunnelId: bigint, a: TerminalInfo, b: TerminalInfo, plan: RoutePlan): [Route, Route] {
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
          expiresAt: this.clock.now() + this.opts.config.relayTicketS * 1000,
          byteQuota: this.opts.config.relayQuotaBytes,
          packetQuota: this.opts.config.relayQuotaPackets,
          dcId: this.opts.identity.id,
        },
        this.opts.identity,
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

  private directionError(rec: TerminalRecord, txid: bigint, status: number, message: string, target: string): void {
    this.reply(rec, { type: Ctl.DIRECTION_ERROR, txid, status, message });
    this.opts.onEvent?.({ kind: 'direction-refused', from: rec.id, target, status: message });
  }

  private async direction(rec: TerminalRecord, txid: bigint, target: Target): Promise<void> {
    const tunnelId = randomBytes(8).readBigUInt64BE(0);
    const tText = targetText(target);
    const local = this.findLocal(target);
    if (local) {
      if (local === rec) return this.directionError(rec, txid, Status.BAD_REQUEST, 'a terminal cannot direct to itself', tText);
      if (local.revoked) return this.directionError(rec, txid, Status.REVOKED, 'peer revoked', tText);
      if (this.opts.allowDirection && !this.opts.allowDirection(rec.id, local.id))
        return this.directionError(rec, txid, Status.NOT_ALLOWED, 'not allowed by the access policy', tText);
      if (!this.online(local)) return this.directionError(rec, txid, Status.OFFLINE, 'peer offline', tText);
      const plan = planRoute(views(rec), views(local), this.relayViews());
      if (!plan) return this.directionError(rec, txid, Status.NO_ROUTE, 'no route (no common family and no relay)', tText);
      const [ra, rb] = this.routesFor(tunnelId, infoOf(rec), infoOf(local), plan);
      // Both ends at once: the overlap that the paper's sequential sequence lacks (§2.4: transit dominates).
      this.requestTerminal(local, { type: Ctl.ROUTE_DIRECTION, txid: newTxid(), route: rb }, 'route direction').catch((e: Error) =>
        this.log.warn('route direction not acknowledged', { to: local.id, err: e }),
      );
      this.reply(rec, { type: Ctl.ROUTE_DIRECTION, txid, route: ra });
      this.counts.inc(`routes-${plan.kind}`);
      this.opts.onEvent?.({ kind: 'route', from: rec.id, to: local.id, path: plan.kind, tunnelId: tunnelId.toString(16) });
      return;
    }
    const known = this.findRemoteDc(target);
    const candidates = known ? [known] : [...this.peers.values()];
    const usable = candidates.filter((p) => p.publicKey);
    if (usable.length === 0) return this.directionError(rec, txid, Status.NOT_FOUND, 'unknown peer', tText);
    const requester = infoOf(rec);
    const asks = usable.map((p) => {
      const m: PeerMessage = { type: Peer.PEER_INFO_REQUEST, txid: newTxid(), time: this.clock.now(), tunnelId, target, requester };
      return this.requestPeer(p, m, 'peer info');
    });
    const answers = await Promise.allSettled(asks);
    let refusal: { status: number; message: string } | undefined;
    for (const a of answers) {
      if (a.status !== 'fulfilled' || a.value.type !== Peer.PEER_INFO_RESPONSE) continue;
      if (a.value.status === Status.OK && a.value.route) {
        const route = a.value.route;
        this.reply(rec, { type: Ctl.ROUTE_DIRECTION, txid, route });
        this.counts.inc(`routes-${route.kind}`);
        this.opts.onEvent?.({ kind: 'route', from: rec.id, to: formatId(route.peerId), path: route.kind, tunnelId: tunnelId.toString(16) });
        return;
      }
      if (a.value.status !== Status.NOT_FOUND || !refusal) refusal = { status: a.value.status, message: a.value.message };
    }
    if (refusal) return this.directionError(rec, txid, refusal.status, refusal.message, tText);
    return this.directionError(rec, txid, Status.PEER_DC_UNREACHABLE, "the peer's DC did not answer", tText);
  }

  private resolve(rec: TerminalRecord, txid: bigint, target: Target): void {
    const t = this.findLocal(target);
    if (!t || t.revoked)
      return this.reply(rec, { type: Ctl.RESOLVE_RESPONSE, txid, status: Status.NOT_FOUND, id: Buffer.alloc(20), v4: '0.0.0.0', v6: '::', name: '' });
    this.reply(rec, { type: Ctl.RESOLVE_RESPONSE, txid, status: Status.OK, id: t.idBytes, v4: t.v4, v6: t.v6, name: t.name });
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Peers: other DCs (federation) and RSs (load reports).

  private sayHello(): void {
    const now = this.clock.monotonic();
    for (const p of this.peers.values()) {
      const period = p.answered ? 300_000 : 5_000;
      if (now - p.helloAt >= period) {
        p.helloAt = now;
        this.send(encodeHello(this.record, !p.answered), p.endpoint);
      }
    }
  }

  private onHello(data: Buffer, from: Endpoint): void {
    const d = decodeHello(data);
    if (!d.ok) return this.drops.inc('hello-malformed');
    const rec = d.value.record;
    const id = formatId(rec.id);
    const peer = this.peers.get(id);
    const relay = this.relays.get(id);
    if (rec.role === 'dc' && peer) {
      if (peer.record && rec.time <= peer.record.time && peer.publicKey) {
        if (d.value.wantAnswer) this.send(encodeHello(this.record, false), from);
        return;
      }
      const restarted = !!peer.record;
      peer.publicKey = Buffer.from(rec.publicKey);
      peer.record = rec;
      peer.answered = true;
      this.registry.appendSync('dc', id, rec.bytes);
      if (d.value.wantAnswer || restarted) this.send(encodeHello(this.record, false), from);
      this.log.info('peer dc known', { id, endpoints: rec.endpoints.map(formatEndpoint) });
      // Give it every Node Transaction of ours, so it finds our terminals from its own registry.
      this.pushOwnNts(peer);
      return;
    }
    if (rec.role === 'rs' && relay) {
      relay.publicKey = Buffer.from(rec.publicKey);
      for (const e of rec.endpoints) {
        if (e.family === 4 && !relay.v4) relay.v4 = e;
        if (e.family === 6 && !relay.v6) relay.v6 = e;
      }
      if (d.value.wantAnswer) this.send(encodeHello(this.record, false), from);
      return;
    }
    this.drops.inc('hello-unknown');
  }

  private pushOwnNts(peer: PeerState): void {
    const own = [...this.terminals.byId.values()].map((r) => r.nt);
    for (let i = 0; i < own.length; i += 8) this.sendPeer(peer, { type: Peer.NT_ANNOUNCE, txid: newTxid(), time: this.clock.now(), entries: own.slice(i, i + 8) });
  }

  private announceNts(nts: Buffer[]): void {
    for (const p of this.peers.values()) {
      if (!p.publicKey) continue;
      for (let i = 0; i < nts.length; i += 8)
        this.sendPeer(p, { type: Peer.NT_ANNOUNCE, txid: newTxid(), time: this.clock.now(), entries: nts.slice(i, i + 8) });
    }
  }

  private sendPeer(p: { endpoint: Endpoint; publicKey?: Buffer }, m: PeerMessage): void {
    if (!p.publicKey) return;
    this.send(this.sealer.seal(p.publicKey, encodePeer(m)), p.endpoint);
  }

  private requestPeer(p: PeerState, m: PeerMessage, what: string): Promise<PeerMessage> {
    return this.peerRequests.request(m.txid, what, () => this.sendPeer(p, m), { initialMs: 600, maxMs: 3000, deadlineMs: 8000 });
  }

  private onPeerFrame(data: Buffer, from: Endpoint): void {
    const o = this.sealer.open(data);
    if (!o.ok) return this.drops.inc(`peer-${o.reason}`);
    const d = decodePeer(o.plaintext);
    if (!d.ok) return this.drops.inc('peer-malformed');
    const m = d.value;
    if (Math.abs(m.time - this.clock.now()) > 60_000) return this.drops.inc('peer-stale');
    const peer = this.peers.get(o.senderId);
    const relay = this.relays.get(o.senderId);
    switch (m.type) {
      case Peer.PEER_INFO_RESPONSE:
      case Peer.ACK:
        this.peerRequests.resolve(m.txid, m);
        return;
      case Peer.NT_ANNOUNCE:
        if (!peer) return this.drops.inc('peer-not-dc');
        return this.acceptAnnounce(o.senderId, m.entries);
      case Peer.PEER_INFO_REQUEST:
        if (!peer) return this.drops.inc('peer-not-dc');
        peer.publicKey ??= o.senderPublicKey;
        return this.peerInfo(peer, from, m);
      case Peer.LOAD_REPORT:
        if (!relay) return this.drops.inc('peer-not-rs');
        relay.publicKey ??= o.senderPublicKey;
        relay.load = m.capacity > 0 ? m.tunnels / m.capacity : 1;
        relay.loadAt = this.clock.monotonic();
        relay.tunnels = m.tunnels;
        if (m.v4) relay.v4 = m.v4;
        if (m.v6) relay.v6 = m.v6;
        return;
      default:
        return this.drops.inc('peer-unexpected');
    }
  }

  private acceptAnnounce(senderId: string, entries: readonly Uint8Array[]): void {
    for (const bytes of entries) {
      const nt = NT.decode(bytes);
      if (nt instanceof NT.NodeTransactionDecodeError) {
        this.drops.inc('announce-malformed');
        continue;
      }
      // A DC may only announce the terminals it manages.
      if (formatId(nt.dcId) !== senderId || NT.check(nt) !== 'ok') {
        this.drops.inc('announce-invalid');
        continue;
      }
      this.pendingNt.push([formatId(nt.id), Buffer.from(bytes)]);
    }
    this.scheduleFlush();
  }

  /** DC_CN's side: it has both ends now, so it computes the route and directs its terminal itself (saves a round trip). */
  private peerInfo(peer: PeerState, from: Endpoint, m: Extract<PeerMessage, { type: typeof Peer.PEER_INFO_REQUEST }>): void {
    const answer = (status: number, message: string, route?: Route): void => {
      const resp: PeerMessage = { type: Peer.PEER_INFO_RESPONSE, txid: m.txid, time: this.clock.now(), status, message, ...(route ? { route } : {}) };
      this.send(this.sealer.seal(peer.publicKey!, encodePeer(resp)), from);
    };
    const local = this.findLocal(m.target);
    const requesterId = formatId(m.requester.id);
    if (!local) return answer(Status.NOT_FOUND, 'unknown peer');
    if (local.revoked) return answer(Status.REVOKED, 'peer revoked');
    if (this.opts.allowDirection && !this.opts.allowDirection(requesterId, local.id)) return answer(Status.NOT_ALLOWED, 'not allowed by the access policy');
    if (!this.online(local)) return answer(Status.OFFLINE, 'peer offline');
    const plan = planRoute(viewOfInfo(m.requester), views(local), this.relayViews());
    if (!plan) return answer(Status.NO_ROUTE, 'no route (no common family and no relay)');
    const [ra, rb] = this.routesFor(m.tunnelId, m.requester, infoOf(local), plan);
    this.requestTerminal(local, { type: Ctl.ROUTE_DIRECTION, txid: newTxid(), route: rb }, 'route direction').catch((e: Error) =>
      this.log.warn('route direction not acknowledged', { to: local.id, err: e }),
    );
    answer(Status.OK, '', ra);
    this.counts.inc(`routes-${plan.kind}`);
    this.opts.onEvent?.({ kind: 'route', from: requesterId, to: local.id, path: plan.kind, tunnelId: m.tunnelId.toString(16) });
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Timers: keep-alives through NATs (paper §2.2), hellos, expiry of half-finished state.

  private tick(): void {
    const mono = this.clock.monotonic();
    for (const rec of this.terminals.byId.values()) {
      if (!rec.channel || rec.nat === 'none' || rec.keepaliveDue > mono) continue;
      rec.keepaliveDue = mono + this.opts.config.keepaliveS * 1000;
      this.sendControlRaw(rec, encodeControl({ type: Ctl.KEEPALIVE, txid: newTxid(), dcTime: this.clock.now() }));
      this.counts.inc('keepalives');
    }
    for (const [k, p] of this.probes) if (mono - p.at > 10_000) this.probes.delete(k);
    this.sayHello();
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Embedding API (agent, status).

  /** Revokes a terminal: no more registrations or routes; its channel is closed. `nt` is its signed revocation, if any. */
  revoke(id: string, nt?: Uint8Array): boolean {
    const rec = this.terminals.byId.get(id.toLowerCase());
    if (!rec) return false;
    if (rec.channel) this.sendControlRaw(rec, encodeControl({ type: Ctl.REVOKED, txid: newTxid() }));
    rec.revoked = true;
    if (nt) {
      rec.nt = keep(nt);
      this.pendingNt.push([rec.id, rec.nt]);
    }
    this.terminals.touch(rec);
    this.dropChannel(rec);
    this.flush();
    return true;
  }

  /** Lifts a revocation (an unpaired device paired again). */
  reinstate(id: string): void {
    const rec = this.terminals.byId.get(id.toLowerCase());
    if (!rec || !rec.revoked) return;
    rec.revoked = false;
    rec.lastReqTime = 0;
    this.terminals.touch(rec);
    this.flush();
  }

  isOnline(id: string): boolean {
    const rec = this.terminals.byId.get(id.toLowerCase());
    return !!rec && this.online(rec);
  }

  status(): Record<string, unknown> {
    let online = 0;
    for (const r of this.terminals.byId.values()) if (this.online(r)) online++;
    return {
      role: 'dc',
      id: this.idHex,
      port: this.port,
      probePort: this.probePort,
      pools: { v4: this.terminals.pools.v4.text, v6: this.terminals.pools.v6.text },
      terminals: this.terminals.size,
      online,
      peers: [...this.peers.values()].map((p) => ({ id: p.id, endpoint: formatEndpoint(p.endpoint), known: !!p.publicKey })),
      relays: [...this.relays.values()].map((r) => ({
        id: r.id,
        v4: r.v4 ? formatEndpoint(r.v4) : null,
        v6: r.v6 ? formatEndpoint(r.v6) : null,
        load: r.load ?? null,
        tunnels: r.tunnels ?? null,
      })),
      counts: this.counts.toJSON(),
      drops: this.drops.toJSON(),
      retransmissions: this.termRequests.retransmissions + this.peerRequests.retransmissions,
      registry: { verifiedAtStart: this.startReport },
    };
  }
}

