// The native fast path (agent/native/) against its references: the AEAD gives noble's bytes, refuses forgeries
// and never leaves unauthenticated plaintext; the UDP bind behaves like node:dgram's (both families, dual-stack,
// borrowed buffers, close). The NFQUEUE source runs the shared compliance suite in tests/netns/nfqueue-compliance.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { keccak_256 } from '@noble/hashes/sha3.js';
import { nativeAddon, nativeLoadError } from '../../agent/src/native.js';
import { nobleAead, ntmdpAead, defaultAead } from '../../agent/src/crypto/aead.js';
import { NativeUdpBind } from '../../agent/src/dataplane/conn/native-udp.js';
import type { Endpoint } from '../../agent/src/types/net.js';

test('the native addon is built (scripts/setup builds it)', () => {
  assert.ok(nativeAddon(), `ntmdp.node does not load: ${nativeLoadError()?.message}`);
  assert.equal(defaultAead.name, 'ntmdp', 'the data path uses the fast AEAD');
});

test('native ChaCha20-Poly1305 gives the reference bytes for every length, key and counter', () => {
  const a = ntmdpAead!;
  for (let i = 0; i < 300; i++) {
    const key = randomBytes(32);
    const pt = randomBytes((i * 7) % 1500);
    const counter = i < 10 ? i : Math.floor(Math.random() * Number.MAX_SAFE_INTEGER);
    const aad = i % 3 === 0 ? randomBytes(i % 40) : undefined;
    const ref = nobleAead.seal(key, counter, pt, aad);
    const got = a.seal(key, counter, pt, aad);
    assert.ok(got.equals(ref), `seal differs at case ${i}`);
    const back = a.open(key, counter, got, aad);
    assert.ok(back?.equals(pt), `open differs at case ${i}`);
  }
});

test('native Keccak-256 (Ethereum padding) equals @noble/hashes for every length around the 136-byte rate', () => {
  const addon = nativeAddon()!;
  const out = Buffer.alloc(32);
  for (let len = 0; len <= 3 * 136 + 1; len++) {
    const data = randomBytes(len);
    addon.keccak256(data, out);
    assert.equal(out.toString('hex'), Buffer.from(keccak_256(data)).toString('hex'), `length ${len}`);
  }
});

test('native HMAC-SHA256 equals node:crypto for keys of 0 to 64 bytes and messages around the 64-byte block; a longer key is refused', () => {
  const addon = nativeAddon()!;
  const out = Buffer.alloc(32);
  for (let klen = 0; klen <= 64; klen += 8) {
    for (let len = 0; len <= 3 * 64 + 1; len++) {
      const key = randomBytes(klen);
      const data = randomBytes(len);
      addon.hmacSha256(key, data, out);
      assert.equal(out.toString('hex'), createHmac('sha256', key).update(data).digest('hex'), `key ${klen}, length ${len}`);
    }
  }
  assert.throws(() => addon.hmacSha256(randomBytes(65), Buffer.alloc(1), out), TypeError);
  assert.throws(() => addon.hmacSha256(randomBytes(32), Buffer.alloc(1), Buffer.alloc(31)), TypeError);
});

test('native open refuses forgeries and wipes what it decrypted', () => {
  const a = ntmdpAead!;
  const key = randomBytes(32);
  const pt = Buffer.from('the lamp is on, the door is open');
  const sealed = a.seal(key, 7, pt);
  for (const bad of [
    Buffer.concat([sealed.subarray(0, 3), Buffer.from([sealed[3]! ^ 1]), sealed.subarray(4)]),
    Buffer.concat([sealed.subarray(0, -1), Buffer.from([sealed.at(-1)! ^ 0x80])]),
  ]) {
    const out = Buffer.alloc(pt.length, 0x55);
    assert.equal(a.open(key, 7, bad, undefined, out), null);
    assert.ok(out.every((b) => b === 0 || b === 0x55), 'no unauthenticated plaintext left in the caller buffer');
  }
  assert.equal(a.open(key, 8, sealed), null, 'another counter is another nonce');
  assert.equal(a.open(randomBytes(32), 7, sealed), null);
  assert.equal(a.open(key, 7, sealed.subarray(0, 10)), null, 'shorter than a tag');
});

async function exchange(aListen: string, bListen: string, to: (port: number) => Endpoint): Promise<{ got: string; from: Endpoint; reply: string }> {
  const a = NativeUdpBind.open(aListen)!;
  const b = NativeUdpBind.open(bListen)!;
  try {
    const result = await new Promise<{ got: string; from: Endpoint; reply: string }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no datagram')), 2000);
      let got = '';
      let from: Endpoint | undefined;
      b.onMessage((d, f) => {
        got = d.toString();
        from = f;
        b.send(Buffer.from('pong'), f);
      });
      a.onMessage((d) => {
        clearTimeout(timer);
        resolve({ got, from: from!, reply: d.toString() });
      });
      a.send(Buffer.from('ping'), to(b.port));
    });
    return result;
  } finally {
    await a.close();
    await b.close();
  }
}

