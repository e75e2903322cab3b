// The household store (agent/src/agent/household-store.ts): validation with typed errors, discovery merging,
// pairing, one-time expiring enrollments, grants, the bounded event log, and that no change is ever half saved.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { HOUSEHOLD_MIGRATIONS, HouseholdStore, type NewIdentity } from '../../agent/src/agent/household-store.js';
import { newSecret } from '../../agent/src/agent/enrollment.js';
import type { DiscoveredDevice } from '../../agent/src/discovery/types.js';
import { ConflictError, InputError, NotFoundError } from '../../agent/src/types/errors.js';
import type { AgentEvent } from '../../agent/src/types/household.js';

const PHONE_A = '0x' + 'a1'.repeat(20);
const PHONE_B = '0x' + 'b2'.repeat(20);

function identity(n: number): NewIdentity {
  return { privateKeyHex: n.toString(16).padStart(64, '0'), ntmId: '0x' + n.toString(16).padStart(40, '0'), virtualV4: `198.18.0.${n}`, virtualV6: `fd4e:544d::${n}` };
}

function lamp(over: Partial<DiscoveredDevice> = {}): DiscoveredDevice {
  return {
    name: 'Living Room Lamp',
    kind: 'lamp',
    mac: '02:00:00:00:00:10',
    ipv4: '192.168.1.10',
    ipv6: null,
    host: 'lamp-1.local',
    online: true,
    sources: ['mdns', 'neighbour'],
    lastSeen: 1_700_000_000_000,
    services: [],
    ...over,
  };
}

/** Asserts `fn` throws `cls`, with `field` when given; returns the error. */
function throwsTyped(fn: () => unknown, cls: new (...a: never[]) => Error, field?: string): Error {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof cls, `expected ${cls.name}, got ${String(caught)}`);
  if (field !== undefined) assert.equal((caught as InputError).field, field);
  assert.ok((caught as Error).message.length > 5);
  return caught as Error;
}

