// One NTM identity's life with its DC (paper §2.2–2.3): Registration Request/Response with the NAT probe, the sealed
// control channel (keep-alives, Direction Requests, Route Directions from the DC, name resolution, RTT reports), and
// re-registration when the DC restarts or the terminal moves. A phone has one Node; the agent has one per appliance.
import type { Endpoint } from '../types/net.js';
import { RegistrationRefusedError, RejectedError } from '../types/errors.js';
import type { Identity } from '../protocol/identity.js';
import * as NT from '../protocol/node-transaction.js';
import { CONTROL_LIMITS, CONTROL_TYPE, TunnelKeypair } from '../crypto/session.js';
import { defaultAead } from '../crypto/aead.js';
import { randomPublicBytes } from '../crypto/random.js';
import { formatId } from '../crypto/secp256k1.js';
import {
  channelKeys,
  decodeRegistrationAnswer,
  decodeRegistrationResponseHeader,
  encodeNatProbe,
  encodeRegistrationRequest,
  mac1Key,
  openRegistrationCookie,
  registrationKey,
  requestMac1,
  stampMac2,
  type RegistrationResult,
} from '../protocol/registration.js';
import { COOKIE_ROTATE_MS } from '../crypto/source-cookie.js';
import { Ctl, STATUS_TEXT, Status, decodeControl, encodeControl, type ControlMessage, type Route, type Target } from '../protocol/control.js';
import { PendingRequests, newTxid, type RetryPolicy } from '../protocol/retransmit.js';
import { Counters, silentLogger, type Logger } from '../util/log.js';

export interface DcRef {
  readonly id: Uint8Array;
  readonly publicKey?: Uint8Array;
  readonly endpoint: Endpoint;
  /** The DC's NAT-probe port (default: its port + 1). */
  readonly probePort?: number;
}

export interface NodeIo {
  send(data: Uint8Array, to: Endpoint): void;
  /** A fresh control-channel index, routed to this node. */
  allocIndex(n: Node): number;
  freeIndex(index: number): void;
  /** The terminal's own addresses with the socket port (the DC compares them with what it observes: NAT?). */
  locals(): Endpoint[];
  /** A Route Direction arrived (for us as CN, or as the answer to our Direction Request). */
  onRoute(n: Node, route: Route): void;
  onRegistered(n: Node, r: RegistrationResult, first: boolean): void;
  onRevoked(n: Node): void;
  /** The DC says where the peer of one of our tunnels is now (pushed after the peer's Path Refresh). */
  onPeerEndpoints(n: Node, tunnelId: bigint, peerId: Uint8Array, endpoints: readonly Endpoint[]): void;
  now(): number;
}

export interface NodeOptions {
  readonly name?: string;
  /** One-time enrollment token, sent until the DC has admitted us once. */
  readonly token?: Uint8Array;
  readonly retry: RetryPolicy;
  readonly log?: Logger;
}

/** How long the watchdog waits before registering again after a refusal without a retry-after. */
const REFUSED_RETRY_MS = 60_000;

export class Node {
  readonly drops = new Counters();
  registration: RegistrationResult | undefined;
  private channel: TunnelKeypair | undefined;
  private channelIndex = 0;
  private dcPublicKey: Uint8Array | undefined;
  private kss: Buffer | undefined;
  private nt: Buffer | undefined;
  private readonly pending = new PendingRequests<ControlMessage>();
  private registering: Promise<RegistrationResult> | undefined;
  private regTxid = 0n;
  private regResolve: ((r: RegistrationResult) => void) | undefined;
  private regReject: ((e: Error) => void) | undefined;
  private regResendNow: (() => void) | undefined;
  /** The DC's last refusal and when (performance.now()): the watchdog does not ask again before it may pass. */
  private refusal: { readonly error: RegistrationRefusedError; readonly at: number } | undefined;
  private regNonce: Buffer | undefined;
  private regStarted = 0;
  /** The request being (re)sent: mac2 is stamped into it when a cookie comes. */
  private regPacket: Buffer | undefined;
  /** The DC's last cookie to us (REGISTRATION_COOKIE) and when it came (performance.now()). */
  private cookie: { bytes: Buffer; at: number } | undefined;
  /** Request time of our last Registration Request (ms): the next one must be strictly later (the DC's replay rule). */
  private regTime = 0;
  private lastDcContact = 0;
  private lastHintAt = 0;
  private token: Uint8Array;
  private readonly log: Logger;
  revoked = false;
  /** Wall-clock ms of the last successful registration, and how long it took (ms). */
  registeredAt = 0;
  registrationMs = 0;

