// Sealed frames under a TunnelKeypair: round trip, header layout, every drop reason, rekey/reject limits (time and
// messages), caller buffers; and KeypairSet rotation (WireGuard's current/previous/next).

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { nativeAead, nobleAead } from '../../agent/src/crypto/aead.js';
import {
  CONTROL_TYPE,
  DATA_TYPE,
  DEFAULT_SESSION_LIMITS,
  KeypairSet,
  MAX_SEALED_PLAINTEXT,
  REJECT_AFTER_MESSAGES,
  REKEY_AFTER_MESSAGES,
  SEALED_OVERHEAD,
  TunnelKeypair,
  type SessionLimits,
} from '../../agent/src/crypto/session.js';

interface Pair {
  a: TunnelKeypair;
  b: TunnelKeypair;
  clock: { now: number };
}

function pair(opts: { type?: number; limits?: Partial<SessionLimits>; aead?: typeof nativeAead; aIndex?: number; bIndex?: number } = {}): Pair {
  const k1 = randomBytes(32);
  const k2 = randomBytes(32);
  const clock = { now: 1_000_000 };
  const common = { packetType: opts.type ?? DATA_TYPE, clock: () => clock.now, limits: opts.limits, aead: opts.aead ?? nativeAead };
  const ai = opts.aIndex ?? 0x0a0b0c0d;
  const bi = opts.bIndex ?? 0x01020304;
  return {
    a: new TunnelKeypair({ ...common, sendKey: k1, receiveKey: k2, localIndex: ai, remoteIndex: bi, isInitiator: true }),
    b: new TunnelKeypair({ ...common, sendKey: k2, receiveKey: k1, localIndex: bi, remoteIndex: ai, isInitiator: false }),
    clock,
  };
}

function sealed(r: Buffer | string): Buffer {
  assert.ok(typeof r !== 'string', `seal refused: ${String(r)}`);
  return r;
}

