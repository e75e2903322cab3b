// RS failover on the DC's side (docs/protocol.md §3.5 "Failover"): an RS a terminal reports as not answering loses the
// relay choice to any RS that answers, and an RS that stopped its load reports is ranked as full. The netns test
// ntm-relay-path shows both on real processes (an RS killed with -9 mid-transfer).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chooseRelay, type EndView, type RelayView } from '../../agent/src/dc/route.js';
import { newRelay, relaySilent, type DcCore, type RelayState } from '../../agent/src/dc/core.js';
import { Relays } from '../../agent/src/dc/relays.js';
import { UNREACHABLE_MS } from '../../agent/src/terminal/relay-probe.js';
import type { Endpoint } from '../../agent/src/types/net.js';

const ep = (address: string, port = 7000): Endpoint => ({ family: 4, address, port });
const end = (id: string, observed: string, rtt: Record<string, number>): EndView => ({ id, observed: ep(observed), nat: 'symmetric', locals: [], rsRtt: new Map(Object.entries(rtt)) });

test('an RS an end reports as not answering loses to any RS that answers, even a far and busy one; alone, it is still tried', () => {
  const near: RelayView = { id: '0xnear', v4: ep('192.0.2.66', 7200), load: 0 };
  const far: RelayView = { id: '0xfar', v4: ep('192.0.2.130', 7200), load: 0.85 };
  const a = end('a', '203.0.113.2', { '0xnear': UNREACHABLE_MS, '0xfar': 400 });
  const b = end('b', '203.0.113.66', { '0xnear': 5, '0xfar': 400 });
  assert.equal(chooseRelay(a, b, [near, far])?.rsId, '0xfar');
  assert.equal(chooseRelay(b, a, [near, far])?.rsId, '0xfar', 'whichever end reported it');
  assert.equal(chooseRelay(a, b, [near])?.rsId, '0xnear', 'nothing else can serve');
});

test('an RS that missed three report periods (at least 5 s) is silent; one never heard from is not', () => {
  const r: RelayState = { ...newRelay('0xrs', 'config'), loadAt: 100_000, reportEveryMs: 5000 };
  assert.equal(relaySilent(r, 114_000), false);
  assert.equal(relaySilent(r, 115_001), true);
  assert.equal(relaySilent({ ...r, reportEveryMs: 1000 }, 105_001), true, 'a fast reporter: 5 s at least');
  assert.equal(relaySilent({ ...r, reportEveryMs: 1000 }, 104_000), false);
  assert.equal(relaySilent({ ...r, reportEveryMs: 20_000 }, 150_000), false, 'a slow reporter gets three of its periods');
  assert.equal(relaySilent(newRelay('0xnew', 'config'), 1e9), false);
});

// The load the rule weighs between two reports (docs/protocol.md §3.5): the RS's reported tunnels plus the routes the
// DC directed there since, each counted once even when the ends bound before the report (a burst of directions).
void describe('an RS\'s load between reports', () => {
  const rsId = '0x00000000000000000000000000000000000000aa';
  function setup(): { relays: Relays; at: (ms: number) => void; load: () => number | undefined } {
    let now = 1000;
    const core = {
      relays: new Map<string, RelayState>([[rsId, { ...newRelay(rsId, 'config'), dcRtt: 5 }]]),
      acceptedRelays: new Set<string>(),
      relayChoices: [],
      clock: { monotonic: () => now, now: () => now },
    } as unknown as DcCore;
    const relays = new Relays(core);
    return { relays, at: (ms) => (now = ms), load: () => relays.views()[0]!.load };
  }
  const report = (relays: Relays, tunnels: number, bound?: number): boolean =>
    relays.onLoad(rsId, Buffer.alloc(33), { tunnels, capacity: 10, packetsPerS: 0, ...(bound !== undefined ? { bound } : {}) }, ep('192.0.2.66', 7200));

  test('with the RS\'s count of tunnels made from our tickets: no route counted twice, none forgotten before it binds', () => {
    const { relays, at, load } = setup();
    assert.ok(report(relays, 0, 0));
    // Three routes in 40 ms (faster than the bind grace of 2 × 5 + 50 ms); two bound before the next report.
    for (const ms of [1010, 1030, 1050]) {
      at(ms);
      relays.chosen(1n, 'a', 'b', rsId, []);
    }
    assert.equal(load(), 0.3, 'directed since the report: load at once');
    at(1055);
    assert.ok(report(relays, 2, 2));
    assert.equal(load(), 0.3, 'two reported, one still to bind: three, not five');
    at(3000);
    assert.equal(load(), 0.3, 'the unbound one still counts 2 s on');
    assert.ok(report(relays, 2, 2));
    assert.equal(load(), 0.3);
    at(6100);
    assert.ok(report(relays, 2, 2));
    assert.equal(load(), 0.2, 'its ends never bound: after 5 s it counts no more');
  });

  test('the count wraps at 2^32; an RS that restarted (its count fell) takes every route as reported', () => {
    const { relays, at, load } = setup();
    assert.ok(report(relays, 5, 2 ** 32 - 1));
    at(1010);
    relays.chosen(1n, 'a', 'b', rsId, []);
    relays.chosen(2n, 'a', 'b', rsId, []);
    at(1020);
    assert.ok(report(relays, 6, 0));
    assert.equal(load(), 0.7, 'one of two bound across the wrap');
    at(1030);
    assert.ok(report(relays, 1, 1));
    assert.equal(load(), 0.1, 'the other bound: nothing pending');
    at(1040);
    relays.chosen(3n, 'a', 'b', rsId, []);
    at(1050);
    assert.ok(report(relays, 0, 0));
    assert.equal(load(), 0, 'restarted: its count went back, and what it has is what it reports');
  });

  test('from an RS that does not send the count: routes directed within the bind grace before a report are kept', () => {
    const { relays, at, load } = setup();
    assert.ok(report(relays, 0));
    at(1010);
    relays.chosen(1n, 'a', 'b', rsId, []);
    at(1100);
    relays.chosen(2n, 'a', 'b', rsId, []);
    at(1120);
    assert.ok(report(relays, 1));
    assert.equal(load(), 0.2, 'the older one is in the report; the newer may not have bound yet');
  });
});
