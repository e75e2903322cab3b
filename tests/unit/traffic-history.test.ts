// The status page's per-connection traffic history (agent/src/agent/traffic-history.ts): steps from the tunnels'
// counters, a new tunnel counted from zero, late steps keeping the time axis, the window and the connection bound.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TrafficHistory, type TrafficSample } from '../../agent/src/agent/traffic-history.js';

const tunnelA = {};
const sample = (tunnel: object, txBytes: number, rxBytes = 0, key = 'lamp/phone'): TrafficSample => ({
  key,
  device: 'Lamp',
  peer: '0x' + '1'.repeat(40),
  peerName: "Anna's phone",
  tunnel,
  txBytes,
  rxBytes,
  txPackets: Math.ceil(txBytes / 1000),
  rxPackets: Math.ceil(rxBytes / 1000),
});

test('each step holds what the connection carried in it, oldest first, the window fixed in length', () => {
  const h = new TrafficHistory({ stepMs: 5000, points: 6 });
  assert.deepEqual(h.view(), { stepS: 5, points: 6, end: null, connections: [] });
  const t0 = Date.UTC(2026, 0, 1);
  h.sample(t0, [sample(tunnelA, 1000, 200)]);
  h.sample(t0 + 5000, [sample(tunnelA, 4000, 300)]);
  h.sample(t0 + 10_000, [sample(tunnelA, 4000, 300)]);
  const v = h.view();
  assert.equal(v.end, new Date(t0 + 10_000).toISOString());
  assert.equal(v.connections.length, 1);
  const c = v.connections[0]!;
  assert.deepEqual([c.device, c.peerName, c.connected], ['Lamp', "Anna's phone", true]);
  assert.deepEqual(c.txBytes, [0, 0, 0, 1000, 3000, 0]);
  assert.deepEqual(c.rxBytes, [0, 0, 0, 200, 100, 0]);
  assert.deepEqual(c.txPackets, [0, 0, 0, 1, 3, 0]);
});

test('a new tunnel for the same connection counts from zero; counters never go negative', () => {
  const h = new TrafficHistory({ stepMs: 1000, points: 4 });
  h.sample(1000, [sample(tunnelA, 50_000)]);
  // The phone moved and the agent made a new tunnel: its counters started again, below the old tunnel's.
  h.sample(2000, [sample({}, 700)]);
  assert.deepEqual(h.view().connections[0]!.txBytes, [0, 0, 50_000, 700]);
});

test('a step taken late leaves empty steps before it, so the chart keeps its time axis', () => {
  const h = new TrafficHistory({ stepMs: 1000, points: 5 });
  h.sample(1000, [sample(tunnelA, 100)]);
  h.sample(4000, [sample(tunnelA, 400)]);
  assert.deepEqual(h.view().connections[0]!.txBytes, [0, 100, 0, 0, 300]);
});

test('a closed connection stays (not connected) until its traffic leaves the window, then is forgotten', () => {
  const h = new TrafficHistory({ stepMs: 1000, points: 3 });
  h.sample(1000, [sample(tunnelA, 100)]);
  h.sample(2000, []);
  assert.deepEqual(h.view().connections.map((c) => [c.connected, c.txBytes]), [[false, [0, 100, 0]]]);
  h.sample(3000, []);
  assert.equal(h.view().connections.length, 1);
  h.sample(4000, []);
  assert.deepEqual(h.view().connections, []);
});

test('at most maxConnections are kept; the others are counted, not charted', () => {
  const h = new TrafficHistory({ stepMs: 1000, points: 3, maxConnections: 2 });
  h.sample(1000, [1, 2, 3].map((i) => sample({}, 10 * i, 0, `k${i}`)));
  assert.equal(h.view().connections.length, 2);
  assert.equal(h.untracked, 1);
});
