// The DC on fake binds and a fake registry (no sockets, no root): real TerminalHosts and Nodes speak the real protocol
// to it over a FakeNetwork. Registration, retransmitted requests answered from the DC's caches, direction between two
// terminals of one DC and between two peered DCs (federation), revocation, and a refusal to start on a registry that
// does not verify. tests/unit/ntm-loopback repeats the first over real UDP; the netns tier across real NATs.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDb, type Db } from '../../agent/src/store/db.js';
import { createLogger, type Logger } from '../../agent/src/util/log.js';
import { loadSection } from '../../agent/src/config/schema.js';
import { Identity } from '../../agent/src/protocol/identity.js';
import { DcServer } from '../../agent/src/dc/server.js';
import { TerminalHost } from '../../agent/src/terminal/host.js';
import { DataEngine } from '../../agent/src/dataplane/engine.js';
import { PASS_THROUGH } from '../../agent/src/dataplane/policy.js';
import { OUT_RESULT } from '../../agent/src/dataplane/counts.js';
import type { Node } from '../../agent/src/terminal/node.js';
import { FakeNetwork, type FakeBind } from '../../agent/src/dataplane/conn/fake.js';
import { FakeLedger, FakeRegistry } from '../../agent/src/registry/fake.js';
import { SqliteRegistry } from '../../agent/src/registry/sqlite.js';
import type { Registry } from '../../agent/src/types/registry.js';
import type { Endpoint } from '../../agent/src/types/net.js';
import * as NT from '../../agent/src/protocol/node-transaction.js';
import { IntegrityError, RegistrationRefusedError, RejectedError, StickyRevocationError } from '../../agent/src/types/errors.js';
import type { Clock } from '../../agent/src/types/net.js';
import { buildPacket } from '../../agent/src/dataplane/packet/testing/build.js';
import { ip4ToBytes } from '../../agent/src/protocol/ip.js';
import { COOKIE_REPEAT_MS } from '../../agent/src/crypto/source-cookie.js';
import { REGISTRATION_COOKIE, encodeRegistrationRequest, mac1Key, registrationKey } from '../../agent/src/protocol/registration.js';

const RETRY = { initialMs: 100, maxMs: 400, deadlineMs: 4000 };

interface TestDc {
  readonly dc: DcServer;
  readonly identity: Identity;
  readonly registry: Registry;
  readonly endpoint: Endpoint;
}

async function startDc(
  net: FakeNetwork,
  address: string,
  o: { identity?: Identity; peerIds?: Array<[Identity, string]>; registry?: Registry; db?: Db; log?: Logger; config?: Record<string, unknown>; clock?: Clock } = {},
): Promise<TestDc> {
  const identity = o.identity ?? Identity.generate();
  const db = o.db ?? openDb(':memory:');
  const peers = (o.peerIds ?? []).map(([id, addr]) => `${id.idHex}@${addr}:7100`);
  const config = loadSection('dc', undefined, { 'dc.listen': `${address}:7100`, 'dc.advertise': [`${address}:7100`], 'dc.peers': peers, ...o.config });
  const registry = o.registry ?? new FakeRegistry();
  const dc = await DcServer.start({ identity, db, registry, bind: net.open([address], 7100), probeBind: net.open([address], 7101), config, ...(o.log ? { log: o.log } : {}), ...(o.clock ? { clock: o.clock } : {}) });
  return { dc, identity, registry, endpoint: { family: 4, address, port: 7100 } };
}

/** Two DCs at 10.0.0.1 and 10.0.0.2, each the other's --peer, once they know each other's keys (HELLO). */
async function peeredDcs(net: FakeNetwork): Promise<[TestDc, TestDc]> {
  const id1 = Identity.generate();
  const id2 = Identity.generate();
  // Peered DCs name disjoint pools (the automatic /16 slices of the default range are only two).
  const d1 = await startDc(net, '10.0.0.1', { identity: id1, peerIds: [[id2, '10.0.0.2']], config: { 'dc.poolV4': '198.18.1.0/24' } });
  const d2 = await startDc(net, '10.0.0.2', { identity: id2, peerIds: [[id1, '10.0.0.1']], config: { 'dc.poolV4': '198.18.2.0/24' } });
  await until('the DCs know each other', () => [d1, d2].every((d) => (d.dc.status() as { peers: Array<{ known: boolean }> }).peers.every((p) => p.known)));
  return [d1, d2];
}

interface TestTerminal {
  readonly host: TerminalHost;
  readonly engine: DataEngine;
  readonly node: Node;
  readonly bind: FakeBind;
  readonly inbox: Buffer[];
}