describe('household store', () => {
  let dir: string;
  let now: number;
  let store: HouseholdStore;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ntm-household-'));
    now = 1_700_000_000_000;
    store = HouseholdStore.open(join(dir, 'agent.db'), { now: () => now });
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A paired lamp and an enrolled phone A with all-port access to it. */
  function household(): { deviceId: number } {
    store.applyDiscovery([lamp()]);
    const d = store.pair({ deviceId: 1 }, identity(2));
    const s = newSecret();
    store.createEnrollment('Anna', s, now + 60_000);
    assert.ok(store.consumeEnrollment(s, PHONE_A));
    store.setGrant(PHONE_A, d.id, []);
    return { deviceId: d.id };
  }

  test('discovery adds devices, updates them, marks missing ones offline', () => {
    const r = store.applyDiscovery([lamp(), lamp({ name: '', kind: '', mac: '02:00:00:00:00:11', ipv4: '192.168.1.11', host: null, sources: ['neighbour'] })]);
    assert.equal(r.added.length, 2);
    let devs = store.devices();
    assert.equal(devs.length, 2);
    const l = devs.find((d) => d.name === 'Living Room Lamp')!;
    assert.equal(l.kind, 'lamp');
    assert.equal(l.online, true);
    assert.deepEqual(l.sources, ['mdns', 'neighbour']);
    assert.equal(l.paired, false);
    // The lamp moves to a new address (same MAC): the same row; the other device is gone from the LAN.
    now += 5000;
    const r2 = store.applyDiscovery([lamp({ ipv4: '192.168.1.50' })]);
    assert.equal(r2.added.length, 0);
    assert.equal(r2.wentOffline, 1);
    devs = store.devices();
    assert.equal(devs.length, 2);
    assert.equal(devs.find((d) => d.id === l.id)!.ipv4, '192.168.1.50');
    assert.equal(devs.find((d) => d.id !== l.id)!.online, false);
  });

  test('discovered names stay unique; a name the household gave is kept', () => {
    store.applyDiscovery([lamp(), lamp({ mac: '02:00:00:00:00:12', ipv4: '192.168.1.12', host: 'lamp-2.local' })]);
    assert.deepEqual(store.devices().map((d) => d.name).sort(), ['Living Room Lamp', 'Living Room Lamp (2)']);
    store.pair({ deviceId: 1, name: 'Sofa light' }, identity(2));
    store.applyDiscovery([lamp(), lamp({ mac: '02:00:00:00:00:12', ipv4: '192.168.1.12', host: 'lamp-2.local' })]);
    assert.equal(store.device(1).name, 'Sofa light');
    assert.equal(store.device(2).name, 'Living Room Lamp');
  });

  test('an mDNS-only record and its later MAC-bearing record become one device', () => {
    store.applyDiscovery([lamp({ mac: null, sources: ['mdns'] })]);
    store.applyDiscovery([lamp()]);
    const devs = store.devices();
    assert.equal(devs.length, 1);
    assert.equal(devs[0]!.mac, '02:00:00:00:00:10');
  });

  test('the neighbour table and mDNS first seen apart, then merged: one device, under its own name (no "(2)")', () => {
    // The lamp's MAC first appears with only its link-local IPv6 (neighbour table), its name only from mDNS (no MAC):
    // two rows. Once discovery merges them, the MAC's row takes the name the mDNS row held, and that row goes.
    store.applyDiscovery([
      lamp({ name: '', kind: '', ipv4: null, ipv6: 'fe80::10', host: null, sources: ['neighbour'] }),
      lamp({ mac: null, ipv6: null, sources: ['mdns'] }),
    ]);
    assert.equal(store.devices().length, 2);
    store.applyDiscovery([lamp({ ipv6: 'fe80::10' })]);
    const devs = store.devices();
    assert.deepEqual(
      devs.map((d) => [d.name, d.mac]),
      [['Living Room Lamp', '02:00:00:00:00:10']],
    );
  });

  test('untrusted names from the LAN: control characters and overlong names are not stored as names', () => {
    store.applyDiscovery([lamp({ name: 'evil\u0000name' }), lamp({ name: 'x'.repeat(200), mac: '02:00:00:00:00:13', ipv4: '192.168.1.13', host: 'h.local' })]);
    assert.deepEqual(store.devices().map((d) => d.name), ['', '']);
  });

  test('validation: typed errors naming the field', () => {
    store.applyDiscovery([lamp({ name: '' })]);
    throwsTyped(() => store.resolvePair({ deviceId: 1 }), InputError, 'name');
    throwsTyped(() => store.resolvePair({ deviceId: 0 }), InputError, 'deviceId');
    throwsTyped(() => store.resolvePair({ deviceId: 99 }), NotFoundError);
    throwsTyped(() => store.resolvePair({ name: 'Cam' }), InputError, 'ipv4');
    throwsTyped(() => store.resolvePair({ name: 'Cam', mac: 'zz:00:00:00:00:00' }), InputError, 'mac');
    throwsTyped(() => store.resolvePair({ name: 'Cam', mac: '01:00:5e:00:00:01' }), InputError, 'mac');
    throwsTyped(() => store.resolvePair({ name: 'Cam', ipv4: '300.1.1.1' }), InputError, 'ipv4');
    throwsTyped(() => store.resolvePair({ name: 'Cam', ipv6: 'fe80::1%eth0' }), InputError, 'ipv6');
    throwsTyped(() => store.resolvePair({ name: '   ', ipv4: '192.168.1.20' }), InputError, 'name');
    throwsTyped(() => store.resolvePair({ name: 'a'.repeat(64), ipv4: '192.168.1.20' }), InputError, 'name');
    throwsTyped(() => store.resolvePair({ name: 'bad\u0007bell', ipv4: '192.168.1.20' }), InputError, 'name');
    throwsTyped(() => store.resolvePair({ name: 'Cam', kind: '<script>', ipv4: '192.168.1.20' }), InputError, 'kind');
    throwsTyped(() => store.createEnrollment('', newSecret(), now + 1000), InputError, 'name');
    throwsTyped(() => store.setHouseholdName('ñ'.repeat(40)), InputError, 'name');
    const t = store.resolvePair({ name: '  Hall   camera ', mac: '02-00-00-AA-BB-CC', ipv6: 'FD00:0:0::20' });
    assert.deepEqual(t, { deviceId: null, name: 'Hall camera', kind: '', mac: '02:00:00:aa:bb:cc', ipv4: null, ipv6: 'fd00::20' });
  });

  test('pairing: discovered or by hand; conflicts are ConflictError', () => {
    store.applyDiscovery([lamp()]);
    const d = store.pair({ deviceId: 1 }, identity(2));
    assert.equal(d.paired, true);
    assert.equal(d.ntmId, identity(2).ntmId);
    assert.equal(d.virtualV4, '198.18.0.2');
    throwsTyped(() => store.pair({ deviceId: 1 }, identity(3)), ConflictError);
    const cam = store.pair({ name: 'Hall camera', ipv4: '192.168.1.11' }, identity(3));
    assert.deepEqual(cam.sources, ['manual']);
    throwsTyped(() => store.pair({ name: 'hall CAMERA', ipv4: '192.168.1.12' }, identity(4)), ConflictError);
    // The same address as a paired device: that device, already paired.
    throwsTyped(() => store.pair({ name: 'Other', ipv4: '192.168.1.10' }, identity(4)), ConflictError);
    // A hand-described device that discovery already found is that row.
    store.applyDiscovery([lamp(), lamp({ name: 'Printer', kind: 'printer', mac: '02:00:00:00:00:20', ipv4: '192.168.1.20', host: 'p.local' })]);
    const p = store.pair({ name: 'Office printer', mac: '02:00:00:00:00:20' }, identity(5));
    assert.equal(p.ipv4, '192.168.1.20');
    assert.equal(store.devices().length, 3);
    assert.deepEqual(
      store.pairedIdentities().map((x) => [x.name, x.privateKeyHex]),
      [
        ['Living Room Lamp', identity(2).privateKeyHex],
        ['Hall camera', identity(3).privateKeyHex],
        ['Office printer', identity(5).privateKeyHex],
      ],
    );
    assert.equal(store.isAdmitted(identity(3).ntmId), true);
  });

  test('unpairing drops grants and the identity; the device stays listed', () => {
    const { deviceId } = household();
    assert.equal(store.grantAllows(PHONE_A, identity(2).ntmId, 80), true);
    const r = store.unpair(deviceId);
    assert.equal(r.ntmId, identity(2).ntmId);
    assert.equal(r.device.paired, false);
    assert.equal(r.device.ntmId, null);
    assert.deepEqual(store.grants(), []);
    assert.equal(store.isAdmitted(identity(2).ntmId), false);
    assert.equal(store.grantAllows(PHONE_A, identity(2).ntmId, 80), false);
    assert.equal(store.pairedIdentities().length, 0);
    throwsTyped(() => store.unpair(deviceId), ConflictError);
    // Its old virtual address and ID may be used again.
    assert.equal(store.pair({ deviceId }, identity(2)).paired, true);
  });

  test('enrollment: one-time, expiring, wrong secrets refused, a retry by the same phone allowed', () => {
    const s = newSecret();
    const e = store.createEnrollment("Anna's phone", s, now + 60_000);
    assert.equal(e.name, "Anna's phone");
    assert.deepEqual(store.pendingEnrollments().map((x) => x.name), ["Anna's phone"]);
    assert.equal(store.consumeEnrollment(newSecret(), PHONE_A), null, 'unknown secret');
    assert.equal(store.consumeEnrollment(s.subarray(0, 8), PHONE_A), null, 'short secret');
    const p = store.consumeEnrollment(s, PHONE_A.toUpperCase().replace('0X', '0x'));
    assert.ok(p);
    assert.equal(p.id, PHONE_A);
    assert.equal(p.name, "Anna's phone");
    assert.equal(store.isAdmitted(PHONE_A), true);
    assert.deepEqual(store.pendingEnrollments(), []);
    assert.equal(store.consumeEnrollment(s, PHONE_B), null, 'used by another phone');
    assert.equal(store.isAdmitted(PHONE_B), false);
    assert.deepEqual(store.consumeEnrollment(s, PHONE_A), p, 'retransmission by the same phone');
    // Expiry.
    const s2 = newSecret();
    store.createEnrollment('Ben', s2, now + 1000);
    now += 1000;
    assert.equal(store.consumeEnrollment(s2, PHONE_B), null, 'expired');
    assert.deepEqual(store.pendingEnrollments(), []);
    // A removed phone's old token does not bring it back.
    store.removePhone(PHONE_A);
    assert.equal(store.isAdmitted(PHONE_A), false);
    assert.equal(store.consumeEnrollment(s, PHONE_A), null);
  });

  test('enrollment limits: names free, at most 10 pending', () => {
    const s = newSecret();
    store.createEnrollment('Anna', s, now + 60_000);
    throwsTyped(() => store.createEnrollment('anna', newSecret(), now + 60_000), ConflictError);
    store.consumeEnrollment(s, PHONE_A);
    throwsTyped(() => store.createEnrollment('Anna', newSecret(), now + 60_000), ConflictError);
    for (let i = 0; i < 10; i++) store.createEnrollment(`Phone ${i}`, newSecret(), now + 60_000);
    throwsTyped(() => store.createEnrollment('Phone 11', newSecret(), now + 60_000), ConflictError);
    now += 61_000;
    store.createEnrollment('Phone 11', newSecret(), now + 60_000);
  });

  test('grants: ports, validation, revocation, removal of the phone', () => {
    const { deviceId } = household();
    const g = store.setGrant(PHONE_A, deviceId, [443, 80, 80]);
    assert.deepEqual(g.ports, [80, 443]);
    assert.equal(store.grantAllows(PHONE_A, identity(2).ntmId, 80), true);
    assert.equal(store.grantAllows(PHONE_A, identity(2).ntmId, 22), false);
    assert.equal(store.grantAllows(PHONE_B, identity(2).ntmId, 80), false);
    assert.deepEqual(store.accessRules(), [{ phoneId: PHONE_A, deviceId, deviceNtmId: identity(2).ntmId, ports: [80, 443] }]);
    throwsTyped(() => store.setGrant(PHONE_A, deviceId, [0]), InputError, 'ports');
    throwsTyped(() => store.setGrant(PHONE_A, deviceId, [70000]), InputError, 'ports');
    throwsTyped(() => store.setGrant(PHONE_A, deviceId, [1.5]), InputError, 'ports');
    throwsTyped(() => store.setGrant(PHONE_A, deviceId, Array.from({ length: 65 }, (_, i) => i + 1)), InputError, 'ports');
    throwsTyped(() => store.setGrant('0x12', deviceId, []), InputError, 'phoneId');
    throwsTyped(() => store.setGrant(PHONE_B, deviceId, []), NotFoundError);
    store.applyDiscovery([lamp(), lamp({ name: 'TV', mac: '02:00:00:00:00:30', ipv4: '192.168.1.30', host: 'tv.local' })]);
    throwsTyped(() => store.setGrant(PHONE_A, 2, []), ConflictError);
    store.revokeGrant(PHONE_A, deviceId);
    throwsTyped(() => store.revokeGrant(PHONE_A, deviceId), NotFoundError);
    store.setGrant(PHONE_A, deviceId, []);
    store.removePhone(PHONE_A);
    assert.deepEqual(store.grants(), []);
    throwsTyped(() => store.removePhone(PHONE_A), NotFoundError);
  });

  test('nothing partial: a step failing inside a change rolls back all of it, and no event is announced', () => {
    const { deviceId } = household();
    const heard: AgentEvent[] = [];
    store.onEvent((e) => heard.push(e));
    const eventsBefore = store.events(1000).length;
    // A trigger makes the last step of each change fail, after its earlier steps (grant deletion) ran.
    store.db.exec(`CREATE TRIGGER fail_phone BEFORE UPDATE OF removed_at ON hh_phones BEGIN SELECT RAISE(ABORT, 'injected'); END;
      CREATE TRIGGER fail_device BEFORE UPDATE OF paired ON hh_devices WHEN NEW.paired = 0 BEGIN SELECT RAISE(ABORT, 'injected'); END;
      CREATE TRIGGER fail_grant BEFORE INSERT ON hh_grants WHEN NEW.ports = '[22]' BEGIN SELECT RAISE(ABORT, 'injected'); END;`);
    assert.throws(() => store.removePhone(PHONE_A), /injected/);
    assert.throws(() => store.unpair(deviceId), /injected/);
    assert.equal(store.grants().length, 1, 'grant deletions rolled back');
    assert.equal(store.phones().length, 1);
    assert.equal(store.device(deviceId).paired, true);
    // Pairing a new device by hand: the row insert succeeds, the identity collides (virtual address in use).
    const countBefore = store.devices().length;
    throwsTyped(() => store.pair({ name: 'Hall camera', ipv4: '192.168.1.11' }, { ...identity(9), virtualV4: '198.18.0.2' }), ConflictError);
    assert.equal(store.devices().length, countBefore, 'the new device row was not kept');
    // A discovery snapshot whose second device fails leaves the first one out too.
    store.db.exec(`CREATE TRIGGER fail_disc BEFORE INSERT ON hh_devices WHEN NEW.mac = '02:00:00:00:00:99' BEGIN SELECT RAISE(ABORT, 'injected'); END;`);
    assert.throws(() => store.applyDiscovery([lamp(), lamp({ name: 'A', mac: '02:00:00:00:00:98', ipv4: '192.168.1.98', host: 'a.local' }), lamp({ name: 'B', mac: '02:00:00:00:00:99', ipv4: '192.168.1.99', host: 'b.local' })]), /injected/);
    assert.equal(store.devices().length, countBefore);
    assert.equal(store.events(1000).length, eventsBefore, 'no event rows from failed changes');
    assert.deepEqual(heard, [], 'no event announced for failed changes');
  });

  test('events: bounded, newest first, announced after commit', () => {
    store.close();
    store = HouseholdStore.open(join(dir, 'agent.db'), { now: () => now, eventLimit: 5 });
    const heard: string[] = [];
    const off = store.onEvent((e) => heard.push(e.message));
    for (let i = 0; i < 12; i++) store.addEvent('test', `event ${i}`);
    off();
    store.addEvent('test', 'unheard');
    assert.equal(heard.length, 12);
    assert.deepEqual(store.events(100).map((e) => e.message), ['unheard', 'event 11', 'event 10', 'event 9', 'event 8']);
    assert.deepEqual(store.events(2).map((e) => e.message), ['unheard', 'event 11']);
  });

  test('the state survives closing and reopening the database file', () => {
    const { deviceId } = household();
    store.setHouseholdName('Tanaka home');
    store.setupOwner('scrypt$15$8$1$c2FsdA==$a2V5a2V5a2V5a2V5a2V5a2V5');
    store.close();
    store = HouseholdStore.open(join(dir, 'agent.db'), { now: () => now });
    assert.equal(store.householdName(), 'Tanaka home');
    assert.equal(store.device(deviceId).paired, true);
    assert.equal(store.pairedIdentities()[0]!.privateKeyHex, identity(2).privateKeyHex);
    assert.equal(store.phones()[0]!.id, PHONE_A);
    assert.equal(store.grantAllows(PHONE_A, identity(2).ntmId, 1), true);
    assert.equal(store.hasOwner(), true);
    throwsTyped(() => store.setupOwner('x'), ConflictError);
  });

  test('sessions expire; login failures are counted per client and can be withdrawn', () => {
    const h = Buffer.alloc(32, 1);
    store.setupOwner('hash');
    store.createSession(h, 'csrf', now + 1000);
    assert.equal(store.session(h)?.csrf, 'csrf');
    now += 1000;
    assert.equal(store.session(h), null);
    const id = store.recordLoginFailure('10.0.0.1');
    store.recordLoginFailure('10.0.0.1');
    store.recordLoginFailure('10.0.0.2');
    assert.equal(store.loginFailuresSince(now - 1, '10.0.0.1'), 2);
    assert.equal(store.loginFailuresSince(now - 1), 3);
    store.forgetLoginFailure(id);
    assert.equal(store.loginFailuresSince(now - 1, '10.0.0.1'), 1);
    store.resetOwner();
    assert.equal(store.hasOwner(), false);
  });
});

test('released schema steps are never edited (migrations are append-only, so every existing database still opens)', () => {
  // SHA-256 of each released step. A new schema is a new step at the end, with its hash added here.
  const released = ['5892a59678d0ea70fa0786ee993886c06f75666e31d83d17ce2d716a01d00460'];
  const steps = HOUSEHOLD_MIGRATIONS.steps.map((s) => createHash('sha256').update(s).digest('hex'));
  assert.deepEqual(steps.slice(0, released.length), released);
});
