// The DC's route rules (agent/src/dc/route.ts): every path decision and the RS choice, case by case. The netns tests
// show the same decisions on real NATs; these pin the rules themselves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chooseRelay, isGlobal, planRoute, type EndView, type NatKind, type RelayCandidate, type RelayView } from '../../agent/src/dc/route.js';
import type { Endpoint } from '../../agent/src/types/net.js';

const ep = (address: string, port = 7000): Endpoint => ({ family: address.includes(':') ? 6 : 4, address, port });

function end(id: string, observed: string, nat: NatKind, locals: string[] = [], rtt: Record<string, number> = {}): EndView {
  return { id, observed: ep(observed), nat, locals: locals.map((l) => ep(l)), rsRtt: new Map(Object.entries(rtt)) };
}

const RS: RelayView = { id: '0xrs', v4: ep('192.0.2.66', 7200), v6: ep('2001:db8:2::2', 7200), load: 0.1 };

test('global and private addresses (RFC 6890)', () => {
  for (const a of ['10.1.2.3', '192.168.1.10', '172.16.0.1', '100.64.0.10', '127.0.0.1', '169.254.1.1', 'fe80::1', 'fd4e:544d::2', '::1'])
    assert.equal(isGlobal(a), false, a);
  for (const a of ['192.0.2.2', '203.0.113.5', '8.8.8.8', '2001:db8:1::2', '172.32.0.1']) assert.equal(isGlobal(a), true, a);
});

test('both ends open: direct, the requester starts', () => {
  const p = planRoute(end('a', '192.0.2.10', 'none', ['192.0.2.10']), end('b', '198.51.100.7', 'none', ['198.51.100.7']), [RS])!;
  assert.equal(p.kind, 'direct');
  assert.equal(p.initiator, 'a');
  assert.deepEqual(p.toB, [ep('198.51.100.7')]);
  assert.equal(p.relay?.rsId, '0xrs', 'a relay is still offered as fallback');
});

test('the NATed end starts towards the open one (its first packet opens its NAT)', () => {
  const phone = end('phone', '192.0.2.2', 'symmetric', ['10.1.0.10']);
  const agent = end('agent', '198.51.100.2', 'none', ['198.51.100.2']);
  const p1 = planRoute(phone, agent, [])!;
  assert.deepEqual([p1.kind, p1.initiator], ['direct', 'a']);
  const p2 = planRoute(agent, phone, [])!;
  assert.deepEqual([p2.kind, p2.initiator], ['direct', 'b'], 'requester open: the NATed target starts');
  assert.deepEqual(p2.toB, [ep('192.0.2.2')]);
});

test('both behind endpoint-independent NATs: hole punching at the observed mappings, relay as fallback', () => {
  const p = planRoute(end('a', '203.0.113.2', 'eim', ['10.0.1.10']), end('b', '203.0.113.66', 'eim', ['10.0.2.10']), [RS])!;
  assert.equal(p.kind, 'holepunch');
  assert.deepEqual(p.toB, [ep('203.0.113.66')]);
  assert.deepEqual(p.toA, [ep('203.0.113.2')]);
  assert.ok(p.relay);
});

test('a symmetric (or unknown) NAT on either side: relay', () => {
  for (const [ka, kb] of [
    ['symmetric', 'eim'],
    ['eim', 'symmetric'],
    ['symmetric', 'symmetric'],
    ['unknown', 'eim'],
  ] as const) {
    const p = planRoute(end('a', '203.0.113.2', ka, ['10.0.1.10']), end('b', '203.0.113.66', kb, ['10.0.2.10']), [RS])!;
    assert.equal(p.kind, 'relay', `${ka}+${kb}`);
    assert.equal(p.initiator, 'b', 'the target side learns first across two DCs, so it starts');
  }
  assert.equal(planRoute(end('a', '203.0.113.2', 'symmetric'), end('b', '203.0.113.66', 'eim'), []), undefined, 'no relay, no route');
});

test('behind the same NAT: direct over the local addresses', () => {
  const p = planRoute(end('a', '203.0.113.2', 'symmetric', ['10.0.1.10']), end('b', '203.0.113.2', 'symmetric', ['10.0.1.11']), [RS])!;
  assert.equal(p.kind, 'direct');
  assert.deepEqual(p.toB, [ep('10.0.1.11')]);
});

