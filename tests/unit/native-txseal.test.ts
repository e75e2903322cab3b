// The sealing thread (agent/native/udp.c queueSeal, issue 15) against the JavaScript reference: DATA packets a
// TunnelKeypair hands to the native socket unsealed (sealVia) leave byte for byte as the same keypair's twin seals them
// with @noble/ciphers (RFC 8439), in order with the datagrams queued or sent between them, relayed ones behind their
// relay header; everything queued leaves at close(); the same with the thread turned off (NTM_NO_TX_THREAD=1, sealed
// at the flush); bad arguments are refused with a clear error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { nativeAddon } from '../../agent/src/native.js';
import { nobleAead } from '../../agent/src/crypto/aead.js';
import { DATA_TYPE, TunnelKeypair } from '../../agent/src/crypto/session.js';
import { NativeUdpBind } from '../../agent/src/dataplane/conn/native-udp.js';
import { RELAY_HEADER, writeRelayHeader } from '../../agent/src/protocol/relay.js';
import type { Endpoint } from '../../agent/src/types/net.js';

/** A keypair and its twin: the same send key and indexes, the twin sealing in JavaScript (@noble/ciphers). */
function twins(): { kp: TunnelKeypair; ref: TunnelKeypair } {
  const sendKey = randomBytes(32);
  const init = { packetType: DATA_TYPE, sendKey, receiveKey: randomBytes(32), localIndex: 7, remoteIndex: 0x0a0b_0c0d, isInitiator: true } as const;
  return { kp: new TunnelKeypair(init), ref: new TunnelKeypair({ ...init, aead: nobleAead }) };
}

/**
 * A receiver on loopback (the native socket: its 4 MiB buffer holds a whole burst, where node:dgram's is capped by
 * rmem_max) and what it got, until `n` datagrams arrived (or 5 s passed).
 */
function receiver(): { sock: NativeUdpBind; port: number; until: (n: number) => Promise<Buffer[]> } {
  const sock = NativeUdpBind.open('127.0.0.1:0')!;
  const got: Buffer[] = [];
  let want = Infinity;
  let done: (() => void) | undefined;
  sock.onMessage((m) => {
    got.push(Buffer.from(m));
    if (got.length >= want) done?.();
  });
  return {
    sock,
    port: sock.port,
    until: (n) =>
      new Promise((resolve) => {
        want = n;
        const timer = setTimeout(() => resolve(got), 5000);
        done = () => {
          clearTimeout(timer);
          resolve(got);
        };
        if (got.length >= n) done();
      }),
  };
}

const PREFIX = Buffer.alloc(RELAY_HEADER + 16);

async function sealsLikeTheReference(thread: boolean): Promise<void> {
  if (!thread) process.env['NTM_NO_TX_THREAD'] = '1';
  const a = NativeUdpBind.open('127.0.0.1:0');
  delete process.env['NTM_NO_TX_THREAD'];
  assert.ok(a?.seals, 'the addon has the sealing queue');
  const rx = receiver();
  const to: Endpoint = { family: 4, address: '127.0.0.1', port: rx.port };
  const { kp, ref } = twins();
  const expected: Buffer[] = [];
  // Runs of equal sizes (GSO sends), an empty keep-alive, odd sizes, relayed frames, and datagrams queued without
  // sealing (signalling) between them: more than one queue's worth (256), so the two queues take turns.
  const sizes = [...Array<number>(300).fill(1380), 0, 1, 63, ...Array<number>(50).fill(500), 1379, ...Array<number>(100).fill(1380)];
  for (let i = 0; i < sizes.length; i++) {
    const pt = randomBytes(sizes[i]!);
    const relayed = i % 97 === 5;
    if (relayed) writeRelayHeader(PREFIX, 0x1122_3344_5566_7788n);
    const refused = kp.sealVia(pt, relayed ? PREFIX : Buffer.alloc(16), relayed ? RELAY_HEADER : 0, Date.now(), (p, k, c, t, dest: Endpoint) => a.sendSealing(p, k, c, t, dest), to);
    assert.equal(refused, undefined);
    const sealed = ref.seal(pt) as Buffer;
    expected.push(relayed ? Buffer.concat([PREFIX.subarray(0, RELAY_HEADER), sealed]) : sealed);
    if (i % 50 === 49) {
      const plain = Buffer.from(`signalling ${i}`);
      a.send(plain, to);
      expected.push(plain);
    }
    if (i === 200) {
      // A TTL send waits for everything queued (the thread's queue included) to leave first.
      const punch = Buffer.from('punch');
      assert.ok(a.sendWithTtl(punch, to, 64));
      expected.push(punch);
    }
  }
  assert.equal(kp.sendCounter, sizes.length, 'every packet took a counter');
  const got = await rx.until(expected.length);
  const stats = a.stats();
  await a.close();
  await rx.sock.close();
  assert.equal(got.length, expected.length, 'every datagram arrived');
  for (let i = 0; i < expected.length; i++) assert.deepEqual(got[i], expected[i], `datagram ${i} as the reference sealed it, in order`);
  assert.equal(stats['sealed'], sizes.length, 'the socket sealed each of them');
  assert.equal(stats['sealThread'], thread ? 1 : 0);
  assert.equal(stats['sendErrors'], 0);
}

