// One end-to-end tunnel to a peer (paper §2.3, Fig. 4): its route, its Noise KK handshakes and keypairs, its current
// path (direct / hole-punched, or through the RS), hole punching, fallback to the relay, roaming, keep-alives and the
// liveness of the path (a keep-alive that gets no answer: the path is repaired, docs/protocol.md §3.4 "Rebinding"),
// and while relayed, the RS's liveness (a dead RS: another relay) and re-probing of a direct path to move to (§3.5,
// "Failover" and "Upgrade": Tailscale's disco and ICE's checks, issue 13 #3).
// Sockets belong to the host: a tunnel only decides what to send where, through the `TunnelIo` it is given.
import type { Endpoint, OpenedDatagram } from '../types/net.js';
import type { Route } from '../protocol/control.js';
import type { Identity } from '../protocol/identity.js';
import { formatId } from '../crypto/secp256k1.js';
import { KeypairSet, TunnelKeypair, DATA_TYPE, DEFAULT_SESSION_LIMITS, SEALED_HEADER_LENGTH, SEALED_OVERHEAD, type SessionLimits } from '../crypto/session.js';
import { TokenBucket } from '../util/source-limit.js';
import {
  createRequest,
  consumeRequest,
  consumeResponse,
  createResponse,
  precomputeResponse,
  tai64n,
  type InitiatorHandshake,
  type ResponderPrecompute,
} from '../crypto/noise.js';
import { RELAY_HEADER, encodeRelayBind, writeRelayHeader } from '../protocol/relay.js';
import { formatEndpoint, sameEndpoint } from '../protocol/endpoint.js';
import { ip4ToBytes, ip6ToBytes } from '../protocol/ip.js';
import { encodePunch } from '../protocol/punch.js';

export { PUNCH } from '../protocol/punch.js';
/**
 * TTL (hop limit) of the first punch of a hole-punched tunnel: enough to cross our own NAT when it is the first hop
 * (a home router), too little to reach the peer's NAT (docs/protocol.md §3.4).
 */
export const PUNCH_TTL = 2;

/** What a tunnel needs from its host. */
export interface TunnelIo {
  send(data: Uint8Array, to: Endpoint): void;
  /** Sends with a TTL of PUNCH_TTL; false (nothing sent) where the socket cannot set it. Optional. */
  sendLowTtl?(data: Uint8Array, to: Endpoint): boolean;
  /** A fresh local index, registered to this tunnel for arriving DATA / TUNNEL_RESPONSE. */
  allocIndex(t: Tunnel): number;
  freeIndex(index: number): void;
  /** The tunnel came up (or moved to another path): flush, report. */
  onUp(t: Tunnel): void;
  onFailed(t: Tunnel, why: string): void;
  /** We keep sending and hear nothing back: the peer lost its state (restarted) or moved out of reach. */
  onStale?(t: Tunnel): void;
  /**
   * The direct path went silent for a keep-alive interval (a NAT on it may have rebound), or a relayed tunnel with
   * traffic looks for a direct path (every DIRECT_RETRY_MS, backing off): ask the DC where the peer is.
   */
  onPathLost?(t: Tunnel): void;
  /** The RS of this relayed tunnel answers neither data nor a bind any more (killed, unreachable): another relay. */
  onRelayLost?(t: Tunnel): void;
  now(): number;
  /** Our next TUNNEL_REQUEST timestamp (ms since the epoch; must only grow, see handshake-clock.ts); default Date.now. */
  handshakeTime?(): number;
  /**
   * Whether a TUNNEL_REQUEST from `from` may cost an ECDH now: the host's per-source limit (direct paths only: every
   * relayed request comes from its RS). Absent: always.
   */
  requestAllowed?(from: Endpoint, via: PathNow): boolean;
  /** A cookie the RS at `rs` gave our address already (its pongs carry one): the first bind echoes it. Optional. */
  relayCookie?(rs: Endpoint): Buffer | undefined;
  /**
   * Optional scratch for sealing DATA packets, lent for the duration of one `send` (the host's socket copies every
   * datagram before `send` returns); without it each packet gets a buffer of its own.
   */
  readonly sealScratch?: Buffer;
  /**
   * Optional: seals `plaintext` after `prefix` under `key` and `counter` and sends it to `to`, off this thread (the
   * native socket's sealing thread, issue 15); everything borrowed for the call. Only the default AEAD's keypairs use
   * it (TunnelKeypair.sealVia).
   */
  sendSealing?(prefix: Buffer, key: Uint8Array, counter: number, plaintext: Uint8Array, to: Endpoint): void;
  /**
   * Optional, with sendSealing: a TCP GSO packet cut into segments (of at most the peer's MSS and `mtu`) each sealed
   * as sendSealing() seals, under counter, counter + 1, … (at most maxSegs of them). The segment count, or a negative
   * errno with nothing sent.
   */
  sendSealingGso?(prefix: Buffer, key: Uint8Array, counter: number, packet: Uint8Array, mtu: number, maxSegs: number, to: Endpoint): number;
}