void describe('TunnelKeypair seal/open', () => {
  for (const aead of [nativeAead, nobleAead]) {
    void it(`${aead.name}: round trip both ways, header layout per docs/protocol.md §3.3`, () => {
      const { a, b } = pair({ aead });
      for (let i = 0; i < 50; i++) {
        const pt = randomBytes(i * 30);
        const p = sealed(a.seal(pt));
        assert.equal(p.length, pt.length + SEALED_OVERHEAD);
        assert.equal(p[0], DATA_TYPE);
        assert.deepEqual([...p.subarray(1, 4)], [0, 0, 0]);
        assert.equal(p.readUInt32BE(4), b.localIndex);
        assert.equal(p.readBigUInt64BE(8), BigInt(i));
        assert.equal(TunnelKeypair.receiverIndex(p), b.localIndex);
        assert.deepEqual(b.open(p), pt);
        const q = sealed(b.seal(pt));
        assert.deepEqual(a.open(q), pt);
      }
      assert.equal(a.sendCounter, 50);
      assert.equal(b.receivedPackets, 50);
    });
  }

  void it('out-of-order delivery within the window is accepted, duplicates dropped', () => {
    const { a, b } = pair();
    const packets = Array.from({ length: 100 }, (_, i) => sealed(a.seal(Buffer.from([i]))));
    for (const i of [5, 3, 99, 0, 50, 4]) assert.deepEqual(b.open(packets[i]!), Buffer.from([i]));
    for (const i of [5, 3, 99]) assert.equal(b.open(packets[i]!), 'replay');
  });

  void it('drop reasons: length, type, reserved, index, auth, replay, counter', () => {
    const { a, b } = pair();
    const p = sealed(a.seal(randomBytes(20)));
    assert.equal(b.open(p.subarray(0, 31)), 'length');
    assert.equal(b.open(Buffer.alloc(0)), 'length');
    assert.equal(b.open(Buffer.alloc(65_536)), 'length');
    const t = Buffer.from(p);
    t[0] = CONTROL_TYPE;
    assert.equal(b.open(t), 'type', 'a DATA keypair refuses a relabelled packet');
    const r = Buffer.from(p);
    r[2] = 1;
    assert.equal(b.open(r), 'reserved');
    const ix = Buffer.from(p);
    ix[7]! ^= 1;
    assert.equal(b.open(ix), 'index');
    for (const off of [12, 15, 16, p.length - 1]) {
      const f = Buffer.from(p);
      f[off]! ^= 0x80;
      assert.equal(b.open(f), 'auth', `flip at ${off}`);
    }
    const big = Buffer.from(p);
    big.writeUInt32BE(0x0020_0000, 8); // counter ≥ 2^53
    assert.equal(b.open(big), 'counter');
    assert.ok(typeof b.open(p) !== 'string', 'forgeries did not move the window');
    assert.equal(b.open(p), 'replay');
  });

  void it('a forged packet with a far-future counter does not move the window', () => {
    const { a, b } = pair();
    const p0 = sealed(a.seal(Buffer.from('x')));
    const forged = Buffer.from(sealed(a.seal(Buffer.from('y'))));
    forged.writeUInt32BE(1_000_000, 12);
    assert.equal(b.open(forged), 'auth');
    assert.ok(typeof b.open(p0) !== 'string');
  });

  void it('open/seal never throw on hostile packets (fuzz)', () => {
    const { a, b } = pair();
    const good = sealed(a.seal(randomBytes(40)));
    for (let i = 0; i < 3000; i++) {
      const junk = i % 2 === 0 ? randomBytes(i % 100) : Buffer.from(good);
      if (i % 2 === 1) junk[i % junk.length]! ^= 1 + (i % 255);
      const r = b.open(junk);
      assert.ok(typeof r === 'string' || Buffer.isBuffer(r));
    }
  });

  void it('caller-owned output buffers are used; out too small is a caller bug', () => {
    const { a, b } = pair();
    const pt = randomBytes(100);
    const out = Buffer.alloc(2048);
    const p = sealed(a.seal(pt, out));
    assert.equal(p.buffer, out.buffer);
    const ptOut = Buffer.alloc(2048);
    const o = b.open(p, ptOut);
    assert.ok(typeof o !== 'string');
    assert.equal(o.buffer, ptOut.buffer);
    assert.deepEqual(o, pt);
    assert.equal(a.seal(pt, Buffer.alloc(100 + SEALED_OVERHEAD - 1)), 'too-big');
    const p2 = sealed(a.seal(pt));
    assert.equal(b.open(p2, Buffer.alloc(99)), 'length');
    assert.ok(typeof b.open(p2, Buffer.alloc(100)) !== 'string', 'the refusal did not touch the window');
  });

  void it('seals in place when the plaintext already sits after a 16-byte header gap', () => {
    const { a, b } = pair();
    const buf = Buffer.alloc(16 + 64 + 16);
    const pt = randomBytes(64);
    pt.copy(buf, 16);
    const p = sealed(a.seal(buf.subarray(16, 80), buf));
    assert.deepEqual(b.open(p), pt);
  });

  void it('refuses plaintexts that would exceed 65,535 bytes on the wire', () => {
    const { a } = pair();
    assert.equal(a.seal(Buffer.alloc(MAX_SEALED_PLAINTEXT + 1)), 'too-big');
    assert.ok(typeof a.seal(Buffer.alloc(MAX_SEALED_PLAINTEXT)) !== 'string');
  });

  void it('CONTROL keypairs seal CONTROL frames and refuse DATA', () => {
    const { a, b } = pair({ type: CONTROL_TYPE });
    const p = sealed(a.seal(Buffer.from('01', 'hex')));
    assert.equal(p[0], CONTROL_TYPE);
    assert.ok(typeof b.open(p) !== 'string');
    const d = Buffer.from(sealed(a.seal(Buffer.from('02', 'hex'))));
    d[0] = DATA_TYPE;
    assert.equal(b.open(d), 'type');
    assert.throws(() => new TunnelKeypair({ packetType: 0x05, sendKey: randomBytes(32), receiveKey: randomBytes(32), localIndex: 1, remoteIndex: 2, isInitiator: true }), RangeError);
  });
});

