// util/keep: copies that are the caller's own bytes, and that do not keep Node's shared Buffer pool slabs alive.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { keep } from '../../agent/src/util/keep.js';

test('keep copies: equal bytes, independent of the source and of each other', () => {
  const src = Buffer.from('0123456789abcdef0123456789abcdef', 'hex');
  const a = keep(src);
  const b = keep(src);
  assert.deepEqual(a, src);
  src[0] = 0xff;
  a[1] = 0xee;
  assert.equal(a[0], 0x01);
  assert.equal(b[1], 0x23, 'writing one copy leaves the next untouched');
  assert.equal(keep(new Uint8Array(0)).length, 0);
  const big = Buffer.alloc(5000, 7);
  const k = keep(big);
  assert.deepEqual(k, big);
  assert.equal(k.buffer.byteLength, 5000, 'large copies get their own ArrayBuffer');
});

test('kept slices share no ArrayBuffer with pooled Buffers, and fill slabs of their own', () => {
  const pooled = Buffer.from([1, 2, 3]);
  const kept = Array.from({ length: 3000 }, (_, i) => keep(Buffer.from([i & 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9])));
  assert.ok(kept.every((k) => k.buffer !== pooled.buffer));
  const slabs = new Set(kept.map((k) => k.buffer));
  // 3,000 × 16 bytes (aligned) = 48,000 bytes: one or two 64 KiB slabs.
  assert.ok(slabs.size <= 2, `${slabs.size} slabs`);
  assert.ok(kept.every((k, i) => k[0] === (i & 0xff) && k[9] === 9), 'each slice holds its own bytes');
});