/**
 * Where a DATA packet's header (and the relay header before it) is written for the socket that seals it (sendSealing
 * copies it before returning): one per framing, shared by every tunnel of this thread.
 */
const PREFIX_DIRECT = Buffer.alloc(SEALED_HEADER_LENGTH);
const PREFIX_RELAYED = Buffer.alloc(RELAY_HEADER + SEALED_HEADER_LENGTH);
/** Segments one GSO packet may be cut into: 64 KB at Linux's smallest send MSS (48 bytes) is 1,366. */
const MAX_GSO_SEGMENTS = 1400;

/** A tunnel that sent within this window but received nothing for this long is stale (asks for a new direction). */
export const STALE_MS = 6000;
/**
 * The keep-alive interval of a live tunnel: an end that received data and has sent nothing for this long sends a
 * probe (WireGuard's passive keep-alive, answered), so each end of a flow, one-way or not, hears the other this often.
 */
export const PASSIVE_KEEPALIVE_MS = 1000;
/** How often the host runs the tunnels' timers (ms): every timer below is this much coarser. */
export const TUNNEL_TICK_MS = 250;
/** A probe is answered at once: this long (plus the round trip) without an answer and the path is lost. */
export const PROBE_TIMEOUT_MS = 500;
/**
 * A relayed tunnel that carries data looks for a direct path this long after it went relayed, then at doubling
 * intervals up to DIRECT_RETRY_MAX_MS (Tailscale re-probes a relayed peer's endpoints while traffic flows; ICE keeps
 * checking candidate pairs). A repaired relayed path (a NAT on it changed) starts the intervals over.
 */
export const DIRECT_RETRY_MS = 5000;
export const DIRECT_RETRY_MAX_MS = 60_000;
/**
 * DATA payloads that are not IP packets: a keep-alive (empty; asks nothing) and a probe (one zero byte; the receiver
 * answers with a keep-alive at once). An IP packet is at least 20 bytes and starts with its version, never 0.
 */
const KEEPALIVE = Buffer.alloc(0);
const PROBE = Buffer.alloc(1);
/**
 * WireGuard's REKEY_TIMEOUT: a rekey handshake gets this long to complete before another is sent. Shorter when the
 * keypair limits leave less time between rekey and reject (tests shorten them), so a lost request is retried in time.
 */
export const REKEY_TIMEOUT_MS = 5000;
/**
 * TUNNEL_REQUESTs a tunnel answers at once, and per rekey interval sustained (four: the rekey and three retries), at
 * least HANDSHAKES_PER_MIN a minute. Each costs an ECDH before it can be authenticated, so anyone who knows the
 * tunnel's ID (an on-path observer) could otherwise make the responder do one per packet; the established keys keep
 * carrying traffic meanwhile (issue 11 #4).
 */
const HANDSHAKE_BURST = 10;
const HANDSHAKES_PER_MIN = 30;

export type PathNow = 'direct' | 'relay' | 'none';

export interface TunnelOptions {
  readonly punchTimeoutMs: number;
  readonly deadlineMs: number;
  /** Wait between the short-TTL punch and the first full packets of a hole-punched tunnel (ms); default 0. */
  readonly punchHoldMs?: number;
  readonly limits?: Partial<SessionLimits>;
}

const MAX_QUEUED = 64;

export class Tunnel {
  readonly tunnelId: bigint;
  readonly tunnelIdBytes: Buffer;
  readonly peerId: string;
  readonly peerV4: Buffer;
  readonly peerV6: Buffer;
  route: Route;
  readonly keypairs = new KeypairSet();
  path: PathNow = 'none';
  /** The peer's address on a direct path (learnt from authentic packets: roaming). */
  endpoint: Endpoint | undefined;
  relayBound = false;
  /** The RS's last return-routability cookie for our address (echoed in every later bind). */
  private relayCookie: Buffer | undefined;
  state: 'connecting' | 'up' | 'failed' = 'connecting';
  failure = '';
  /** Packets waiting for keys (oldest dropped beyond MAX_QUEUED). */
  readonly queue: Buffer[] = [];
  readonly stats = { txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0, handshakes: 0, drops: 0, repairs: 0 };
  /** The last repaired outage (ms): from the first unanswered packet to the first one heard after the repair. */
  lastOutageMs = 0;
  readonly createdAt: number;
  establishedAt = 0;
  lastTx = 0;
  lastRx = 0;
  /** When this end (as responder) sent its TUNNEL_RESPONSE, until the first packet measures the RTT. */
  private responseSentAt = 0;
  /** When we first sent data or a probe after last hearing from the peer (0: answered). */
  private unansweredSince = 0;
  /** When our oldest unanswered probe left (0: none pending). */
  private probeAt = 0;
  /** When data last arrived (keep-alives and probes are not data: answering them would never end). */
  private lastDataRx = 0;
  /** When an authentic packet last arrived on a direct path. */
  private lastDirectRx = 0;
  /** When the path was last found lost and a repair started (0: none since the last answer). */
  private repairAt = 0;
  /** Round trip of the last handshake (ms): the tunnel's RTT as the web UI shows it. */
  rttMs = 0;
  /** Greatest handshake timestamp accepted from the peer (responder replay check). */
  private lastTimestamp: Buffer | null = null;
  private initiator: { hs: InitiatorHandshake; index: number; sentAt: number; via: PathNow } | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Set between the short-TTL punch and the first full packets (hole punching, see start()). */
  private holdTimer: NodeJS.Timeout | undefined;
  private held = false;
  private attempts = 0;
  private usingRelay = false;
  /** The next look for a direct path while relayed (0: not planned yet), and the interval after it. */
  private directRetryAt = 0;
  private directRetryMs = DIRECT_RETRY_MS;
  /** The RS was reported lost once (another relay is on its way). */
  private relayLostReported = false;
  /** As responder: the ephemeral and se made while the first request was on its way (noise.ts precomputeResponse). */
  private precomputed: ResponderPrecompute | undefined;
  private readonly requests: TokenBucket;

