// Our own vectors (tests/vectors/ntm-*.json): regenerated with every implementation and compared byte for byte with
// the checked-in files, replayed through the receive paths, and — for the Noise transcript — re-derived by an
// independent straight-line implementation of the Noise rev 34 rules written only with @noble primitives.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { hkdf as nobleHkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { nativeAead, nobleAead } from '../../agent/src/crypto/aead.js';
import { consumeRequest, consumeResponse, type NoiseSuite } from '../../agent/src/crypto/noise.js';
import { KeyPair, nativeSecp256k1, nobleSecp256k1 } from '../../agent/src/crypto/secp256k1.js';
import { TunnelKeypair } from '../../agent/src/crypto/session.js';
import * as NT from '../../agent/src/protocol/node-transaction.js';
import { h, loadVectors } from './load.js';
import { generateAll, OWN_VECTOR_FILES, type AllOwnVectors, type NoiseVector, type SealedFrameVector } from './ntm-vectors.js';

function suites(): { name: string; suite: NoiseSuite }[] {
  assert.ok(nativeSecp256k1, 'native libsecp256k1 binding must load');
  return [
    { name: 'native', suite: { secp: nativeSecp256k1, aead: nativeAead } },
    { name: 'noble', suite: { secp: nobleSecp256k1, aead: nobleAead } },
    { name: 'mixed (native secp, noble AEAD)', suite: { secp: nativeSecp256k1, aead: nobleAead } },
  ];
}

const checkedIn = (): AllOwnVectors => ({
  nodeTransactions: loadVectors(OWN_VECTOR_FILES.nodeTransactions),
  noise: loadVectors(OWN_VECTOR_FILES.noise),
  sealedFrames: loadVectors(OWN_VECTOR_FILES.sealedFrames),
  messages: loadVectors(OWN_VECTOR_FILES.messages),
});

void describe('own vectors regenerate identically with every implementation', () => {
  const files = checkedIn();
  for (const { name, suite } of suites()) {
    void it(name, () => {
      const regenerated = generateAll(suite.secp, suite.aead);
      // JSON round trip: compare exactly what would be written.
      assert.deepEqual(JSON.parse(JSON.stringify(regenerated)), files);
    });
  }
});

void describe('Node Transaction vectors decode and verify', () => {
  const { vectors } = checkedIn().nodeTransactions;
  for (const impl of [nativeSecp256k1!, nobleSecp256k1]) {
    void it(`${impl.name}: decode → fields, check → ok, encode → same bytes`, () => {
      for (const v of vectors) {
        const nt = NT.decode(h(v.encoding));
        assert.ok(!(nt instanceof NT.NodeTransactionDecodeError), v.name);
        assert.equal(nt.id.toString('hex'), v.id);
        assert.equal(nt.publicKey.toString('hex'), v.publicKey);
        assert.equal(nt.dcId.toString('hex'), v.dcId);
        assert.equal(nt.revoked, v.revoked);
        assert.equal(nt.timestamp, v.timestamp);
        assert.equal(NT.digest(nt).toString('hex'), v.digest);
        assert.equal(NT.check(nt, impl), 'ok', v.name);
        assert.equal(NT.encode(nt).toString('hex'), v.encoding);
        assert.equal(KeyPair.fromPrivateKey(v.privateKey, impl).idHex, `0x${v.id}`);
      }
    });
  }
});

// ---------------------------------------------------------------------------------------------------------------
// Independent Noise KK reference: Noise rev 34 §5 written out step by step, no code shared with agent/src/crypto.

function refHandshake(v: NoiseVector): { request: Buffer; response: Buffer; h: Buffer; k1: Buffer; k2: Buffer } {
  const cat = (...b: Uint8Array[]): Uint8Array => Buffer.concat(b);
  const dh = (priv: Uint8Array, pub: Uint8Array): Uint8Array => secp256k1.getSharedSecret(priv, pub, true).subarray(1);
  const pub = (priv: Uint8Array): Uint8Array => secp256k1.getPublicKey(priv, true);
  const hkdf2 = (ck: Uint8Array, ikm: Uint8Array): [Uint8Array, Uint8Array] => {
    const out = nobleHkdf(sha256, ikm, ck, new Uint8Array(0), 64);
    return [out.subarray(0, 32), out.subarray(32)];
  };
  const nonce0 = new Uint8Array(12); // n = 0 for both handshake payloads
  let hh: Uint8Array = sha256(new TextEncoder().encode(v.protocolName)); // name > 32 bytes: hashed
  let ck: Uint8Array = hh;
  let k: Uint8Array;
  const mixHash = (d: Uint8Array): void => {
    hh = sha256(cat(hh, d));
  };
  const mixKey = (ikm: Uint8Array): void => {
    [ck, k] = hkdf2(ck, ikm);
  };
  const si = h(v.initiatorStatic);
  const sr = h(v.responderStatic);
  const ei = h(v.initiatorEphemeral);
  const er = h(v.responderEphemeral);
  mixHash(h(v.prologue));
  mixHash(pub(si)); // <- s (pre-message, initiator first)
  mixHash(pub(sr)); // -> s
  // -> e, es, ss
  mixHash(pub(ei));
  mixKey(dh(ei, pub(sr)));
  mixKey(dh(si, pub(sr)));
  const c1 = chacha20poly1305(k!, nonce0, hh).encrypt(h(v.timestamp));
  mixHash(c1);
  const header1 = Buffer.alloc(16);
  header1[0] = 0x05;
  header1.writeUInt32BE(v.initiatorIndex, 4);
  h(v.tunnelId).copy(header1, 8);
  const request = Buffer.concat([header1, pub(ei), c1]);
  // <- e, ee, se
  mixHash(pub(er));
  mixKey(dh(er, pub(ei)));
  mixKey(dh(er, pub(si)));
  const c2 = chacha20poly1305(k!, nonce0, hh).encrypt(new Uint8Array(0));
  mixHash(c2);
  const header2 = Buffer.alloc(12);
  header2[0] = 0x06;
  header2.writeUInt32BE(v.responderIndex, 4);
  header2.writeUInt32BE(v.initiatorIndex, 8);
  const response = Buffer.concat([header2, pub(er), c2]);
  const [k1, k2] = hkdf2(ck, new Uint8Array(0));
  return { request, response, h: Buffer.from(hh), k1: Buffer.from(k1), k2: Buffer.from(k2) };
}

