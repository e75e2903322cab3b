// Issue 11, item 6: NAT rebinding on the natpair topology. Two terminals behind home NATs hold a hole-punched tunnel
// carrying a steady UDP stream each way and a TCP transfer; then each NAT in turn gives the live flows a new outside
// port (the testbed's rebindNat: a new masquerade port, every UDP mapping forgotten). Behind endpoint-independent
// filtering NATs the peer follows the first authentic packet from the new port (roaming); behind port-restricted NATs
// the silent path is noticed within a keep-alive interval and both ends re-punch to each other's new address through
// the DC (or, with the ends at two DCs, through both: ROUTE_UPDATE). Either way the same tunnel stays direct: every loss is counted and bounded by one keep-alive interval plus a
// margin, the TCP bytes arrive unchanged, both ends report a hole-punched path at the new ports, and the RS relays
// nothing.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { withTestbed } from '../lib/testbed.js';
import { TCP_SINK, TCP_SOURCE, expectedTransfer, firstJsonLine, startNatpair, tunnelTo, waitFor, withDaemons, type NatpairRun, type SinkReport, type TunnelStatus } from '../lib/ntm.js';
import { streamPair } from '../lib/probes.js';
import { scrapeIn } from '../lib/metrics.js';
import type { Testbed } from '../../scripts/netns/index.js';

type Kind = 'full-cone' | 'port-restricted';

const NAT_WAN = { a: '203.0.113.2', b: '203.0.113.66' };
/** Datagrams a second each way, and how long each phase's stream runs (the rebinding comes REBIND_AFTER_MS in). */
const RATE = 100;
const PHASE_S = 7;
const REBIND_AFTER_MS = 2500;
/** The margin over one keep-alive interval that an interruption may take: the tunnels' timer tick, the DC round trip. */
const MARGIN_MS = 1000;
/** With the ends at two DCs, the refresh takes one more leg (DC to DC and its answer): the margin grows by this. */
const SECOND_DC_MS = 1000;
const TCP_TOTAL = 10 * 1024 * 1024;
const TCP_RATE = 512 * 1024;

interface Phase {
  side: 'a' | 'b';
  port: number;
  lostAtoB: number;
  lostBtoA: number;
  interruptionMs: number;
  maxGapMs: number;
  outageMs: { a: number; b: number };
}

async function relayedBytes(tb: Testbed): Promise<number> {
  return (await scrapeIn(tb, 'rs', 9101)).get('ntm_rs_relayed_bytes_total') ?? 0;
}

/** Both ends' views of the one tunnel, once each reports a hole-punched path (optionally `check`ed further). */
async function bothEnds(p: NatpairRun, check: (ta: TunnelStatus, tb: TunnelStatus) => boolean = () => true): Promise<[TunnelStatus, TunnelStatus]> {
  return waitFor(
    'both ends report the hole-punched tunnel',
    async () => {
      const ta = await tunnelTo(p.a, String(p.b.ready.id));
      const tb = await tunnelTo(p.b, String(p.a.ready.id));
      return ta && tb && ta.tunnelId === tb.tunnelId && ta.path === 'hole-punched' && tb.path === 'hole-punched' && check(ta, tb) ? ([ta, tb] as [TunnelStatus, TunnelStatus]) : undefined;
    },
    10_000,
  );
}

/** One phase: a UDP stream each way for PHASE_S, with `side`'s NAT rebinding REBIND_AFTER_MS in. */
async function rebindDuringStream(tb: Testbed, p: NatpairRun, side: 'a' | 'b', port: number): Promise<Phase> {
  const va = String(p.a.ready.v4);
  const vb = String(p.b.ready.v4);
  const streams = streamPair(
    tb,
    [
      { host: 'a', peer: `${vb}:7601`, rate: RATE },
      { host: 'b', peer: `${va}:7601`, rate: RATE },
    ],
    { port: 7601, seconds: PHASE_S, graceMs: 1500 },
  );
  await new Promise((r) => setTimeout(r, REBIND_AFTER_MS));
  assert.equal(await tb.rebindNat(side === 'a' ? 'nata' : 'natb', port), port);
  const [ra, rb] = await streams;
  const lostAtoB = ra.sent - rb.unique;
  const lostBtoA = rb.sent - ra.unique;
  const [ta, tbv] = await bothEnds(p);
  return {
    side,
    port,
    lostAtoB,
    lostBtoA,
    // Packets are evenly spaced: the packets a direction lost, in time.
    interruptionMs: Math.round((Math.max(lostAtoB, lostBtoA) * 1000) / RATE),
    maxGapMs: Math.max(ra.maxGapMs, rb.maxGapMs),
    outageMs: { a: ta.lastOutageMs, b: tbv.lastOutageMs },
  };
}