function startTerminal(net: FakeNetwork, address: string, dc: TestDc, name: string, identity = Identity.generate()): TestTerminal {
  const bind = net.open([address]);
  const inbox: Buffer[] = [];
  const host = new TerminalHost({ bind, locals: () => [bind.endpoint()], retry: RETRY });
  // Decrypted packets land in the inbox (borrowed: copied) instead of the kernel.
  const engine = new DataEngine({ bind, tunnels: host, policy: PASS_THROUGH, writer: { write: (p) => (inbox.push(Buffer.from(p)), true) } });
  const node = host.addNode(identity, { id: dc.identity.id, publicKey: dc.identity.publicKey, endpoint: dc.endpoint }, { name });
  return { host, engine, node, bind, inbox };
}

/** One DC at 10.0.0.1 with two terminals on it, alice (10.0.1.1) and bob (10.0.2.1), not yet registered. */
async function aliceAndBob(): Promise<{ net: FakeNetwork; d: TestDc; a: TestTerminal; b: TestTerminal }> {
  const net = new FakeNetwork();
  const d = await startDc(net, '10.0.0.1');
  return { net, d, a: startTerminal(net, '10.0.1.1', d, 'alice'), b: startTerminal(net, '10.0.2.1', d, 'bob') };
}

/** A UDP datagram between two virtual IPv4 addresses (its payload starts at byte 28). */
function ipv4Packet(src: string, dst: string, payload: string): Buffer {
  return Buffer.from(buildPacket({ src: ip4ToBytes(src), dst: ip4ToBytes(dst), protocol: 'udp', srcPort: 5000, dstPort: 7777, payload: Buffer.from(payload) }));
}

