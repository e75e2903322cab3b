// RS failover on the DC's side (docs/protocol.md §3.5 "Failover"): an RS a terminal reports as not answering loses the
// relay choice to any RS that answers, and an RS that stopped its load reports is ranked as full. The netns test
// ntm-relay-path shows both on real processes (an RS killed with -9 mid-transfer).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chooseRelay, type EndView, type RelayView } from '../../agent/src/dc/route.js';
import { newRelay, relaySilent, type RelayState } from '../../agent/src/dc/core.js';
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