  constructor(
    readonly identity: Identity,
    readonly dc: DcRef,
    private readonly io: NodeIo,
    private readonly opts: NodeOptions,
  ) {
    this.token = opts.token ?? new Uint8Array(0);
    this.log = (opts.log ?? silentLogger).child({ node: identity.idHex });
    if (dc.publicKey) this.dcPublicKey = dc.publicKey;
  }

  get id(): string {
    return this.identity.idHex;
  }

  get registered(): boolean {
    return !!this.channel && !!this.registration;
  }

  /** The DC's key: configured, or learnt from its directory record. */
  setDcPublicKey(pub: Uint8Array): void {
    this.dcPublicKey = pub;
  }

  private signNt(): Buffer {
    // A Node Transaction is re-signed only when what it says changes (DC, revocation): the chain keeps one per life.
    this.nt ??= NT.encode(NT.sign(this.identity, { dcId: this.dc.id, revoked: false, timestamp: this.io.now() }));
    return this.nt;
  }

  /** Reuses a Node Transaction signed earlier (kept across restarts by the caller). */
  useNt(bytes: Uint8Array): void {
    const nt = NT.decode(bytes);
    if (!(nt instanceof NT.NodeTransactionDecodeError) && nt.id.equals(this.identity.id) && nt.dcId.equals(Buffer.from(this.dc.id)) && !nt.revoked) this.nt = Buffer.from(bytes);
  }

  get nodeTransaction(): Buffer {
    return this.signNt();
  }

  /** Registers (paper §2.2): request + NAT probe in parallel, retransmitted until the DC answers or the deadline. */
  register(): Promise<RegistrationResult> {
    if (this.registering) return this.registering;
    if (!this.dcPublicKey) return Promise.reject(new RejectedError('registration', 'DC public key unknown'));
    const x = this.identity.staticDh(this.dcPublicKey);
    if (!x) return Promise.reject(new RejectedError('registration', 'DC public key invalid'));
    this.kss = registrationKey(x);
    this.regStarted = performance.now();
    const txid = newTxid();
    const nonce = randomPublicBytes(16); // sent in the clear (docs/protocol.md §3.2)
    const oldIndex = this.channelIndex;
    const index = this.io.allocIndex(this);
    // Strictly increasing even when two registrations fall in one millisecond: the DC drops a request no newer than
    // the last one it accepted as a replay, and the retransmissions of that request carry the same time. Only within a
    // second, though: a clock stepped back further (one that was wrong, put right) would keep the old time, which the
    // DC refuses as stale, until the process restarts.
    const wall = this.io.now();
    const time = this.regTime >= wall && this.regTime < wall + 1000 ? this.regTime + 1 : wall;
    this.regTime = time;
    const req = encodeRegistrationRequest(
      { terminalIndex: index, txid, nonce, time, nt: this.signNt(), locals: this.io.locals(), name: this.opts.name ?? '', token: this.token },
      this.kss,
      mac1Key(this.dcPublicKey),
      this.freshCookie(),
    );
    this.regPacket = req;
    const probe = encodeNatProbe(0, txid, this.identity.id);
    const probeTo: Endpoint = { ...this.dc.endpoint, port: this.dc.probePort ?? this.dc.endpoint.port + 1 };
    this.regTxid = txid;
    this.regNonce = nonce;
    const p = new PendingRequests<RegistrationResult>();
    const done = p.request(
      txid,
      'registration',
      () => {
        this.io.send(req, this.dc.endpoint);
        this.io.send(probe, probeTo);
      },
      this.opts.retry,
    );
    this.regResolve = (r) => p.resolve(txid, r);
    this.regReject = (e) => p.fail(txid, e);
    this.regResendNow = () => p.resendNow(txid);
    this.registering = done
      .then((r) => {
        this.registeredAt = this.io.now();
        if (oldIndex && oldIndex !== index) this.io.freeIndex(oldIndex);
        this.token = new Uint8Array(0);
        return r;
      })
      .catch((e: unknown) => {
        this.io.freeIndex(index);
        throw e;
      })
      .finally(() => {
        this.registering = undefined;
        this.regResolve = undefined;
        this.regReject = undefined;
        this.regResendNow = undefined;
        this.regPacket = undefined;
      });
    return this.registering;
  }

