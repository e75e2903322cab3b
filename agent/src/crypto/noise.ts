// The tunnel handshake Noise_KK_secp256k1_ChaChaPoly_SHA256 (Noise Protocol Framework rev 34: §5 processing rules,
// §7.5 pattern KK, §12.3 ChaChaPoly, §12.4 SHA256) framed as the TUNNEL_REQUEST / TUNNEL_RESPONSE messages of
// docs/protocol.md §3.4. DH = raw x-coordinate of the secp256k1 product (32 bytes); public keys are 33-byte
// compressed points; prologue = "NTM1 tunnel" ‖ tunnel id (8).
//
//   KK:  -> s
//        <- s
//        ...
//        -> e, es, ss      TUNNEL_REQUEST  0x05 ‖ 0 0 0 ‖ sender index (4) ‖ tunnel id (8) ‖ e (33) ‖ Enc(TAI64N) (28) = 77
//        <- e, ee, se      TUNNEL_RESPONSE 0x06 ‖ 0 0 0 ‖ sender index (4) ‖ receiver index (4) ‖ e (33) ‖ Enc() (16) = 61
//
// Split gives k_i→r (first) and k_r→i (second). The clear header fields (indexes, tunnel id) are outside the Noise
// transcript except the tunnel id, which the prologue binds.
//
// Failures on received messages are return values (a HandshakeDrop reason string), never exceptions, and never
// change the caller's state: a forged TUNNEL_RESPONSE cannot spoil a pending initiator handshake.
// Ephemeral private keys this module generates are wiped as soon as their last DH is done; injected ones
// (deterministic test vectors) belong to the caller.
//
// Work done before it is needed (issue 15: tunnel set-up is on the user's critical path): the next ephemeral key pair
// is generated while the event loop is idle (takeEphemeral), and a responder, whose KK pattern names the initiator's
// static key beforehand, may compute its ephemeral and se = DH(e_r, s_i) when the route arrives, before the request
// (precomputeResponse). Neither changes a byte on the wire: each ephemeral is still fresh, random and used once.

import { createHash } from 'node:crypto';
import { defaultAead, type Aead, AEAD_TAG_LENGTH } from './aead.js';
import { BufferLengthError, HandshakeStateError, InvalidPublicKeyError } from './errors.js';
import { noiseHkdf2 } from './hkdf.js';
import { defaultSecp256k1, KeyPair, PUBLIC_KEY_LENGTH, type DhKey, type Secp256k1 } from './secp256k1.js';

export const NOISE_PROTOCOL_NAME = 'Noise_KK_secp256k1_ChaChaPoly_SHA256';
export const TUNNEL_PROLOGUE_LABEL = 'NTM1 tunnel';
export const TUNNEL_REQUEST_TYPE = 0x05;
export const TUNNEL_RESPONSE_TYPE = 0x06;
export const TUNNEL_ID_LENGTH = 8;
export const TAI64N_LENGTH = 12;
export const TUNNEL_REQUEST_LENGTH = 4 + 4 + TUNNEL_ID_LENGTH + PUBLIC_KEY_LENGTH + TAI64N_LENGTH + AEAD_TAG_LENGTH; // 77
export const TUNNEL_RESPONSE_LENGTH = 4 + 4 + 4 + PUBLIC_KEY_LENGTH + AEAD_TAG_LENGTH; // 61

const HASH_LENGTH = 32;
const EMPTY = Buffer.alloc(0);
const PROLOGUE_LABEL_BYTES = Buffer.from(TUNNEL_PROLOGUE_LABEL, 'ascii');

// Offsets (docs/protocol.md §3.4).
const REQ_SENDER = 4;
const REQ_TUNNEL = 8;
const REQ_E = 16;
const REQ_PAYLOAD = REQ_E + PUBLIC_KEY_LENGTH; // 49
const RES_SENDER = 4;
const RES_RECEIVER = 8;
const RES_E = 12;
const RES_PAYLOAD = RES_E + PUBLIC_KEY_LENGTH; // 45