async function until(what: string, cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Loses the next `n` datagrams from `from` to `to` (the DC's answers, to make a terminal retransmit). */
function loseNext(net: FakeNetwork, from: Endpoint, to: Endpoint, n = 1): { lost: number } {
  const state = { lost: 0 };
  net.filter = (_d, f, t) => {
    if (state.lost < n && f.address === from.address && f.port === from.port && t.address === to.address && t.port === to.port) {
      state.lost++;
      return false;
    }
    return true;
  };
  return state;
}

async function closeAll(dcs: TestDc[], terminals: TestTerminal[]): Promise<void> {
  for (const t of terminals) await t.host.close();
  for (const d of dcs) await d.dc.stop();
}

const count = (dc: DcServer, k: string): number => dc.counts.toJSON()[k] ?? 0;

void describe('the DC on a fake network', () => {
  test('registration: virtual addresses from the pool, the Node Transaction committed to the registry, the terminal online', async () => {
    const net = new FakeNetwork();
    const d = await startDc(net, '10.0.0.1');
    const a = startTerminal(net, '10.0.1.1', d, 'alice');
    try {
      const r = await a.node.register();
      assert.match(r.v4, /^198\.(18|19)\./);
      assert.match(r.v6, /^fd4e:544d:/);
      assert.equal(r.behindNat, false);
      const entry = d.registry.latest('node', a.node.id);
      assert.ok(entry, 'its Node Transaction is in the registry');
      const nt = NT.decode(entry.bytes);
      assert.ok(!(nt instanceof NT.NodeTransactionDecodeError));
      assert.equal(NT.check(nt), 'ok');
      assert.ok(nt.dcId.equals(d.identity.id));
      // Committed: it is on the shared ledger, not only in the DC's view.
      assert.ok((d.registry as FakeRegistry).ledger.latest('node', a.node.id));
      assert.ok(d.registry.directory().some((e) => e.id === d.identity.idHex), "the DC's own record is in the directory");
      const st = d.dc.status() as { terminals: number; online: number };
      assert.deepEqual([st.terminals, st.online], [1, 1]);
      assert.equal(count(d.dc, 'registrations-new'), 1);
    } finally {
      await closeAll([d], [a]);
    }
  });

  test('a retransmitted registration gets the same answer again; the same request from elsewhere is a replay', async () => {
    const net = new FakeNetwork();
    const d = await startDc(net, '10.0.0.1');
    const a = startTerminal(net, '10.0.1.1', d, 'alice');
    const captured: Buffer[] = [];
    try {
      // The DC's first answer is lost: the terminal sends its request again, the DC answers from its cache.
      const lost = loseNext(net, d.endpoint, a.bind.endpoint());
      const inner = net.filter!;
      net.filter = (data, f, t) => {
        if (data[0] === 0x01 && t.port === 7100) captured.push(Buffer.from(data));
        return inner(data, f, t);
      };
      const r = await a.node.register();
      assert.equal(lost.lost, 1);
      assert.ok(captured.length >= 2, 'the request was sent again');
      assert.ok(captured[1]!.equals(captured[0]!), 'a retransmission is the same request');
      assert.equal(count(d.dc, 'reg-retransmission'), 1);
      assert.equal(count(d.dc, 'registrations-new'), 1, 'registered once');
      assert.equal(d.dc.terminals.size, 1);
      // The captured request replayed from another address is dropped, and the terminal keeps its address.
      const mallory = net.open(['10.0.9.9']);
      mallory.send(captured[0]!, d.endpoint);
      await until('the replay counted', () => (d.dc.drops.toJSON()['reg-replay'] ?? 0) === 1);
      assert.equal(d.dc.terminals.byId.get(a.node.id)?.observed?.address, '10.0.1.1');
      assert.equal(r.v4, d.dc.terminals.byId.get(a.node.id)?.v4);
      await mallory.close();
    } finally {
      await closeAll([d], [a]);
    }
  });

  test('direction between two terminals of one DC, with a retransmitted Direction Request answered once', async () => {
    const { net, d, a, b } = await aliceAndBob();
    try {
      const ra = await a.node.register();
      const rb = await b.node.register();
      // The route direction to A is lost once: A asks again, the DC answers from its reply cache.
      loseNext(net, d.endpoint, a.bind.endpoint());
      const t = await a.host.connect(a.node, { kind: 'name', name: 'bob.ntm' });
      net.filter = undefined;
      assert.equal(t.state, 'up');
      assert.equal(t.peerId, b.node.id);
      assert.equal(count(d.dc, 'ctl-retransmission'), 1);
      assert.equal(count(d.dc, 'routes-direct'), 1, 'one route computed');
      assert.equal(a.engine.fromLan(ipv4Packet(ra.v4, rb.v4, 'hello bob')), OUT_RESULT.sent);
      await until('the packet reached bob', () => b.inbox.length === 1);
      assert.equal(b.inbox[0]!.subarray(28).toString(), 'hello bob');
    } finally {
      await closeAll([d], [a, b]);
    }
  });

  test('a direct path that goes silent is refreshed through the DC: each end learns where the other is, the same tunnel comes back', async () => {
    const { net, d, a, b } = await aliceAndBob();
    try {
      const ra = await a.node.register();
      const rb = await b.node.register();
      const t = await a.host.connect(a.node, { kind: 'name', name: 'bob.ntm' });
      // A NAT in front of alice stops letting bob in: alice's data gets no answer.
      net.filter = (_d, f, to) => !(f.address === '10.0.2.1' && to.address === '10.0.1.1');
      const lostAt = performance.now();
      const sender = setInterval(() => a.engine.fromLan(ipv4Packet(ra.v4, rb.v4, 'ping')), 20);
      try {
        await until('alice asks her DC where bob is', () => (a.host.counts.toJSON()['path-refresh'] ?? 0) >= 1, 4000);
        const noticedMs = performance.now() - lostAt;
        // One keep-alive interval (1 s), a tick (0.25 s), the round trip, and a tick of this check's own.
        assert.ok(noticedMs < 1700, `noticed after ${Math.round(noticedMs)} ms`);
        await until('the DC told bob', () => count(d.dc, 'path-refreshes') >= 1 && (b.host.counts.toJSON()['rx'] ?? 0) > 0);
        net.filter = undefined;
        await until('the path answers again', () => t.stats.repairs >= 1);
      } finally {
        clearInterval(sender);
      }
      assert.equal(a.host.tunnelTo(a.node, b.node.id), t, 'the same tunnel');
      assert.equal(t.path, 'direct');
      // A refresh about a terminal the DC does not manage is refused, not followed.
      await assert.rejects(a.node.pathRefresh(t.tunnelId, Identity.generate().id), (e: unknown) => e instanceof RejectedError && /not_found/.test(e.message));
    } finally {
      net.filter = undefined;
      await closeAll([d], [a, b]);
    }
  });

  test('federation: a terminal of one DC reaches a terminal of a peered DC, found by ID from the announced Node Transactions', async () => {
    const net = new FakeNetwork();
    const [d1, d2] = await peeredDcs(net);
    const a = startTerminal(net, '10.0.1.1', d1, 'alice');
    const b = startTerminal(net, '10.0.2.1', d2, 'bob');
    try {
      const ra = await a.node.register();
      const rb = await b.node.register();
      assert.notEqual(ra.v4.split('.')[2], rb.v4.split('.')[2], 'the DCs hand out different pools');
      await until("bob's Node Transaction reached DC 1", () => d1.registry.latest('node', b.node.id) !== undefined);
      assert.ok(d1.registry.directory().some((e) => e.id === d2.identity.idHex), "DC 2's record is in DC 1's directory");
      const t = await a.host.connect(a.node, { kind: 'id', id: b.node.identity.id });
      assert.equal(t.state, 'up');
      assert.equal(t.peerId, b.node.id);
      assert.equal(count(d2.dc, 'routes-direct'), 1, "DC 2 planned the route (it has both ends)");
      assert.equal(a.engine.fromLan(ipv4Packet(ra.v4, rb.v4, 'across DCs')), OUT_RESULT.sent);
      await until('the packet reached bob', () => b.inbox.length === 1);
      assert.equal(b.inbox[0]!.subarray(28).toString(), 'across DCs');
    } finally {
      await closeAll([d1, d2], [a, b]);
    }
  });

  test('revocation: the terminal is told and refused, and no direction to it is given, locally or through a peer DC', async () => {
    const net = new FakeNetwork();
    const [d1, d2] = await peeredDcs(net);
    const a = startTerminal(net, '10.0.1.1', d1, 'alice');
    const b = startTerminal(net, '10.0.1.2', d1, 'bob');
    const c = startTerminal(net, '10.0.2.1', d2, 'carol');
    try {
      await Promise.all([a.node.register(), b.node.register(), c.node.register()]);
      assert.equal(d1.dc.revoke(b.node.id), true);
      await until('bob was told', () => b.node.revoked);
      assert.equal(d1.dc.isOnline(b.node.id), false);
      await assert.rejects(a.host.connect(a.node, { kind: 'name', name: 'bob.ntm' }), (e: unknown) => e instanceof RejectedError && /revoked/.test(e.message));
      await assert.rejects(c.host.connect(c.node, { kind: 'id', id: b.node.identity.id }), (e: unknown) => e instanceof RejectedError && /revoked/.test(e.message));
      // Bob registering again is refused (the DC does not answer a revoked terminal).
      const before = d1.dc.drops.toJSON()['reg-revoked'] ?? 0;
      b.node.revoked = false;
      await assert.rejects(b.node.register());
      assert.ok((d1.dc.drops.toJSON()['reg-revoked'] ?? 0) > before);
    } finally {
      await closeAll([d1, d2], [a, b, c]);
    }
  });

  test('the DC runs on the SQLite registry as on the fake, and refuses to start on a registry that does not verify', async () => {
    const net = new FakeNetwork();
    const db = openDb(':memory:');
    const d = await startDc(net, '10.0.0.1', { registry: new SqliteRegistry(db) });
    await d.dc.stop();
    await assert.rejects(startDc(net, '10.0.0.1', { registry: new FakeRegistry(new FakeLedger(), { broken: 'entry 7 was changed' }) }), (e: unknown) => {
      assert.ok(e instanceof IntegrityError);
      assert.match(e.message, /entry 7 was changed/);
      return true;
    });
    // Its sockets were closed: the port is free again.
    const again = net.open(['10.0.0.1'], 7100);
    await again.close();
  });

  test('a revocation of an ID the DC has not seen holds when that ID registers later, across a restart, until lifted', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dc-revoke-'));
    const net = new FakeNetwork();
    const identity = Identity.generate();
    const file = join(dir, 'dc.db');
    let d = await startDc(net, '10.0.0.1', { identity, db: openDb(file), registry: new FakeRegistry() });
    const a = startTerminal(net, '10.0.1.1', d, 'alice');
    try {
      assert.equal(d.dc.revoke(a.node.id), false, 'the DC had not seen it');
      await assert.rejects(a.node.register());
      assert.ok((d.dc.drops.toJSON()['reg-revoked'] ?? 0) >= 1, 'refused as revoked');
      assert.equal(d.dc.terminals.size, 0, 'no address was handed out');
      // The revocation is on disk: a restarted DC still refuses it.
      await d.dc.stop();
      d = await startDc(net, '10.0.0.1', { identity, db: openDb(file), registry: new FakeRegistry() });
      await assert.rejects(a.node.register());
      assert.ok((d.dc.drops.toJSON()['reg-revoked'] ?? 0) >= 1);
      // Lifted (paired again): it registers.
      d.dc.reinstate(a.node.id);
      const r = await a.node.register();
      assert.match(r.v4, /^198\.(18|19)\./);
    } finally {
      await closeAll([d], [a]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('on a shared ledger: a DC restarts after one of its terminals moved to another DC, and a DC revocation is sticky', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dc-moved-'));
    const net = new FakeNetwork();
    const ledger = new FakeLedger();
    const idA = Identity.generate();
    const file = join(dir, 'dc.db');
    let a = await startDc(net, '10.0.0.1', { identity: idA, db: openDb(file), registry: new FakeRegistry(ledger) });
    const b = await startDc(net, '10.0.0.2', { registry: new FakeRegistry(ledger) });
    const phone = Identity.generate();
    const hosts: TerminalHost[] = [];
    const at = (dc: TestDc, address: string): Node => {
      const bind = net.open([address]);
      const host = new TerminalHost({ bind, locals: () => [bind.endpoint()], retry: RETRY });
      // The engine reads the socket for the host (as in startTerminal).
      new DataEngine({ bind, tunnels: host, policy: PASS_THROUGH, writer: { write: () => true } });
      hosts.push(host);
      return host.addNode(phone, { id: dc.identity.id, publicKey: dc.identity.publicKey, endpoint: dc.endpoint }, { name: 'phone' });
    };
    try {
      await at(a, '10.0.1.1').register();
      assert.equal(a.dc.terminals.size, 1);
      await a.dc.stop();
      // The phone registers at B now: its newer Node Transaction names B on the ledger.
      await new Promise((r) => setTimeout(r, 5));
      await at(b, '10.0.1.2').register();
      const newest = NT.decode(ledger.latest('node', phone.idHex)!.bytes);
      assert.ok(!(newest instanceof NT.NodeTransactionDecodeError) && newest.dcId.equals(b.identity.id), "the ledger's newest Node Transaction names B");
      a = await startDc(net, '10.0.0.1', { identity: idA, db: openDb(file), registry: new FakeRegistry(ledger) });
      assert.equal(a.dc.terminals.size, 0, "A dropped the terminal that is B's now, instead of refusing to start");
      // B's operator revokes it: the ledger holds that for good, B cannot lift it, A sees it.
      assert.equal(b.dc.revoke(phone.idHex), true);
      assert.equal(a.registry.revoked(phone.idHex), true);
      assert.throws(() => b.dc.reinstate(phone.idHex), StickyRevocationError);
    } finally {
      for (const h of hosts) await h.close();
      await closeAll([a, b], []);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('an unauthenticated CONTROL frame gets silence, unless it comes from where a terminal of this DC is (then a HINT)', async () => {
    const net = new FakeNetwork();
    const d = await startDc(net, '10.0.0.1');
    const a = startTerminal(net, '10.0.1.1', d, 'alice');
    const hints: Endpoint[] = [];
    net.filter = (data, f, t) => {
      if (data[0] === 0x12 && f.port === 7100) hints.push(t);
      return true;
    };
    const mallory = net.open(['10.0.9.9']);
    try {
      await a.node.register();
      const garbage = Buffer.alloc(48, 0x5a);
      garbage[0] = 0x10;
      mallory.send(garbage, d.endpoint);
      mallory.send(garbage.subarray(0, 4), d.endpoint);
      await until('the frames counted', () => (d.dc.drops.toJSON()['ctl-unknown-session'] ?? 0) === 2);
      await new Promise((r) => setTimeout(r, 20));
      assert.equal(hints.length, 0, 'no answer to a forged frame');
      // From alice's own address (a frame of a session the DC lost): she is invited to register again.
      a.bind.send(garbage, d.endpoint);
      await until('alice got a HINT', () => hints.length === 1);
      assert.equal(hints[0]!.address, '10.0.1.1');
    } finally {
      await mallory.close();
      await closeAll([d], [a]);
    }
  });

  test('a registration high-water mark left in the future by a wrong clock does not lock a terminal out; the refusals are logged', async () => {
    const net = new FakeNetwork();
    const lines: string[] = [];
    const log = createLogger('info', {}, (l) => lines.push(l));
    const d = await startDc(net, '10.0.0.1', { log });
    const a = startTerminal(net, '10.0.1.1', d, 'alice');
    try {
      await a.node.register();
      // What a boot with the clock in 2046 leaves behind: the last accepted request time 20 years ahead.
      const rec = d.dc.terminals.byId.get(a.node.id)!;
      rec.lastReqTime = Date.now() + 20 * 365 * 86400_000;
      const r = await a.node.register();
      assert.equal(r.v4, rec.v4, 'registered again, same address');
      assert.ok(rec.lastReqTime <= Date.now() + 1000, 'the mark follows the clock again');
      assert.ok(lines.some((l) => /clock/.test(l)), `the clamp was logged: ${lines.join('\n')}`);
    } finally {
      await closeAll([d], [a]);
    }
  });

  test('an open DC rations first-time registrations per source: one address cannot drain the pool; others and known terminals are not held', async () => {
    const net = new FakeNetwork();
    const d = await startDc(net, '10.0.0.1');
    // 30 fresh keys from one address (one socket, as the drain was done).
    const bind = net.open(['10.0.9.9']);
    const host = new TerminalHost({ bind, locals: () => [bind.endpoint()], retry: RETRY });
    // Reads the bind for the host (its answers arrive through it).
    new DataEngine({ bind, tunnels: host, policy: PASS_THROUGH, writer: { write: () => true } });
    const ref = { id: d.identity.id, publicKey: d.identity.publicKey, endpoint: d.endpoint };
    const nodes = Array.from({ length: 30 }, (_, i) => host.addNode(Identity.generate(), ref, { name: `k${i}` }));
    const other = startTerminal(net, '10.0.1.1', d, 'alice');
    try {
      const results = await Promise.allSettled(nodes.map((n) => n.register()));
      const admitted = results.filter((r) => r.status === 'fulfilled').length;
      // The others are told why (authenticated), at once: no waiting for the deadline.
      for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof RegistrationRefusedError && r.reason.reason === 'rate-limited', String(r.reason));
      // The burst, and what refilled while the others retried (10 a minute: none or one in 4 s).
      assert.ok(admitted >= 10 && admitted <= 11, `admitted ${admitted}`);
      assert.ok((d.dc.drops.toJSON()['reg-source-limit'] ?? 0) > 0);
      // A request let through as the bucket refilled may be answered after its sender gave up.
      assert.ok(d.dc.terminals.size >= admitted && d.dc.terminals.size <= 11, `${d.dc.terminals.size} addresses taken`);
      // Another source registers at once; a terminal already known renews from the limited source.
      await other.node.register();
      const known = nodes[results.findIndex((r) => r.status === 'fulfilled')]!;
      await known.register();
    } finally {
      await host.close();
      await closeAll([d], [other]);
    }
  });

  test('a full pool: the next terminal is refused at once with the pool\'s size; a revoked one is told it is revoked', async () => {
    const net = new FakeNetwork();
    // A /29: .2 to .6, five terminals.
    const d = await startDc(net, '10.0.0.1', { config: { 'dc.poolV4': '198.18.7.0/29' } });
    const ts = Array.from({ length: 6 }, (_, i) => startTerminal(net, `10.0.1.${i + 1}`, d, `t${i}`));
    try {
      for (const t of ts.slice(0, 5)) await t.node.register();
      assert.deepEqual([...d.dc.terminals.byV4.keys()].sort(), ['198.18.7.2', '198.18.7.3', '198.18.7.4', '198.18.7.5', '198.18.7.6']);
      const started = performance.now();
      const e = await ts[5]!.node.register().then(
        () => assert.fail('registered into a full pool'),
        (err: unknown) => err,
      );
      const ms = performance.now() - started;
      assert.ok(e instanceof RegistrationRefusedError, String(e));
      assert.equal(e.reason, 'pool-full');
      assert.equal(e.limit, 5);
      assert.match(e.message, /pool is full \(5 addresses/);
      assert.ok(ms < RETRY.initialMs, `refused in ${Math.round(ms)} ms, before the first retransmission`);
      assert.equal(count(d.dc, 'reg-refused-pool-full'), 1);
      // A revoked terminal is refused as revoked (it was told on its channel; a new registration is answered too).
      d.dc.revoke(ts[0]!.node.id);
      ts[0]!.node.revoked = false;
      await assert.rejects(ts[0]!.node.register(), (err: unknown) => err instanceof RegistrationRefusedError && err.reason === 'revoked');
    } finally {
      await closeAll([d], ts);
    }
  });

  test('address leases expire after dc.expireAfterS of service time, across a restart; the registry keeps the history', async () => {
    const net = new FakeNetwork();
    const db = openDb(':memory:');
    // The DC's monotonic clock, moved on by hand: what the lease counts (a process restart starts it again).
    let offset = 0;
    const clock: Clock = { now: () => Date.now(), monotonic: () => performance.now() + offset };
    const config = { 'dc.poolV4': '198.18.7.0/30', 'dc.expireAfterS': 60 };
    const identity = Identity.generate();
    let d = await startDc(net, '10.0.0.1', { identity, db, registry: new SqliteRegistry(db), config, clock });
    let a = startTerminal(net, '10.0.1.1', d, 'alice');
    const b = startTerminal(net, '10.0.1.2', d, 'bob');
    try {
      const ra = await a.node.register();
      assert.equal(ra.v4, '198.18.7.2', 'the only address of a /30');
      await assert.rejects(b.node.register(), (e: unknown) => e instanceof RegistrationRefusedError && e.reason === 'pool-full' && e.limit === 1);
      offset += 30_000;
      // Alice goes away (her host closes: nothing of hers renews the lease any more); the DC restarts.
      await a.host.close();
      await d.dc.stop();
      // Restarted 30 s of service time later (its clock starts again; the service time was persisted).
      offset = -performance.now();
      d = await startDc(net, '10.0.0.1', { identity, db, registry: new SqliteRegistry(db), config, clock });
      assert.equal(d.dc.terminals.size, 1, 'the lease survived the restart');
      offset += 20_000;
      await new Promise((r) => setTimeout(r, 1200));
      assert.equal(d.dc.terminals.size, 1, '50 s of service time: not expired yet');
      offset += 15_000;
      await until('the lease expired', () => d.dc.terminals.size === 0, 3000);
      assert.equal(count(d.dc, 'leases-expired'), 1);
      assert.ok(d.dc.registry.latest('node', a.node.id), "alice's Node Transaction stays in the registry");
      // The address is free again: bob gets it (his refusal held back only his watchdog; register() asks at once).
      // Alice, back with the same key, is a newcomer for the DC: refused now, the pool holds one address.
      const rb = await b.node.register();
      assert.equal(rb.v4, '198.18.7.2');
      a = startTerminal(net, '10.0.1.1', d, 'alice', a.node.identity);
      await assert.rejects(a.node.register(), (e: unknown) => e instanceof RegistrationRefusedError && e.reason === 'pool-full');
      // Kept across another restart: the expiry and bob's lease are committed.
      await d.dc.stop();
      offset = -performance.now();
      d = await startDc(net, '10.0.0.1', { identity, db, registry: new SqliteRegistry(db), config, clock });
      assert.deepEqual([...d.dc.terminals.byId.keys()], [b.node.id]);
    } finally {
      await closeAll([d], [a, b]);
      db.close();
    }
  });

  test('under load a registration from an unknown ID costs an ECDH only once its sender echoed a cookie; garbage costs none', async () => {
    const net = new FakeNetwork();
    // Always under load: every unknown ID must echo a cookie first.
    const d = await startDc(net, '10.0.0.1', { config: { 'dc.cookieAbovePerSec': 0 } });
    const alice = startTerminal(net, '10.0.1.1', d, 'alice');
    const forger = net.open(['10.0.7.7']);
    const answers: number[] = [];
    forger.onMessage((m) => answers.push(m[0]!));
    try {
      // The terminal handles the cookie reply on its own: one more round trip, one ECDH.
      await alice.node.register();
      assert.equal(count(d.dc, 'reg-cookie-sent'), 1);
      assert.equal(count(d.dc, 'reg-ecdh'), 1);
      // Renewals of a known ID need no cookie (K_ss is cached).
      await alice.node.register();
      assert.equal(count(d.dc, 'reg-cookie-sent'), 1);

      // Forged requests: a valid Node Transaction and mac1 (anyone knowing the DC's key can make them), a MAC under a
      // wrong K_ss. None costs an ECDH; the source gets one cookie reply, its 49 repeats within the second none, and a
      // second source its own; one with a broken mac1 gets nothing.
      const key = Identity.generate();
      const nt = NT.encode(NT.sign(key, { dcId: d.identity.id, revoked: false, timestamp: Date.now() }));
      const forged = (i: number) =>
        encodeRegistrationRequest(
          { terminalIndex: i, txid: BigInt(i), nonce: Buffer.alloc(16, i), time: Date.now(), nt, locals: [], name: '', token: new Uint8Array(0) },
          Buffer.alloc(32, 7),
          mac1Key(d.identity.publicKey),
        );
      for (let i = 1; i <= 50; i++) forger.send(forged(i), d.endpoint);
      const garbage = forged(99);
      garbage[50] = garbage[50]! ^ 1;
      forger.send(garbage, d.endpoint);
      const other = net.open(['10.0.7.8']);
      const otherAnswers: number[] = [];
      other.onMessage((m) => otherAnswers.push(m[0]!));
      other.send(forged(51), d.endpoint);
      await until('the cookie replies', () => answers.length >= 1 && otherAnswers.length >= 1);
      await new Promise((r) => setTimeout(r, 50));
      await other.close();
      assert.deepEqual([...new Set([...answers, ...otherAnswers])], [REGISTRATION_COOKIE]);
      assert.equal(answers.length, 1, 'one cookie reply to the source, none to its repeats, nothing for garbage');
      assert.equal(otherAnswers.length, 1, 'another source gets its own');
      assert.equal(d.dc.drops.toJSON()['reg-cookie-repeat'], 49);
      assert.equal(count(d.dc, 'reg-ecdh'), 1, 'no EC operation for any forged request');
      assert.equal(d.dc.drops.toJSON()['reg-mac1'], 1);
      // A second later the source is answered again (a true sender whose cookie was lost waits at most that).
      await new Promise((r) => setTimeout(r, 2 * COOKIE_REPEAT_MS + 50));
      forger.send(forged(52), d.endpoint);
      await until('a cookie again', () => answers.length >= 2);
      assert.equal(count(d.dc, 'reg-ecdh'), 1);
    } finally {
      await forger.close();
      await closeAll([d], [alice]);
    }
  });
});

void describe('the DC with its EC work on worker threads (dc.ecWorkers)', () => {
  test('first registrations, a retransmission while the workers hold it, a wrong MAC and a bad signature: as on the event loop', async () => {
    const net = new FakeNetwork();
    const d = await startDc(net, '10.0.0.1', { config: { 'dc.ecWorkers': 2 } });
    const terminals = Array.from({ length: 12 }, (_, i) => startTerminal(net, `10.0.${i + 1}.1`, d, `t${i}`));
    const forger = net.open(['10.0.99.9']);
    const answers: Buffer[] = [];
    forger.onMessage((m) => answers.push(Buffer.from(m)));
    try {
      const regs = await Promise.all(terminals.map((t) => t.node.register()));
      assert.equal(new Set(regs.map((r) => r.v4)).size, 12, 'each its own address');
      for (const t of terminals) assert.ok((d.registry as FakeRegistry).ledger.latest('node', t.node.id), 'committed');
      assert.equal(count(d.dc, 'registrations-new'), 12);
      assert.ok(count(d.dc, 'reg-ec-worker') >= 12, 'their EC work went to the workers');
      assert.equal(count(d.dc, 'reg-ecdh'), count(d.dc, 'reg-ec-worker'), 'and none was done on the event loop');
      assert.ok(d.dc.terminals.byId.get(terminals[0]!.node.id)?.kss, 'K_ss from the worker kept for renewals');
      // (Terminals whose first answer took longer than their retransmission timer, while the workers started, sent
      // their request again as a renewal.)
      const renewed = count(d.dc, 'registrations-renewed');
      await terminals[0]!.node.register();
      assert.equal(count(d.dc, 'registrations-renewed'), renewed + 1);

      // Requests of a new key, built as a terminal builds them.
      const key = Identity.generate();
      const kss = registrationKey(key.dh(d.identity.publicKey)!);
      const request = (txid: number, nt: Uint8Array, k: Uint8Array) =>
        encodeRegistrationRequest(
          { terminalIndex: txid, txid: BigInt(txid), nonce: Buffer.alloc(16, txid), time: Date.now() + txid, nt, locals: [], name: '', token: new Uint8Array(0) },
          k,
          mac1Key(d.identity.publicKey),
        );
      const nt = NT.encode(NT.sign(key, { dcId: d.identity.id, revoked: false, timestamp: Date.now() }));
      // A wrong MAC (K_ss of another key), then a signature that does not hold (its s altered): neither is answered.
      forger.send(request(1, nt, Buffer.alloc(32, 7)), d.endpoint);
      const badSig = Buffer.from(nt);
      badSig[badSig.length - 10] = badSig[badSig.length - 10]! ^ 1;
      forger.send(request(2, badSig, kss), d.endpoint);
      await until('both dropped', () => (d.dc.drops.toJSON()['reg-mac'] ?? 0) === 1 && (d.dc.drops.toJSON()['nt-signature'] ?? 0) === 1);
      // The genuine request twice in one turn: both go to a worker; one registration, the second answered from the cache.
      const good = request(3, nt, kss);
      const retransmissions = count(d.dc, 'reg-retransmission');
      forger.send(good, d.endpoint);
      forger.send(good, d.endpoint);
      await until('two answers', () => answers.length === 2);
      assert.ok(answers[0]!.equals(answers[1]!), 'the same answer twice');
      assert.equal(count(d.dc, 'registrations-new'), 13);
      assert.equal(count(d.dc, 'reg-retransmission'), retransmissions + 1);
      assert.ok(d.dc.terminals.byId.get(key.idHex));

      // Without workers left (here closed; a worker that dies leaves the same state) the event loop does the EC work.
      await (d.dc as unknown as { core: { ec: { close(): Promise<void> } } }).core.ec.close();
      const before = count(d.dc, 'reg-ec-worker');
      const late = startTerminal(net, '10.0.50.1', d, 'late');
      terminals.push(late);
      await late.node.register();
      assert.equal(count(d.dc, 'reg-ec-worker'), before, 'not sent to a worker');
      assert.ok(d.dc.terminals.byId.get(late.node.id));
    } finally {
      await forger.close();
      await closeAll([d], terminals);
    }
  });
});