  constructor(
    private readonly me: Identity,
    route: Route,
    private readonly io: TunnelIo,
    private readonly opts: TunnelOptions,
  ) {
    this.route = route;
    this.tunnelId = route.tunnelId;
    this.tunnelIdBytes = Buffer.alloc(8);
    this.tunnelIdBytes.writeBigUInt64BE(route.tunnelId);
    this.peerId = formatId(route.peerId);
    this.peerV4 = Buffer.from(ip4ToBytes(route.peerV4));
    this.peerV6 = Buffer.from(ip6ToBytes(route.peerV6));
    this.createdAt = io.now();
    const rekeyMs = opts.limits?.rekeyAfterMs ?? DEFAULT_SESSION_LIMITS.rekeyAfterMs;
    this.requests = new TokenBucket(HANDSHAKE_BURST, Math.max(HANDSHAKES_PER_MIN, (4 * 60_000) / rekeyMs) / 60);
  }

  get kind(): string {
    if (this.path === 'relay') return 'relayed';
    // A relayed route that found a direct path went through both NATs as a hole-punched one does.
    if (this.path === 'direct') return this.route.kind === 'direct' ? 'direct' : 'hole-punched';
    return 'none';
  }

  /** DH(s, s_peer), kept per peer by the identity; a copy (the handshake wipes it). */
  private staticDh(): Buffer | undefined {
    return this.me.staticDh(this.route.peerPublicKey) ?? undefined;
  }

  /**
   * The responder's work that does not need the request (its ephemeral, se, and ss for a peer not met before), done
   * while the request is on its way: after this turn's datagrams (our bind) have left, so it delays none of them.
   */
  private prepareResponse(): void {
    setImmediate(() => {
      if (this.state !== 'connecting' || this.precomputed) return;
      this.precomputed = precomputeResponse(this.route.peerPublicKey) ?? undefined;
      this.staticDh()?.fill(0);
    });
  }

  /**
   * Whether the initiator should start a rekey handshake now (WireGuard's keep_key_fresh_send / _receive): the
   * keypair is due and no handshake is in flight, or the one in flight had REKEY_TIMEOUT to complete. Without the
   * second condition every packet sent while a rekey is due starts a handshake that cancels the previous one, and
   * a busy tunnel never completes one (issue 11).
   */
  private rekeyDue(kp: TunnelKeypair, now: number): boolean {
    if (!this.route.initiator || !kp.needsRekey(now)) return false;
    if (!this.initiator) return true;
    const timeout = Math.min(REKEY_TIMEOUT_MS, (kp.limits.rejectAfterMs - kp.limits.rekeyAfterMs) / 3);
    return now - this.initiator.sentAt >= timeout;
  }

  /** Starts (or restarts, after a new Route Direction) the setup described by the route. */
  start(route?: Route): void {
    if (route) {
      if (Buffer.compare(route.peerPublicKey, this.route.peerPublicKey) !== 0) return this.fail('peer key changed');
      this.route = route;
    }
    this.state = this.keypairs.current ? 'up' : 'connecting';
    this.attempts = 0;
    this.relayLostReported = false;
    this.usingRelay = this.route.kind === 'relay';
    if (!this.route.initiator && this.state === 'connecting') this.prepareResponse();
    if (this.usingRelay) {
      this.bindRelay();
      if (this.route.initiator) this.initiate();
    } else if (this.route.kind === 'holepunch' && this.state === 'connecting' && this.shortPunch()) {
      // Both ends behind NATs. A NAT that lets an unsolicited packet in to itself keeps a conntrack entry for it, and
      // our own packet to that peer then gets another outside port (a port clash: the endpoint-independent mapping
      // turns per-destination) and punching fails for as long as the peer keeps trying. So each end first opens its
      // own NAT with a packet that dies before the peer's NAT. The initiator sends its real packets a moment later
      // (the responder may get and process its Route Direction that much later); the responder sends none until it
      // hears the initiator through its opened NAT, or until the first retransmission (a NAT further away than the
      // short TTL reaches is then opened the ordinary way).
      if (this.route.initiator) {
        this.held = true;
        clearTimeout(this.holdTimer);
        this.holdTimer = setTimeout(() => this.release(), this.opts.punchHoldMs ?? 0);
      }
    } else {
      // The punch goes before any signing or DH: it must cross our NAT before the peer's first packet reaches it.
      this.punch();
      if (this.route.initiator) this.initiate();
    }
    if (!this.usingRelay && this.route.relay && this.route.kind !== 'direct') this.bindRelay();
    this.arm();
  }

