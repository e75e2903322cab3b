// The opening thread (agent/native/rxopen.c, issue 15) against the JavaScript reference: DATA datagrams sealed by a
// TunnelKeypair, opened by the native UDP socket's thread ahead of the handler, give the keypair the same results
// (plaintext or drop reason: auth, replay, counter) as a twin keypair that opens everything itself with @noble/ciphers
// (RFC 8439); datagrams it has no key for reach the handler unopened; a destroyed keypair's key is wiped; bursts with
// no DATA skip the thread when nothing is on its way through it, in order with the rest.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { nativeAddon } from '../../agent/src/native.js';
import { nobleAead } from '../../agent/src/crypto/aead.js';
import { DATA_TYPE, TunnelKeypair } from '../../agent/src/crypto/session.js';
import { NativeUdpBind } from '../../agent/src/dataplane/conn/native-udp.js';
import type { Endpoint, OpenedDatagram } from '../../agent/src/types/net.js';

interface Got {
  readonly data: Buffer;
  readonly opened: { gen: number; ok: boolean; plain: Buffer } | undefined;
}

function keypairs(localIndex: number, aead?: typeof nobleAead): { tx: TunnelKeypair; rx: TunnelKeypair; key: Buffer } {
  const key = randomBytes(32);
  const other = randomBytes(32);
  const tx = new TunnelKeypair({ packetType: DATA_TYPE, sendKey: key, receiveKey: other, localIndex: 1, remoteIndex: localIndex, isInitiator: true, aead: nobleAead });
  const rx = new TunnelKeypair({ packetType: DATA_TYPE, sendKey: other, receiveKey: key, localIndex, remoteIndex: 1, isInitiator: false, ...(aead ? { aead } : {}) });
  return { tx, rx, key };
}

/** What `b` receives until `n` datagrams arrived (copied: the handler's are borrowed). */
function collect(b: NativeUdpBind, n: number): Promise<Got[]> {
  const got: Got[] = [];
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(got), 3000);
    b.onMessage((d: Buffer, _from: Endpoint, o?: OpenedDatagram) => {
      got.push({ data: Buffer.from(d), opened: o ? { gen: o.gen, ok: o.ok, plain: Buffer.from(o.plain) } : undefined });
      if (got.length === n) {
        clearTimeout(timer);
        resolve(got);
      }
    });
  });
}

