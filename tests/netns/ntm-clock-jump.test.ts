// Issue 11, item 3 (the tunnel's part): a terminal's wall clock jumps back a day, forward ten years, then back to
// today, while its busy tunnel rekeys every 2 s. The responder refuses a TUNNEL_REQUEST whose TAI64N timestamp is not
// later than the last it accepted (anti-replay, docs/protocol.md §3.4), so requests stamped with a wall clock that
// went back would be refused until the tunnel died. The initiator's handshake clock only goes up
// (terminal/handshake-clock.ts): the tunnel keeps rekeying, nothing is lost, nothing is refused.
// The clock is moved with libfaketime (Debian's faketime) through a file it rereads; the monotonic clock, which
// drives the rekey timers, is left alone, as the kernel does when the wall clock is set.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withTestbed } from '../lib/testbed.js';
import { libfaketime, startNatpair, upTunnel, withDaemons, type TunnelStatus } from '../lib/ntm.js';
import { HANDSHAKE_CLOCK_FILE } from '../../agent/src/terminal/handshake-clock.js';
import { streamPair } from '../lib/probes.js';

const PORT = 9320;
const SECONDS = 16;
const RATE = 500;

void test('a terminal whose wall clock jumps back, forward and back keeps its busy tunnel rekeying, losing nothing', async (t: TestContext) => {
  await withTestbed('natpair', { nat: { nata: 'eim', natb: 'eim' } }, (tb) =>
    withDaemons('ntm-clock-', (line) => t.diagnostic(line), async ({ dir, started }) => {
      // Both terminals run under libfaketime, each with its own offset file; only the initiator's clock moves.
      const offsets = { a: join(dir, 'faketime-a'), b: join(dir, 'faketime-b') };
      const env = (file: string): Record<string, string> => ({ LD_PRELOAD: libfaketime(), FAKETIME_TIMESTAMP_FILE: file, FAKETIME_CACHE_DURATION: '1', FAKETIME_DONT_FAKE_MONOTONIC: '1' });
      for (const f of Object.values(offsets)) writeFileSync(f, '+0\n');
      const p = await startNatpair(tb, dir, started, {
        terminalArgs: ['--set', 'terminal.rekeyAfterMs=2000', '--set', 'terminal.rejectAfterMs=6000'],
        env: { a: env(offsets.a), b: env(offsets.b) },
      });
      const c = (await p.a.call({ cmd: 'connect', target: 'b.ntm' }, 30_000)) as { tunnel: TunnelStatus };
      assert.equal(c.tunnel.path, 'hole-punched');
      const [ini, res] = (await upTunnel(p.a, p.b)).initiator ? [p.a, p.b] : [p.b, p.a];
      const offset = offsets[ini.host as 'a' | 'b'];
      const before = await upTunnel(ini, res);
      // The initiator's clock: a day back at 4 s, ten years ahead at 8 s, today again at 12 s (NTP correcting it).
      const jumps = ['-1d', '+10y', '+0'].map((o, i) => setTimeout(() => writeFileSync(offset, `${o}\n`), 4000 * (i + 1)));
      let atIni, atRes;
      try {
        [atIni, atRes] = await streamPair(
          tb,
          [
            { host: ini.host, peer: `${String(res.ready.v4)}:${PORT}`, rate: RATE },
            { host: res.host, peer: `${String(ini.ready.v4)}:${PORT}`, rate: RATE },
          ],
          { port: PORT, seconds: SECONDS, graceMs: 1500 },
        );
      } finally {
        for (const j of jumps) clearTimeout(j);
      }
      const after = await upTunnel(ini, res);
      const stored = JSON.parse(readFileSync(join(p.dirs[ini.host as 'a' | 'b'], HANDSHAKE_CLOCK_FILE), 'utf8')) as { ceilingMs: number };
      const drops = (await res.status()).drops as Record<string, number>;
      const fig = {
        initiator: ini.host,
        rekeys: after.handshakes - before.handshakes,
        lostToResponder: RATE * SECONDS - atRes.unique,
        lostToInitiator: RATE * SECONDS - atIni.unique,
        refusedByResponder: drops['handshake-stale'] ?? 0,
        storedCeilingYear: new Date(stored.ceilingMs).getUTCFullYear(),
      };
      t.diagnostic(JSON.stringify(fig));
      assert.ok(fig.storedCeilingYear >= 2036, `the clock's jump ahead happened and the stored ceiling followed it: ${fig.storedCeilingYear}`);
      assert.equal(fig.refusedByResponder, 0, 'the responder refused none of the requests as stale');
      assert.equal(after.tunnelId, before.tunnelId, 'the same tunnel throughout (it never died for a new direction)');
      assert.ok(fig.rekeys >= 5, `rekeys went on through the jumps: ${fig.rekeys}`);
      assert.equal(fig.lostToResponder, 0, 'packets lost initiator → responder');
      assert.equal(fig.lostToInitiator, 0, 'packets lost responder → initiator');
      assert.match(ini.output(), /wall clock went back/, 'the initiator logged that its clock went back');
    }),
  );
});
