// Sealed frames (DATA 0x04, CONTROL 0x10) of docs/protocol.md §3.3 under one keypair, with the rekey/reject limits of
// §3.4 (WireGuard's): the hot path of the data plane. Plus KeypairSet, WireGuard's current/previous/next rotation.
//
//   0      1          4                  8                                16
//   +------+----------+------------------+--------------------------------+------------------------+
//   | type | 0x00 ×3  | receiver index   | counter (uint64, big-endian)   | ciphertext ‖ tag (16)  |
//   +------+----------+------------------+--------------------------------+------------------------+
//   AEAD = ChaCha20-Poly1305, nonce = 0x00000000 ‖ counter little-endian, empty AAD.
//
// A keypair seals and opens one packet type only (fixed at construction): with an empty AAD the type byte is not
// authenticated, so a keypair that accepted both would let an attacker relabel DATA as CONTROL.
//
// Hot path rules: seal/open never throw on packet content and never allocate beyond what node:crypto does inside
// (pass `out`); a refused packet is a reason string for the drop counters. Single-threaded: one keypair is used from
// one event loop; send and receive state are separate fields.

import { defaultAead, type Aead, AEAD_KEY_LENGTH, AEAD_TAG_LENGTH } from './aead.js';
import { BufferLengthError } from './errors.js';
import { ReplayWindow, REPLAY_WINDOW_SIZE } from './replay.js';
import { lendReceiveKey, returnReceiveKey } from './rx-keys.js';
import type { OpenedDatagram } from '../types/net.js';
import { keep } from '../util/keep.js';
import { be32 } from '../util/bytes.js';

export const DATA_TYPE = 0x04;
export const CONTROL_TYPE = 0x10;
export const SEALED_HEADER_LENGTH = 16;
/** Header + tag. */
export const SEALED_OVERHEAD = SEALED_HEADER_LENGTH + AEAD_TAG_LENGTH;
/** docs/protocol.md §3: no UDP payload is longer. */
export const MAX_PACKET_LENGTH = 65_535;
export const MAX_SEALED_PLAINTEXT = MAX_PACKET_LENGTH - SEALED_OVERHEAD;

/** The spec's message limits (WireGuard's), exactly. */
export const REKEY_AFTER_MESSAGES = 2n ** 60n;
export const REJECT_AFTER_MESSAGES = 2n ** 64n - 2n ** 13n - 1n;

/** Limits of one keypair (docs/protocol.md §3.4). Counters are JS numbers, so message limits are clamped to 2^53 − 1. */
export interface SessionLimits {
  /** The initiator starts a new handshake when its sending keypair is this old. */
  readonly rekeyAfterMs: number;
  /** Neither side seals or opens with a keypair this old. */
  readonly rejectAfterMs: number;
  /** A new handshake is due after sending this many messages. */
  readonly rekeyAfterMessages: number;
  /** No message is sealed or accepted with a counter ≥ this. */
  readonly rejectAfterMessages: number;
  /** Anti-replay window, in packets (RFC 6479). */
  readonly replayWindow: number;
}

export const DEFAULT_SESSION_LIMITS: SessionLimits = Object.freeze({
  rekeyAfterMs: 120_000,
  rejectAfterMs: 180_000,
  rekeyAfterMessages: Math.min(Number(REKEY_AFTER_MESSAGES), Number.MAX_SAFE_INTEGER),
  rejectAfterMessages: Math.min(Number(REJECT_AFTER_MESSAGES), Number.MAX_SAFE_INTEGER),
  replayWindow: REPLAY_WINDOW_SIZE,
});

/** Why seal refused. */
export type SealRefusal =
  | 'expired' // keypair older than rejectAfterMs
  | 'exhausted' // send counter reached rejectAfterMessages
  | 'too-big'; // plaintext would make a packet longer than 65,535 bytes, or longer than the caller's `out`

/** Why open dropped a packet. */
export type OpenDrop =
  | 'length' // shorter than header + tag, longer than 65,535, or its plaintext longer than the caller's `out`
  | 'type' // not this keypair's packet type
  | 'reserved' // reserved bytes not zero
  | 'index' // receiver index is not ours
  | 'expired' // keypair older than rejectAfterMs
  | 'counter' // counter ≥ rejectAfterMessages (or beyond 2^53 − 1)
  | 'replay' // seen already, or older than the replay window
  | 'auth'; // tag did not verify

