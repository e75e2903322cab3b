// PEER frames (docs/protocol.md §3, type 0x11): how DCs talk to each other and RSs report to DCs, authenticated and
// encrypted with a key from the static-static ECDH of the two servers' identities and a per-boot random salt:
//
//   0x11 ‖ 0x00 ×3 ‖ sender public key (33) ‖ salt (16) ‖ counter (8) ‖ ChaCha20-Poly1305(plaintext) ‖ tag (16)
//
// key = HKDF(ECDH(sender, receiver), salt, "NTM1 peer" ‖ sender ID ‖ receiver ID). A new salt at each start means a
// restarted server never reuses a (key, nonce) pair even though its counter starts again at 0; receivers keep a replay
// window per (sender, salt) and check the plaintext's timestamp, so an old boot's frames are refused too.
import { randomBytes } from 'node:crypto';
import { defaultAead, type Aead } from '../crypto/aead.js';
import { hkdf } from '../crypto/hkdf.js';
import { ReplayWindow } from '../crypto/replay.js';
import { formatId, tryIdFromPublicKey } from '../crypto/secp256k1.js';
import type { Identity } from './identity.js';

export const PEER_FRAME = 0x11;
const HEADER = 4 + 33 + 16 + 8;
const TAG = 16;
/** Frames whose sender clock differs by more than this are refused (with the replay window: no replays). */
export const PEER_FRESHNESS_MS = 60_000;

interface RecvState {
  readonly key: Buffer;
  readonly replay: ReplayWindow;
}

export type PeerOpen =
  | { readonly ok: true; readonly senderId: string; readonly senderPublicKey: Buffer; readonly plaintext: Buffer }
  | { readonly ok: false; readonly reason: 'length' | 'untrusted' | 'key' | 'replay' | 'auth' };

export interface PeerSealerOptions {
  /** The per-boot salt; default random. Fixed only for test vectors. */
  readonly salt?: Uint8Array;
  readonly aead?: Aead;
}

export class PeerSealer {
  private readonly salt: Buffer;
  private readonly aead: Aead;
  private readonly shared = new Map<string, Buffer>();
  private readonly send = new Map<string, { key: Buffer; counter: number }>();
  private readonly recv = new Map<string, RecvState>();

  /**
   * @param me this server's identity
   * @param trusted decides, by sender ID ("0x…"), whose frames are opened at all (configured peer DCs and RSs)
   */
  constructor(
    private readonly me: Identity,
    private readonly trusted: (senderId: string) => boolean,
    opts: PeerSealerOptions = {},
  ) {
    this.salt = opts.salt ? Buffer.from(opts.salt) : randomBytes(16);
    if (this.salt.length !== 16) throw new RangeError('peer frame salt must be 16 bytes');
    this.aead = opts.aead ?? defaultAead;
  }

  private sharedWith(pub: Uint8Array): Buffer | null {
    const k = Buffer.from(pub).toString('hex');
    let s = this.shared.get(k);
    if (!s) {
      const x = this.me.dh(pub);
      if (!x) return null;
      s = x;
      if (this.shared.size > 10_000) this.shared.clear();
      this.shared.set(k, s);
    }
    return s;
  }

  private static derive(shared: Buffer, salt: Uint8Array, from: Uint8Array, to: Uint8Array): Buffer {
    return hkdf(shared, salt, Buffer.concat([Buffer.from('NTM1 peer'), from, to]), 32);
  }

  /** Seals `plaintext` for the server owning `peerPublicKey`. Throws only if that key is not a valid point. */
  seal(peerPublicKey: Uint8Array, plaintext: Uint8Array): Buffer {
    const pk = Buffer.from(peerPublicKey).toString('hex');
    let st = this.send.get(pk);
    if (!st) {
      const shared = this.sharedWith(peerPublicKey);
      const peerId = tryIdFromPublicKey(peerPublicKey);
      if (!shared || !peerId) throw new RangeError('peer public key is not a valid secp256k1 point');
      st = { key: PeerSealer.derive(shared, this.salt, this.me.id, peerId), counter: 0 };
      this.send.set(pk, st);
    }
    const out = Buffer.allocUnsafe(HEADER + plaintext.length + TAG);
    out[0] = PEER_FRAME;
    out[1] = out[2] = out[3] = 0;
    this.me.publicKey.copy(out, 4);
    this.salt.copy(out, 37);
    out.writeBigUInt64BE(BigInt(st.counter), 53);
    this.aead.seal(st.key, st.counter, plaintext, undefined, out.subarray(HEADER));
    st.counter++;
    return out;
  }

  /** Authenticates and decrypts a frame (borrowed). Never throws on its bytes. */
  open(frame: Buffer): PeerOpen {
    if (frame.length < HEADER + TAG || frame[0] !== PEER_FRAME) return { ok: false, reason: 'length' };
    const pub = frame.subarray(4, 37);
    const salt = frame.subarray(37, 53);
    const senderIdBytes = tryIdFromPublicKey(pub);
    if (!senderIdBytes) return { ok: false, reason: 'key' };
    const senderId = formatId(senderIdBytes);
    if (!this.trusted(senderId)) return { ok: false, reason: 'untrusted' };
    const counterBig = frame.readBigUInt64BE(53);
    if (counterBig > BigInt(Number.MAX_SAFE_INTEGER)) return { ok: false, reason: 'replay' };
    const counter = Number(counterBig);
    const rk = frame.toString('hex', 4, 53);
    let st = this.recv.get(rk);
    let fresh = false;
    if (!st) {
      const shared = this.sharedWith(pub);
      if (!shared) return { ok: false, reason: 'key' };
      st = { key: PeerSealer.derive(shared, salt, senderIdBytes, this.me.id), replay: new ReplayWindow() };
      fresh = true;
    }
    if (!st.replay.check(counter)) return { ok: false, reason: 'replay' };
    const pt = this.aead.open(st.key, counter, frame.subarray(HEADER));
    if (!pt) return { ok: false, reason: 'auth' };
    st.replay.update(counter);
    if (fresh) {
      // Only authentic frames create state, so forged salts cannot fill this map.
      if (this.recv.size > 10_000) this.recv.clear();
      this.recv.set(rk, st);
    }
    return { ok: true, senderId, senderPublicKey: Buffer.from(pub), plaintext: pt };
  }
}
