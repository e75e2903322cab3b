// Identities (docs/protocol.md §1): domain-tagged signatures and their separation, the identity file (mode 0600,
// atomic write, strict load); Node Transactions (§2): round trip, and truncated / oversized / bit-flipped encodings
// refused as values, never exceptions, on both secp256k1 implementations.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { IdentityFileError, InvalidHexError, InvalidPrivateKeyError } from '../../agent/src/crypto/errors.js';
import { keccak256 } from '../../agent/src/crypto/hex.js';
import { nobleSecp256k1, requireNativeSecp256k1 } from '../../agent/src/crypto/secp256k1.js';
import { domainDigest, DomainTag, Identity, recoverSigner, STATIC_DH_PEERS, verifyBySigner, verifyDomain } from '../../agent/src/protocol/identity.js';
import * as NT from '../../agent/src/protocol/node-transaction.js';

const N = BigInt('0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141');

void describe('Identity signing', () => {
  void it('digest(tag, body) = keccak256(tag || body)', () => {
    const body = randomBytes(50);
    assert.deepEqual(domainDigest(DomainTag.relayTicket, body), keccak256(Buffer.concat([Buffer.from('NTM1 relay-ticket'), body])));
  });

  void it('sign → recover the signer; verify by ID and by key; domain tags do not cross', () => {
    const id = Identity.generate();
    const body = randomBytes(120);
    const sig = id.sign(DomainTag.dcRecord, body);
    const signer = recoverSigner(DomainTag.dcRecord, body, sig);
    assert.ok(signer);
    assert.deepEqual(signer.id, id.id);
    assert.deepEqual(signer.publicKey, id.publicKey);
    assert.equal(verifyBySigner(DomainTag.dcRecord, body, sig, id.id), true);
    assert.equal(verifyDomain(DomainTag.dcRecord, body, sig, id.publicKey), true);
    assert.equal(verifyDomain(DomainTag.dcRecord, body, sig, id.publicKeyUncompressed), true);
    for (const other of [DomainTag.nodeTransaction, DomainTag.relayTicket, DomainTag.relayBind]) {
      assert.equal(verifyBySigner(other, body, sig, id.id), false, `a ${DomainTag.dcRecord} signature is not a ${other} signature`);
    }
    assert.equal(verifyBySigner(DomainTag.dcRecord, Buffer.concat([body, Buffer.alloc(1)]), sig, id.id), false);
    assert.equal(verifyBySigner(DomainTag.dcRecord, body, sig, Identity.generate().id), false);
  });

  void it('malformed signatures and IDs: false/null, never a throw', () => {
    const id = Identity.generate();
    const body = randomBytes(10);
    for (const s of [Buffer.alloc(0), Buffer.alloc(64), Buffer.alloc(65), randomBytes(65), randomBytes(66)]) {
      assert.equal(recoverSigner(DomainTag.relayBind, body, s), null);
      assert.equal(verifyBySigner(DomainTag.relayBind, body, s, id.id), false);
    }
    assert.equal(verifyBySigner(DomainTag.relayBind, body, id.sign(DomainTag.relayBind, body), Buffer.alloc(19)), false);
  });

  void it('staticDh: the ECDH with a peer, kept per peer (a copy each time), at most STATIC_DH_PEERS peers', () => {
    const me = Identity.generate();
    const peer = Identity.generate();
    const x = me.staticDh(peer.publicKey);
    assert.ok(x);
    assert.deepEqual(x, me.dh(peer.publicKey));
    assert.deepEqual(x, peer.staticDh(me.publicKey));
    x.fill(0); // the caller's copy: wiping it leaves the kept one
    assert.deepEqual(me.staticDh(peer.publicKey), me.dh(peer.publicKey));
    assert.equal(me.staticDh(Buffer.alloc(33, 9)), null);
    const others = Array.from({ length: STATIC_DH_PEERS + 1 }, () => Identity.generate());
    for (const o of others) assert.deepEqual(me.staticDh(o.publicKey), me.dh(o.publicKey));
    assert.deepEqual(me.staticDh(peer.publicKey), me.dh(peer.publicKey), 'dropped, then made again');
  });

  void it('fromPrivateKey: bytes or hex; bad keys are typed errors', () => {
    const a = Identity.generate();
    const priv = a.exportPrivateKey();
    assert.equal(Identity.fromPrivateKey(priv).idHex, a.idHex);
    assert.equal(Identity.fromPrivateKey(`0x${priv.toString('hex')}`, nobleSecp256k1).idHex, a.idHex);
    assert.throws(() => Identity.fromPrivateKey('0x1234'), InvalidHexError);
    assert.throws(() => Identity.fromPrivateKey(Buffer.alloc(32)), InvalidPrivateKeyError);
    assert.ok(Identity.generate() instanceof Identity);
  });
});

