// protocol/ip: the hand-written IPv4 parser accepts exactly what node:net's isIPv4 does, and IPv6 text comes out in
// RFC 5952's canonical form (checked against the WHATWG URL serializer, which compresses the same way).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isIPv4 } from 'node:net';
import { bytesToIp6, ip4ToBytes, ip6ToBytes, ipFamily } from '../../agent/src/protocol/ip.js';

/** Deterministic pseudo-random numbers (xorshift32), so a failure repeats. */
function rng(seed: number): () => number {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

test('ip4ToBytes takes exactly what isIPv4 takes, with the same bytes', () => {
  const fixed = ['0.0.0.0', '255.255.255.255', '198.18.0.2', '1.2.3.4', '01.2.3.4', '1.2.3.04', '256.1.1.1', '1.2.3', '1.2.3.4.5',
    '1..2.3', '.1.2.3', '1.2.3.', '1.2.3.4 ', ' 1.2.3.4', '1.2.3.-4', '1.2.3.4a', '', '1234.1.1.1', '00.0.0.0', '0.0.0.00', '9.99.199.249'];
  const r = rng(15);
  const alphabet = '0123456789.....a';
  const fuzz = Array.from({ length: 20_000 }, () => {
    const n = Math.floor(r() * 17);
    let s = '';
    for (let i = 0; i < n; i++) s += alphabet[Math.floor(r() * alphabet.length)];
    return s;
  });
  // Well-formed ones are rare in the fuzz: add dotted quads of numbers around the edges.
  const edge = [0, 1, 9, 10, 99, 100, 199, 249, 250, 255, 256, 999];
  const quads = Array.from({ length: 2000 }, () => Array.from({ length: 4 }, () => String(edge[Math.floor(r() * edge.length)])).join('.'));
  let valid = 0;
  for (const s of [...fixed, ...fuzz, ...quads]) {
    const want = isIPv4(s);
    let got: Uint8Array | undefined;
    try {
      got = ip4ToBytes(s);
    } catch (e) {
      assert.ok(e instanceof RangeError);
    }
    assert.equal(!!got, want, JSON.stringify(s));
    assert.equal(ipFamily(s) === 4, want, JSON.stringify(s));
    if (want) {
      valid++;
      assert.deepEqual([...got!], s.split('.').map(Number), s);
    }
  }
  assert.ok(valid > 500, `only ${valid} valid addresses tried`);
  const out = new Uint8Array(6);
  ip4ToBytes('10.0.0.7', out, 2);
  assert.deepEqual([...out], [0, 0, 10, 0, 0, 7]);
});

test('bytesToIp6 is RFC 5952 text (as the URL serializer writes it) and parses back', () => {
  const r = rng(5952);
  const cases: Uint8Array[] = [new Uint8Array(16), Uint8Array.from([...new Uint8Array(15), 1]), Uint8Array.from([0x20, 1, 0xd, 0xb8, ...new Uint8Array(12)])];
  for (let k = 0; k < 5000; k++) {
    // Groups zero often enough to make runs of every length and position.
    const b = new Uint8Array(16);
    for (let g = 0; g < 8; g++) {
      if (r() < 0.5) continue;
      const v = r() < 0.3 ? Math.floor(r() * 16) : Math.floor(r() * 65536);
      b[2 * g] = v >> 8;
      b[2 * g + 1] = v & 0xff;
    }
    cases.push(b);
  }
  for (const b of cases) {
    const text = bytesToIp6(b);
    assert.equal(text, new URL(`http://[${text}]/`).hostname.slice(1, -1), text);
    assert.deepEqual(ip6ToBytes(text), b, text);
    const padded = new Uint8Array(20);
    padded.set(b, 3);
    assert.equal(bytesToIp6(padded, 3), text);
  }
});