/** Why a received handshake message was dropped (for the per-reason drop counters of docs/protocol.md §3). */
export type HandshakeDrop =
  | 'length' // not exactly 77 / 61 bytes
  | 'type' // wrong first byte
  | 'reserved' // reserved bytes not zero
  | 'index' // TUNNEL_RESPONSE receiver index is not our sender index
  | 'point' // an ephemeral (or the configured peer static) is not a valid secp256k1 point
  | 'decrypt' // the AEAD payload did not authenticate (wrong static keys, corruption, forgery)
  | 'stale'; // TAI64N timestamp not newer than the greatest one accepted from this peer (replayed request)

/** Which implementations to run on; tests run the same vectors on both. */
export interface NoiseSuite {
  readonly secp: Secp256k1;
  readonly aead: Aead;
}
export const defaultNoiseSuite: NoiseSuite = { secp: defaultSecp256k1, aead: defaultAead };

/** The result of a completed handshake: transport keys for this side, and the handshake hash (channel binding). */
export interface TransportKeys {
  /** Key for packets this side sends (k_i→r on the initiator, k_r→i on the responder). Owned by the caller. */
  readonly send: Buffer;
  /** Key for packets this side receives. Owned by the caller. */
  readonly receive: Buffer;
  /** Final handshake hash h (Noise §11.2 channel binding); identical on both sides. */
  readonly handshakeHash: Buffer;
}

// ---------------------------------------------------------------------------------------------------------------
// Noise §5.2 SymmetricState (with §5.1 CipherState folded in: k and n).

class SymmetricState {
  h: Buffer;
  ck: Buffer;
  k: Buffer | null = null;
  n = 0;

  constructor(
    readonly aead: Aead,
    h: Buffer,
    ck: Buffer,
  ) {
    this.h = h;
    this.ck = ck;
  }

  /** InitializeSymmetric(protocol_name): the name is longer than HASHLEN, so h = SHA256(name); ck = h. */
  static initialize(aead: Aead): SymmetricState {
    const name = Buffer.from(NOISE_PROTOCOL_NAME, 'ascii');
    const h = name.length <= HASH_LENGTH ? Buffer.concat([name, Buffer.alloc(HASH_LENGTH - name.length)]) : sha256(name);
    return new SymmetricState(aead, h, Buffer.from(h));
  }

  clone(): SymmetricState {
    const s = new SymmetricState(this.aead, Buffer.from(this.h), Buffer.from(this.ck));
    s.k = this.k === null ? null : Buffer.from(this.k);
    s.n = this.n;
    return s;
  }

  mixHash(...data: Uint8Array[]): void {
    const hash = createHash('sha256').update(this.h);
    for (const d of data) hash.update(d);
    this.h = hash.digest();
  }

  /** MixKey(ikm): ck, temp_k = HKDF(ck, ikm, 2); k = temp_k; n = 0. Wipes the previous ck/k and `ikm`. */
  mixKey(ikm: Buffer): void {
    const [ck, k] = noiseHkdf2(this.ck, ikm);
    this.ck.fill(0);
    this.k?.fill(0);
    ikm.fill(0);
    this.ck = ck;
    this.k = k;
    this.n = 0;
  }

  encryptAndHash(plaintext: Uint8Array): Buffer {
    if (this.k === null) throw new HandshakeStateError('EncryptAndHash before any MixKey (not reachable in KK)');
    const ct = this.aead.seal(this.k, this.n++, plaintext, this.h);
    this.mixHash(ct);
    return ct;
  }

  decryptAndHash(ciphertext: Uint8Array): Buffer | null {
    if (this.k === null) return null;
    const pt = this.aead.open(this.k, this.n++, ciphertext, this.h);
    if (pt === null) return null;
    this.mixHash(ciphertext);
    return pt;
  }