  private punchPacket(): Buffer {
    return encodePunch(this.tunnelId, this.me.id);
  }

  /** Opens our NAT towards every candidate (hole punching): the peer's first packets then get through. */
  private punch(): void {
    if (this.route.endpoints.length === 0) return;
    const p = this.punchPacket();
    for (const e of this.route.endpoints) this.io.send(p, e);
  }

  /** The short-TTL punch towards every candidate; false when none could be sent that way. */
  private shortPunch(): boolean {
    if (!this.io.sendLowTtl || this.route.endpoints.length === 0) return false;
    let sent = false;
    for (const e of this.route.endpoints) if (this.io.sendLowTtl(this.punchPacket(), e)) sent = true;
    return sent;
  }

  /** End of the hold after the short-TTL punch (or the peer was heard first): the full punch and the request. */
  private release(): void {
    if (!this.held) return;
    this.held = false;
    clearTimeout(this.holdTimer);
    if (this.state !== 'connecting' || this.usingRelay) return;
    this.punch();
    if (this.route.initiator) this.initiate();
  }

  private bindRelay(): void {
    const r = this.route.relay;
    if (!r) return;
    // We are end A of the ticket when the ticket's end A is our ID.
    const role: 0 | 1 = Buffer.compare(r.ticket.subarray(28, 48), this.me.id) === 0 ? 0 : 1;
    // The bind carries wall-clock time (the RS checks freshness); io.now() is monotonic.
    this.io.send(encodeRelayBind(r.ticket, role, Date.now(), this.me, this.relayCookie ?? this.io.relayCookie?.(r.endpoint)), r.endpoint);
  }

  /** The RS asks us to prove we receive at our address (RELAY_CHALLENGE): bind again with its cookie echoed. */
  onBindChallenge(cookie: Uint8Array): void {
    // Once per cookie: a forged challenge cannot make us send binds in a loop.
    if (!this.route.relay || (this.relayCookie && Buffer.compare(this.relayCookie, cookie) === 0)) return;
    this.relayCookie = Buffer.from(cookie);
    this.bindRelay();
  }

  /** Sends a fresh TUNNEL_REQUEST (new ephemeral and timestamp each time, as WireGuard's initiations). */
  initiate(): void {
    if (this.initiator) this.io.freeIndex(this.initiator.index);
    const index = this.io.allocIndex(this);
    const ss = this.staticDh();
    if (!ss) return this.fail('peer key is not a valid point');
    const { packet, state } = createRequest({
      localStatic: this.me,
      remoteStatic: this.route.peerPublicKey,
      tunnelId: this.tunnelIdBytes,
      senderIndex: index,
      precomputedSs: ss,
      timestamp: tai64n(this.io.handshakeTime?.() ?? Date.now()),
    });
    this.initiator = { hs: state, index, sentAt: this.io.now(), via: this.usingRelay ? 'relay' : 'direct' };
    this.stats.handshakes++;
    this.sendHandshake(packet);
  }

  private sendHandshake(packet: Buffer): void {
    if (this.usingRelay && this.route.relay) {
      this.io.send(this.frameForRelay(packet), this.route.relay.endpoint);
      return;
    }
    if (this.endpoint) this.io.send(packet, this.endpoint);
    for (const e of this.route.endpoints) if (!sameEndpoint(e, this.endpoint)) this.io.send(packet, e);
  }

  private frameForRelay(inner: Uint8Array): Buffer {
    const out = Buffer.allocUnsafe(RELAY_HEADER + inner.length);
    writeRelayHeader(out, this.tunnelId);
    out.set(inner, RELAY_HEADER);
    return out;
  }

  /** Retransmission, punch timeout → relay fallback, overall deadline. */
  private arm(): void {
    clearTimeout(this.timer);
    if (this.state !== 'connecting') return;
    const elapsed = this.io.now() - this.createdAt;
    if (elapsed > this.opts.deadlineMs) return this.fail(`no tunnel after ${Math.round(elapsed)} ms`);
    const delay = Math.min(250 * 2 ** Math.min(this.attempts, 3), 2000);
    this.timer = setTimeout(() => {
      this.attempts++;
      this.held = false;
      clearTimeout(this.holdTimer);
      if (this.state !== 'connecting') return;
      const t = this.io.now() - this.createdAt;
      if (!this.usingRelay && this.route.relay && t >= this.opts.punchTimeoutMs) {
        // Hole punching did not work (a NAT that maps per destination): fall back to the RS by ourselves.
        this.usingRelay = true;
        this.bindRelay();
      } else if (this.usingRelay && !this.relayBound) this.bindRelay();
      if (!this.usingRelay) this.punch();
      if (this.route.initiator) this.initiate();
      this.arm();
    }, delay);
  }

