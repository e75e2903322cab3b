// Issue 11 (#3, #8) on the natpair topology, with real `ntm dc` and `ntm up` processes: a boot with the clock 20 years
// ahead (libfaketime) must not lock a terminal out once the clock is put right, and a terminal whose clock is behind
// is refused as stale and logged; a revocation of an ID the DC has not seen holds when that ID comes, across a
// restart of the DC, until it is lifted; forged CONTROL frames from the Internet get no answer at all.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { withTestbed } from '../lib/testbed.js';
import { fakedClock, firstJsonLine, NTM, printId, startNtm, waitFor, withDaemons, type Daemon } from '../lib/ntm.js';
import { NODE_FLAGS } from '../../agent/src/cmd/node-flags.js';
import { loadOrCreateIdentity } from '../../agent/src/cmd/common.js';

const DC_ARGS = ['--advertise', '192.0.2.2:7100', '--pool', '198.18.1.0/24'];

/** Sends `n` forged CONTROL frames (random receiver index) to the DC from one socket and counts the answers. */
const FORGE = `const dgram = require('node:dgram');
const { randomBytes } = require('node:crypto');
const s = dgram.createSocket('udp4');
let answers = 0;
s.on('message', () => answers++);
s.bind(0, () => {
  for (let i = 0; i < 20; i++) setTimeout(() => { const f = randomBytes(48); f[0] = 0x10; s.send(f, 7100, '192.0.2.2'); s.send(Buffer.from([0x10, 0, 0, 0]), 7100, '192.0.2.2'); }, i * 50);
  setTimeout(() => { console.log(JSON.stringify({ answers })); s.close(); }, 2500);
});`;

const drops = async (dc: Daemon, reason: string): Promise<number> => ((await dc.status()).drops as Record<string, number>)[reason] ?? 0;

void describe('the DC against clock jumps, early revocations and forged frames (natpair)', () => {
  test('clock moved both ways, a revocation before the first registration, forged CONTROL frames', async (t) => {
    await withTestbed('natpair', { nat: { nata: 'eim', natb: 'eim' } }, (tb) =>
      withDaemons('ntm-test-', (line) => t.diagnostic(line), async ({ dir, started }) => {
        const dirs = { dc: join(dir, 'dc'), a: join(dir, 'a'), b: join(dir, 'b') };
        const dcId = await printId(tb, 'dc', 'dc', dirs.dc);
        // Signalling only: each is started several times, and the data plane is not what this is about.
        const upArgs = (name: string) => ['--dc', `${dcId.publicKey}@192.0.2.2:7100`, '--name', name, '--dns', '', '--set', 'terminal.dataplane=false'];
        const startDc = async (env?: Record<string, string>) => {
          const d = await startNtm(tb, 'dc', 'dc', DC_ARGS, dirs.dc, 20_000, env);
          started.push(d);
          return d;
        };
        const startUp = async (host: 'a' | 'b', env?: Record<string, string>) => {
          const d = await startNtm(tb, host, 'up', upArgs(host), dirs[host], 20_000, env);
          started.push(d);
          return d;
        };
        /** `ntm up` that must not get registered within `ms`: asserts it printed no ready line, then stops it. */
        const refused = async (host: 'a' | 'b', env?: Record<string, string>, ms = 6000) => {
          const proc = tb.spawn(host, [process.execPath, ...NODE_FLAGS.up, NTM, 'up', '--data-dir', dirs[host], ...upArgs(host)], {
            stdio: ['ignore', 'pipe', 'pipe'],
            ...(env ? { env: { ...process.env, ...env } } : {}),
          });
          let err = '';
          proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
          const exited = new Promise((r) => proc.once('exit', r));
          const ready = await firstJsonLine(proc, ms, `ntm up on ${host}`, (j) => !!j.ready).catch(() => undefined);
          proc.kill('SIGTERM');
          await exited;
          assert.equal(ready, undefined, `${host} registered: ${JSON.stringify(ready)}`);
          return err;
        };

        // 1. One boot with the clock in 2046: the DC and the terminal agree, it registers.
        let dc = await startDc(fakedClock('+20y'));
        let a = await startUp('a', fakedClock('+20y'));
        const v4 = String(a.ready.v4);
        await a.stop();
        await dc.stop();
        // The clock put right: the terminal registers again at once, with its address; the DC says what it did.
        dc = await startDc();
        a = await startUp('a');
        assert.equal(a.ready.v4, v4, 'the same virtual address');
        assert.match(dc.output(), /ahead of our clock/, 'the clamp is logged');
        assert.equal(await drops(dc, 'reg-replay'), 0);

        // 2. A terminal whose clock is 10 minutes behind is refused as stale, and that is logged; put right, it registers.
        await a.stop();
        await refused('a', fakedClock('-10m'));
        assert.ok((await drops(dc, 'reg-stale')) > 0, 'counted as stale');
        assert.match(dc.output(), /too far from ours/, 'the refusal is logged');
        a = await startUp('a');
        assert.equal(a.ready.v4, v4);

        // 3. B's ID revoked before B ever registered: refused, also after the DC restarts, until reinstated.
        const bId = (await loadOrCreateIdentity(join(dirs.b, 'terminal.key'))).idHex;
        assert.deepEqual(await dc.call({ cmd: 'revoke', id: bId }), { id: bId, revoked: true, known: false });
        const out = await refused('b');
        assert.ok((await drops(dc, 'reg-revoked')) > 0, `refused as revoked: ${out}`);
        await dc.stop();
        dc = await startDc();
        await refused('b');
        assert.ok((await drops(dc, 'reg-revoked')) > 0, 'still refused after the restart');
        await dc.call({ cmd: 'reinstate', id: bId });
        const b = await startUp('b');
        assert.match(String(b.ready.v4), /^198\.18\.1\./);

        // 4. Forged CONTROL frames from the Internet: counted, never answered.
        const before = await drops(dc, 'ctl-unknown-session');
        const r = await tb.exec('rs', [process.execPath, '-e', FORGE], { timeoutMs: 10_000 });
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(JSON.parse(r.stdout.trim()), { answers: 0 });
        await waitFor('the forged frames counted', async () => (await drops(dc, 'ctl-unknown-session')) - before >= 40, 5000);
      }),
    );
  });
});