  /** Split(): two 32-byte keys, first for initiator→responder. Wipes ck and k. */
  split(): [Buffer, Buffer] {
    const keys = noiseHkdf2(this.ck, EMPTY);
    this.ck.fill(0);
    this.k?.fill(0);
    this.k = null;
    return keys;
  }

  wipe(): void {
    this.ck.fill(0);
    this.k?.fill(0);
  }
}

function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

/** InitializeSymmetric, MixHash(prologue), pre-messages MixHash(s_i) then MixHash(s_r). */
function initialState(aead: Aead, tunnelId: Uint8Array, initiatorStatic: Uint8Array, responderStatic: Uint8Array): SymmetricState {
  const s = SymmetricState.initialize(aead);
  s.mixHash(PROLOGUE_LABEL_BYTES, tunnelId);
  s.mixHash(initiatorStatic);
  s.mixHash(responderStatic);
  return s;
}

// ---------------------------------------------------------------------------------------------------------------
// TAI64N (https://cr.yp.to/libtai/tai64.html), as WireGuard stamps its handshake initiations.

/** 2^62 + 10: TAI64 label of the Unix epoch (TAI − UTC was 10 s in 1970, as WireGuard counts). */
const TAI64_EPOCH_HI = 0x4000_0000;
const TAI64_EPOCH_OFFSET = 10;

/** The 12-byte TAI64N label of `ms` milliseconds since the Unix epoch (nanoseconds = ms remainder × 10^6). */
export function tai64n(ms: number = Date.now(), out: Buffer = Buffer.allocUnsafe(TAI64N_LENGTH)): Buffer {
  const secs = Math.floor(ms / 1000) + TAI64_EPOCH_OFFSET;
  const nanos = Math.round((ms - Math.floor(ms / 1000) * 1000) * 1e6);
  out.writeUInt32BE(TAI64_EPOCH_HI + Math.floor(secs / 0x1_0000_0000), 0);
  out.writeUInt32BE(secs >>> 0, 4);
  out.writeUInt32BE(Math.min(nanos, 999_999_999), 8);
  return out;
}

/** True when TAI64N label `a` is strictly later than `b` (12-byte big-endian comparison). */
export function tai64nAfter(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) > 0;
}

// ---------------------------------------------------------------------------------------------------------------
// Ephemeral keys made ahead of need.

/** One key pair per implementation, made after the last was taken; only this module ever holds it unused. */
const reserved = new Map<Secp256k1, KeyPair>();
const refilling = new Set<Secp256k1>();

/**
 * A fresh ephemeral key pair for one handshake, the caller's to wipe (KeyPair.destroy). It was generated ahead, at the
 * event loop's first idle moment (setImmediate: after the datagrams of the handshake before had left), so the
 * handshake does not wait for a CSPRNG call and a point multiplication; without one in reserve it is generated now.
 * Either way the next is made ahead.
 */
export function takeEphemeral(secp: Secp256k1 = defaultSecp256k1): KeyPair {
  const k = reserved.get(secp);
  reserved.delete(secp);
  reserveEphemeral(secp);
  return k ?? KeyPair.generate(secp);
}

/** Has an ephemeral key pair made at the next idle moment (a process that will handshake calls it at start). */
export function reserveEphemeral(secp: Secp256k1 = defaultSecp256k1): void {
  if (refilling.has(secp)) return;
  refilling.add(secp);
  setImmediate(() => {
    refilling.delete(secp);
    if (!reserved.has(secp)) reserved.set(secp, KeyPair.generate(secp));
  }).unref();
}

// ---------------------------------------------------------------------------------------------------------------
// Initiator.