void describe('Noise KK vector', () => {
  const [v] = checkedIn().noise.vectors as [NoiseVector];
  void it('matches an independent step-by-step Noise rev 34 derivation', () => {
    const ref = refHandshake(v);
    assert.equal(ref.request.toString('hex'), v.tunnelRequest);
    assert.equal(ref.response.toString('hex'), v.tunnelResponse);
    assert.equal(ref.h.toString('hex'), v.handshakeHash);
    assert.equal(ref.k1.toString('hex'), v.initiatorToResponderKey);
    assert.equal(ref.k2.toString('hex'), v.responderToInitiatorKey);
  });
  void it('wire sizes are 77 and 61 bytes', () => {
    assert.equal(h(v.tunnelRequest).length, 77);
    assert.equal(h(v.tunnelResponse).length, 61);
  });
  for (const { name, suite } of suites()) {
    void it(`${name}: the responder accepts the checked-in request and the timestamp is recovered`, () => {
      const sr = KeyPair.fromPrivateKey(v.responderStatic, suite.secp);
      const hs = consumeRequest(h(v.tunnelRequest), { localStatic: sr, remoteStatic: h(v.initiatorStaticPublic), suite });
      assert.ok(typeof hs !== 'string', String(hs));
      assert.equal(hs.timestamp.toString('hex'), v.timestamp);
      assert.equal(hs.remoteIndex, v.initiatorIndex);
      assert.equal(hs.tunnelId.toString('hex'), v.tunnelId);
      // Replay of the same request once its timestamp is stored: refused.
      assert.equal(consumeRequest(h(v.tunnelRequest), { localStatic: sr, remoteStatic: h(v.initiatorStaticPublic), lastTimestamp: hs.timestamp, suite }), 'stale');
    });
  }
});

void describe('sealed frame vectors open with both AEADs', () => {
  const { vectors } = checkedIn().sealedFrames;
  for (const aead of [nativeAead, nobleAead]) {
    void it(aead.name, () => {
      for (const f of vectors as SealedFrameVector[]) {
        const packet = h(f.packet);
        assert.equal(packet.length, 32 + f.plaintext.length / 2);
        // The receiver's view: its receive key is the sender's send key, its local index the receiver index.
        const rx = new TunnelKeypair({
          packetType: f.type,
          sendKey: Buffer.alloc(32),
          receiveKey: h(f.sendKey),
          localIndex: f.receiverIndex,
          remoteIndex: 0,
          isInitiator: false,
          createdAt: 0,
          clock: () => 0,
          aead,
        });
        if (f.counter > 0) {
          // Not a replay just because earlier counters were never shown to this fresh window.
          assert.equal(packet.readUInt32BE(12), f.counter);
        }
        const pt = rx.open(packet, undefined, 0);
        assert.ok(typeof pt !== 'string', `${f.name}: ${String(pt)}`);
        assert.equal(pt.toString('hex'), f.plaintext);
        assert.equal(rx.open(packet, undefined, 0), 'replay');
      }
    });
  }
});

void describe('consumeResponse on the checked-in response (initiator side)', () => {
  const [v] = checkedIn().noise.vectors as [NoiseVector];
  for (const { name, suite } of suites()) {
    void it(name, async () => {
      const { createRequest } = await import('../../agent/src/crypto/noise.js');
      const si = KeyPair.fromPrivateKey(v.initiatorStatic, suite.secp);
      const ei = KeyPair.fromPrivateKey(v.initiatorEphemeral, suite.secp);
      const req = createRequest({
        localStatic: si,
        remoteStatic: h(v.responderStaticPublic),
        tunnelId: h(v.tunnelId),
        senderIndex: v.initiatorIndex,
        timestamp: h(v.timestamp),
        ephemeral: ei,
        suite,
      });
      assert.equal(req.packet.toString('hex'), v.tunnelRequest);
      const r = consumeResponse(req.state, h(v.tunnelResponse));
      assert.ok(typeof r !== 'string', String(r));
      assert.equal(r.remoteIndex, v.responderIndex);
      assert.equal(r.keys.send.toString('hex'), v.initiatorToResponderKey);
      assert.equal(r.keys.receive.toString('hex'), v.responderToInitiatorKey);
    });
  }
});