  private fail(why: string): void {
    clearTimeout(this.timer);
    clearTimeout(this.holdTimer);
    if (this.state === 'failed') return;
    this.state = 'failed';
    this.precomputed?.discard();
    this.precomputed = undefined;
    this.failure = why;
    this.io.onFailed(this, why);
  }

  close(): void {
    clearTimeout(this.timer);
    clearTimeout(this.holdTimer);
    this.precomputed?.discard();
    this.precomputed = undefined;
    if (this.initiator) this.io.freeIndex(this.initiator.index);
    for (const kp of [this.keypairs.current, this.keypairs.previous, this.keypairs.next]) if (kp) this.io.freeIndex(kp.localIndex);
    this.keypairs.clear();
    this.state = 'failed';
  }

  private install(send: Buffer, receive: Buffer, localIndex: number, remoteIndex: number, isInitiator: boolean): void {
    const kp = new TunnelKeypair({
      packetType: DATA_TYPE,
      sendKey: send,
      receiveKey: receive,
      localIndex,
      remoteIndex,
      isInitiator,
      // The tunnel's own (monotonic) clock: tick() and the keypair's age must be read on one clock.
      clock: () => this.io.now(),
      ...(this.opts.limits ? { limits: this.opts.limits } : {}),
    });
    send.fill(0);
    receive.fill(0);
    for (const dropped of this.keypairs.install(kp)) this.io.freeIndex(dropped.localIndex);
  }

  private up(via: PathNow, from: Endpoint): void {
    this.path = via;
    if (via === 'direct') this.endpoint = from;
    const wasUp = this.state === 'up';
    this.state = 'up';
    clearTimeout(this.timer);
    if (!wasUp) this.establishedAt = this.io.now();
    this.io.onUp(this);
  }

  // --- arriving packets (the host found this tunnel by tunnel id or index) ---------------------------------------

  onRequest(packet: Buffer, from: Endpoint, via: PathNow): string | undefined {
    // Rationed before the ECDH below: per source first (an attacker's one address spends its own tokens, not the
    // tunnel's), then per tunnel (spoofed sources).
    if (this.io.requestAllowed && !this.io.requestAllowed(from, via)) return 'source-limit';
    if (!this.requests.take(this.io.now())) return 'tunnel-limit';
    const ss = this.staticDh();
    if (!ss) return 'key';
    const hs = consumeRequest(packet, { localStatic: this.me, remoteStatic: this.route.peerPublicKey, lastTimestamp: this.lastTimestamp, precomputedSs: ss });
    if (typeof hs === 'string') return hs;
    this.lastTimestamp = Buffer.from(hs.timestamp);
    const index = this.io.allocIndex(this);
    const { packet: resp, keys } = createResponse(hs, { senderIndex: index, ...(this.precomputed ? { precomputed: this.precomputed } : {}) });
    this.precomputed?.discard();
    this.precomputed = undefined;
    this.install(keys.send, keys.receive, index, hs.remoteIndex, false);
    this.stats.handshakes++;
    // The responder's RTT: from its response to the initiator's first packet (the confirming keep-alive).
    this.responseSentAt = this.io.now();
    if (via === 'relay') this.io.send(this.frameForRelay(resp), from);
    else this.io.send(resp, from);
    this.up(via, from);
    return undefined;
  }

  onResponse(packet: Buffer, from: Endpoint, via: PathNow): string | undefined {
    const pending = this.initiator;
    if (!pending) return 'no-handshake';
    const r = consumeResponse(pending.hs, packet);
    if (typeof r === 'string') return r;
    this.initiator = undefined;
    this.rttMs = this.io.now() - pending.sentAt;
    this.install(Buffer.from(r.keys.send), Buffer.from(r.keys.receive), pending.index, r.remoteIndex, true);
    this.up(via, from);
    // Key confirmation for the responder (WireGuard: the initiator sends first): an empty DATA keep-alive.
    this.sendInner(KEEPALIVE);
    return undefined;
  }

  onPunch(from: Endpoint): void {
    // The peer opened its NAT towards us: our (re)sent request now gets through.
    if (this.held) {
      // Heard through our NAT, so our short punch crossed it: no reason to wait any longer.
      if (this.route.initiator) this.endpoint = from;
      return this.release();
    }
    if (this.state === 'connecting' && this.route.initiator && !this.usingRelay) {
      this.endpoint = from;
      this.initiate();
    }
  }

  onBindAck(ok: boolean): void {
    this.relayBound = ok;
  }