export interface InitiatorParams {
  /** Our static key (an Identity or KeyPair). */
  readonly localStatic: DhKey;
  /** The responder's 33-byte static public key (from the Route Direction). */
  readonly remoteStatic: Uint8Array;
  /** 8-byte tunnel id (from the Route Direction); bound into the prologue. */
  readonly tunnelId: Uint8Array;
  /** Our local index for this tunnel (uint32): the responder puts it in the receiver field of its packets. */
  readonly senderIndex: number;
  /** 12-byte TAI64N; default tai64n(Date.now()). Must grow from one handshake to the next with this peer. */
  readonly timestamp?: Uint8Array;
  /** Our ephemeral key; default a fresh random one. Inject only for deterministic test vectors. */
  readonly ephemeral?: KeyPair;
  /** DH(s_i, s_r), when the caller caches it per peer (saves one ECDH). Wiped after use: pass a copy. */
  readonly precomputedSs?: Buffer;
  readonly suite?: NoiseSuite;
}

/** A pending initiator handshake, waiting for the TUNNEL_RESPONSE. Opaque apart from the fields below. */
export class InitiatorHandshake {
  #done = false;
  /** @internal */
  constructor(
    readonly senderIndex: number,
    readonly tunnelId: Buffer,
    readonly remoteStatic: Buffer,
    readonly timestamp: Buffer,
    /** @internal */ readonly state: SymmetricState,
    /** @internal */ readonly localStatic: DhKey,
    /** @internal */ readonly ephemeral: KeyPair,
    /** @internal */ readonly ownsEphemeral: boolean,
  ) {}

  get done(): boolean {
    return this.#done;
  }

  /** @internal */
  finish(): void {
    this.#done = true;
    this.state.wipe();
    if (this.ownsEphemeral) this.ephemeral.destroy();
  }

  /** Drops the handshake (timeout, superseded): wipes its secrets. */
  abandon(): void {
    if (!this.#done) this.finish();
  }
}

function u32(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff_ffff) throw new RangeError(`${what} must be a uint32: ${n}`);
  return n;
}

function checkLen(b: Uint8Array, len: number, what: string): void {
  if (!(b instanceof Uint8Array) || b.length !== len) throw new BufferLengthError(what, len, b instanceof Uint8Array ? b.length : -1);
}

/**
 * Builds TUNNEL_REQUEST (`-> e, es, ss` with the TAI64N payload). Throws only on caller bugs: bad lengths, or a
 * remote static that is not a valid point (InvalidPublicKeyError: it came from our own DC, not from the wire).
 */
export function createRequest(p: InitiatorParams): { packet: Buffer; state: InitiatorHandshake } {
  const suite = p.suite ?? defaultNoiseSuite;
  checkLen(p.remoteStatic, PUBLIC_KEY_LENGTH, 'remote static key');
  checkLen(p.tunnelId, TUNNEL_ID_LENGTH, 'tunnel id');
  const senderIndex = u32(p.senderIndex, 'sender index');
  const timestamp = Buffer.from(p.timestamp ?? tai64n());
  checkLen(timestamp, TAI64N_LENGTH, 'timestamp');
  const e = p.ephemeral ?? takeEphemeral(suite.secp);

  const s = initialState(suite.aead, p.tunnelId, p.localStatic.publicKey, p.remoteStatic);
  s.mixHash(e.publicKey); // e
  const es = e.dh(p.remoteStatic); // es
  if (es === null) throw new InvalidPublicKeyError('remote static key is not a valid secp256k1 point');
  s.mixKey(es);
  const ss = p.precomputedSs ?? p.localStatic.dh(p.remoteStatic); // ss
  if (ss === null) throw new InvalidPublicKeyError('remote static key is not a valid secp256k1 point');
  s.mixKey(ss);
  const payload = s.encryptAndHash(timestamp);

  const packet = Buffer.alloc(TUNNEL_REQUEST_LENGTH);
  packet[0] = TUNNEL_REQUEST_TYPE;
  packet.writeUInt32BE(senderIndex, REQ_SENDER);
  packet.set(p.tunnelId, REQ_TUNNEL);
  packet.set(e.publicKey, REQ_E);
  packet.set(payload, REQ_PAYLOAD);
  const state = new InitiatorHandshake(
    senderIndex,
    Buffer.from(p.tunnelId),
    Buffer.from(p.remoteStatic),
    timestamp,
    s,
    p.localStatic,
    e,
    p.ephemeral === undefined,
  );
  return { packet, state };
}

