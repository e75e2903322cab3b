// Issue 11, "Long-lived busy tunnels": a tunnel under load goes through rekey after rekey (Noise KK handshakes,
// WireGuard's REKEY_AFTER_TIME / REJECT_AFTER_TIME rules, docs/protocol.md §3.4) without losing a packet, whichever
// end is sending, and with one handshake per rekey (not one per packet sent while a rekey is due). The keypair
// lifetimes are shortened to 2 s / 3 s (the defaults' 120 s / 180 s ratio) so several rekeys fit in seconds.
// Two terminals behind endpoint-independent NATs (natpair): a hole-punched direct path; A opens it, so A is the
// initiator, the only end that rekeys on time.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { withTestbed } from '../lib/testbed.js';
import { startNatpair, tunnelTo, withDaemons, type Daemon, type TunnelStatus } from '../lib/ntm.js';
import { startStream, type StreamReport } from '../lib/probes.js';

const REKEY_MS = 2000;
const REJECT_MS = 3000;
const SECONDS = 10;
const RATE = 1000;
const PORT = 9300;

type Counted = TunnelStatus & { handshakes: number };

async function tunnel(d: Daemon, peer: Daemon): Promise<Counted> {
  const t = await tunnelTo(d, String(peer.ready.id));
  assert.ok(t, `${d.host} has an up tunnel`);
  return t as Counted;
}

/** Runs one stream in each direction (rate 0: that end only receives); returns what each end received. */
async function streams(a: Daemon, b: Daemon, tbRates: { a: number; b: number }, run: (host: string, peer: string, rate: number) => ReturnType<typeof startStream>) {
  const [sa, sb] = await Promise.all([run('a', `${String(b.ready.v4)}:${PORT}`, tbRates.a), run('b', `${String(a.ready.v4)}:${PORT}`, tbRates.b)]);
  sa.go();
  sb.go();
  return Promise.all([sa.done, sb.done]);
}

void test('a busy tunnel goes through several rekeys in both directions, initiator idle or sending, losing nothing', async (t: TestContext) => {
  await withTestbed('natpair', { nat: { nata: 'eim', natb: 'eim' } }, (tb) =>
    withDaemons('ntm-rekey-', (line) => t.diagnostic(line), async ({ dir, started }) => {
      const p = await startNatpair(tb, dir, started, ['--set', `terminal.rekeyAfterMs=${REKEY_MS}`, '--set', `terminal.rejectAfterMs=${REJECT_MS}`]);
      const c = (await p.a.call({ cmd: 'connect', target: 'b.ntm' }, 30_000)) as { tunnel: TunnelStatus };
      assert.equal(c.tunnel.path, 'hole-punched');
      const run = (host: string, peer: string, rate: number) => startStream(tb, host, { port: PORT, peer, rate, seconds: SECONDS, graceMs: 1500, waitForGo: true });
      const figures: Record<string, unknown>[] = [];
      for (const [name, rates] of [
        ['both ends sending', { a: RATE, b: RATE }],
        ['initiator idle, responder sending', { a: 0, b: RATE }],
      ] as const) {
        const t0 = performance.now();
        const before = { a: await tunnel(p.a, p.b), b: await tunnel(p.b, p.a) };
        const [atA, atB] = (await streams(p.a, p.b, rates, run)) as [StreamReport, StreamReport];
        const after = { a: await tunnel(p.a, p.b), b: await tunnel(p.b, p.a) };
        const elapsedMs = performance.now() - t0;
        const sentA = rates.a * SECONDS;
        const sentB = rates.b * SECONDS;
        const rekeys = after.a.handshakes - before.a.handshakes;
        const fig = { case: name, sentA, lostAtoB: sentA - atB.unique, sentB, lostBtoA: sentB - atA.unique, rekeys, responderHandshakes: after.b.handshakes - before.b.handshakes, maxGapMsAtA: atA.maxGapMs, maxGapMsAtB: atB.maxGapMs };
        t.diagnostic(JSON.stringify(fig));
        figures.push(fig);
        assert.equal(after.a.tunnelId, before.a.tunnelId, `${name}: the same tunnel throughout (no new direction)`);
        assert.equal(after.a.path, 'hole-punched', `${name}: still direct`);
        assert.ok(rekeys >= 2, `${name}: at least two rekeys in ${SECONDS} s with keys that age out after ${REKEY_MS} ms: ${rekeys}`);
        // One handshake in flight: a keypair lives ≥ REKEY_MS, and a rekey is retried at most once before the old
        // keypair's reject time (a loaded machine may delay an answer past the retry time); a handshake per packet
        // sent would be thousands.
        const bound = Math.ceil(elapsedMs / REKEY_MS) * 2;
        assert.ok(rekeys <= bound, `${name}: one handshake in flight, not one per packet: ${rekeys} in ${Math.round(elapsedMs)} ms`);
        assert.equal(fig.lostAtoB, 0, `${name}: packets lost A → B`);
        assert.equal(fig.lostBtoA, 0, `${name}: packets lost B → A`);
      }
      console.log(JSON.stringify({ rekey: figures }));
    }),
  );
});