  /**
   * A DATA packet for one of our indexes (borrowed). Returns the inner packet (borrowed; a subarray of `out` when
   * given) or a drop reason. Learns the peer's new address from authentic packets (roaming, paper §1: the real
   * address changes, the virtual one not).
   */
  onData(packet: Buffer, kp: TunnelKeypair, from: Endpoint, via: PathNow, out?: Buffer, opened?: OpenedDatagram): Buffer | string {
    const pt = kp.open(packet, out, undefined, opened);
    if (typeof pt === 'string') {
      this.stats.drops++;
      return pt;
    }
    const promoted = this.keypairs.confirm(kp);
    if (promoted) this.io.freeIndex(promoted.localIndex);
    this.stats.rxPackets++;
    this.stats.rxBytes += pt.length;
    this.lastRx = this.io.now();
    if (pt.length > 1) this.lastDataRx = this.lastRx;
    if (this.repairAt > 0) {
      this.stats.repairs++;
      this.lastOutageMs = this.lastRx - this.unansweredSince;
      this.repairAt = 0;
      // A NAT on a relayed path changed: a direct path may be possible now; look soon.
      if (this.path === 'relay') {
        this.directRetryMs = DIRECT_RETRY_MS;
        this.directRetryAt = this.lastRx + 1000;
      }
    }
    this.unansweredSince = 0;
    this.probeAt = 0;
    if (this.responseSentAt > 0) {
      this.rttMs = this.lastRx - this.responseSentAt;
      this.responseSentAt = 0;
    }
    const isProbe = pt.length === 1 && pt[0] === 0;
    if (via === 'direct' && this.path === 'relay' && isProbe) {
      // A direct probe while we relay (the peer looks for a direct path, §3.5 "Upgrade"): answered there, but the path
      // moves only once the prober heard this answer and sends there itself (both directions then work).
      this.sendDirect(KEEPALIVE, from);
      return pt;
    }
    // Relayed packets the peer sent before it moved to the direct path too arrive after it: while the peer is heard
    // directly (it is at least every keep-alive interval), they do not take the path back to the RS.
    const heardDirect = this.lastRx - this.lastDirectRx < PASSIVE_KEEPALIVE_MS;
    if (via === 'direct') this.lastDirectRx = this.lastRx;
    const moved = (via !== this.path && !(via === 'relay' && heardDirect)) || (via === 'direct' && !sameEndpoint(this.endpoint, from));
    if (moved) {
      // Roaming (WireGuard's): an authentic packet from a new address moves the peer there at once, whether the peer
      // moved or a NAT gave it a new outside port. Tell the mover at once that its new path works (and refresh NAT
      // state on ours).
      this.path = via;
      if (via === 'direct') this.endpoint = from;
      this.sendInner(KEEPALIVE);
      this.io.onUp(this);
    } else {
      if (this.state !== 'up') this.up(via, from);
      if (isProbe) this.sendInner(KEEPALIVE);
    }
    // An idle initiator still hears its keys age (WireGuard's keep_key_fresh_receive): the responder may be the one
    // sending, and it does not rekey on time itself. The current keypair's age, not that of the one this packet came
    // under: late packets under the previous keypair would otherwise start a second rekey right after the first.
    const cur = this.keypairs.current;
    if (cur && this.rekeyDue(cur, this.lastRx)) this.initiate();
    return pt;
  }

  /** Seals and sends an inner IP packet (borrowed); queues it while there are no keys yet. */
  sendInner(inner: Buffer, to?: Endpoint): 'sent' | 'queued' | 'dropped' {
    // The responder may send under `next` until confirmed, but only for the first handshake (no `current` yet):
    // the path to the initiator carries our response first, so it has the keys by the time data arrives.
    const kp = this.keypairs.current ?? this.keypairs.next;
    if (!kp || this.path === 'none') {
      if (inner.length === 0) return 'dropped';
      if (this.queue.length >= MAX_QUEUED) this.queue.shift();
      this.queue.push(Buffer.from(inner));
      return 'queued';
    }
    const relay = this.path === 'relay' && this.route.relay;
    const now = this.io.now();
    if (!this.transmit(kp, inner, !!relay, now, relay ? this.route.relay!.endpoint : (to ?? this.endpoint!))) return 'dropped';
    this.stats.txPackets++;
    this.stats.txBytes += inner.length;
    this.lastTx = now;
    // Data and probes want an answer (data: the peer's passive probe within PASSIVE_KEEPALIVE_MS); keep-alives do not.
    if (inner.length > 0 && this.unansweredSince === 0) this.unansweredSince = now;
    if (inner === PROBE && this.probeAt === 0) this.probeAt = now;
    if (this.rekeyDue(kp, now)) this.initiate();
    return 'sent';
  }