/**
 * Processes TUNNEL_RESPONSE (`<- e, ee, se`) for a pending handshake. On success the handshake is finished (its
 * secrets wiped) and the transport keys returned with the responder's index; on failure the pending handshake is
 * left untouched (a forgery does not abort it). Never throws on packet content.
 */
export function consumeResponse(
  hs: InitiatorHandshake,
  packet: Uint8Array,
): { keys: TransportKeys; remoteIndex: number } | HandshakeDrop {
  if (hs.done) return 'index'; // nothing pending any more: as if for an unknown index
  if (packet.length !== TUNNEL_RESPONSE_LENGTH) return 'length';
  if (packet[0] !== TUNNEL_RESPONSE_TYPE) return 'type';
  if (packet[1] !== 0 || packet[2] !== 0 || packet[3] !== 0) return 'reserved';
  const view = Buffer.from(packet.buffer, packet.byteOffset, packet.byteLength);
  if (view.readUInt32BE(RES_RECEIVER) !== hs.senderIndex) return 'index';
  const remoteIndex = view.readUInt32BE(RES_SENDER);
  const re = view.subarray(RES_E, RES_PAYLOAD);

  const s = hs.state.clone();
  s.mixHash(re); // e
  const ee = hs.ephemeral.dh(re); // ee
  if (ee === null) {
    s.wipe();
    return 'point';
  }
  s.mixKey(ee);
  const se = hs.localStatic.dh(re); // se: DH(s_i, e_r)
  if (se === null) {
    s.wipe();
    return 'point';
  }
  s.mixKey(se);
  if (s.decryptAndHash(view.subarray(RES_PAYLOAD, TUNNEL_RESPONSE_LENGTH)) === null) {
    s.wipe();
    return 'decrypt';
  }
  const handshakeHash = Buffer.from(s.h);
  const [send, receive] = s.split();
  hs.finish();
  return { keys: { send, receive, handshakeHash }, remoteIndex };
}

// ---------------------------------------------------------------------------------------------------------------
// Responder.

/** The clear header of a TUNNEL_REQUEST, read before any crypto to pick the peer (by tunnel id). */
export interface TunnelRequestHeader {
  /** The initiator's index (goes in the receiver field of our response). */
  readonly senderIndex: number;
  /** Borrowed: a view into the packet, valid only as long as the packet buffer is. */
  readonly tunnelId: Buffer;
}

/** Cheap framing check and header read; null when the packet cannot be a TUNNEL_REQUEST. */
export function parseRequestHeader(packet: Uint8Array): TunnelRequestHeader | null {
  if (packet.length !== TUNNEL_REQUEST_LENGTH || packet[0] !== TUNNEL_REQUEST_TYPE) return null;
  if (packet[1] !== 0 || packet[2] !== 0 || packet[3] !== 0) return null;
  const view = Buffer.from(packet.buffer, packet.byteOffset, packet.byteLength);
  return { senderIndex: view.readUInt32BE(REQ_SENDER), tunnelId: view.subarray(REQ_TUNNEL, REQ_TUNNEL + TUNNEL_ID_LENGTH) };
}

export interface ResponderParams {
  /** Our static key. */
  readonly localStatic: DhKey;
  /** The initiator's 33-byte static key expected for this tunnel id (KK: known beforehand). */
  readonly remoteStatic: Uint8Array;
  /** Greatest TAI64N accepted so far from this peer (null/undefined: none). The caller keeps it. */
  readonly lastTimestamp?: Uint8Array | null;
  /** DH(s_r, s_i), when cached per peer. Wiped after use: pass a copy. */
  readonly precomputedSs?: Buffer;
  readonly suite?: NoiseSuite;
}

