// The enrollment token format (agent/src/agent/enrollment.ts): round trips, our own pinned vector, and decode's
// promise never to throw on whatever a person pastes.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import QRCode from 'qrcode';
import {
  dcRefs,
  decodeEnrollment,
  encodeEnrollment,
  enrollmentLink,
  LINK_PREFIX,
  makeEnrollment,
  qrSvg,
  SECRET_LENGTH,
  TOKEN_PREFIX,
} from '../../agent/src/agent/enrollment.js';
import { KeyPair } from '../../agent/src/crypto/secp256k1.js';
import type { Endpoint } from '../../agent/src/types/net.js';

/** Private key 1: its public key is the generator G, a fixed, well-known point. */
const DC = KeyPair.fromPrivateKey('0000000000000000000000000000000000000000000000000000000000000001');
const ENDPOINTS: Endpoint[] = [
  { family: 4, address: '198.51.100.2', port: 7100 },
  { family: 6, address: '2001:db8:a::2', port: 7100 },
];
const SECRET = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');
const EXPIRES = Date.UTC(2030, 0, 1);

function sample(over: Partial<Parameters<typeof encodeEnrollment>[0]> = {}): string {
  return encodeEnrollment({ dcPublicKey: DC.publicKey, dcEndpoints: ENDPOINTS, secret: SECRET, household: 'Tanaka home', expiresAt: EXPIRES, ...over });
}

/** Re-signs a modified body with a correct check, to reach the checks behind the checksum. */
function withBody(token: string, edit: (body: Buffer) => Buffer): string {
  const raw = Buffer.from(token.slice(TOKEN_PREFIX.length), 'base64url');
  const body = edit(Buffer.from(raw.subarray(0, raw.length - 4)));
  const check = createHash('sha256').update(body).digest().subarray(0, 4);
  return TOKEN_PREFIX + Buffer.concat([body, check]).toString('base64url');
}

