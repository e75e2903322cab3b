// Issue 11, "Bad links": the Internet core's link emulator (scripts/netns/emulator.ts) loses, duplicates and
// reorders packets on every path of natpair — terminal to terminal, to the DC and to the RS — and still the
// terminals register, the tunnel comes up (hole-punched between endpoint-independent NATs, relayed between symmetric
// ones) and a TCP transfer through it arrives with identical bytes (SHA-256 of the stream). Duplicates show as the
// receiving terminal's data-replay drops (its anti-replay window, RFC 6479), never as doubled bytes.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { withTestbed } from '../lib/testbed.js';
import { TCP_SINK, TCP_SOURCE, expectedTransfer, firstJsonLine, startNatpair, upTunnel, withDaemons, type TunnelStatus } from '../lib/ntm.js';
import type { Impairment } from '../../scripts/netns/index.js';

const TOTAL = 2 * 1024 * 1024;
const RATE = 512 * 1024;
/** 3 % loss, 3 % duplicates, reordering by up to 8 ms of jitter, on every pair of sites. */
const BAD: Impairment = { loss: 0.03, duplicate: 0.03, jitterMs: 8, reorder: true };
const PAIRS = ['a-b', 'a-dc', 'b-dc', 'a-rs', 'b-rs'];

async function badLinks(t: TestContext, kind: 'eim' | 'symmetric', path: string): Promise<void> {
  const impair = Object.fromEntries(PAIRS.map((p) => [p, BAD]));
  await withTestbed('natpair', { nat: { nata: kind, natb: kind }, impair }, (tb) =>
    withDaemons('ntm-bad-', (line) => t.diagnostic(line), async ({ dir, started }) => {
      const p = await startNatpair(tb, dir, started);
      const c = (await p.a.call({ cmd: 'connect', target: 'b.ntm' }, 30_000)) as { tunnel: TunnelStatus };
      // Between endpoint-independent NATs punching usually works through the loss; when enough punches are lost
      // within the punch timeout the terminals fall back to the RS, which is also a working tunnel.
      assert.ok(c.tunnel.path === path || c.tunnel.path === 'relayed', `the tunnel came up (${c.tunnel.path})`);
      const source = tb.spawn('b', [process.execPath, '-e', TCP_SOURCE, '9000', String(TOTAL), String(RATE)]);
      try {
        await firstJsonLine(source, 10_000, 'tcp source');
        const sink = tb.spawn('a', [process.execPath, '-e', TCP_SINK, String(p.b.ready.v4), '9000']);
        const got = await firstJsonLine<{ bytes: number; sha256: string; ms: number; error?: string }>(sink, 90_000, 'tcp sink');
        const tun = await upTunnel(p.a, p.b);
        const drops = (await p.a.status()).drops as Record<string, number>;
        const fig = { planned: path, path: tun.path, bytes: got.bytes, ms: got.ms, tunnelRx: tun.rxPackets, drops };
        t.diagnostic(JSON.stringify(fig));
        assert.ok((drops['data-replay'] ?? 0) > 0, 'the link duplicated packets and the receiving terminal dropped the copies');
        assert.equal(got.error, undefined, `the transfer ended cleanly: ${got.error}`);
        assert.deepEqual({ bytes: got.bytes, sha256: got.sha256 }, expectedTransfer(TOTAL), 'identical bytes arrived');
      } finally {
        source.kill();
      }
    }),
  );
}

void describe('tunnels over links that lose, duplicate and reorder packets', () => {
  test('endpoint-independent NATs (hole-punched): a transfer arrives intact', (t) => badLinks(t, 'eim', 'hole-punched'));
  test('relayed (symmetric NATs): a transfer arrives intact', (t) => badLinks(t, 'symmetric', 'relayed'));
});
