// ChaCha20-Poly1305: node:crypto (native) and @noble/ciphers produce identical bytes for random keys, counters, sizes
// and AADs; open refuses every corruption with null and never throws; caller buffers are honoured.

import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { describe, it } from 'node:test';
import { MAX_COUNTER, nativeAead, nobleAead, writeNonce } from '../../agent/src/crypto/aead.js';
import { BufferLengthError } from '../../agent/src/crypto/errors.js';

void describe('AEAD native vs noble', () => {
  void it('identical ciphertexts over random sizes, counters and AADs, and each opens the other', () => {
    const sizes = [0, 1, 15, 16, 17, 63, 64, 65, 255, 256, 1400, 1500, 9000];
    for (let i = 0; i < 300; i++) {
      const key = randomBytes(32);
      const pt = randomBytes(i < sizes.length ? sizes[i]! : randomInt(0, 2048));
      const counter = i % 3 === 0 ? randomInt(0, 2 ** 32) : i % 3 === 1 ? i : MAX_COUNTER - i;
      const aad = i % 4 === 0 ? undefined : randomBytes(randomInt(0, 64));
      const a = nativeAead.seal(key, counter, pt, aad);
      const b = nobleAead.seal(key, counter, pt, aad);
      assert.deepEqual(a, b, `size ${pt.length} counter ${counter}`);
      assert.deepEqual(nobleAead.open(key, counter, a, aad), pt);
      assert.deepEqual(nativeAead.open(key, counter, b, aad), pt);
    }
  });

  void it('nonce layout is 0x00000000 || counter LE', () => {
    assert.equal(writeNonce(1).toString('hex'), '000000000100000000000000');
    assert.equal(writeNonce(0x0102_0304_0506).toString('hex'), '000000000605040302010000');
    assert.equal(writeNonce(MAX_COUNTER).toString('hex'), '00000000ffffffffffff1f00');
  });
});

for (const aead of [nativeAead, nobleAead]) {
  void describe(`AEAD ${aead.name}: refusals`, () => {
    const key = randomBytes(32);
    const pt = randomBytes(100);
    const aad = randomBytes(12);
    const sealed = aead.seal(key, 7, pt, aad);

    void it('every single-bit flip of ciphertext or tag is refused', () => {
      for (let bit = 0; bit < sealed.length * 8; bit += 7) {
        const bad = Buffer.from(sealed);
        bad[bit >> 3]! ^= 1 << (bit & 7);
        assert.equal(aead.open(key, 7, bad, aad), null, `bit ${bit}`);
      }
    });

    void it('wrong key, counter, AAD, truncation, extension: null', () => {
      assert.equal(aead.open(randomBytes(32), 7, sealed, aad), null);
      assert.equal(aead.open(key, 8, sealed, aad), null);
      assert.equal(aead.open(key, 7, sealed, undefined), null);
      assert.equal(aead.open(key, 7, sealed, Buffer.concat([aad, Buffer.alloc(1)])), null);
      assert.equal(aead.open(key, 7, sealed.subarray(0, sealed.length - 1), aad), null);
      assert.equal(aead.open(key, 7, Buffer.concat([sealed, Buffer.alloc(1)]), aad), null);
      assert.equal(aead.open(key, 7, sealed.subarray(0, 15), aad), null);
      assert.equal(aead.open(key, 7, Buffer.alloc(0), aad), null);
    });

    void it('malformed arguments to open: null, not an exception', () => {
      assert.equal(aead.open(randomBytes(31), 7, sealed, aad), null);
      assert.equal(aead.open(key, -1, sealed, aad), null);
      assert.equal(aead.open(key, 1.5, sealed, aad), null);
      assert.equal(aead.open(key, 2 ** 53, sealed, aad), null);
      assert.equal(aead.open(key, 7, sealed, aad, Buffer.alloc(10)), null, 'output too small');
      assert.equal(aead.openWithNonce(key, Buffer.alloc(8), sealed, aad), null);
    });

    void it('seal refuses caller bugs with typed errors', () => {
      assert.throws(() => aead.seal(randomBytes(16), 0, pt), BufferLengthError);
      assert.throws(() => aead.seal(key, 0, pt, undefined, Buffer.alloc(pt.length)), BufferLengthError);
      assert.throws(() => aead.seal(key, -1, pt), RangeError);
      assert.throws(() => aead.seal(key, 2 ** 53, pt), RangeError);
    });

    void it('writes into caller buffers; a failed open leaves the buffer untouched', () => {
      const out = Buffer.alloc(200, 0x55);
      const s = aead.seal(key, 9, pt, aad, out);
      assert.equal(s.buffer, out.buffer);
      assert.equal(s.length, pt.length + 16);
      assert.equal(out[pt.length + 16], 0x55);
      const ptOut = Buffer.alloc(150, 0x66);
      const opened = aead.open(key, 9, s, aad, ptOut);
      assert.ok(opened);
      assert.equal(opened.buffer, ptOut.buffer);
      assert.deepEqual(opened, pt);
      const untouched = Buffer.alloc(150, 0x77);
      const bad = Buffer.from(s);
      bad[0]! ^= 1;
      assert.equal(aead.open(key, 9, bad, aad, untouched), null);
      assert.ok(untouched.every((b) => b === 0x77), 'no unauthenticated plaintext leaks into the caller buffer');
    });

    void it('seals in place (plaintext and output at the same address)', () => {
      const buf = Buffer.alloc(pt.length + 16);
      pt.copy(buf);
      const s = aead.seal(key, 11, buf.subarray(0, pt.length), aad, buf);
      assert.deepEqual(aead.open(key, 11, s, aad), pt);
      assert.deepEqual(s, aead.seal(key, 11, pt, aad));
    });
  });
}