  /** A cookie the DC still takes: it keeps two secrets of COOKIE_ROTATE_MS each, so one younger than that is good. */
  private freshCookie(): Buffer | undefined {
    return this.cookie && performance.now() - this.cookie.at < COOKIE_ROTATE_MS - 10_000 ? this.cookie.bytes : undefined;
  }

  /**
   * REGISTRATION_COOKIE for our pending request (found by our channel index): the DC is under load and does the ECDH
   * of our first registration only once we show we receive at our address. The reply must echo our request's mac1
   * (so nobody off the path can make one); the request goes again at once with mac2 under the cookie, and later
   * requests carry it too.
   */
  onRegistrationCookie(data: Buffer): void {
    if (!this.regPacket) return this.drops.inc('cookie-unsolicited');
    const cookie = openRegistrationCookie(data, requestMac1(this.regPacket));
    if (!cookie) return this.drops.inc('cookie-mismatch');
    this.cookie = { bytes: cookie, at: performance.now() };
    stampMac2(this.regPacket, cookie);
    // Sent again at once, and the backoff starts over: under a flood the DC's socket drops at random, and a request
    // lost now should not wait for the seconds the backoff had reached before the cookie came.
    this.regResendNow?.();
  }

  /** REGISTRATION_RESPONSE for our pending request (found by our channel index). */
  onRegistrationResponse(data: Buffer, index: number): void {
    const h = decodeRegistrationResponseHeader(data);
    if (!h.ok || !this.kss || !this.regNonce) return this.drops.inc('reg-malformed');
    const [kT2Dc, kDc2T, kResp] = channelKeys(this.kss, this.regNonce, h.value.nonceDc);
    const body = defaultAead.open(kResp, 0, h.value.sealed);
    if (!body) return this.drops.inc('reg-auth');
    const d = decodeRegistrationAnswer(body);
    if (!d.ok) return this.drops.inc('reg-malformed');
    if (d.value.refused) {
      // Authentic (it opened under K_resp): the DC said no. Stop now instead of retransmitting until the deadline.
      const f = d.value.refusal;
      if (f.txid !== this.regTxid || !this.regReject) return this.drops.inc('reg-stale');
      const error = new RegistrationRefusedError(f.reason, f.limit, f.retryAfterS);
      this.refusal = { error, at: performance.now() };
      this.log.warn('registration refused by the DC', { reason: f.reason, limit: f.limit, retryAfterS: f.retryAfterS });
      return this.regReject(error);
    }
    const r = d.value.result;
    if (r.txid !== this.regTxid || !this.regResolve) return this.drops.inc('reg-stale');
    const first = !this.registration;
    this.registrationMs = performance.now() - this.regStarted;
    this.channel?.destroy();
    this.channel = new TunnelKeypair({
      packetType: CONTROL_TYPE,
      sendKey: kT2Dc,
      receiveKey: kDc2T,
      localIndex: index,
      remoteIndex: h.value.dcIndex,
      isInitiator: true,
      limits: CONTROL_LIMITS,
    });
    this.channelIndex = index;
    this.registration = r;
    this.refusal = undefined;
    this.lastDcContact = performance.now();
    this.regResolve(r);
    this.io.onRegistered(this, r, first);
  }