void describe('Identity file', () => {
  let dir = '';
  void before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ntm-identity-'));
  });
  void after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  void it('save writes JSON with mode 0600 atomically; load returns the same identity', async () => {
    const id = Identity.generate();
    const path = join(dir, 'terminal.json');
    await id.save(path);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    const doc = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
    assert.equal(doc.kind, 'ntm-identity');
    assert.equal(doc.id, id.idHex);
    assert.deepEqual((await readdir(dir)).filter((n) => n.endsWith('.tmp')), [], 'no temporary file left behind');
    const loaded = await Identity.load(path);
    assert.equal(loaded.idHex, id.idHex);
    assert.deepEqual(loaded.exportPrivateKey(), id.exportPrivateKey());
    // Overwrite in place (rename over an existing file).
    const id2 = Identity.generate();
    await id2.save(path);
    assert.equal((await Identity.load(path)).idHex, id2.idHex);
  });

  void it('load refuses group/other-readable files unless told otherwise', async () => {
    const path = join(dir, 'loose.json');
    await Identity.generate().save(path);
    await chmod(path, 0o644);
    await assert.rejects(Identity.load(path), IdentityFileError);
    assert.ok(await Identity.load(path, { strictPermissions: false }));
  });

  void it('load refuses missing, non-JSON, wrong-kind, bad-key and inconsistent files', async () => {
    const write = async (name: string, text: string): Promise<string> => {
      const p = join(dir, name);
      await writeFile(p, text, { mode: 0o600 });
      return p;
    };
    const good = Identity.generate();
    const other = Identity.generate();
    const priv = `0x${good.exportPrivateKey().toString('hex')}`;
    const cases = [
      join(dir, 'missing.json'),
      await write('notjson.json', '{'),
      await write('kind.json', JSON.stringify({ version: 1, kind: 'other', privateKey: priv })),
      await write('badkey.json', JSON.stringify({ version: 1, kind: 'ntm-identity', privateKey: `0x${'00'.repeat(32)}` })),
      await write('shortkey.json', JSON.stringify({ version: 1, kind: 'ntm-identity', privateKey: '0x1234' })),
      await write('mixed.json', JSON.stringify({ version: 1, kind: 'ntm-identity', privateKey: priv, id: other.idHex })),
      await write('mixedpub.json', JSON.stringify({ version: 1, kind: 'ntm-identity', privateKey: priv, publicKey: `0x${other.publicKey.toString('hex')}` })),
    ];
    for (const p of cases) await assert.rejects(Identity.load(p), IdentityFileError, p);
    const minimal = await write('minimal.json', JSON.stringify({ version: 1, kind: 'ntm-identity', privateKey: priv }));
    assert.equal((await Identity.load(minimal)).idHex, good.idHex);
  });
});

