// Issue 13, part 1: the pieces of a device shared between two households, without packets on a wire — the
// invitation's text form, the sharing household's store (an invitation that, once used, makes the other household a
// peer with exactly the grant it named, revoked as a whole), the accepting household's store, and the accepting
// agent's translation of its LAN devices' flows to its one address at the other household (checksums as a receiving
// stack checks them, replies back to the right device, a device no longer allowed cut at once).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { HouseholdStore, type NewIdentity } from '../../agent/src/agent/household-store.js';
import { makeEnrollment, newSecret } from '../../agent/src/agent/enrollment.js';
import { decodeShareInvite, encodeShareInvite, shareLink } from '../../agent/src/agent/share-invite.js';
import { KeyPair } from '../../agent/src/crypto/secp256k1.js';
import { ConflictError } from '../../agent/src/types/errors.js';
import { ShareNat } from '../../agent/src/dataplane/share-nat.js';
import { HouseholdPolicy } from '../../agent/src/dataplane/policy.js';
import { C } from '../../agent/src/dataplane/counts.js';
import { PacketInfo, parsePacket } from '../../agent/src/dataplane/packet/parse.js';
import { verifyChecksums } from '../../agent/src/dataplane/packet/sums.js';
import { buildPacket } from '../../agent/src/dataplane/packet/testing/build.js';
import { ipToBytes } from '../../agent/src/protocol/ip.js';

function identity(n: number): NewIdentity {
  return { privateKeyHex: n.toString(16).padStart(64, '0'), ntmId: '0x' + n.toString(16).padStart(40, '0'), virtualV4: `198.18.0.${n}`, virtualV6: `fd4e:544d::${n}` };
}

test('an invitation round-trips as code and link; damaged or foreign text is refused with a message', () => {
  const key = KeyPair.generate();
  const e = makeEnrollment({ dcPublicKey: key.publicKey, dcEndpoints: [{ family: 4, address: '198.51.100.2', port: 7100 }], household: 'Sato home', ttlMs: 60_000, now: Date.now() });
  const code = encodeShareInvite('camera', e.token);
  for (const text of [code, shareLink(code), `  ${code.slice(0, 30)}\n${code.slice(30)} `]) {
    const d = decodeShareInvite(text);
    assert.ok(d.ok, JSON.stringify(d));
    assert.equal(d.invite.device, 'camera');
    assert.equal(d.invite.token.household, 'Sato home');
    assert.deepEqual(d.invite.token.secret, e.secret);
  }
  for (const bad of ['', 'ntm1:abc', 'ntm-share1:camera', 'ntm-share1:/' + e.token, 'ntm-share1:camera/' + e.token.slice(0, -2) + 'xx', 42]) {
    const d = decodeShareInvite(bad);
    assert.equal(d.ok, false, String(bad));
    if (!d.ok) assert.ok(d.message.length > 10);
  }
  assert.throws(() => encodeShareInvite('Not A Label', e.token), RangeError);
});

describe('the household store, both sides of a share', () => {
  let dir: string;
  let store: HouseholdStore;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ntm-share-'));
    store = HouseholdStore.open(join(dir, 'agent.db'));
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('sharing side: the used invitation makes a household peer with the grant it named; revoking removes both', () => {
    const cam = store.pair({ name: 'camera', ipv4: '192.168.2.11' }, identity(2));
    const lamp = store.pair({ name: 'lamp', ipv4: '192.168.2.10' }, identity(3));
    assert.throws(() => store.createEnrollment('Suzuki home', newSecret(), Date.now() + 60_000, { deviceId: 99, ports: [] }));
    const secret = newSecret();
    store.createEnrollment('Suzuki home', secret, Date.now() + 60_000, { deviceId: cam.id, ports: [5004, 80] });
    const peer = '0x' + 'ab'.repeat(20);
    assert.ok(store.enrollmentOpen(secret, peer));
    assert.ok(store.consumeEnrollment(secret, peer));
    assert.equal(store.phones().length, 0, 'a household is not a phone');
    assert.deepEqual(store.households().map((h) => h.name), ['Suzuki home']);
    assert.ok(store.isAdmitted(peer));
    // Its grant is the camera on the two ports, nothing else (not the lamp).
    assert.deepEqual(store.accessRules().map((r) => [r.phoneId, r.deviceId, r.ports]), [[peer, cam.id, [80, 5004]]]);
    assert.ok(!store.accessRules().some((r) => r.deviceId === lamp.id));
    // The same agent registering again (a restart) is the same peer; another identity with the spent secret is not.
    assert.ok(store.consumeEnrollment(secret, peer));
    assert.equal(store.consumeEnrollment(secret, '0x' + 'cd'.repeat(20)), null);
    store.removePhone(peer);
    assert.equal(store.households().length, 0);
    assert.equal(store.accessRules().length, 0);
    assert.ok(!store.isAdmitted(peer));
  });

  test('accepting side: a share, its users, its addresses; a device used by a share is not forgotten; removed whole', () => {
    const laptop = store.pair({ name: 'laptop', ipv4: '192.168.1.12' }, identity(4));
    const key = KeyPair.generate();
    const base = { household: 'Sato home', device: 'camera', dcPublicKey: key.publicKey.toString('hex'), dcEndpoints: ['198.51.100.2:7100'], secret: newSecret(), privateKeyHex: '11'.repeat(32), ntmId: '0x' + '12'.repeat(20) };
    const s = store.remoteShares.add({ ...base, users: [laptop.id] });
    assert.deepEqual(s.users, [laptop.id]);
    assert.throws(() => store.remoteShares.add({ ...base, ntmId: '0x' + '13'.repeat(20), users: [] }), ConflictError);
    store.remoteShares.setDeviceAddresses(s.id, '198.18.7.2', 'fd4e:544d:0:7::2');
    assert.equal(store.remoteShares.get(s.id).deviceV4, '198.18.7.2');
    assert.deepEqual(store.remoteShares.setUsers(s.id, []).users, []);
    store.remoteShares.remove(s.id);
    assert.deepEqual(store.remoteShares.list(), []);
  });
});

