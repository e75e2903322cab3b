// crypto/random: pooled CSPRNG output for public per-packet values (a DC's registration nonces, channel indexes,
// txids). Each value must be fresh: no byte handed out twice, across the 4 KiB blocks it is drawn from.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomPublicBytes, randomU32 } from '../../agent/src/crypto/random.js';

test('pooled random bytes: fresh values across many blocks, each the caller\'s own buffer', () => {
  const seen = new Set<string>();
  const counts = new Uint32Array(256);
  // 20,000 × 16 bytes = 78 blocks: a block reused without a refill, or a cursor that did not move, repeats values.
  for (let i = 0; i < 20_000; i++) {
    const b = randomPublicBytes(i % 7 === 0 ? 13 : 16);
    assert.equal(b.length, i % 7 === 0 ? 13 : 16);
    const hex = b.toString('hex');
    assert.ok(!seen.has(hex), `value ${i} repeated`);
    seen.add(hex);
    for (const x of b) counts[x]!++;
    b.fill(0);
  }
  assert.ok(counts.every((c) => c > 0), 'every byte value occurs');
  assert.throws(() => randomPublicBytes(4097), RangeError);
});

test('randomU32: the whole 32-bit range, no repeats in 10,000', () => {
  const seen = new Set<number>();
  let high = 0;
  for (let i = 0; i < 10_000; i++) {
    const v = randomU32();
    assert.ok(Number.isInteger(v) && v >= 0 && v < 2 ** 32);
    if (v >= 2 ** 31) high++;
    seen.add(v);
  }
  assert.ok(seen.size > 9_990, `${seen.size} distinct`);
  assert.ok(high > 4_000 && high < 6_000, `${high} of 10,000 in the upper half`);
});