test('opening thread: the keypair gets what the JavaScript reference gets, packet by packet (plaintexts, auth, replay), in order', async () => {
  const addon = nativeAddon();
  assert.ok(addon, 'the native addon is built');
  const before = addon.rxKeyCount();
  const { tx, rx, key } = keypairs(0x5eed_0001);
  // The reference: the same receive key, opened in JavaScript by @noble/ciphers.
  const ref = new TunnelKeypair({ packetType: DATA_TYPE, sendKey: randomBytes(32), receiveKey: key, localIndex: 0x5eed_0001, remoteIndex: 1, isInitiator: false, aead: nobleAead });
  const stranger = keypairs(0x5eed_0002, nobleAead); // its key is not lent: its packets reach the handler unopened
  assert.equal(addon.rxKeyCount(), before + 1);

  const a = NativeUdpBind.open('127.0.0.1:0', { openData: true })!;
  const b = NativeUdpBind.open('127.0.0.1:0', { openData: true })!;
  assert.ok(b.opening, 'the socket runs its opening thread');
  const signalling = NativeUdpBind.open('127.0.0.1:0')!;
  assert.equal(signalling.opening, false, 'a socket not asked to open data runs no thread');
  await signalling.close();
  const to: Endpoint = { family: 4, address: '127.0.0.1', port: b.port };
  const sent: Buffer[] = [];
  // Runs of equal sizes (they leave as GSO sends and arrive GRO'd), a keep-alive (empty plaintext), odd sizes.
  const sizes = [...Array<number>(40).fill(1380), 0, 1, 63, 64, 65, ...Array<number>(20).fill(500), 1379];
  for (const n of sizes) sent.push(Buffer.from(tx.seal(randomBytes(n)) as Buffer));
  const forged = Buffer.from(sent[3]!);
  forged[forged.length - 1]! ^= 1;
  sent.push(forged); // fails the tag
  sent.push(Buffer.from(sent[5]!)); // a replay
  sent.push(Buffer.from(stranger.tx.seal(randomBytes(100)) as Buffer));
  sent.push(Buffer.from([0x01, 0, 0, 0, 1, 2, 3, 4])); // not DATA
  const arriving = collect(b, sent.length);
  for (const p of sent) a.send(p, to);
  const got = await arriving;
  assert.equal(got.length, sent.length);
  const out = Buffer.alloc(65_536);
  for (let i = 0; i < got.length; i++) {
    const g = got[i]!;
    assert.deepEqual(g.data, sent[i], `datagram ${i} arrived as sent, in order`);
    const stray = i === sent.length - 2;
    // The stranger's keypair opens its own packet in JavaScript (its key was not lent): its plaintext, 100 bytes.
    const expected = stray ? 100 : ref.open(g.data);
    if (i < sent.length - 2) assert.ok(g.opened, `datagram ${i} was opened by the thread`);
    else assert.equal(g.opened, undefined, `datagram ${i} was not opened by the thread`);
    const result = (stray ? stranger.rx : rx).open(g.data, out, undefined, g.opened);
    if (typeof expected === 'number') assert.equal((result as Buffer).length, expected);
    else if (typeof expected === 'string') assert.equal(result, expected, `datagram ${i}`);
    else {
      assert.ok(Buffer.isBuffer(result), `datagram ${i}: ${String(result)}`);
      assert.deepEqual(Buffer.from(result), expected, `datagram ${i}: the same plaintext`);
    }
  }
  assert.equal(got[sent.length - 4]!.opened!.ok, false, 'the forged one failed the tag');
  assert.equal(rx.receivedPackets, ref.receivedPackets);
  const stats = b.stats();
  assert.equal(stats.opened, sizes.length + 1, 'the thread opened every authentic one (and the replay)');
  assert.equal(stats.openFailed, 1);

  // Destroyed: the key is wiped, and the thread opens nothing more under it.
  rx.destroy();
  stranger.rx.destroy();
  assert.equal(addon.rxKeyCount(), before);
  const late = collect(b, 1);
  a.send(tx.seal(randomBytes(10)) as Buffer, to);
  const [l] = await late;
  assert.equal(l!.opened, undefined);
  await a.close();
  await b.close();
});

test('opening thread: a verdict made under another keypair\'s key (same index, replaced) is not taken', async () => {
  const first = keypairs(0x5eed_0003);
  const second = keypairs(0x5eed_0003); // lends a new key for the same index: the first keypair's packets fail it
  const a = NativeUdpBind.open('127.0.0.1:0', { openData: true })!;
  const b = NativeUdpBind.open('127.0.0.1:0', { openData: true })!;
  const to: Endpoint = { family: 4, address: '127.0.0.1', port: b.port };
  const arriving = collect(b, 2);
  a.send(first.tx.seal(Buffer.from('one')) as Buffer, to);
  a.send(second.tx.seal(Buffer.from('two')) as Buffer, to);
  const [g1, g2] = await arriving;
  assert.equal(g1!.opened?.ok, false, 'opened under the second key: the tag fails');
  const out = Buffer.alloc(100);
  // The first keypair's generation differs: it opens the packet itself, and it is authentic.
  assert.equal(String(first.rx.open(g1!.data, out, undefined, g1!.opened)), 'one');
  assert.equal(String(second.rx.open(g2!.data, out, undefined, g2!.opened)), 'two');
  first.rx.destroy(); // must not wipe the second's key
  const arriving2 = collect(b, 1);
  a.send(second.tx.seal(Buffer.from('three')) as Buffer, to);
  const [g3] = await arriving2;
  assert.equal(g3!.opened?.ok, true);
  second.rx.destroy();
  await a.close();
  await b.close();
});