void describe('Node Transaction', () => {
  const dcId = randomBytes(20);

  for (const impl of [requireNativeSecp256k1(), nobleSecp256k1]) {
    void it(`${impl.name}: sign → encode (148 B, abi.encodePacked layout) → decode → check ok`, () => {
      const id = Identity.generate(impl);
      const ts = Date.now();
      const nt = NT.sign(id, { dcId, revoked: false, timestamp: ts });
      const bytes = NT.encode(nt);
      assert.equal(bytes.length, NT.NT_LENGTH);
      assert.equal(bytes[0], 1);
      assert.deepEqual(bytes.subarray(1, 21), id.id);
      assert.deepEqual(bytes.subarray(21, 54), id.publicKey);
      assert.deepEqual(bytes.subarray(54, 74), dcId);
      assert.equal(bytes[74], 0);
      assert.equal(bytes.readBigUInt64BE(75), BigInt(ts));
      const d = NT.decode(bytes);
      assert.ok(!(d instanceof NT.NodeTransactionDecodeError));
      assert.equal(NT.check(d, impl), 'ok');
      assert.equal(NT.verify(d), true, 'and on the default implementation');
      assert.equal(verifyBySigner(DomainTag.nodeTransaction, bytes.subarray(0, 83), nt.signature, id.id, impl), true);
      const before = d.id.toString('hex');
      bytes.fill(0);
      assert.equal(d.id.toString('hex'), before, 'decode copies: the result never aliases the input');
      assert.equal(NT.check(d, impl), 'ok');
    });
  }

  void it('truncated and oversized encodings: length error, no throw', () => {
    const nt = NT.sign(Identity.generate(), { dcId, revoked: true, timestamp: 1 });
    const bytes = NT.encode(nt);
    for (let len = 0; len < 148; len++) {
      const r = NT.decode(bytes.subarray(0, len));
      assert.ok(r instanceof NT.NodeTransactionDecodeError);
      assert.equal(r.reason, 'length');
      assert.equal(r.name, 'NodeTransactionDecodeError');
    }
    for (const extra of [1, 100]) assert.equal((NT.decode(Buffer.concat([bytes, Buffer.alloc(extra)])) as NT.NodeTransactionDecodeError).reason, 'length');
    assert.equal((NT.decode('nope' as unknown as Uint8Array) as NT.NodeTransactionDecodeError).reason, 'length');
  });

  void it('every single-bit flip is refused by decode or check, never thrown', () => {
    const impl = requireNativeSecp256k1();
    const nt = NT.sign(Identity.generate(), { dcId, revoked: false, timestamp: 1_700_000_000_000 });
    const bytes = NT.encode(nt);
    const seen = new Set<string>();
    for (let bit = 0; bit < 148 * 8; bit++) {
      const bad = Buffer.from(bytes);
      bad[bit >> 3]! ^= 1 << (bit & 7);
      const d = NT.decode(bad);
      const verdict = d instanceof NT.NodeTransactionDecodeError ? `decode:${d.reason}` : NT.check(d, impl);
      assert.notEqual(verdict, 'ok', `bit ${bit} of byte ${bit >> 3}`);
      seen.add(verdict);
    }
    // Each failure class shows up: version, key prefix, flag, and the signature-level checks.
    for (const v of ['decode:version', 'decode:public-key', 'decode:revoked-flag', 'signature', 'public-key']) assert.ok(seen.has(v), `${v} in ${[...seen].join(', ')}`);
  });

  void it('id that does not match the key: check → id (even with a valid signature over it)', () => {
    const id = Identity.generate();
    const signed = NT.encodeSigned({ id: randomBytes(20), publicKey: id.publicKey, dcId, revoked: false, timestamp: 5 });
    const sig = id.sign(DomainTag.nodeTransaction, signed);
    const d = NT.decode(Buffer.concat([signed, sig]));
    assert.ok(!(d instanceof NT.NodeTransactionDecodeError));
    assert.equal(NT.check(d), 'id');
    assert.equal(NT.check(d, nobleSecp256k1), 'id');
  });

  void it('high-s twin, wrong v, other signer, other tag: refused', () => {
    const id = Identity.generate();
    const nt = NT.sign(id, { dcId, revoked: false, timestamp: 9 });
    const bytes = NT.encode(nt);
    const s = BigInt(`0x${bytes.subarray(115, 147).toString('hex')}`);
    const twin = Buffer.from(bytes);
    Buffer.from((N - s).toString(16).padStart(64, '0'), 'hex').copy(twin, 115);
    twin[147] = bytes[147] === 27 ? 28 : 27;
    for (const impl of [requireNativeSecp256k1(), nobleSecp256k1]) {
      assert.equal(NT.check(NT.decode(twin) as NT.NodeTransaction, impl), 'signature', 'malleable twin');
      for (const v of [0, 1, 29, 30]) {
        const b = Buffer.from(bytes);
        b[147] = v;
        assert.equal(NT.check(NT.decode(b) as NT.NodeTransaction, impl), 'signature', `v=${v}`);
      }
    }
    const other = Identity.generate();
    const foreign = Buffer.from(bytes);
    other.sign(DomainTag.nodeTransaction, bytes.subarray(0, 83)).copy(foreign, 83);
    assert.equal(NT.check(NT.decode(foreign) as NT.NodeTransaction), 'public-key');
    const wrongTag = Buffer.from(bytes);
    id.sign(DomainTag.relayBind, bytes.subarray(0, 83)).copy(wrongTag, 83);
    assert.notEqual(NT.check(NT.decode(wrongTag) as NT.NodeTransaction), 'ok');
  });

  void it('decode: version, revoked flag and timestamp range', () => {
    const bytes = NT.encode(NT.sign(Identity.generate(), { dcId, revoked: false, timestamp: 9 }));
    const v2 = Buffer.from(bytes);
    v2[0] = 2;
    assert.equal((NT.decode(v2) as NT.NodeTransactionDecodeError).reason, 'version');
    const rev = Buffer.from(bytes);
    rev[74] = 2;
    assert.equal((NT.decode(rev) as NT.NodeTransactionDecodeError).reason, 'revoked-flag');
    const ts = Buffer.from(bytes);
    ts.writeBigUInt64BE(2n ** 53n, 75);
    assert.equal((NT.decode(ts) as NT.NodeTransactionDecodeError).reason, 'timestamp');
    ts.writeBigUInt64BE(2n ** 53n - 1n, 75);
    assert.equal((NT.decode(ts) as NT.NodeTransaction).timestamp, Number.MAX_SAFE_INTEGER);
  });

  void it('hand-built malformed objects: check → malformed; encode → typed error', () => {
    const nt = NT.sign(Identity.generate(), { dcId, revoked: false, timestamp: 9 });
    const bads: NT.NodeTransaction[] = [
      { ...nt, id: Buffer.alloc(19) },
      { ...nt, publicKey: Buffer.alloc(32) },
      { ...nt, version: 2 },
      { ...nt, timestamp: -1 },
      { ...nt, timestamp: 1.5 },
      { ...nt, signature: Buffer.alloc(64) },
    ];
    for (const b of bads) {
      assert.equal(NT.check(b), 'malformed');
      assert.throws(() => NT.encode(b));
    }
  });

  void it('decode is cheap enough for the DC: 148-byte parse + one copy', () => {
    const bytes = NT.encode(NT.sign(Identity.generate(), { dcId, revoked: false, timestamp: 9 }));
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 20_000; i++) NT.decode(bytes);
    const perOpUs = Number(process.hrtime.bigint() - t0) / 20_000 / 1000;
    assert.ok(perOpUs < 50, `decode took ${perOpUs.toFixed(2)} µs`);
  });
});