test("IPv6-only meets IPv4-only (the paper's MN and CN): relay through a dual-stack RS, each end in its family", () => {
  const mn = end('mn', '2001:db8:10::10', 'none', ['2001:db8:10::10']);
  const cn = end('cn', '203.0.113.2', 'eim', ['10.0.0.10']);
  const p = planRoute(mn, cn, [RS])!;
  assert.equal(p.kind, 'relay');
  assert.deepEqual(p.relay!.forA, RS.v6, 'MN uses the RS over IPv6');
  assert.deepEqual(p.relay!.forB, RS.v4, 'CN uses the RS over IPv4');
  assert.equal(planRoute(mn, cn, [{ id: '0xv4only', v4: ep('192.0.2.9', 7200) }]), undefined, 'an IPv4-only RS cannot serve MN');
});

test('IPv6 is preferred when both ends have it', () => {
  const a = end('a', '192.0.2.10', 'none', ['192.0.2.10', '2001:db8:1::10']);
  const b = end('b', '198.51.100.7', 'none', ['198.51.100.7', '2001:db8:3::7']);
  const p = planRoute(a, b, [])!;
  assert.deepEqual(p.toB, [ep('2001:db8:3::7')]);
});

test('RS choice: least measured RTT to both ends, load counts, a busy RS only as the last resort, ties by ID', () => {
  const near: RelayView = { id: '0xnear', v4: ep('192.0.2.1', 7200), load: 0.1 };
  const far: RelayView = { id: '0xfar', v4: ep('192.0.2.2', 7200), load: 0.1 };
  const a = end('a', '203.0.113.2', 'symmetric', [], { '0xnear': 10, '0xfar': 80 });
  const b = end('b', '203.0.113.66', 'symmetric', [], { '0xnear': 20, '0xfar': 90 });
  assert.equal(chooseRelay(a, b, [far, near])?.rsId, '0xnear');
  // Twice the load costs more than a few ms of RTT, not more than a continent.
  assert.equal(chooseRelay(a, b, [far, { ...near, load: 0.8 }])?.rsId, '0xnear', '30 ms × 1.8 still beats 170 ms × 1.1');
  assert.equal(chooseRelay(a, b, [{ ...far, load: 0.95 }, { ...near, load: 0.95 }])?.rsId, '0xnear', 'both busy: still the nearer');
  assert.equal(chooseRelay(a, b, [far, { ...near, load: 0.95 }])?.rsId, '0xfar', 'a busy RS only if nothing else can serve');
  const x: RelayView = { id: '0xa', v4: ep('192.0.2.3', 7200), load: 0.2 };
  const y: RelayView = { id: '0xb', v4: ep('192.0.2.4', 7200), load: 0.2 };
  const unmeasured = end('u', '203.0.113.2', 'symmetric');
  assert.equal(chooseRelay(unmeasured, unmeasured, [y, x])?.rsId, '0xa', 'equal scores: the lower ID, every time');
});

test('RS choice (paper §3.1): a draining RS only as the last resort; an unmeasured one counts the DC\'s RTT, or the end\'s RTT to another RS at its address', () => {
  const a = end('a', '203.0.113.2', 'symmetric', [], { '0xold': 12 });
  const b = end('b', '203.0.113.66', 'symmetric', [], { '0xold': 14 });
  const old: RelayView = { id: '0xold', v4: ep('192.0.2.1', 7200), load: 0.5 };
  // A new instance beside it (same address, another port): nobody pinged it yet, and it is idle.
  const fresh: RelayView = { id: '0xnew', v4: ep('192.0.2.1', 7201), load: 0, dcRtt: 1 };
  const explain: RelayCandidate[] = [];
  assert.equal(chooseRelay(a, b, [old, fresh], explain)?.rsId, '0xnew', '26 ms × 1 beats 26 ms × 1.5');
  const c = explain.find((x) => x.id === '0xnew')!;
  assert.deepEqual([c.rttA, c.rttB, c.measuredA, c.measuredB, c.score], [12, 14, true, true, 26], 'the RTTs measured to the same address');
  assert.equal(chooseRelay(a, b, [old, { ...fresh, draining: true }])?.rsId, '0xold', 'a draining RS is not chosen while another serves');
  assert.equal(chooseRelay(a, b, [{ ...old, load: 0.95 }, { ...fresh, draining: true }])?.rsId, '0xold', 'busy before draining');
  assert.equal(chooseRelay(a, b, [{ ...fresh, draining: true }])?.rsId, '0xnew', 'draining, but the only one');
  // Elsewhere and unmeasured: the DC's own RTT + 50 ms for each end.
  const elsewhere: RelayView = { id: '0xfar', v4: ep('192.0.2.9', 7200), load: 0, dcRtt: 3 };
  const ex2: RelayCandidate[] = [];
  chooseRelay(a, b, [elsewhere], ex2);
  assert.deepEqual([ex2[0]!.rttA, ex2[0]!.measuredA, ex2[0]!.score], [53, false, 106]);
});