describe('enrollment token', () => {
  test('round trip: key, ID, endpoints, secret, household, expiry', () => {
    const d = decodeEnrollment(sample(), { now: EXPIRES - 1000 });
    assert.ok(d.ok, d.ok ? '' : d.message);
    assert.equal(d.token.dcPublicKey, DC.publicKey.toString('hex'));
    assert.equal(d.token.dcPublicKey.length, 66);
    assert.equal(d.token.dcId, DC.idHex);
    assert.deepEqual(d.token.dcEndpoints, ENDPOINTS);
    assert.deepEqual(d.token.secret, SECRET);
    assert.equal(d.token.household, 'Tanaka home');
    assert.equal(d.token.expiresAt, EXPIRES);
    assert.deepEqual(dcRefs(d.token), [`${DC.publicKey.toString('hex')}@198.51.100.2:7100`, `${DC.publicKey.toString('hex')}@[2001:db8:a::2]:7100`]);
  });

  test('our vector: fixed inputs give this exact token (the format is a contract with phones)', () => {
    assert.equal(
      sample(),
      'ntm1:AQACeb5mfvncu6xVoGKVzocLBwKb_NstzijZWfKBWxb4F5gAAQIDBAUGBwgJCgsMDQ4PcNvYgAIExjNkAhu8BiABDbgACgAAAAAAAAAAAAIbvAtUYW5ha2EgaG9tZV4MbHw',
    );
  });

  test('the link form and pasted text with spaces and line breaks decode too', () => {
    const t = sample();
    assert.equal(enrollmentLink(t), LINK_PREFIX + t);
    for (const input of [enrollmentLink(t), `  ${t}\n`, t.slice(0, 20) + '\n' + t.slice(20), `\t${enrollmentLink(t)} `]) {
      const d = decodeEnrollment(input, { now: 0 });
      assert.ok(d.ok, `${JSON.stringify(input)}: ${d.ok ? '' : d.message}`);
    }
  });

  test('every one-character change is caught (checksum or encoding), with a message', () => {
    const t = sample();
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    let changed = 0;
    for (let i = TOKEN_PREFIX.length; i < t.length; i++) {
      const c = t[i]!;
      const other = alphabet[(alphabet.indexOf(c) + 17) % alphabet.length]!;
      const bad = t.slice(0, i) + other + t.slice(i + 1);
      const d = decodeEnrollment(bad, { now: 0 });
      // The last character's low bits may be padding bits that base64url ignores; everything else must fail.
      if (i === t.length - 1 && d.ok) continue;
      assert.equal(d.ok, false, `change at ${i} not caught`);
      if (!d.ok) assert.ok(['checksum', 'malformed'].includes(d.reason), `${i}: ${d.reason}`);
      changed++;
    }
    assert.ok(changed > 100);
  });

  test('reasons: empty, prefix, encoding, truncated, version, public key, expired', () => {
    const t = sample();
    const reason = (input: unknown, now: number | null = 0): string => {
      const d = decodeEnrollment(input, { now });
      return d.ok ? 'ok' : d.reason;
    };
    assert.equal(reason(''), 'empty');
    assert.equal(reason('   '), 'empty');
    assert.equal(reason(undefined), 'empty');
    assert.equal(reason(42), 'empty');
    assert.equal(reason('https://example.com/'), 'prefix');
    assert.equal(reason('ntm1:abc$def'), 'encoding');
    assert.equal(reason(t.slice(0, 30)), 'malformed');
    assert.equal(reason(t.slice(0, -6)), 'checksum');
    assert.equal(reason(withBody(t, (b) => ((b[0] = 2), b))), 'version');
    // x = 0 is not on secp256k1 (0³ + 7 is not a square mod p).
    assert.equal(reason(withBody(t, (b) => (b.fill(0, 3, 35), b))), 'public_key');
    assert.equal(reason(withBody(t, (b) => Buffer.concat([b, Buffer.from([0])]))), 'malformed');
    assert.equal(reason(withBody(t, (b) => ((b[55] = 0), b))), 'malformed');
    assert.equal(reason(t, EXPIRES), 'expired');
    assert.equal(reason(t, EXPIRES - 1), 'ok');
    assert.equal(reason(t, null), 'ok');
    const d = decodeEnrollment(t, { now: EXPIRES + 1 });
    assert.ok(!d.ok && d.message.includes('2030-01-01'), 'the message says when it expired');
  });

  test('decode never throws on random input', () => {
    for (let i = 0; i < 2000; i++) {
      const n = i % 200;
      const kinds = [
        () => randomBytes(n).toString('latin1'),
        () => TOKEN_PREFIX + randomBytes(n).toString('base64url'),
        () => LINK_PREFIX + TOKEN_PREFIX + randomBytes(n).toString('base64url'),
        () => withBody(sample(), (b) => randomBytes(Math.max(1, b.length + (i % 7) - 3))),
      ];
      const input = kinds[i % kinds.length]!();
      const d = decodeEnrollment(input, { now: 0 });
      assert.equal(typeof d.ok, 'boolean');
    }
    assert.equal(decodeEnrollment('x'.repeat(100_000)).ok, false);
  });

  test('encode refuses what a token cannot carry', () => {
    assert.throws(() => sample({ secret: Buffer.alloc(8) }), RangeError);
    assert.throws(() => sample({ dcEndpoints: [] }), RangeError);
    assert.throws(() => sample({ dcEndpoints: [...ENDPOINTS, ...ENDPOINTS, ...ENDPOINTS] }), RangeError);
    assert.throws(() => sample({ household: 'x'.repeat(64) }), RangeError);
    assert.throws(() => sample({ dcPublicKey: Buffer.concat([Buffer.from([2]), Buffer.alloc(32)]) }), RangeError);
  });

  test('makeEnrollment: fresh 128-bit secrets, expiry in whole seconds, a QR code of the link', () => {
    const now = 1_700_000_000_123;
    const a = makeEnrollment({ dcPublicKey: DC.publicKey, dcEndpoints: ENDPOINTS, household: 'Tanaka home', ttlMs: 900_000, now });
    const b = makeEnrollment({ dcPublicKey: DC.publicKey, dcEndpoints: ENDPOINTS, household: 'Tanaka home', ttlMs: 900_000, now });
    assert.equal(a.secret.length, SECRET_LENGTH);
    assert.ok(SECRET_LENGTH * 8 >= 128);
    assert.notDeepEqual(a.secret, b.secret);
    assert.notEqual(a.token, b.token);
    assert.equal(a.expiresAt, 1_700_000_900_000);
    assert.equal(a.link, enrollmentLink(a.token));
    const d = decodeEnrollment(a.link, { now });
    assert.ok(d.ok && d.token.secret.equals(a.secret));
    assert.match(a.qrSvg, /^<svg [^>]*viewBox="0 0 (\d+) \1"/);
    assert.match(a.qrSvg, /<path fill="#000" d="M/);
  });

  test('QR size: version ≤ 10 at level M for a usual household name, ≤ 12 for the longest', () => {
    for (const [household, max] of [
      ['Tanaka home', 10],
      ['ñ'.repeat(31) + 'x', 12],
    ] as const) {
      const link = enrollmentLink(sample({ household }));
      const qr = QRCode.create(link, { errorCorrectionLevel: 'M' });
      console.log(`# link of ${link.length} characters (household of ${Buffer.byteLength(household)} bytes) → QR version ${qr.version} (${qr.modules.size}×${qr.modules.size})`);
      assert.ok(qr.version <= max, `version ${qr.version}`);
      assert.ok(qrSvg(link).length < 20_000);
    }
  });
});