  /** A CONTROL frame for our channel index. */
  onControl(data: Buffer): void {
    if (!this.channel) return this.drops.inc('ctl-no-channel');
    const pt = this.channel.open(data);
    if (typeof pt === 'string') return this.drops.inc(`ctl-${pt}`);
    const d = decodeControl(pt);
    if (!d.ok) return this.drops.inc('ctl-malformed');
    this.lastDcContact = performance.now();
    const m = d.value;
    switch (m.type) {
      case Ctl.KEEPALIVE:
        return this.sendControl({ type: Ctl.KEEPALIVE_ACK, txid: m.txid });
      case Ctl.ROUTE_DIRECTION:
        if (this.pending.resolve(m.txid, m)) return;
        // A DC-initiated direction (we are CN): acknowledge (also retransmissions), then build.
        this.sendControl({ type: Ctl.ROUTE_ACK, txid: m.txid, tunnelId: m.route.tunnelId });
        this.io.onRoute(this, m.route);
        return;
      case Ctl.PEER_ENDPOINTS:
        if (this.pending.resolve(m.txid, m)) return;
        this.sendControl({ type: Ctl.ROUTE_ACK, txid: m.txid, tunnelId: m.tunnelId });
        this.io.onPeerEndpoints(this, m.tunnelId, m.peerId, m.endpoints);
        return;
      case Ctl.REVOKED:
        this.revoked = true;
        this.channel?.destroy();
        this.channel = undefined;
        this.io.onRevoked(this);
        return;
      default:
        if (!this.pending.resolve(m.txid, m)) this.drops.inc('ctl-unsolicited');
    }
  }

  /** HINT from our DC (restarted, or lost our session): re-register now, at most once a second. */
  onHint(): void {
    const now = performance.now();
    if (now - this.lastHintAt < 1000) return;
    this.lastHintAt = now;
    this.log.info('dc asked us to re-register');
    this.register().catch((e: Error) => this.log.warn('re-registration failed', { err: e }));
  }

  private sendControl(m: ControlMessage): void {
    if (!this.channel) return;
    const f = this.channel.seal(encodeControl(m));
    if (typeof f !== 'string') this.io.send(f, this.dc.endpoint);
  }

  private async request(m: ControlMessage, what: string): Promise<ControlMessage> {
    if (!this.channel) await this.register();
    const pt = encodeControl(m);
    return this.pending.request(
      m.txid,
      what,
      () => {
        if (!this.channel) return;
        const f = this.channel.seal(pt);
        if (typeof f !== 'string') this.io.send(f, this.dc.endpoint);
      },
      this.opts.retry,
    );
  }

  /** Direction Request (paper §2.3): asks the DC for a route to the target; the answer is the Route Direction. */
  async direction(target: Target): Promise<Route> {
    const r = await this.request({ type: Ctl.DIRECTION_REQUEST, txid: newTxid(), target }, 'direction request');
    if (r.type === Ctl.ROUTE_DIRECTION) return r.route;
    if (r.type === Ctl.DIRECTION_ERROR) throw new RejectedError('direction request', `${STATUS_TEXT[r.status] ?? r.status}: ${r.message}`);
    throw new RejectedError('direction request', 'unexpected answer');
  }

  /**
   * Path Refresh (docs/protocol.md §3.4, rebinding): the direct path of tunnel `tunnelId` went silent. The DC learns
   * our address of now from this request and tells the peer; the answer is where the peer is now (none: no direct
   * path is possible any more).
   */
  async pathRefresh(tunnelId: bigint, peerId: Uint8Array): Promise<readonly Endpoint[]> {
    const r = await this.request({ type: Ctl.PATH_REFRESH, txid: newTxid(), tunnelId, peerId }, 'path refresh');
    if (r.type === Ctl.PEER_ENDPOINTS) return r.endpoints;
    if (r.type === Ctl.DIRECTION_ERROR) throw new RejectedError('path refresh', `${STATUS_TEXT[r.status] ?? r.status}: ${r.message}`);
    throw new RejectedError('path refresh', 'unexpected answer');
  }

  async resolve(target: Target): Promise<{ id: string; v4: string; v6: string; name: string } | undefined> {
    const r = await this.request({ type: Ctl.RESOLVE_REQUEST, txid: newTxid(), target }, 'resolve');
    if (r.type !== Ctl.RESOLVE_RESPONSE || r.status !== Status.OK) return undefined;
    return { id: formatId(r.id), v4: r.v4, v6: r.v6, name: r.name };
  }