export interface TunnelKeypairInit {
  /** DATA_TYPE for tunnels, CONTROL_TYPE for terminal↔DC channels. */
  readonly packetType: number;
  /** 32 bytes each; copied. */
  readonly sendKey: Uint8Array;
  readonly receiveKey: Uint8Array;
  /** Our index: peers put it in the receiver field of what they send us. uint32. */
  readonly localIndex: number;
  /** The peer's index: we put it in the receiver field of what we send. uint32. */
  readonly remoteIndex: number;
  /** True on the side that sent the handshake's first message (only it rekeys on time). */
  readonly isInitiator: boolean;
  /** Milliseconds clock (default Date.now); injected by tests. */
  readonly clock?: () => number;
  /** Creation time on `clock`; default clock(). */
  readonly createdAt?: number;
  readonly limits?: Partial<SessionLimits>;
  readonly aead?: Aead;
}

const TWO32 = 0x1_0000_0000;
/** Counters whose high word reaches this exceed Number.MAX_SAFE_INTEGER. */
const SAFE_HI_LIMIT = 0x20_0000;

/** Defaults overridden by the keys the caller set (an explicit `undefined` keeps the default). */
/** Merged limits per partial object: keypairs built with the same (shared) partial share one frozen result. */
const merged = new WeakMap<object, SessionLimits>();

function mergeLimits(partial: Partial<SessionLimits> | undefined): SessionLimits {
  if (partial === undefined) return DEFAULT_SESSION_LIMITS;
  const known = merged.get(partial);
  if (known) return known;
  const m: Record<string, number> = { ...DEFAULT_SESSION_LIMITS };
  for (const [k, v] of Object.entries(partial)) if (typeof v === 'number') m[k] = v;
  const out = Object.freeze(m as unknown as SessionLimits);
  merged.set(partial, out);
  return out;
}

/**
 * Limits of a terminal↔DC control channel (docs/protocol.md §3.3): it lives as long as the registration (no rekey,
 * no expiry: a new registration makes new keys) and carries a few messages at a time, so a 128-message replay
 * window is plenty (a DC holds one per terminal: 100,000 of them).
 */
export const CONTROL_LIMITS: Partial<SessionLimits> = Object.freeze({ rekeyAfterMs: Infinity, rejectAfterMs: Infinity, replayWindow: 128 });


function u32(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff_ffff) throw new RangeError(`${what} must be a uint32: ${n}`);
  return n;
}

/** One direction pair of tunnel (or channel) keys: send key + counter, receive key + replay window. */
export class TunnelKeypair {
  readonly packetType: number;
  readonly localIndex: number;
  readonly remoteIndex: number;
  readonly isInitiator: boolean;
  readonly createdAt: number;
  readonly limits: SessionLimits;
  readonly #sendKey: Buffer;
  readonly #receiveKey: Buffer;
  readonly #replay: ReplayWindow;
  readonly #aead: Aead;
  readonly #clock: () => number;
  #sendCounter = 0;
  #lastSendAt = -Infinity;
  #lastReceiveAt = -Infinity;
  #received = 0;
  /** The generation of the receive key lent to the native opening thread (crypto/rx-keys.ts); 0: not lent. */
  readonly #rxGen: number;