const LAN = ipToBytes('192.168.1.12');
const SHARE_V4 = '198.18.5.9';
const CAMERA_V4 = '198.18.7.2';

function parsed(buf: Buffer): PacketInfo {
  const info = new PacketInfo();
  assert.ok(parsePacket(buf, info).ok);
  return info;
}

test('the accepting policy translates a chosen device to the share address and back; others are refused', () => {
  const nat = new ShareNat();
  const policy = new HouseholdPolicy({
    devices: [],
    phones: [],
    grants: [],
    shares: [{ node: '0xshare', v4: SHARE_V4, v6: 'fd4e:544d:0:5::9', deviceV4: CAMERA_V4, deviceV6: 'fd4e:544d:0:7::2', users: ['192.168.1.12'], nat }],
  });
  assert.deepEqual(policy.lanSources(), ['192.168.1.12/32']);
  for (const proto of ['udp', 'tcp'] as const) {
    const out = Buffer.from(buildPacket({ src: LAN, dst: ipToBytes(CAMERA_V4), protocol: proto, srcPort: 40_000, dstPort: 80, payload: Buffer.from('hello') }));
    const info = parsed(out);
    assert.equal(policy.outbound(out, info), C.PASS);
    const o = parsed(out);
    assert.deepEqual(verifyChecksums(out, o), { ip: true, l4: true });
    assert.deepEqual([...out.subarray(12, 16)], [...ipToBytes(SHARE_V4)]);
    const port = o.srcPort;
    assert.notEqual(port, 40_000);
    // The camera's reply to the share address and our port goes back to the laptop's own address and port.
    const back = Buffer.from(buildPacket({ src: ipToBytes(CAMERA_V4), dst: ipToBytes(SHARE_V4), protocol: proto, srcPort: 80, dstPort: port, payload: Buffer.from('hi') }));
    assert.equal(policy.inbound(back, parsed(back), '0xshare', '0xcamera'), C.PASS);
    const b = parsed(back);
    assert.deepEqual(verifyChecksums(back, b), { ip: true, l4: true });
    assert.deepEqual([...back.subarray(16, 20)], [...LAN]);
    assert.equal(b.dstPort, 40_000);
    // Nothing of ours started a flow on another port: refused; nor from another address than the shared device.
    const stray = Buffer.from(buildPacket({ src: ipToBytes(CAMERA_V4), dst: ipToBytes(SHARE_V4), protocol: proto, srcPort: 80, dstPort: port + 1 }));
    assert.equal(policy.inbound(stray, parsed(stray), '0xshare', '0xcamera'), C.IN_SHARE_NO_FLOW);
    const spoof = Buffer.from(buildPacket({ src: ipToBytes('198.18.7.3'), dst: ipToBytes(SHARE_V4), protocol: proto, srcPort: 80, dstPort: port }));
    assert.equal(policy.inbound(spoof, parsed(spoof), '0xshare', '0xcamera'), C.IN_SHARE_NO_FLOW);
  }
  // ICMP echo: the identifier is translated like a port.
  const ping = Buffer.from(buildPacket({ src: LAN, dst: ipToBytes(CAMERA_V4), protocol: 'icmp', icmpType: 8, icmpRest: (0x1234 << 16) | 1 }));
  assert.equal(policy.outbound(ping, parsed(ping)), C.PASS);
  assert.deepEqual(verifyChecksums(ping, parsed(ping)), { ip: true, l4: true });
  // Another LAN device (not chosen) is refused before anything is translated.
  const other = Buffer.from(buildPacket({ src: ipToBytes('192.168.1.13'), dst: ipToBytes(CAMERA_V4), protocol: 'udp', srcPort: 5000, dstPort: 5004 }));
  assert.equal(policy.outbound(other, parsed(other)), C.OUT_SHARE_NOT_USER);
  assert.equal(nat.size, 3);
  // The laptop is no longer chosen: its flows are forgotten, so replies to them are dropped at once.
  nat.forget(() => false);
  assert.equal(nat.size, 0);
});
