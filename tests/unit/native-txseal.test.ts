// The sealing thread (agent/native/udp.c queueSeal, issue 15) against the JavaScript reference: DATA packets a
// TunnelKeypair hands to the native socket unsealed (sealVia) leave byte for byte as the same keypair's twin seals them
// with @noble/ciphers (RFC 8439), in order with the datagrams queued or sent between them, relayed ones behind their
// relay header; everything queued leaves at close(); the same with the thread turned off (NTM_NO_TX_THREAD=1, sealed
// at the flush); bad arguments are refused with a clear error. A TCP GSO packet handed over whole (queueSealGso) leaves
// as the segments gso.c cuts (tests/unit/native-gso checks those against the TypeScript packet code), each sealed as
// the reference seals it under consecutive counters.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { nativeAddon } from '../../agent/src/native.js';
import { nobleAead } from '../../agent/src/crypto/aead.js';
import { DATA_TYPE, TunnelKeypair } from '../../agent/src/crypto/session.js';
import { NativeUdpBind } from '../../agent/src/dataplane/conn/native-udp.js';
import { RELAY_HEADER, writeRelayHeader } from '../../agent/src/protocol/relay.js';
import type { Endpoint } from '../../agent/src/types/net.js';
import { buildPacket } from '../../agent/src/dataplane/packet/testing/build.js';

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

/** A TCP GSO packet as NFQUEUE hands it over whole (60 KB of payload, timestamps on, PSH and FIN at its end). */
function gsoPacket(v6: boolean, port: number): Buffer {
  const [src, dst] = v6
    ? [Buffer.from('fd4e544d000000000000000000000007', 'hex'), Buffer.from('fd000001000000000000000000000010', 'hex')]
    : [Uint8Array.from([198, 18, 0, 7]), Uint8Array.from([192, 168, 1, 10])];
  const tcpOptions = Uint8Array.from([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
  return Buffer.from(buildPacket({ src, dst, protocol: 'tcp', srcPort: port, dstPort: 5201, seq: 1000, ack: 99, tcpFlags: 0x19, tcpOptions, payload: randomBytes(60_000), id: 7 }));
}

/** The segments gso.c cuts `pkt` into (the reference for queueSealGso's). */
function cut(pkt: Buffer, mtu: number): Buffer[] {
  const out = Buffer.alloc(256 << 10);
  const r = nativeAddon()!.gsoSegment(pkt, mtu, out);
  assert.ok(r, 'the packet was cut');
  const segs: Buffer[] = [];
  for (let k = 0; k < r.length; k += 2) segs.push(Buffer.from(out.subarray(r[k]!, r[k]! + r[k + 1]!)));
  return segs;
}

test('a TCP GSO packet sealed whole: its segments leave as the reference seals each, under consecutive counters', async () => {
  const a = NativeUdpBind.open('127.0.0.1:0');
  assert.ok(a?.sealsGso, 'the addon has queueSealGso');
  const rx = receiver();
  const to: Endpoint = { family: 4, address: '127.0.0.1', port: rx.port };
  const { kp, ref } = twins();
  const expected: Buffer[] = [];
  const mtu = 1380;
  let total = 0;
  // IPv4 and IPv6, direct and relayed, with a single datagram between; more than one queue's worth of segments.
  for (let i = 0; i < 8; i++) {
    const relayed = i % 4 === 3;
    const pkt = gsoPacket(i % 2 === 1, 40_000 + i);
    const segs = cut(pkt, mtu);
    if (relayed) writeRelayHeader(PREFIX, 0x1122_3344_5566_7788n);
    const n = kp.sealViaGso(pkt, relayed ? PREFIX : Buffer.alloc(16), relayed ? RELAY_HEADER : 0, Date.now(), 1400, (p, k, c, t, max, dest: Endpoint): number => a.sendSealingGso(p, k, c, t, mtu, max, dest), to);
    assert.equal(n, segs.length, `packet ${i}: cut into ${segs.length} segments`);
    total += segs.length;
    for (const seg of segs) {
      const sealed = ref.seal(seg) as Buffer;
      expected.push(relayed ? Buffer.concat([PREFIX.subarray(0, RELAY_HEADER), sealed]) : sealed);
    }
    const single = randomBytes(100);
    assert.equal(kp.sealVia(single, Buffer.alloc(16), 0, Date.now(), (p, k, c, t, dest: Endpoint) => a.sendSealing(p, k, c, t, dest), to), undefined);
    expected.push(ref.seal(single) as Buffer);
  }
  assert.equal(kp.sendCounter, total + 8, 'a counter per segment');
  const got = await rx.until(expected.length);
  const stats = a.stats();
  await a.close();
  await rx.sock.close();
  assert.equal(got.length, expected.length, 'every segment arrived');
  for (let i = 0; i < expected.length; i++) assert.deepEqual(got[i], expected[i], `datagram ${i} as the reference sealed it, in order`);
  assert.equal(stats['sealed'], total + 8);
  assert.ok(stats['gsoSends']! > 0, 'runs of equal segments left as UDP GSO sends');
  assert.equal(stats['sendErrors'], 0);
});

test('queueSealGso refuses what it cannot cut, and then nothing is queued and no counter taken', async () => {
  const a = NativeUdpBind.open('127.0.0.1:0')!;
  const to: Endpoint = { family: 4, address: '127.0.0.1', port: 9 };
  const { kp } = twins();
  const sink = (p: Buffer, k: Uint8Array, c: number, t: Uint8Array, max: number, dest: Endpoint): number => a.sendSealingGso(p, k, c, t, 1380, max, dest);
  const udp = Buffer.from(buildPacket({ src: Uint8Array.from([198, 18, 0, 7]), dst: Uint8Array.from([192, 168, 1, 10]), protocol: 'udp', srcPort: 1, dstPort: 2, payload: randomBytes(3000) }));
  assert.equal(kp.sealViaGso(udp, Buffer.alloc(16), 0, Date.now(), 1400, sink, to), -22, 'EINVAL: not TCP');
  assert.equal(kp.sealViaGso(gsoPacket(false, 1), Buffer.alloc(16), 0, Date.now(), 10, sink, to), -90, 'EMSGSIZE: more segments than counters allowed');
  assert.equal(kp.sendCounter, 0);
  assert.equal(a.stats()['queued'], 0);
  const addon = nativeAddon()!;
  const s = new addon.UdpSocket('127.0.0.1', 0);
  assert.throws(() => s.queueSealGso!(Buffer.alloc(8), Buffer.alloc(32), 0, udp, 1380, 10, '127.0.0.1', 9), /queueSealGso\(prefix, key32/, 'a prefix shorter than the sealed header');
  assert.throws(() => s.queueSealGso!(Buffer.alloc(16), Buffer.alloc(32), 2 ** 53 - 5, udp, 1380, 10, '127.0.0.1', 9), /counter out of range/);
  s.close();
  await a.close();
  const { ref } = twins();
  assert.equal(ref.sealViaGso(udp, Buffer.alloc(16), 0, Date.now(), 1400, () => 1, undefined), 'unsupported', 'a keypair with its own AEAD: cut by the caller');
});
