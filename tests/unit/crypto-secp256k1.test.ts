// secp256k1: native (libsecp256k1) and noble agree on keys, signatures, recovery and ECDH over many random inputs;
// malformed inputs give false/null, never exceptions; IDs format and parse strictly.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { BufferLengthError, InvalidHexError, InvalidIdError, InvalidPrivateKeyError, InvalidPublicKeyError } from '../../agent/src/crypto/errors.js';
import { keccak256, parseHex, toHex, tryParseHex } from '../../agent/src/crypto/hex.js';
import {
  compressUncompressed,
  defaultSecp256k1,
  formatId,
  idFromPublicKey,
  isLowS,
  KeyPair,
  nativeSecp256k1,
  nobleSecp256k1,
  parseId,
  randomPrivateKey,
  requireNativeSecp256k1,
  tryIdFromPublicKey,
  tryParseId,
  type Secp256k1,
} from '../../agent/src/crypto/secp256k1.js';

const N = BigInt('0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141');
const ROUNDS = 150;

function native(): Secp256k1 {
  return requireNativeSecp256k1();
}

void describe('secp256k1 implementations', () => {
  void it('the native binding is loaded (not the elliptic fallback) and is the default', () => {
    assert.ok(nativeSecp256k1);
    assert.equal(defaultSecp256k1.name, 'native');
  });

  void it(`agree on public keys, signatures, recovery and ECDH (${ROUNDS} random cases)`, () => {
    const n = native();
    for (let i = 0; i < ROUNDS; i++) {
      const a = randomPrivateKey();
      const b = randomPrivateKey();
      const digest = randomBytes(32);
      const pubA = n.publicKeyCreate(a, true);
      assert.deepEqual(nobleSecp256k1.publicKeyCreate(a, true), pubA);
      const fullA = n.publicKeyCreate(a, false);
      assert.deepEqual(nobleSecp256k1.publicKeyCreate(a, false), fullA);
      assert.deepEqual(n.publicKeyConvert(pubA, false), fullA);
      assert.deepEqual(nobleSecp256k1.publicKeyConvert(fullA, true), pubA);
      assert.deepEqual(compressUncompressed(fullA), pubA);

      const sigN = n.sign(digest, a);
      const sigB = nobleSecp256k1.sign(digest, a);
      assert.deepEqual(sigN, sigB, 'RFC 6979: identical deterministic signatures');
      assert.equal(sigN.length, 65);
      assert.ok(sigN[64] === 27 || sigN[64] === 28);
      assert.ok(isLowS(sigN));
      for (const impl of [n, nobleSecp256k1]) {
        assert.equal(impl.verify(sigN, digest, pubA), true);
        assert.equal(impl.verify(sigN.subarray(0, 64), digest, fullA), true);
        assert.deepEqual(impl.recover(sigN, digest, true), pubA);
        assert.deepEqual(impl.recover(sigN, digest, false), fullA);
        // The other v recovers a different key (or none): v is part of the signature.
        const otherV = Buffer.from(sigN);
        otherV[64] = sigN[64] === 27 ? 28 : 27;
        const other = impl.recover(otherV, digest, true);
        assert.ok(other === null || !other.equals(pubA));
        // A changed digest does not verify.
        const d2 = Buffer.from(digest);
        d2[i % 32]! ^= 1 << (i % 8);
        assert.equal(impl.verify(sigN, d2, pubA), false);
      }
      const pubB = n.publicKeyCreate(b, true);
      const ab = n.ecdh(pubB, a);
      assert.ok(ab);
      assert.deepEqual(n.ecdh(pubA, b), ab, 'DH is symmetric');
      assert.deepEqual(nobleSecp256k1.ecdh(pubB, a), ab);
      assert.deepEqual(nobleSecp256k1.ecdh(n.publicKeyCreate(b, false), a), ab);
    }
  });

  void it('refuse high-s twins and out-of-range v on both implementations', () => {
    const n = native();
    const k = randomPrivateKey();
    const pub = n.publicKeyCreate(k);
    for (let i = 0; i < 20; i++) {
      const digest = randomBytes(32);
      const sig = n.sign(digest, k);
      const s = BigInt(`0x${sig.subarray(32, 64).toString('hex')}`);
      const high = Buffer.from(sig);
      Buffer.from((N - s).toString(16).padStart(64, '0'), 'hex').copy(high, 32);
      high[64] = sig[64] === 27 ? 28 : 27; // the twin recovers with the flipped parity
      for (const impl of [n, nobleSecp256k1]) {
        assert.equal(impl.verify(high, digest, pub), false);
        assert.equal(impl.recover(high, digest), null);
        for (const v of [0, 1, 26, 29, 30, 255]) {
          const bad = Buffer.from(sig);
          bad[64] = v;
          assert.equal(impl.recover(bad, digest), null, `v=${v}`);
          assert.equal(impl.verify(bad, digest, pub), false, `v=${v}`);
        }
      }
    }
  });

  void it('never throw on malformed wire input', () => {
    const n = native();
    const k = randomPrivateKey();
    const pub = n.publicKeyCreate(k);
    const digest = randomBytes(32);
    const sig = n.sign(digest, k);
    const junk: Uint8Array[] = [
      new Uint8Array(0),
      new Uint8Array(1),
      randomBytes(31),
      Buffer.concat([Buffer.from([0x05]), randomBytes(32)]), // bad prefix (a random 0x02/0x03 key is on the curve half the time)
      randomBytes(64),
      Buffer.concat([randomBytes(64), Buffer.from([0])]), // v = 0
      randomBytes(66),
      Buffer.concat([Buffer.from([0x06]), n.publicKeyCreate(k, false).subarray(1)]), // hybrid encoding
      Buffer.concat([Buffer.from([0x02]), Buffer.alloc(32, 0xff)]), // x ≥ p
      Buffer.concat([Buffer.from([0x04]), Buffer.alloc(64)]),
    ];
    for (const impl of [n, nobleSecp256k1]) {
      for (const j of junk) {
        assert.equal(impl.isValidPublicKey(j), false);
        assert.equal(impl.publicKeyConvert(j, true), null);
        assert.equal(impl.ecdh(j, k), null);
        assert.equal(impl.verify(sig, digest, j), false);
        assert.equal(impl.verify(j, digest, pub), false);
        assert.equal(impl.verify(sig, j, pub), false);
        assert.equal(impl.recover(j, digest), null);
        assert.equal(impl.recover(sig, j), null); // no junk entry is 32 bytes (any 32 bytes are a digest)
        assert.equal(tryIdFromPublicKey(j, impl), null);
      }
      assert.equal(impl.ecdh(pub, new Uint8Array(5)), null);
      assert.equal(impl.ecdh(pub, Buffer.alloc(32)), null); // zero scalar
      assert.equal(impl.verify(Buffer.alloc(65), digest, pub), false);
    }
  });

  void it('invalid private keys: false from isValidPrivateKey, typed errors from signing', () => {
    const n = native();
    const bad = [Buffer.alloc(32), Buffer.from(N.toString(16), 'hex'), Buffer.alloc(32, 0xff), Buffer.alloc(31, 1), Buffer.alloc(33, 1)];
    for (const impl of [n, nobleSecp256k1]) {
      for (const k of bad) {
        assert.equal(impl.isValidPrivateKey(k), false);
        assert.throws(() => impl.sign(Buffer.alloc(32), k), InvalidPrivateKeyError);
        assert.throws(() => impl.publicKeyCreate(k), InvalidPrivateKeyError);
        assert.throws(() => KeyPair.fromPrivateKey(k, impl), InvalidPrivateKeyError);
      }
      assert.equal(impl.isValidPrivateKey(Buffer.from((N - 1n).toString(16), 'hex')), true);
      assert.throws(() => impl.sign(Buffer.alloc(31), randomPrivateKey()), BufferLengthError);
    }
  });

  void it('write into caller buffers when given one', () => {
    const n = native();
    const k = randomPrivateKey();
    const digest = randomBytes(32);
    for (const impl of [n, nobleSecp256k1]) {
      const out = Buffer.alloc(80, 0xaa);
      const sig = impl.sign(digest, k, out);
      assert.equal(sig.buffer, out.buffer);
      assert.equal(out[65], 0xaa, 'nothing written past the signature');
      const pubOut = Buffer.alloc(33);
      assert.equal(impl.publicKeyCreate(k, true, pubOut), pubOut);
      const sharedOut = Buffer.alloc(32);
      assert.equal(impl.ecdh(impl.publicKeyCreate(randomPrivateKey()), k, sharedOut), sharedOut);
      assert.throws(() => impl.sign(digest, k, Buffer.alloc(10)), BufferLengthError);
    }
  });
});