async function run(t: TestContext, kind: Kind, secondDc = false): Promise<void> {
  await withTestbed('natpair', { nat: { nata: kind, natb: kind } }, (tb) =>
    withDaemons('ntm-test-', (line) => t.diagnostic(line), async ({ dir, started }) => {
      const p = await startNatpair(tb, dir, started, { secondDc, terminalReadyMs: 60_000 });
      const first = (await p.a.call({ cmd: 'connect', target: 'b.ntm' }, 30_000)) as { tunnel: TunnelStatus };
      assert.equal(first.tunnel.path, 'hole-punched', 'the NATs allow a direct path');
      const [before] = await bothEnds(p);
      const relayedBefore = await relayedBytes(tb);

      // A download to A over TCP (B sends), through both rebindings.
      const source = tb.spawn('b', [process.execPath, '-e', TCP_SOURCE, '9000', String(TCP_TOTAL), String(TCP_RATE)]);
      await firstJsonLine(source, 10_000, 'tcp source');
      const sink = tb.spawn('a', [process.execPath, '-e', TCP_SINK, String(p.b.ready.v4), '9000']);
      const report = firstJsonLine<SinkReport>(sink, 60_000, 'tcp sink');
      report.catch(() => undefined);

      const phases: Phase[] = [];
      phases.push(await rebindDuringStream(tb, p, 'a', 24_001));
      phases.push(await rebindDuringStream(tb, p, 'b', 24_002));

      const r = await report;
      assert.equal(r.error, undefined, JSON.stringify(r));
      assert.deepEqual({ bytes: r.bytes, sha256: r.sha256 }, expectedTransfer(TCP_TOTAL), 'every TCP byte arrived, in order, unchanged');

      // The same tunnel, still direct, each end talking to the other's new outside port; nothing went through the RS.
      const [ta] = await bothEnds(p, (x, y) => x.endpoint === `${NAT_WAN.b}:24002` && y.endpoint === `${NAT_WAN.a}:24001`);
      assert.equal(ta.tunnelId, before.tunnelId, 'the tunnel followed the rebinding (no new direction, no new handshake)');
      assert.equal((await relayedBytes(tb)) - relayedBefore, 0, 'the RS relayed no bytes');

      if (p.dc2) {
        // Each end's refresh went to its own DC, which told the other DC (ROUTE_UPDATE) rather than leaving the
        // far end to its stale timer.
        const counts = async (d: typeof p.dc) => (await d.status()).counts as Record<string, number>;
        const [c1, c2] = [await counts(p.dc), await counts(p.dc2)];
        assert.ok((c1['route-update'] ?? 0) + (c2['route-update'] ?? 0) >= 1, `a DC followed its peer's route update: ${JSON.stringify({ c1, c2 })}`);
      }
      const keepaliveMs = ta.keepaliveMs;
      const figure = { nat: kind, dcs: p.dc2 ? 2 : 1, keepaliveMs, tcp: { bytes: r.bytes, maxGapMs: r.maxGapMs }, phases };
      t.diagnostic(JSON.stringify(figure));
      console.log(JSON.stringify(figure));
      const bound = keepaliveMs + MARGIN_MS + (p.dc2 ? SECOND_DC_MS : 0);
      for (const ph of phases) {
        assert.ok(ph.interruptionMs <= bound, `rebinding of ${ph.side}'s NAT: ${ph.interruptionMs} ms of packets lost (${JSON.stringify(ph)})`);
        assert.ok(ph.maxGapMs <= bound, `rebinding of ${ph.side}'s NAT: a ${ph.maxGapMs} ms gap in a stream`);
      }
      source.kill();
      sink.kill();
    }),
  );
}

void describe('NAT rebinding under a live flow (natpair)', () => {
  test('endpoint-independent filtering NATs: the peer follows the new port at once, the path stays direct', (t) => run(t, 'full-cone'));
  test('port-restricted NATs: the silent path is re-punched through the DC within a keep-alive interval, and stays direct', (t) =>
    run(t, 'port-restricted'));
  test('port-restricted NATs, the ends at two DCs: the refresh crosses to the peer DC (ROUTE_UPDATE), the path stays direct', (t) =>
    run(t, 'port-restricted', true));
});
