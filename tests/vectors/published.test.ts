// Published vectors (RFC 8439, RFC 5869, Wycheproof ChaCha20-Poly1305 / ECDSA secp256k1 / ECDH secp256k1, Ethereum
// keccak/address/EIP-55/signature values) run against every implementation: native and noble must both pass.
// Sources and trimming rules: tests/vectors/README.md.

import assert from 'node:assert/strict';
import { createHash, hkdfSync } from 'node:crypto';
import { describe, it } from 'node:test';
import { hkdf as nobleHkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { nativeAead, nobleAead, type Aead } from '../../agent/src/crypto/aead.js';
import { keccak256, toHex } from '../../agent/src/crypto/hex.js';
import { hkdf, hkdfExpand, hkdfExtract, noiseHkdf2, noiseHkdf3 } from '../../agent/src/crypto/hkdf.js';
import {
  formatId,
  formatIdChecksum,
  KeyPair,
  nativeSecp256k1,
  nobleSecp256k1,
  parseId,
  tryParseId,
  type Secp256k1,
} from '../../agent/src/crypto/secp256k1.js';
import { h, loadVectors } from './load.js';

const N = BigInt('0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141');

function secpImpls(): Secp256k1[] {
  assert.ok(nativeSecp256k1, 'the native libsecp256k1 binding must load on the target (it is the fast path)');
  return [nativeSecp256k1, nobleSecp256k1];
}
const AEADS: Aead[] = [nativeAead, nobleAead];

interface AeadVector {
  name: string;
  key: string;
  nonce: string;
  aad: string;
  plaintext: string;
  ciphertext: string;
  tag: string;
}
interface WycheproofAead {
  tcId: number;
  comment: string;
  key: string;
  iv: string;
  aad: string;
  msg: string;
  ct: string;
  tag: string;
  result: 'valid' | 'invalid' | 'acceptable';
}

void describe('RFC 8439 ChaCha20-Poly1305', () => {
  const v = loadVectors<{ tests: AeadVector[] }>('rfc8439-chacha20-poly1305.json');
  for (const aead of AEADS) {
    for (const t of v.tests) {
      void it(`${aead.name}: ${t.name}`, () => {
        const sealed = aead.sealWithNonce(h(t.key), h(t.nonce), h(t.plaintext), h(t.aad));
        assert.equal(sealed.toString('hex'), t.ciphertext + t.tag);
        const opened = aead.openWithNonce(h(t.key), h(t.nonce), sealed, h(t.aad));
        assert.ok(opened);
        assert.equal(opened.toString('hex'), t.plaintext);
        const bad = Buffer.from(sealed);
        bad[bad.length - 1]! ^= 1;
        assert.equal(aead.openWithNonce(h(t.key), h(t.nonce), bad, h(t.aad)), null);
      });
    }
  }
  void it('A.5 nonce is our counter layout: 0x00000000 || counter LE (counter 0x0807060504030201)', () => {
    // The counter exceeds 2^53, so it cannot go through the number-based API; check the layout by hand instead.
    const nonce = Buffer.alloc(12);
    nonce.writeBigUInt64LE(0x0807060504030201n, 4);
    assert.equal(nonce.toString('hex'), v.tests[1]!.nonce);
  });
});

void describe('Wycheproof ChaCha20-Poly1305', () => {
  const v = loadVectors<{ testGroups: { tests: WycheproofAead[] }[] }>('wycheproof-chacha20-poly1305.json');
  const tests = v.testGroups.flatMap((g) => g.tests);
  for (const aead of AEADS) {
    void it(`${aead.name}: ${tests.length} vectors (valid seal+open, invalid tags refused)`, () => {
      for (const t of tests) {
        const sealedInput = Buffer.concat([h(t.ct), h(t.tag)]);
        const aad = t.aad === '' ? undefined : h(t.aad);
        const opened = aead.openWithNonce(h(t.key), h(t.iv), sealedInput, aad);
        if (t.result === 'valid') {
          assert.ok(opened, `tcId ${t.tcId} must open`);
          assert.equal(opened.toString('hex'), t.msg, `tcId ${t.tcId}`);
          assert.equal(aead.sealWithNonce(h(t.key), h(t.iv), h(t.msg), aad).toString('hex'), t.ct + t.tag, `tcId ${t.tcId}`);
        } else {
          assert.equal(opened, null, `tcId ${t.tcId} must be refused`);
          // The comment names the honest tag: it must open, proving the refusal is about the tag alone.
          const m = /expected tag:([0-9a-f]{32})/.exec(t.comment);
          if (m) assert.ok(aead.openWithNonce(h(t.key), h(t.iv), Buffer.concat([h(t.ct), h(m[1]!)]), aad), `tcId ${t.tcId} honest tag`);
        }
      }
    });
  }
});

interface EcdsaGroup {
  publicKey: { uncompressed: string };
  tests: { tcId: number; msg: string; sig: string; result: string }[];
}

void describe('Wycheproof ECDSA secp256k1 (SHA-256 digest, P1363 r||s) with the low-s rule', () => {
  const v = loadVectors<{ testGroups: EcdsaGroup[] }>('wycheproof-ecdsa-secp256k1-sha256-p1363.json');
  for (const impl of secpImpls()) {
    void it(`${impl.name}: every vector`, () => {
      let highS = 0;
      for (const g of v.testGroups) {
        const full = h(g.publicKey.uncompressed);
        const compressed = impl.publicKeyConvert(full, true);
        assert.ok(compressed);
        for (const t of g.tests) {
          const digest = createHash('sha256').update(h(t.msg)).digest();
          const sig = h(t.sig);
          const got = impl.verify(sig, digest, full);
          assert.equal(impl.verify(sig, digest, compressed), got, `tcId ${t.tcId}: key encoding must not matter`);
          if (t.result !== 'valid') {
            assert.equal(got, false, `tcId ${t.tcId} must be refused`);
            continue;
          }
          const s = BigInt(`0x${sig.subarray(32).toString('hex')}`);
          if (s > N / 2n) {
            highS++;
            assert.equal(got, false, `tcId ${t.tcId}: high-s twin must be refused (low-s only)`);
            const low = Buffer.from(sig);
            Buffer.from((N - s).toString(16).padStart(64, '0'), 'hex').copy(low, 32);
            assert.equal(impl.verify(low, digest, full), true, `tcId ${t.tcId}: normalised signature must verify`);
          } else {
            assert.equal(got, true, `tcId ${t.tcId} must verify`);
          }
        }
      }
      assert.ok(highS > 0, 'the set exercises the low-s rule');
    });
  }
  void it('recover finds the Wycheproof key for the valid low-s vectors (native and noble agree)', () => {
    const [native, noble] = secpImpls() as [Secp256k1, Secp256k1];
    let found = 0;
    for (const g of v.testGroups) {
      const full = h(g.publicKey.uncompressed);
      for (const t of g.tests) {
        const sig = h(t.sig);
        if (t.result !== 'valid' || sig.length !== 64 || BigInt(`0x${sig.subarray(32).toString('hex')}`) > N / 2n) continue;
        const digest = createHash('sha256').update(h(t.msg)).digest();
        const hits = [27, 28].map((v) => native.recover(Buffer.concat([sig, Buffer.from([v])]), digest, false));
        const nobleHits = [27, 28].map((v) => noble.recover(Buffer.concat([sig, Buffer.from([v])]), digest, false));
        assert.deepEqual(hits.map((x) => x?.toString('hex') ?? null), nobleHits.map((x) => x?.toString('hex') ?? null), `tcId ${t.tcId}`);
        assert.ok(hits.some((x) => x?.equals(full)), `tcId ${t.tcId}: one v recovers the key`);
        found++;
      }
    }
    assert.ok(found >= 10);
  });
});

interface EcdhTest {
  tcId: number;
  public: string;
  private: string;
  shared: string;
  result: string;
}

/** The SEC 1 point inside a secp256k1 SubjectPublicKeyInfo (fixed 23-byte prefix for both point forms). */
function spkiPoint(spki: Buffer): Buffer {
  const prefix = spki[1] === 0x56 ? '3056301006072a8648ce3d020106052b8104000a034200' : '3036301006072a8648ce3d020106052b8104000a032200';
  assert.equal(spki.subarray(0, 23).toString('hex'), prefix, 'trimmed set holds only well-formed secp256k1 SPKIs');
  return spki.subarray(23);
}

/** Wycheproof private keys are minimal big-endian integers (maybe with a sign byte); ours are 32 bytes. */
function scalar32(hex: string): Buffer {
  const v = BigInt(`0x${hex}`);
  return Buffer.from(v.toString(16).padStart(64, '0'), 'hex');
}

void describe('Wycheproof ECDH secp256k1 (raw x-coordinate; invalid points refused)', () => {
  const v = loadVectors<{ testGroups: { tests: EcdhTest[] }[] }>('wycheproof-ecdh-secp256k1.json');
  const tests = v.testGroups.flatMap((g) => g.tests);
  for (const impl of secpImpls()) {
    void it(`${impl.name}: ${tests.length} vectors`, () => {
      let invalid = 0;
      for (const t of tests) {
        const point = spkiPoint(h(t.public));
        const priv = scalar32(t.private);
        const shared = impl.ecdh(point, priv);
        const kp = KeyPair.fromPrivateKey(priv, impl);
        if (t.result === 'invalid') {
          invalid++;
          assert.equal(shared, null, `tcId ${t.tcId} must be refused`);
          assert.equal(kp.dh(point), null);
          assert.equal(impl.isValidPublicKey(point), false, `tcId ${t.tcId}`);
        } else {
          assert.ok(shared, `tcId ${t.tcId} must succeed`);
          assert.equal(shared.toString('hex'), t.shared, `tcId ${t.tcId}`);
          assert.equal(kp.dh(point)?.toString('hex'), t.shared);
        }
      }
      assert.ok(invalid >= 15);
    });
  }
});

interface HkdfVector {
  name: string;
  ikm: string;
  salt: string;
  info: string;
  length: number;
  prk: string;
  okm: string;
}

void describe('RFC 5869 HKDF-SHA256', () => {
  const v = loadVectors<{ tests: HkdfVector[] }>('rfc5869-hkdf-sha256.json');
  for (const t of v.tests) {
    void it(t.name, () => {
      assert.equal(hkdfExtract(h(t.salt), h(t.ikm)).toString('hex'), t.prk);
      assert.equal(hkdfExpand(h(t.prk), h(t.info), t.length).toString('hex'), t.okm);
      assert.equal(hkdf(h(t.ikm), h(t.salt), h(t.info), t.length).toString('hex'), t.okm);
      // Cross-checks: OpenSSL's HKDF and @noble/hashes agree.
      assert.equal(Buffer.from(hkdfSync('sha256', h(t.ikm), h(t.salt), h(t.info), t.length)).toString('hex'), t.okm);
      assert.equal(Buffer.from(nobleHkdf(sha256, h(t.ikm), h(t.salt), h(t.info), t.length)).toString('hex'), t.okm);
    });
  }
  void it("Noise HKDF(ck, ikm, n) = RFC 5869 with salt = ck, empty info, L = 32n (Noise rev 34 §4.3)", () => {
    for (const t of v.tests) {
      const ck = h(t.prk); // any 32-byte chaining key
      const ikm = h(t.ikm);
      const okm = hkdf(ikm, ck, Buffer.alloc(0), 96);
      const [a, b] = noiseHkdf2(ck, ikm);
      const [c, d, e] = noiseHkdf3(ck, ikm);
      assert.equal(Buffer.concat([a, b]).toString('hex'), okm.subarray(0, 64).toString('hex'));
      assert.equal(Buffer.concat([c, d, e]).toString('hex'), okm.toString('hex'));
    }
  });
});

interface EthVectors {
  keccak256: { input: string; digest: string }[];
  addresses: { privateKey: string; address: string }[];
  eip55: { addresses: string[] };
  signatures: { privateKey: string; message: string; digest: string; signature: string }[];
}

void describe('Ethereum values: keccak-256, addresses, EIP-55, a published signature', () => {
  const v = loadVectors<EthVectors>('ethereum.json');
  void it('keccak-256 of "" and "abc" (and it is not FIPS SHA3-256)', () => {
    for (const k of v.keccak256) assert.equal(toHex(keccak256(h(k.input)), false), k.digest);
    assert.notEqual(createHash('sha3-256').update('').digest('hex'), v.keccak256[0]!.digest);
  });
  for (const impl of secpImpls()) {
    void it(`${impl.name}: private key → ID (EVM address)`, () => {
      for (const a of v.addresses) {
        const kp = KeyPair.fromPrivateKey(a.privateKey, impl);
        assert.equal(formatIdChecksum(kp.id), a.address);
        assert.equal(kp.idHex, a.address.toLowerCase());
        assert.equal(formatId(parseId(a.address)), a.address.toLowerCase());
      }
    });
    void it(`${impl.name}: web3.js sign('Some data') reproduced byte for byte, and recovered`, () => {
      for (const s of v.signatures) {
        const digest = keccak256(Buffer.concat([Buffer.from(`\x19Ethereum Signed Message:\n${h(s.message).length}`), h(s.message)]));
        assert.equal(toHex(digest, false), s.digest);
        assert.equal(toHex(impl.sign(digest, h(s.privateKey)), false), s.signature);
        const kp = KeyPair.fromPrivateKey(s.privateKey, impl);
        assert.ok(impl.recover(h(s.signature), digest, true)?.equals(kp.publicKey));
        assert.equal(impl.verify(h(s.signature), digest, kp.publicKey), true);
      }
    });
  }
  void it('EIP-55 checksums: accepted, reproduced, and a one-letter case change refused', () => {
    for (const a of v.eip55.addresses) {
      const id = tryParseId(a);
      assert.ok(id, a);
      assert.equal(formatIdChecksum(id), a);
      const i = [...a].findIndex((c, k) => k > 1 && /[a-fA-F]/.test(c));
      const flipped = a.slice(0, i) + (a[i] === a[i]!.toUpperCase() ? a[i]!.toLowerCase() : a[i]!.toUpperCase()) + a.slice(i + 1);
      assert.equal(tryParseId(flipped), null, flipped);
    }
  });
});