  constructor(init: TunnelKeypairInit) {
    if (init.packetType !== DATA_TYPE && init.packetType !== CONTROL_TYPE) throw new RangeError(`not a sealed packet type: ${init.packetType}`);
    if (init.sendKey.length !== AEAD_KEY_LENGTH) throw new BufferLengthError('send key', AEAD_KEY_LENGTH, init.sendKey.length);
    if (init.receiveKey.length !== AEAD_KEY_LENGTH) throw new BufferLengthError('receive key', AEAD_KEY_LENGTH, init.receiveKey.length);
    this.packetType = init.packetType;
    this.localIndex = u32(init.localIndex, 'local index');
    this.remoteIndex = u32(init.remoteIndex, 'remote index');
    this.isInitiator = init.isInitiator;
    this.#clock = init.clock ?? Date.now;
    this.createdAt = init.createdAt ?? this.#clock();
    this.limits = mergeLimits(init.limits);
    // Kept out of Node's shared Buffer pool (util/keep.ts): a DC holds one channel per terminal.
    this.#sendKey = keep(init.sendKey);
    this.#receiveKey = keep(init.receiveKey);
    this.#replay = new ReplayWindow(this.limits.replayWindow, Math.min(this.limits.rejectAfterMessages, Number.MAX_SAFE_INTEGER));
    this.#aead = init.aead ?? defaultAead;
    // DATA under the default AEAD only: a keypair given another AEAD (tests, the reference) opens everything itself.
    this.#rxGen = init.packetType === DATA_TYPE && init.aead === undefined ? lendReceiveKey(this, this.localIndex, this.#receiveKey) : 0;
  }

  /** Next counter seal will use (= messages sent). */
  get sendCounter(): number {
    return this.#sendCounter;
  }
  /** Packets that authenticated under this keypair. */
  get receivedPackets(): number {
    return this.#received;
  }
  get lastSendAt(): number {
    return this.#lastSendAt;
  }
  get lastReceiveAt(): number {
    return this.#lastReceiveAt;
  }

  /** True when the initiator should start a new handshake (age or message count); responders wait for it. */
  needsRekey(now: number = this.#clock()): boolean {
    return this.#sendCounter >= this.limits.rekeyAfterMessages || (this.isInitiator && now - this.createdAt >= this.limits.rekeyAfterMs);
  }

  /** True when this keypair may no longer seal or open anything. */
  isExpired(now: number = this.#clock()): boolean {
    return now - this.createdAt >= this.limits.rejectAfterMs;
  }

  /**
   * Seals `plaintext` (borrowed, read before `out` is written: they may alias only if plaintext starts at
   * out[16]) into header ‖ ciphertext ‖ tag. Returns the packet (a subarray of `out` when given: caller-owned;
   * 'too-big' when it cannot hold plaintext.length + 32 bytes) or why it refused. Never throws.
   */
  seal(plaintext: Uint8Array, out?: Buffer, now: number = this.#clock()): Buffer | SealRefusal {
    const refused = this.sealRefusal(plaintext, now);
    if (refused !== undefined) return refused;
    const counter = this.#sendCounter;
    const len = plaintext.length + SEALED_OVERHEAD;
    let dst: Buffer;
    if (out === undefined) dst = Buffer.allocUnsafe(len);
    else if (out.length < len) return 'too-big';
    else dst = out.length === len ? out : out.subarray(0, len);
    // Encrypt first: when plaintext sits at out[16..] the header bytes are not part of it, but being strict about
    // order costs nothing.
    this.#aead.seal(this.#sendKey, counter, plaintext, undefined, dst.subarray(SEALED_HEADER_LENGTH));
    this.writeHeader(dst, 0, counter);
    this.#sendCounter = counter + 1;
    this.#lastSendAt = now;
    return dst;
  }