test('opening thread: many bursts in both halves stay in order under a steady flood, and close() while bursts are in flight', async () => {
  const { tx, rx } = keypairs(0x5eed_0004);
  const a = NativeUdpBind.open('127.0.0.1:0', { openData: true })!;
  const b = NativeUdpBind.open('127.0.0.1:0', { openData: true })!;
  const to: Endpoint = { family: 4, address: '127.0.0.1', port: b.port };
  const n = 3000;
  let next = 0;
  let bad = 0;
  const out = Buffer.alloc(2000);
  const done = new Promise<void>((resolve) => {
    b.onMessage((d, _f, o) => {
      const pt = rx.open(d, out, undefined, o);
      if (typeof pt === 'string' || pt.readUInt32BE(0) !== next) bad++;
      next++;
      if (next === n) resolve();
    });
  });
  for (let i = 0; i < n; i++) {
    const p = Buffer.alloc(1000);
    p.writeUInt32BE(i, 0);
    a.send(tx.seal(p) as Buffer, to);
    if (i % 200 === 199) await new Promise((r) => setImmediate(r)); // let the socket buffer drain
  }
  await Promise.race([done, new Promise((r) => setTimeout(r, 5000))]);
  assert.equal(bad, 0);
  assert.equal(next, n);
  for (let i = 0; i < 300; i++) a.send(tx.seal(Buffer.alloc(1000)) as Buffer, to);
  await new Promise((r) => setTimeout(r, 1));
  await b.close(); // joins the thread whatever it is opening
  rx.destroy();
  await a.close();
});

test('opening thread: a burst without DATA, with nothing on its way through the thread, goes to JavaScript at once; order is kept among DATA bursts', async () => {
  const { tx, rx } = keypairs(0x5eed_0005);
  const a = NativeUdpBind.open('127.0.0.1:0', { openData: true })!;
  const b = NativeUdpBind.open('127.0.0.1:0', { openData: true })!;
  const to: Endpoint = { family: 4, address: '127.0.0.1', port: b.port };
  const control = (i: number) => Buffer.from([0x10, 0, 0, 0, i & 0xff, i >> 8, 0, 0]); // a CONTROL frame's first bytes
  // Idle: a lone signalling datagram (a registration answer, a Route Direction) is not handed to the thread and back.
  const first = collect(b, 1);
  a.send(control(0), to);
  const [one] = await first;
  assert.deepEqual(one!.data, control(0));
  assert.equal(one!.opened, undefined);
  assert.equal(b.stats().atOnce, 1);
  // Signalling among DATA, in many bursts: whichever way each burst goes, the handler sees them as sent, and every
  // DATA datagram opened by the thread.
  const sent: Buffer[] = [];
  for (let i = 0; i < 600; i++) sent.push(i % 3 === 0 ? control(i) : Buffer.from(tx.seal(Buffer.alloc(300, i & 0xff)) as Buffer));
  const arriving = collect(b, sent.length);
  for (let i = 0; i < sent.length; i++) {
    a.send(sent[i]!, to);
    if (i % 5 === 4) await new Promise((r) => setImmediate(r));
  }
  const got = await arriving;
  assert.equal(got.length, sent.length);
  const out = Buffer.alloc(2000);
  for (let i = 0; i < got.length; i++) {
    assert.deepEqual(got[i]!.data, sent[i], `datagram ${i} in order`);
    if (i % 3 === 0) continue;
    assert.ok(got[i]!.opened?.ok, `DATA datagram ${i} opened by the thread`);
    assert.ok(Buffer.isBuffer(rx.open(got[i]!.data, out, undefined, got[i]!.opened)));
  }
  rx.destroy();
  await a.close();
  await b.close();
});

test('opening thread: after the rekeys of a long-running agent (20,000 keys in, 20,000 out: the table of keys is cleared of removed slots many times) the live key still opens its packets', async () => {
  const addon = nativeAddon()!;
  const before = addon.rxKeyCount();
  const { tx, rx } = keypairs(0x5eed_0100);
  // Each rekey lends a new key and wipes the old one: removed slots pile up in the table unless it is cleared out.
  const key = randomBytes(32);
  for (let i = 0; i < 20_000; i++) {
    const index = 0x6000_0000 + i;
    const gen = addon.rxKeyAdd(index, key);
    assert.ok(gen > 0, `key ${i} taken`);
    addon.rxKeyRemove(index, gen);
  }
  assert.equal(addon.rxKeyCount(), before + 1, 'only the live keypair is left');
  const b = NativeUdpBind.open('127.0.0.1:0', { openData: true })!;
  const a = NativeUdpBind.open('127.0.0.1:0')!;
  const arriving = collect(b, 1);
  a.send(tx.seal(randomBytes(40)) as Buffer, { family: 4, address: '127.0.0.1', port: b.port });
  const [g] = await arriving;
  assert.ok(g?.opened?.ok, 'the live keypair\'s packet was opened by the thread');
  assert.equal((rx.open(g.data, Buffer.alloc(2048), undefined, g.opened) as Buffer).length, 40);
  rx.destroy();
  await a.close();
  await b.close();
});