/** A TUNNEL_REQUEST that authenticated; feed it to createResponse exactly once. */
export class ResponderHandshake {
  #used = false;
  /** @internal */
  constructor(
    /** The initiator's index. */
    readonly remoteIndex: number,
    /** Copy of the tunnel id. */
    readonly tunnelId: Buffer,
    /** The initiator's TAI64N: store it as the peer's new lastTimestamp once you commit to this handshake. */
    readonly timestamp: Buffer,
    readonly remoteStatic: Buffer,
    /** @internal */ readonly remoteEphemeral: Buffer,
    /** @internal */ readonly state: SymmetricState,
    /** @internal */ readonly suite: NoiseSuite,
  ) {}

  /** @internal */
  take(): SymmetricState {
    if (this.#used) throw new HandshakeStateError('createResponse called twice for one TUNNEL_REQUEST');
    this.#used = true;
    return this.state;
  }

  /** Drops the handshake without answering: wipes its secrets. */
  abandon(): void {
    if (!this.#used) {
      this.#used = true;
      this.state.wipe();
    }
  }
}

/**
 * Processes TUNNEL_REQUEST (`-> e, es, ss`): authenticates the initiator's static key (KK: a request decrypts only
 * for the expected pair of statics) and refuses timestamps not newer than `lastTimestamp`. Never throws on packet
 * content; the caller's state is not touched (it updates lastTimestamp itself from the result).
 */
export function consumeRequest(packet: Uint8Array, p: ResponderParams): ResponderHandshake | HandshakeDrop {
  const suite = p.suite ?? defaultNoiseSuite;
  if (packet.length !== TUNNEL_REQUEST_LENGTH) return 'length';
  if (packet[0] !== TUNNEL_REQUEST_TYPE) return 'type';
  if (packet[1] !== 0 || packet[2] !== 0 || packet[3] !== 0) return 'reserved';
  if (!(p.remoteStatic instanceof Uint8Array) || p.remoteStatic.length !== PUBLIC_KEY_LENGTH) return 'point';
  const view = Buffer.from(packet.buffer, packet.byteOffset, packet.byteLength);
  const tunnelId = view.subarray(REQ_TUNNEL, REQ_TUNNEL + TUNNEL_ID_LENGTH);
  const ie = view.subarray(REQ_E, REQ_PAYLOAD);

  const s = initialState(suite.aead, tunnelId, p.remoteStatic, p.localStatic.publicKey);
  s.mixHash(ie); // e
  const es = p.localStatic.dh(ie); // es: DH(s_r, e_i)
  if (es === null) {
    s.wipe();
    return 'point';
  }
  s.mixKey(es);
  const ss = p.precomputedSs ?? p.localStatic.dh(p.remoteStatic); // ss
  if (ss === null) {
    s.wipe();
    return 'point';
  }
  s.mixKey(ss);
  const ts = s.decryptAndHash(view.subarray(REQ_PAYLOAD, TUNNEL_REQUEST_LENGTH));
  if (ts === null) {
    s.wipe();
    return 'decrypt';
  }
  if (p.lastTimestamp != null && !tai64nAfter(ts, p.lastTimestamp)) {
    s.wipe();
    return 'stale';
  }
  return new ResponderHandshake(
    view.readUInt32BE(REQ_SENDER),
    Buffer.from(tunnelId),
    Buffer.from(ts),
    Buffer.from(p.remoteStatic),
    Buffer.from(ie),
    s,
    suite,
  );
}

/**
 * The responder's part of `<- e, ee, se` that does not depend on the request: its ephemeral key pair and
 * se = DH(e_r, s_i). In KK the responder knows the initiator's static key beforehand (from the Route Direction), so it
 * can make these while the request is still on its way; answering then costs es and ee only. Used by at most one
 * createResponse, and only for a request from `remoteStatic`; wiped there, or by discard().
 */
export class ResponderPrecompute {
  #ephemeral: KeyPair | undefined;
  #se: Buffer | undefined;
  /** @internal */
  constructor(
    readonly remoteStatic: Buffer,
    readonly secp: Secp256k1,
    ephemeral: KeyPair,
    se: Buffer,
  ) {
    this.#ephemeral = ephemeral;
    this.#se = se;
  }