  /**
   * A TCP GSO packet (borrowed) cut into segments of at most the peer's MSS and `mtu` and sealed on the socket's
   * thread (issue 15: the keypair's checks and one call per 64 KB, not per segment). The segments sent; 'unsupported'
   * without a socket that does it, keys or a path: the caller cuts the packet and sends each segment with sendInner().
   */
  sendGso(packet: Buffer, mtu: number): number | 'dropped' | 'unsupported' {
    const sink = this.io.sendSealingGso;
    const kp = this.keypairs.current ?? this.keypairs.next;
    if (sink === undefined || !kp || this.path === 'none') return 'unsupported';
    const relay = this.path === 'relay' && this.route.relay;
    const now = this.io.now();
    const to = relay ? this.route.relay!.endpoint : this.endpoint!;
    const prefix = this.dataPrefix(!!relay);
    const n = kp.sealViaGso(packet, prefix, relay ? RELAY_HEADER : 0, now, MAX_GSO_SEGMENTS, (p, key, counter, pkt, maxSegs, dest: Endpoint) => sink(p, key, counter, pkt, mtu, maxSegs, dest), to);
    if (n === 'unsupported') return n;
    if (typeof n === 'string') {
      this.refused(kp, now);
      return 'dropped';
    }
    if (n <= 0) return 'unsupported';
    this.stats.txPackets += n;
    // Each segment repeats the IP and TCP headers.
    const ipHeader = packet[0]! >> 4 === 4 ? (packet[0]! & 15) * 4 : 40;
    this.stats.txBytes += packet.length + (n - 1) * (ipHeader + (packet[ipHeader + 12]! >> 4) * 4);
    this.lastTx = now;
    if (this.unansweredSince === 0) this.unansweredSince = now;
    if (this.rekeyDue(kp, now)) this.initiate();
    return n;
  }

  /**
   * Seals `inner` under `kp` and sends it to `to`, framed for the RS when `relay`: on the socket's sealing thread when
   * the host has one (issue 15), else here. False: the keypair refused (counted).
   */
  private transmit(kp: TunnelKeypair, inner: Buffer, relay: boolean, now: number, to: Endpoint): boolean {
    const sink = this.io.sendSealing;
    if (sink !== undefined) {
      const prefix = this.dataPrefix(relay);
      const refused = kp.sealVia(inner, prefix, relay ? RELAY_HEADER : 0, now, sink, to);
      if (refused === undefined) return true;
      if (refused !== 'unsupported') return this.refused(kp, now);
    }
    const out = this.seal(kp, inner, relay, now);
    if (!out) return false;
    this.io.send(out, to);
    return true;
  }

  /** The prefix a DATA packet is sealed after on the socket's thread: the relay header (ours) when relayed. */
  private dataPrefix(relay: boolean): Buffer {
    if (!relay) return PREFIX_DIRECT;
    writeRelayHeader(PREFIX_RELAYED, this.tunnelId);
    return PREFIX_RELAYED;
  }

  /** A keypair refused to seal (too old, too many messages): counted, and a rekey started when it is due. */
  private refused(kp: TunnelKeypair, now: number): false {
    this.stats.drops++;
    if (this.rekeyDue(kp, now)) this.initiate();
    return false;
  }

  /** `inner` sealed under `kp` (in the host's scratch when it lends one), framed for the RS when `relay`. */
  private seal(kp: TunnelKeypair, inner: Buffer, relay: boolean, now: number): Buffer | undefined {
    const head = relay ? RELAY_HEADER : 0;
    const size = head + inner.length + SEALED_OVERHEAD;
    const scratch = this.io.sealScratch;
    const out = scratch !== undefined && scratch.length >= size ? scratch.subarray(0, size) : Buffer.allocUnsafe(size);
    const sealed = kp.seal(inner, out.subarray(head), now);
    if (typeof sealed === 'string') {
      this.refused(kp, now);
      return undefined;
    }
    if (relay) writeRelayHeader(out, this.tunnelId);
    return out;
  }

  /**
   * A probe or its answer straight to `to` while the tunnel is relayed: not the path in use, so its silence says
   * nothing of that path's liveness (a symmetric NAT drops it, and the relayed path stays).
   */
  private sendDirect(inner: Buffer, to: Endpoint): void {
    const kp = this.keypairs.current;
    if (!kp || !this.transmit(kp, inner, false, this.io.now(), to)) return;
    this.stats.txPackets++;
  }

  /** Sends what waited for keys. */
  flushQueue(): void {
    while (this.queue.length > 0 && (this.keypairs.current ?? this.keypairs.next)) this.sendInner(this.queue.shift()!);
  }

  /** Our address changed: re-bind at the RS from the new address, and speak first on direct paths (roaming). */
  moved(): void {
    if (this.route.relay && (this.path === 'relay' || this.usingRelay)) {
      this.relayBound = false;
      this.bindRelay();
    }
    if (this.state === 'up') this.sendInner(PROBE);
    else this.start();
  }

  /**
   * The direct path went silent (no answer within a keep-alive interval). A NAT may have given us, or the peer, a new
   * outside port: on a relayed path we bind again (the RS learns our new source); on a direct one the host asks the
   * DC where the peer is now, and the DC tells the peer where we are (onPeerEndpoints, on both ends).
   */
  private pathLost(now: number): void {
    const again = this.repairAt > 0;
    this.repairAt = now;
    if (this.path === 'relay') {
      // The bind of the last repair got no RELAY_BIND_ACK either: the RS itself is gone (§3.5 "Failover").
      if (again && !this.relayBound && !this.relayLostReported) {
        this.relayLostReported = true;
        this.io.onRelayLost?.(this);
      }
      this.relayBound = false;
      this.bindRelay();
      this.sendInner(PROBE);
      return;
    }
    if (this.usingRelay && this.route.relay) {
      // A direct path found while relayed broke: back to the RS at once (ICE keeps its relayed candidate pair).
      this.path = 'relay';
      this.relayBound = false;
      this.bindRelay();
      this.sendInner(PROBE);
      this.directRetryAt = now + this.directRetryMs;
      this.directRetryMs = Math.min(this.directRetryMs * 2, DIRECT_RETRY_MAX_MS);
      this.io.onUp(this);
      return;
    }
    this.io.onPathLost?.(this);
  }