void describe('IDs (docs/protocol.md §1)', () => {
  void it('ID = last 20 bytes of keccak256(X || Y)', () => {
    const kp = KeyPair.generate();
    const full = kp.publicKeyUncompressed;
    assert.deepEqual(kp.id, keccak256(full.subarray(1)).subarray(12));
    assert.deepEqual(idFromPublicKey(kp.publicKey), kp.id);
    assert.deepEqual(idFromPublicKey(full, nobleSecp256k1), kp.id);
    assert.match(kp.idHex, /^0x[0-9a-f]{40}$/);
    assert.throws(() => idFromPublicKey(Buffer.alloc(33)), InvalidPublicKeyError);
  });

  void it('parse: 0x + 40 hex; all-lower and all-upper accepted; bad checksum, length, prefix refused', () => {
    const id = randomBytes(20);
    const lower = formatId(id);
    assert.deepEqual(parseId(lower), id);
    assert.deepEqual(parseId(`0x${lower.slice(2).toUpperCase()}`), id);
    for (const bad of ['', '0x', lower.slice(2), `${lower}00`, lower.slice(0, 41), `0y${lower.slice(2)}`, `0x${'g'.repeat(40)}`, ` ${lower}`]) {
      assert.equal(tryParseId(bad), null, JSON.stringify(bad));
      assert.throws(() => parseId(bad), InvalidIdError);
    }
    assert.equal(tryParseId(undefined as unknown as string), null);
  });

  void it('hex helpers validate', () => {
    assert.equal(toHex(Buffer.from([0, 255])), '0x00ff');
    assert.deepEqual(parseHex('0xABcd', 2), Buffer.from([0xab, 0xcd]));
    assert.equal(tryParseHex('abc'), null);
    assert.equal(tryParseHex('0x12', 2), null);
    assert.throws(() => parseHex('zz'), InvalidHexError);
  });
});

void describe('KeyPair', () => {
  void it('keeps the private key out of JSON and inspect output', async () => {
    const { inspect } = await import('node:util');
    const kp = KeyPair.generate();
    const priv = kp.exportPrivateKey().toString('hex');
    assert.ok(!JSON.stringify(kp).includes(priv));
    assert.ok(!inspect(kp, { showHidden: true, depth: 5 }).includes(priv));
    assert.ok(!Object.values(kp).some((v) => Buffer.isBuffer(v) && v.toString('hex') === priv));
  });

  void it('destroy() wipes the key: DH no longer matches', () => {
    const a = KeyPair.generate();
    const b = KeyPair.generate();
    const before = a.dh(b.publicKey);
    a.destroy();
    assert.equal(a.dh(b.publicKey), null, 'a zero scalar is refused');
    assert.ok(before);
  });

  void it('generated keys on both implementations are valid', () => {
    for (const impl of [native(), nobleSecp256k1]) {
      const kp = KeyPair.generate(impl);
      assert.equal(impl.isValidPublicKey(kp.publicKey), true);
      assert.deepEqual(KeyPair.fromPrivateKey(toHex(kp.exportPrivateKey()), impl).publicKey, kp.publicKey);
    }
  });
});