test('native UDP bind: IPv4, IPv6, and IPv4 on a dual-stack socket reported as IPv4', async () => {
  const v4 = await exchange('127.0.0.1:0', '127.0.0.1:0', (p) => ({ family: 4, address: '127.0.0.1', port: p }));
  assert.equal(v4.got, 'ping');
  assert.equal(v4.reply, 'pong');
  assert.equal(v4.from.family, 4);
  const v6 = await exchange('[::1]:0', '[::]:0', (p) => ({ family: 6, address: '::1', port: p }));
  assert.deepEqual([v6.got, v6.reply, v6.from.family, v6.from.address], ['ping', 'pong', 6, '::1']);
  const mapped = await exchange('127.0.0.1:0', '[::]:0', (p) => ({ family: 4, address: '127.0.0.1', port: p }));
  assert.deepEqual([mapped.got, mapped.reply, mapped.from.family, mapped.from.address], ['ping', 'pong', 4, '127.0.0.1']);
});

test('native UDP bind: a burst arrives whole and in order; nothing after close', async () => {
  const a = NativeUdpBind.open('127.0.0.1:0')!;
  const b = NativeUdpBind.open('127.0.0.1:0')!;
  const seen: number[] = [];
  b.onMessage((d) => seen.push(d.readUInt32BE(0)));
  const to: Endpoint = { family: 4, address: '127.0.0.1', port: b.port };
  for (let i = 0; i < 500; i++) {
    const p = Buffer.alloc(1200);
    p.writeUInt32BE(i, 0);
    a.send(p, to);
  }
  for (let t = 0; t < 100 && seen.length < 500; t++) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(seen, Array.from({ length: 500 }, (_, i) => i));
  await b.close();
  a.send(Buffer.from('late'), to);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(seen.length, 500);
  await a.close();
});

/** Collects what `b` receives until `n` datagrams arrived (or 2 s passed). */
function collect(b: NativeUdpBind, n: number): Promise<Array<{ data: Buffer; from: Endpoint }>> {
  const got: Array<{ data: Buffer; from: Endpoint }> = [];
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(got), 2000);
    b.onMessage((d, from) => {
      got.push({ data: Buffer.from(d), from });
      if (got.length === n) {
        clearTimeout(timer);
        resolve(got);
      }
    });
  });
}

test('native UDP bind: a queued run leaves as GSO sends and arrives split (GRO), sizes and order kept, a shorter last one too', async () => {
  const a = NativeUdpBind.open('127.0.0.1:0')!;
  const b = NativeUdpBind.open('[::]:0')!;
  try {
    const to: Endpoint = { family: 4, address: '127.0.0.1', port: b.port };
    // 150 of 1,412 bytes (more than one GSO send holds), then a short one, then another run of a different size.
    const sizes = [...Array.from({ length: 150 }, () => 1412), 700, ...Array.from({ length: 20 }, () => 96)];
    const arrived = collect(b, sizes.length);
    sizes.forEach((size, i) => {
      const p = Buffer.alloc(size, i & 0xff);
      p.writeUInt32BE(i, 0);
      a.send(p, to);
    });
    const got = await arrived;
    assert.deepEqual(
      got.map((g) => [g.data.readUInt32BE(0), g.data.length]),
      sizes.map((s, i) => [i, s]),
    );
    assert.ok(got.every((g, i) => g.data.subarray(4).every((x) => x === (i & 0xff))), 'each datagram carries its own bytes');
    assert.ok(got.every((g) => g.from.family === 4 && g.from.address === '127.0.0.1' && g.from.port === a.port));
    const sent = a.stats();
    assert.ok(sent.gsoSends! >= 3 && sent.gsoSends! < 20, `runs went out as GSO sends: ${JSON.stringify(sent)}`);
    assert.ok(b.stats().groMessages! >= 3, `and arrived whole: ${JSON.stringify(b.stats())}`);
  } finally {
    await a.close();
    await b.close();
  }
});

test('native UDP bind: an empty datagram arrives (length 0); queued sends leave before a TTL-limited one; two senders stay apart', async () => {
  const a = NativeUdpBind.open('127.0.0.1:0')!;
  const c = NativeUdpBind.open('127.0.0.1:0')!;
  const b = NativeUdpBind.open('127.0.0.1:0')!;
  try {
    const to: Endpoint = { family: 4, address: '127.0.0.1', port: b.port };
    const arrived = collect(b, 7);
    a.send(Buffer.alloc(0), to);
    a.send(Buffer.from('q1'), to);
    a.send(Buffer.from('q2'), to);
    assert.ok(a.sendWithTtl(Buffer.from('t3'), to, 5));
    c.send(Buffer.from('c1'), to);
    a.send(Buffer.from('a4'), to);
    c.send(Buffer.from('c2'), to);
    const got = await arrived;
    const from = (port: number) => got.filter((g) => g.from.port === port).map((g) => g.data.toString());
    assert.deepEqual(from(a.port), ['', 'q1', 'q2', 't3', 'a4']);
    assert.deepEqual(from(c.port), ['c1', 'c2']);
  } finally {
    await a.close();
    await b.close();
    await c.close();
  }
});