  /** A DNS-SD question for the household (a DNS query message); its DNS answer message, or undefined when there is none. */
  async dnsQuery(message: Uint8Array): Promise<Buffer | undefined> {
    const r = await this.request({ type: Ctl.DNS_QUERY, txid: newTxid(), message }, 'dns query');
    return r.type === Ctl.DNS_ANSWER && r.message.length > 0 ? Buffer.from(r.message) : undefined;
  }

  /** After a move: tell the DC from the new address (it learns the mapping), with a fresh NAT probe. */
  async locationUpdate(): Promise<void> {
    if (!this.channel) {
      await this.register();
      return;
    }
    const txid = newTxid();
    const probeTo: Endpoint = { ...this.dc.endpoint, port: this.dc.probePort ?? this.dc.endpoint.port + 1 };
    this.io.send(encodeNatProbe(0, txid, this.identity.id), probeTo);
    const r = await this.request({ type: Ctl.LOCATION_UPDATE, txid, locals: this.io.locals() }, 'location update');
    if (r.type === Ctl.LOCATION_ACK && this.registration) {
      this.registration = { ...this.registration, observed: r.observed, behindNat: r.behindNat };
    }
  }

  async reportRtts(rtts: Array<readonly [Uint8Array, number]>): Promise<void> {
    if (rtts.length === 0 || !this.channel) return;
    await this.request({ type: Ctl.RTT_REPORT, txid: newTxid(), rtts }, 'rtt report');
  }

  /** Watchdog, called every second: a NATed terminal hears the DC every keep-alive period; a silent DC means re-register. */
  tick(): void {
    if (this.revoked || this.registering) return;
    // After a refusal, ask again only once it may pass: its retry-after, else a minute (an address may be freed).
    if (this.refusal && performance.now() - this.refusal.at < Math.max(this.refusal.error.retryAfterS * 1000, REFUSED_RETRY_MS)) return;
    const r = this.registration;
    if (!r || !this.channel) {
      this.register().catch(() => undefined);
      return;
    }
    const silentMs = performance.now() - this.lastDcContact;
    if (r.keepaliveS > 0) {
      if (silentMs > r.keepaliveS * 3000) {
        this.log.warn('dc silent; registering again', { silentMs: Math.round(silentMs) });
        this.register().catch(() => undefined);
      }
    } else if (silentMs > 60_000) {
      // Not behind a NAT: nobody keeps us alive, so we prove liveness ourselves.
      this.request({ type: Ctl.KEEPALIVE, txid: newTxid(), dcTime: this.io.now() }, 'keep-alive').catch(() => {
        this.register().catch(() => undefined);
      });
      this.lastDcContact = performance.now() - 30_000;
    }
  }

  /** All pending requests go again now (after a move the old path is gone). */
  resend(): void {
    this.pending.resendAll();
  }

  async deregister(): Promise<void> {
    if (!this.channel) return;
    await this.request({ type: Ctl.DEREGISTER, txid: newTxid() }, 'deregister').catch(() => undefined);
    this.channel.destroy();
    this.channel = undefined;
  }

  close(): void {
    this.pending.cancelAll('closed');
    this.channel?.destroy();
    this.channel = undefined;
    if (this.channelIndex) this.io.freeIndex(this.channelIndex);
  }

  describe(): Record<string, unknown> {
    const r = this.registration;
    return {
      id: this.id,
      name: this.opts.name ?? '',
      dc: formatId(this.dc.id),
      registered: this.registered,
      revoked: this.revoked,
      v4: r?.v4 ?? null,
      v6: r?.v6 ?? null,
      observed: r ? `${r.observed.address}:${r.observed.port}` : null,
      behindNat: r?.behindNat ?? null,
      registrationMs: Math.round(this.registrationMs * 10) / 10,
      drops: this.drops.toJSON(),
      retransmissions: this.pending.retransmissions,
    };
  }
}