  /** @internal The ephemeral and se for a request from `remoteStatic` (once); undefined when not for it, or used. */
  take(remoteStatic: Uint8Array, secp: Secp256k1): { e: KeyPair; se: Buffer } | undefined {
    if (!this.#ephemeral || !this.#se || secp !== this.secp || !this.remoteStatic.equals(remoteStatic)) return undefined;
    const r = { e: this.#ephemeral, se: this.#se };
    this.#ephemeral = undefined;
    this.#se = undefined;
    return r;
  }

  /** Wipes what was not used. */
  discard(): void {
    this.#ephemeral?.destroy();
    this.#se?.fill(0);
    this.#ephemeral = undefined;
    this.#se = undefined;
  }
}

/** Makes a ResponderPrecompute for requests from `remoteStatic`; null when that is not a valid point. */
export function precomputeResponse(remoteStatic: Uint8Array, suite: NoiseSuite = defaultNoiseSuite): ResponderPrecompute | null {
  if (!(remoteStatic instanceof Uint8Array) || remoteStatic.length !== PUBLIC_KEY_LENGTH) return null;
  const e = takeEphemeral(suite.secp);
  const se = e.dh(remoteStatic); // se: DH(e_r, s_i)
  if (se === null) {
    e.destroy();
    return null;
  }
  return new ResponderPrecompute(Buffer.from(remoteStatic), suite.secp, e, se);
}

/**
 * Builds TUNNEL_RESPONSE (`<- e, ee, se` with an empty payload) and returns the responder's transport keys.
 * The responder should not send DATA before the initiator's first packet confirms the keys (docs/protocol.md §3.4).
 * `precomputed`, when it was made for this request's initiator and not used yet, gives e and se (then used up);
 * otherwise both are made here. Throws HandshakeStateError when called twice for one request.
 */
export function createResponse(
  hs: ResponderHandshake,
  p: { readonly senderIndex: number; readonly ephemeral?: KeyPair; readonly precomputed?: ResponderPrecompute },
): { packet: Buffer; keys: TransportKeys } {
  const senderIndex = u32(p.senderIndex, 'sender index');
  const s = hs.take();
  const pre = p.ephemeral === undefined ? p.precomputed?.take(hs.remoteStatic, hs.suite.secp) : undefined;
  const e = p.ephemeral ?? pre?.e ?? takeEphemeral(hs.suite.secp);
  s.mixHash(e.publicKey); // e
  const ee = e.dh(hs.remoteEphemeral); // ee (already validated as a point in consumeRequest)
  const se = ee === null ? null : (pre?.se ?? e.dh(hs.remoteStatic)); // se: DH(e_r, s_i)
  if (ee === null || se === null) {
    s.wipe();
    pre?.se.fill(0);
    if (p.ephemeral === undefined) e.destroy();
    throw new HandshakeStateError('DH with a key that was valid in consumeRequest failed');
  }
  s.mixKey(ee);
  s.mixKey(se);
  const payload = s.encryptAndHash(EMPTY);
  const handshakeHash = Buffer.from(s.h);
  const [initiatorToResponder, responderToInitiator] = s.split();
  if (p.ephemeral === undefined) e.destroy();

  const packet = Buffer.alloc(TUNNEL_RESPONSE_LENGTH);
  packet[0] = TUNNEL_RESPONSE_TYPE;
  packet.writeUInt32BE(senderIndex, RES_SENDER);
  packet.writeUInt32BE(hs.remoteIndex, RES_RECEIVER);
  packet.set(e.publicKey, RES_E);
  packet.set(payload, RES_PAYLOAD);
  return { packet, keys: { send: responderToInitiator, receive: initiatorToResponder, handshakeHash } };
}