  /**
   * seal() with the AEAD left to the socket (issue 15: the native socket seals on a thread of its own,
   * agent/native/udp.c): the same checks, the same counter taken, the 16-byte header written into `prefix` at `at`;
   * then `sink` gets `prefix` (exactly `at` + 16 bytes), the send key, the counter and the plaintext (all borrowed for the call) and
   * must seal the plaintext under that key and counter (RFC 8439, this keypair's nonce) after the prefix. Refused
   * like seal(), and 'unsupported' for a keypair given its own AEAD (tests, the reference): seal() it is then.
   */
  sealVia<T>(
    plaintext: Uint8Array,
    prefix: Buffer,
    at: number,
    now: number,
    sink: (prefix: Buffer, key: Uint8Array, counter: number, plaintext: Uint8Array, to: T) => void,
    to: T,
  ): SealRefusal | 'unsupported' | undefined {
    if (this.#aead !== defaultAead) return 'unsupported';
    const refused = this.sealRefusal(plaintext, now);
    if (refused !== undefined) return refused;
    if (prefix.length !== at + SEALED_HEADER_LENGTH) return 'too-big';
    const counter = this.#sendCounter;
    this.writeHeader(prefix, at, counter);
    this.#sendCounter = counter + 1;
    this.#lastSendAt = now;
    sink(prefix, this.#sendKey, counter, plaintext, to);
    return undefined;
  }

  /**
   * sealVia() for a TCP GSO packet the socket cuts into segments and seals (issue 15: one call per 64 KB instead of
   * per segment): the header of the first segment written into `prefix` at `at`; `sink` cuts `packet` into at most
   * `maxSegs` segments, seals them under counter, counter + 1, … and returns how many (its counters are taken), or a
   * negative errno with nothing sent (this returns it). 'unsupported' also when the keypair could not take `maxSegs`
   * more messages: the caller then cuts the packet and seals each segment, which refuses at the exact limit.
   */
  sealViaGso<T>(
    packet: Uint8Array,
    prefix: Buffer,
    at: number,
    now: number,
    maxSegs: number,
    sink: (prefix: Buffer, key: Uint8Array, counter: number, packet: Uint8Array, maxSegs: number, to: T) => number,
    to: T,
  ): number | SealRefusal | 'unsupported' {
    if (this.#aead !== defaultAead) return 'unsupported';
    if (now - this.createdAt >= this.limits.rejectAfterMs) return 'expired';
    const counter = this.#sendCounter;
    if (counter + maxSegs >= this.limits.rejectAfterMessages || counter + maxSegs >= Number.MAX_SAFE_INTEGER) return 'unsupported';
    if (prefix.length !== at + SEALED_HEADER_LENGTH) return 'too-big';
    this.writeHeader(prefix, at, counter);
    const n = sink(prefix, this.#sendKey, counter, packet, maxSegs, to);
    if (n <= 0) return n;
    this.#sendCounter = counter + n;
    this.#lastSendAt = now;
    return n;
  }

  /** Why seal() or sealVia() may not seal `plaintext` now (age, message count, size); undefined when it may. */
  private sealRefusal(plaintext: Uint8Array, now: number): SealRefusal | undefined {
    if (now - this.createdAt >= this.limits.rejectAfterMs) return 'expired';
    const counter = this.#sendCounter;
    if (counter >= this.limits.rejectAfterMessages || counter >= Number.MAX_SAFE_INTEGER) return 'exhausted';
    if (plaintext.length > MAX_SEALED_PLAINTEXT) return 'too-big';
    return undefined;
  }

  /** The sealed header (docs/protocol.md §3.3) of the packet under `counter`, at out[at .. at + 16). */
  private writeHeader(out: Buffer, at: number, counter: number): void {
    out[at] = this.packetType;
    out[at + 1] = 0;
    out[at + 2] = 0;
    out[at + 3] = 0;
    out.writeUInt32BE(this.remoteIndex, at + 4);
    out.writeUInt32BE(Math.floor(counter / TWO32), at + 8);
    out.writeUInt32BE(counter >>> 0, at + 12);
  }

  /**
   * Authenticates and decrypts a sealed packet (borrowed; not modified). Returns the plaintext (a subarray of `out`
   * when given, else a fresh Buffer) or the drop reason. The replay window moves only for authentic packets.
   * Never throws: packet sizes are the sender's choice, so a plaintext that does not fit `out` is a 'length' drop.
   * `opened`: what the native opening thread made of this very datagram (types/net.ts); taken instead of opening it
   * again when its key was this keypair's (then the plaintext returned is borrowed from `opened`, not in `out`).
   */
  open(packet: Uint8Array, out?: Buffer, now: number = this.#clock(), opened?: OpenedDatagram): Buffer | OpenDrop {
    const len = packet.length;
    if (len < SEALED_OVERHEAD || len > MAX_PACKET_LENGTH) return 'length';
    if (packet[0] !== this.packetType) return 'type';
    if (packet[1] !== 0 || packet[2] !== 0 || packet[3] !== 0) return 'reserved';
    // Header fields read byte by byte: no Buffer view per packet (the data path opens every DATA packet here).
    if (be32(packet, 4) !== this.localIndex) return 'index';
    if (now - this.createdAt >= this.limits.rejectAfterMs) return 'expired';
    const hi = be32(packet, 8);
    if (hi >= SAFE_HI_LIMIT) return 'counter';
    const counter = hi * TWO32 + be32(packet, 12);
    if (counter >= this.limits.rejectAfterMessages) return 'counter';
    if (!this.#replay.check(counter)) return 'replay';
    if (out !== undefined && out.length < len - SEALED_OVERHEAD) return 'length';
    const pt =
      opened !== undefined && opened.gen === this.#rxGen && this.#rxGen !== 0
        ? opened.ok
          ? opened.plain
          : null
        : this.#aead.open(this.#receiveKey, counter, packet.subarray(SEALED_HEADER_LENGTH), undefined, out);
    if (pt === null) return 'auth';
    if (!this.#replay.update(counter)) return 'replay';
    this.#received++;
    this.#lastReceiveAt = now;
    return pt;
  }

  /** Reads the receiver index of a sealed packet (to find its keypair) without any crypto; -1 if too short. */
  static receiverIndex(packet: Uint8Array): number {
    if (packet.length < SEALED_OVERHEAD) return -1;
    return ((packet[4]! << 24) | (packet[5]! << 16) | (packet[6]! << 8) | packet[7]!) >>> 0;
  }

  /** Wipes both keys; every later seal/open fails authentication. */
  destroy(): void {
    returnReceiveKey(this, this.localIndex, this.#rxGen);
    this.#sendKey.fill(0);
    this.#receiveKey.fill(0);
  }
}

/**
 * WireGuard's keypair rotation for one peer (wireguard-go device/keypair.go, noise-protocol.go):
 * - the initiator installs a new keypair as `current` at once (it has proof the responder has it);
 * - the responder parks it as `next` and keeps sending with the old `current` until a packet authenticates under
 *   `next` (the initiator's first packet: it should send one, an empty DATA keepalive, right after the handshake);
 * - the replaced keypair stays as `previous`, valid for receiving late packets, until the next rotation or its own
 *   reject-after time.
 */
export class KeypairSet {
  #current: TunnelKeypair | null = null;
  #previous: TunnelKeypair | null = null;
  #next: TunnelKeypair | null = null;

  get current(): TunnelKeypair | null {
    return this.#current;
  }
  get previous(): TunnelKeypair | null {
    return this.#previous;
  }
  get next(): TunnelKeypair | null {
    return this.#next;
  }

  /** Installs a freshly derived keypair; returns keypairs it dropped (already destroyed) so the caller can unindex them. */
  install(kp: TunnelKeypair): TunnelKeypair[] {
    const dropped: TunnelKeypair[] = [];
    const drop = (k: TunnelKeypair | null): void => {
      if (k !== null) {
        k.destroy();
        dropped.push(k);
      }
    };
    if (kp.isInitiator) {
      if (this.#next !== null) {
        drop(this.#previous);
        this.#previous = this.#next;
        drop(this.#current);
      } else {
        drop(this.#previous);
        this.#previous = this.#current;
      }
      this.#next = null;
      this.#current = kp;
    } else {
      drop(this.#next);
      this.#next = kp;
    }
    return dropped;
  }

  /**
   * Call after a packet authenticated under `kp`. When `kp` is the pending `next`, it becomes `current`; returns the
   * keypair dropped by that rotation (destroyed), or null.
   */
  confirm(kp: TunnelKeypair): TunnelKeypair | null {
    if (kp !== this.#next) return null;
    const dropped = this.#previous;
    dropped?.destroy();
    this.#previous = this.#current;
    this.#current = kp;
    this.#next = null;
    return dropped;
  }

  /** The keypair whose local index is `index`, or null. */
  byIndex(index: number): TunnelKeypair | null {
    if (this.#current?.localIndex === index) return this.#current;
    if (this.#next?.localIndex === index) return this.#next;
    if (this.#previous?.localIndex === index) return this.#previous;
    return null;
  }

  /** Destroys everything (peer removed, or reject-after ×3 with no handshake). */
  clear(): void {
    this.#current?.destroy();
    this.#previous?.destroy();
    this.#next?.destroy();
    this.#current = this.#previous = this.#next = null;
  }
}
