// Issue 11 #5 on the natpair topology, with real `ntm dc` and `ntm up` processes: a DC whose pool is full answers the
// next terminal's registration with a refusal, and `ntm up` stops at once with the reason and exit 75 (it waited for
// its deadline and retried forever before); an address lease of a terminal gone for dc.expireAfterS of the DC's
// service time ends, across a kill -9 of the DC, and the address serves another terminal; the one that left gets an
// address again when there is one; live terminals (heard through their keep-alives) keep theirs.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { withTestbed } from '../lib/testbed.js';
import { NTM, printId, startNtm, waitFor, withDaemons, type Daemon } from '../lib/ntm.js';
import { NODE_FLAGS } from '../../agent/src/cmd/node-flags.js';

/** A /30: one terminal address (.2); keep-alives every second; leases of 5 s. */
const DC_ARGS = ['--advertise', '192.0.2.2:7100', '--pool', '198.18.1.0/30', '--keepalive', '1', '--set', 'dc.expireAfterS=5'];

void describe('a DC whose address pool is full, and leases that expire (natpair)', () => {
  test('the next terminal is refused at once (ntm up exits 75 saying why); a lease gone for long returns its address, across a kill -9', async (t) => {
    await withTestbed('natpair', { nat: { nata: 'eim', natb: 'eim' } }, (tb) =>
      withDaemons('ntm-test-', (line) => t.diagnostic(line), async ({ dir, started }) => {
        const dirs = { dc: join(dir, 'dc'), a: join(dir, 'a'), b: join(dir, 'b') };
        const dcId = await printId(tb, 'dc', 'dc', dirs.dc);
        const upArgs = (name: string) => ['--dc', `${dcId.publicKey}@192.0.2.2:7100`, '--name', name, '--dns', '', '--set', 'terminal.dataplane=false'];
        const startDc = async () => {
          const d = await startNtm(tb, 'dc', 'dc', DC_ARGS, dirs.dc);
          started.push(d);
          return d;
        };
        const startUp = async (host: 'a' | 'b') => {
          const d = await startNtm(tb, host, 'up', upArgs(host), dirs[host]);
          started.push(d);
          return d;
        };
        /** `ntm up` that the DC refuses: its exit code and output (a 20 s limit: on main it never ends). */
        const refusedUp = async (host: 'a' | 'b') => {
          return tb.exec(host, [process.execPath, ...NODE_FLAGS.up, NTM, 'up', '--data-dir', dirs[host], ...upArgs(host)], { timeoutMs: 20_000 });
        };
        const terminals = async (dc: Daemon): Promise<number> => (await dc.status()).terminals as number;

        let dc = await startDc();
        let a = await startUp('a');
        assert.equal(a.ready.v4, '198.18.1.2', 'the only address of the pool');

        // 1. The pool is full: B is told so, and `ntm up` ends with the reason and EX_TEMPFAIL, without waiting.
        const full = await refusedUp('b');
        assert.equal(full.code, 75, `exit code; stderr: ${full.stderr}`);
        assert.match(full.stderr, /ntm: the DC refused the registration: its address pool is full \(1 addresses, all in use\)/);
        assert.equal(full.stdout, '', 'no ready line');
        // From its first request to the refusal: one round trip (its first retransmission would go at 500 ms, its
        // deadline is 10 s). Timed by its own log lines: starting a process on this loaded machine takes seconds.
        const at = (msg: string) => Date.parse(String(full.stderr.split('\n').map((l) => (l.startsWith('{') ? (JSON.parse(l) as { t: string; msg: string }) : undefined)).find((j) => j?.msg === msg)?.t));
        const ms = at('registration refused by the DC') - at('terminal starting');
        assert.ok(ms >= 0 && ms < 500, `refused ${ms} ms after it started registering: ${full.stderr}`);
        assert.equal(((await dc.status()).counts as Record<string, number>)['reg-refused-pool-full'], 1);

        // 2. A live terminal keeps its lease: A is heard through its keep-alives (every second) for longer than 5 s.
        await new Promise((r) => setTimeout(r, 7000));
        assert.equal(await terminals(dc), 1);
        assert.equal(((await dc.status()).counts as Record<string, number>)['leases-expired'] ?? 0, 0, 'nothing expired while A was there');

        // 3. A leaves; the DC is killed (-9) and restarted: the lease survived, then ends after 5 s of service time.
        await a.stop();
        await dc.stop('SIGKILL');
        dc = await startDc();
        assert.equal(await terminals(dc), 1, "A's lease survived the kill -9");
        await waitFor('A\'s lease expired', async () => (await terminals(dc)) === 0, 20_000, 250);
        assert.match(dc.output(), /address leases expired: the addresses return to the pool/);

        // 4. The address serves B now; A, back, is refused (the pool holds one) until B's lease ends too, then A gets
        //    an address again.
        const b = await startUp('b');
        assert.equal(b.ready.v4, '198.18.1.2');
        const again = await refusedUp('a');
        assert.equal(again.code, 75, again.stderr);
        await b.stop();
        await waitFor("B's lease expired", async () => (await terminals(dc)) === 0, 20_000, 250);
        a = await startUp('a');
        assert.equal(a.ready.v4, '198.18.1.2', 'A registered again as a newcomer');
      }),
    );
  });
});
