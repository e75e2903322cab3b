// The data-path engine and the household policy without sockets or queues: a fake tunnel table and bind, packets built
// byte by byte. What a user would check: a granted phone's packets reach the appliance's LAN address and the answers
// leave from its virtual address; everything else is dropped under a stable name; a new policy takes effect at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DataEngine } from '../../agent/src/dataplane/engine.js';
import { HouseholdPolicy, PASS_THROUGH, type PolicySnapshot } from '../../agent/src/dataplane/policy.js';
import { C, COUNT_NAMES, OUT_RESULT } from '../../agent/src/dataplane/counts.js';
import { PacketInfo, parsePacket } from '../../agent/src/dataplane/packet/parse.js';
import { buildPacket } from '../../agent/src/dataplane/packet/testing/build.js';
import { ip4ToBytes, ip6ToBytes, bytesToIp4 } from '../../agent/src/protocol/ip.js';
import { NO_NODE, type DataTunnel, type TunnelTable } from '../../agent/src/types/tunnels.js';
import type { Bind } from '../../agent/src/types/net.js';

const LAMP_LAN = '192.168.1.10';
const LAMP = { ntmId: '0xaa', lan4: LAMP_LAN, lan6: null, v4: '198.18.0.2', v6: 'fd4e:544d:1::2' };
const PHONE = { id: '0xbb', v4: '198.18.0.9', v6: 'fd4e:544d:1::9' };

function snapshot(ports: number[] | null): PolicySnapshot {
  return { devices: [LAMP], phones: [PHONE], grants: ports ? [{ phoneId: PHONE.id, deviceNtmId: LAMP.ntmId, ports }] : [] };
}

function udp4(src: string, dst: string, srcPort: number, dstPort: number): Buffer {
  return Buffer.from(buildPacket({ src: ip4ToBytes(src), dst: ip4ToBytes(dst), protocol: 'udp', srcPort, dstPort, payload: Buffer.from('hi') }));
}

function parsed(buf: Buffer): PacketInfo {
  const info = new PacketInfo();
  assert.ok(parsePacket(buf, info).ok);
  return info;
}

test('the household policy translates a granted flow both ways and names every refusal', () => {
  const p = new HouseholdPolicy(snapshot([8080]));
  // LAN → tunnel: the lamp answers the phone from its service port; its source becomes its virtual address.
  const out = udp4(LAMP_LAN, PHONE.v4, 8080, 40000);
  assert.equal(p.outbound(out, parsed(out)), C.PASS);
  assert.equal(bytesToIp4(out, 12), LAMP.v4);
  const other = udp4(LAMP_LAN, PHONE.v4, 22, 40000);
  assert.equal(p.outbound(other, parsed(other)), C.OUT_POLICY);
  const stranger = udp4('192.168.1.99', PHONE.v4, 8080, 40000);
  assert.equal(p.outbound(stranger, parsed(stranger)), C.OUT_NOT_PAIRED);
  const notPhone = udp4(LAMP_LAN, '198.18.0.77', 8080, 40000);
  assert.equal(p.outbound(notPhone, parsed(notPhone)), C.OUT_NOT_A_PHONE);
  // Tunnel → LAN: the virtual destination becomes the LAN address, on the granted port only.
  const inn = udp4(PHONE.v4, LAMP.v4, 40000, 8080);
  assert.equal(p.inbound(inn, parsed(inn), LAMP.ntmId, PHONE.id), C.PASS);
  assert.equal(bytesToIp4(inn, 16), LAMP_LAN);
  const refused = udp4(PHONE.v4, LAMP.v4, 40000, 80);
  assert.equal(p.inbound(refused, parsed(refused), LAMP.ntmId, PHONE.id), C.IN_POLICY);
  assert.equal(p.inbound(refused, parsed(refused), '0xcc', PHONE.id), C.IN_NOT_PAIRED);
  // The lamp has no IPv6 on the LAN: the engine is asked to answer "unreachable".
  const v6 = Buffer.from(buildPacket({ src: ip6ToBytes(PHONE.v6), dst: ip6ToBytes(LAMP.v6), protocol: 'udp', srcPort: 40000, dstPort: 8080 }));
  assert.equal(p.inbound(v6, parsed(v6), LAMP.ntmId, PHONE.id), C.IN_NO_LAN_ADDRESS);
  // Directions: the granted pair either way; never an appliance to an ungranted peer.
  assert.ok(p.allowsDirection(PHONE.id, LAMP.ntmId) && p.allowsDirection(LAMP.ntmId, PHONE.id));
  assert.ok(!new HouseholdPolicy(snapshot(null)).allowsDirection(PHONE.id, LAMP.ntmId));
  assert.deepEqual(p.lanSources(), [`${LAMP_LAN}/32`]);
});

/** A tunnel table with one tunnel from the lamp's virtual address to the phone's, recording what it seals. */
function fakeTable(): { table: TunnelTable; sealed: Buffer[] } {
  const sealed: Buffer[] = [];
  const tunnel: DataTunnel = {
    peerId: PHONE.id,
    peerV4: Buffer.from(ip4ToBytes(PHONE.v4)),
    peerV6: Buffer.from(ip6ToBytes(PHONE.v6)),
    keypairs: { byIndex: () => undefined },
    onData: () => 'auth',
    sendInner: (inner) => (sealed.push(Buffer.from(inner)), 'sent'),
  };
  const lampV4 = Buffer.from(ip4ToBytes(LAMP.v4)).readUInt32BE(0);
  const table: TunnelTable = {
    tunnelFor: (pkt) => (pkt.readUInt32BE(12) === lampV4 ? tunnel : NO_NODE),
    connectOnDemand: () => 'dropped',
    byIndex: () => undefined,
    localEnd: () => undefined,
    heard: () => undefined,
    onSignal: () => undefined,
  };
  return { table, sealed };
}

const bind: Bind = { port: 0, send: () => undefined, onMessage: () => undefined, close: async () => undefined };

test('the engine applies the policy it was handed, and a reconfig takes effect from the next packet', () => {
  const { table, sealed } = fakeTable();
  const engine = new DataEngine({ bind, tunnels: table, policy: new HouseholdPolicy(snapshot([8080])), mtu: 1380 });
  assert.equal(engine.fromLan(udp4(LAMP_LAN, PHONE.v4, 8080, 40000)), OUT_RESULT.sent);
  assert.equal(sealed.length, 1);
  assert.equal(bytesToIp4(sealed[0]!, 12), LAMP.v4, 'sealed with the virtual source');
  engine.reconfig(new HouseholdPolicy(snapshot(null)));
  assert.equal(engine.fromLan(udp4(LAMP_LAN, PHONE.v4, 8080, 40000)), C.OUT_POLICY);
  assert.equal(sealed.length, 1);
  // A terminal's pass-through policy: the packet is sealed as it is.
  engine.reconfig(PASS_THROUGH);
  assert.equal(engine.fromLan(udp4(LAMP.v4, PHONE.v4, 1, 2)), OUT_RESULT.sent);
  assert.equal(COUNT_NAMES[engine.fromLan(Buffer.from([0x45, 0, 0]))], 'out-malformed-truncated');
  assert.deepEqual(engine.counts.toJSON(), { 'out-malformed-truncated': 1, 'out-policy': 1, 'out-sent': 2 });
  assert.deepEqual(engine.counts.drops(), { 'out-malformed-truncated': 1, 'out-policy': 1 });
});