  /**
   * The DC's word (authenticated by its channel) on where the peer is now: probe each address. Sending there opens our
   * own NAT towards it, which a peer behind a NAT that filters by endpoint needs to reach us; the peer's answer moves
   * the path there (roaming), so a stale or wrong address from the DC never takes a working path away.
   */
  onPeerEndpoints(endpoints: readonly Endpoint[]): void {
    if (this.state !== 'up') return;
    if (this.path === 'relay') {
      // Candidates for a direct path (§3.5 "Upgrade"): a probe each, straight there; an answer moves the path.
      for (const e of endpoints) this.sendDirect(PROBE, e);
      return;
    }
    if (this.path !== 'direct') return;
    for (const e of endpoints) this.sendInner(PROBE, e);
  }

  /** While relayed and carrying data: ask the DC for the peer's candidates now and then (§3.5 "Upgrade"). */
  private lookForDirect(now: number): void {
    if (this.path !== 'relay' || now - this.lastDataRx > DIRECT_RETRY_MS) return;
    if (this.directRetryAt === 0) this.directRetryAt = now + this.directRetryMs;
    if (now < this.directRetryAt) return;
    this.directRetryMs = Math.min(this.directRetryMs * 2, DIRECT_RETRY_MAX_MS);
    this.directRetryAt = now + this.directRetryMs;
    this.io.onPathLost?.(this);
  }

  /** Path liveness (PATH_TIMEOUT), keep-alives through NATs on the path (route.keepaliveS), rekey for the initiator. */
  tick(now: number): void {
    if (this.state !== 'up') return;
    const ka = this.route.keepaliveS * 1000;
    // Both keep-alives are probes: one that gets no answer shows a lost path within an interval, idle or not.
    if (ka > 0 && now - this.lastTx >= ka) this.sendInner(PROBE);
    else if (this.lastDataRx > this.lastTx && now - this.lastTx >= PASSIVE_KEEPALIVE_MS) this.sendInner(PROBE);
    if (this.unansweredSince > 0) {
      // WireGuard's rule (no answer within keep-alive + rekey timeout → new handshake), one step further: the peer may
      // have lost the tunnel altogether (an agent restarted), so the host asks the DC for a fresh direction.
      if (now - this.unansweredSince > STALE_MS) {
        this.unansweredSince = 0;
        this.probeAt = 0;
        this.repairAt = 0;
        this.io.onStale?.(this);
      } else if (this.silentTooLong(now) && now - this.repairAt >= this.pathTimeoutMs()) this.pathLost(now);
    }
    this.lookForDirect(now);
    const cur = this.keypairs.current;
    if (cur && this.rekeyDue(cur, now)) this.initiate();
  }

  /**
   * Data is answered within a keep-alive interval: the peer's passive probe leaves at its first tick one interval after
   * it last sent (which was before our first unanswered packet), and takes half a round trip.
   */
  private pathTimeoutMs(): number {
    return PASSIVE_KEEPALIVE_MS + TUNNEL_TICK_MS + this.rttMs;
  }

  private silentTooLong(now: number): boolean {
    if (this.probeAt > 0 && now - this.probeAt > PROBE_TIMEOUT_MS + this.rttMs) return true;
    return now - this.unansweredSince > this.pathTimeoutMs();
  }

  describe(): Record<string, unknown> {
    return {
      tunnelId: this.tunnelId.toString(16),
      peer: this.peerId,
      peerName: this.route.peerName,
      peerV4: this.route.peerV4,
      peerV6: this.route.peerV6,
      state: this.state,
      path: this.kind,
      planned: this.route.kind,
      // The end that sends TUNNEL_REQUESTs (the DC's plan chooses it): the only one that rekeys on time.
      initiator: this.route.initiator,
      endpoint: this.path === 'relay' && this.route.relay ? formatEndpoint(this.route.relay.endpoint) : this.endpoint ? formatEndpoint(this.endpoint) : null,
      rttMs: Math.round(this.rttMs * 10) / 10,
      // Wall-clock (epoch ms, sub-ms precision): comparable across processes on one machine (benchmarks).
      createdAtMs: performance.timeOrigin + this.createdAt,
      establishedAtMs: this.establishedAt ? performance.timeOrigin + this.establishedAt : null,
      ...this.stats,
      lastOutageMs: Math.round(this.lastOutageMs),
      // The interval within which a lost path is noticed (a keep-alive that got no answer).
      keepaliveMs: PASSIVE_KEEPALIVE_MS,
      failure: this.failure || undefined,
    };
  }
}