test('sealing thread: DATA leaves as the JavaScript reference seals it, in order with the datagrams sent between', async () => {
  await sealsLikeTheReference(true);
});

test('sealing at the flush without the thread (NTM_NO_TX_THREAD=1): the same datagrams', async () => {
  await sealsLikeTheReference(false);
});

test('sealing thread: everything queued leaves at close()', async () => {
  const a = NativeUdpBind.open('127.0.0.1:0')!;
  const rx = receiver();
  const to: Endpoint = { family: 4, address: '127.0.0.1', port: rx.port };
  const { kp, ref } = twins();
  const expected: Buffer[] = [];
  for (let i = 0; i < 600; i++) {
    const pt = randomBytes(1000);
    kp.sealVia(pt, Buffer.alloc(16), 0, Date.now(), (p, k, c, t, dest: Endpoint) => a.sendSealing(p, k, c, t, dest), to);
    expected.push(ref.seal(pt) as Buffer);
  }
  await a.close(); // in the same JavaScript job as the queueing: no flush has run yet for the last queue
  const got = await rx.until(expected.length);
  await rx.sock.close();
  assert.equal(got.length, expected.length);
  for (let i = 0; i < expected.length; i++) assert.deepEqual(got[i], expected[i], `datagram ${i}`);
});

test('sealing queue: bad arguments are refused with a clear error, nothing is queued', async () => {
  const addon = nativeAddon();
  assert.ok(addon);
  const s = new addon.UdpSocket('127.0.0.1', 0);
  const pt = Buffer.alloc(10);
  assert.throws(() => s.queueSeal!(Buffer.alloc(16), Buffer.alloc(31), 0, pt, '127.0.0.1', 9), /queueSeal\(prefix, key32/);
  assert.throws(() => s.queueSeal!(Buffer.alloc(16), Buffer.alloc(32), -1, pt, '127.0.0.1', 9), /counter out of range/);
  assert.throws(() => s.queueSeal!(Buffer.alloc(16), Buffer.alloc(32), 0, pt, '127.0.0.1', 'nine' as unknown as number), /queueSeal/);
  assert.equal(s.queueSeal!(Buffer.alloc(16), Buffer.alloc(32), 0, Buffer.alloc(65_520), '127.0.0.1', 9), -90, 'EMSGSIZE: over a datagram');
  assert.equal(s.queueSeal!(Buffer.alloc(16), Buffer.alloc(32), 0, pt, 'not-an-address', 9), -97, 'EAFNOSUPPORT');
  assert.equal(s.stats()['queued'], 0);
  s.close();
});

test('a keypair given its own AEAD does not hand its packets to the socket', () => {
  const { ref } = twins();
  let called = false;
  const r = ref.sealVia(Buffer.alloc(4), Buffer.alloc(16), 0, Date.now(), () => (called = true), undefined);
  assert.equal(r, 'unsupported');
  assert.equal(called, false);
  assert.equal(ref.sendCounter, 0, 'no counter taken');
});