void describe('rekey and reject limits (docs/protocol.md §3.4)', () => {
  void it('defaults are WireGuard\'s', () => {
    assert.equal(DEFAULT_SESSION_LIMITS.rekeyAfterMs, 120_000);
    assert.equal(DEFAULT_SESSION_LIMITS.rejectAfterMs, 180_000);
    assert.equal(REKEY_AFTER_MESSAGES, 2n ** 60n);
    assert.equal(REJECT_AFTER_MESSAGES, 2n ** 64n - 2n ** 13n - 1n);
    assert.equal(DEFAULT_SESSION_LIMITS.rekeyAfterMessages, Number.MAX_SAFE_INTEGER, 'clamped: counters are JS numbers');
    assert.equal(DEFAULT_SESSION_LIMITS.replayWindow, 2048);
  });

  void it('time: the initiator wants a rekey after 120 s; nobody seals or opens after 180 s', () => {
    const { a, b, clock } = pair();
    const early = sealed(a.seal(Buffer.from('early')));
    clock.now += 119_999;
    assert.equal(a.needsRekey(), false);
    clock.now += 1;
    assert.equal(a.needsRekey(), true);
    assert.equal(b.needsRekey(), false, 'responders do not rekey on time (avoids both ends racing)');
    const late = sealed(a.seal(Buffer.from('late')));
    assert.ok(typeof b.open(late) !== 'string');
    clock.now += 60_000 - 1;
    assert.equal(a.isExpired(), false);
    clock.now += 1;
    assert.equal(a.isExpired(), true);
    assert.equal(a.seal(Buffer.from('x')), 'expired');
    assert.equal(b.open(early), 'expired');
  });

  void it('messages: rekey and reject thresholds (configurable)', () => {
    const { a, b } = pair({ limits: { rekeyAfterMessages: 5, rejectAfterMessages: 8 } });
    const packets: Buffer[] = [];
    for (let i = 0; i < 8; i++) {
      assert.equal(a.needsRekey(), i >= 5, `after ${i} messages`);
      packets.push(sealed(a.seal(Buffer.from([i]))));
    }
    assert.equal(a.seal(Buffer.from('x')), 'exhausted');
    assert.equal(b.needsRekey(), false);
    for (const p of packets) assert.ok(typeof b.open(p) !== 'string');
    // A packet claiming counter 8 (≥ reject limit) is dropped before any crypto.
    const forged = Buffer.from(packets[0]!);
    forged.writeUInt32BE(8, 12);
    assert.equal(b.open(forged), 'counter');
  });

  void it('destroy() wipes keys: nothing authenticates afterwards', () => {
    const { a, b } = pair();
    const p = sealed(a.seal(Buffer.from('x')));
    b.destroy();
    assert.equal(b.open(p), 'auth');
  });
});

void describe('KeypairSet rotation', () => {
  const mk = (isInitiator: boolean, localIndex: number): TunnelKeypair =>
    new TunnelKeypair({ packetType: DATA_TYPE, sendKey: randomBytes(32), receiveKey: randomBytes(32), localIndex, remoteIndex: 99, isInitiator });

  void it('initiator: new keypair becomes current at once, old one stays as previous', () => {
    const set = new KeypairSet();
    const k1 = mk(true, 1);
    const k2 = mk(true, 2);
    const k3 = mk(true, 3);
    assert.deepEqual(set.install(k1), []);
    assert.equal(set.current, k1);
    assert.deepEqual(set.install(k2), []);
    assert.equal(set.current, k2);
    assert.equal(set.previous, k1);
    assert.deepEqual(set.install(k3), [k1]);
    assert.equal(set.byIndex(1), null);
    assert.equal(set.byIndex(2), k2);
    assert.equal(set.byIndex(3), k3);
  });

  void it('responder: new keypair waits as next until a packet authenticates under it', () => {
    const set = new KeypairSet();
    const old = mk(false, 10);
    set.install(old);
    set.confirm(old); // first handshake: confirmed by the initiator's keepalive
    assert.equal(set.current, old);
    const fresh = mk(false, 11);
    set.install(fresh);
    assert.equal(set.current, old, 'keeps sending with the old keypair');
    assert.equal(set.next, fresh);
    assert.equal(set.byIndex(11), fresh, 'but already receives on the new one');
    assert.equal(set.confirm(old), null, 'traffic on the old keypair changes nothing');
    set.confirm(fresh);
    assert.equal(set.current, fresh);
    assert.equal(set.previous, old, 'late packets under the old keypair still open');
    assert.equal(set.next, null);
  });

  void it('clear() destroys every keypair', () => {
    const set = new KeypairSet();
    const k = mk(true, 1);
    set.install(k);
    set.clear();
    assert.equal(set.current, null);
    assert.equal(set.byIndex(1), null);
  });
});
