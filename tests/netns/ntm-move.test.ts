// Issue 3, "Done when" #3 on the household topology with standalone roles: a DC, an RS and a terminal ("home") on the
// vCPE, and the phone's terminal. A TCP transfer runs between the two virtual addresses while the phone moves from
// the Wi-Fi hotspot (endpoint-independent NAT) to LTE (carrier-grade symmetric NAT) and back. The transfer must
// complete with exactly the bytes sent; the test prints the interruption as the terminal measures it (from noticing
// the move until an authentic packet arrived on the new path) and as the application saw it (largest gap between
// received bytes).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { withTestbed } from '../lib/testbed.js';
import { TCP_SINK, TCP_SOURCE, expectedTransfer, firstJsonLine, printId, startNtm, tunnelTo, waitFor, withDaemons, type SinkReport } from '../lib/ntm.js';

const TOTAL = 12 * 1024 * 1024;
const RATE = 1024 * 1024;

void describe('NTMobile mobility on the household topology', () => {
  test('a TCP transfer between virtual addresses survives the phone moving Wi-Fi → LTE → Wi-Fi', async (t) => {
    await withTestbed('household', {}, (tb) =>
      withDaemons('ntm-test-', (line) => t.diagnostic(line), async ({ dir: root, started }) => {
        const dir = (n: string) => join(root, n);
        const dcId = await printId(tb, 'vcpe', 'dc', dir('dc'));
        const rsId = await printId(tb, 'vcpe', 'rs', dir('rs'));
        const dc = await startNtm(
          tb,
          'vcpe',
          'dc',
          ['--advertise', '198.51.100.2:7100', '--relay', `${rsId.id}@198.51.100.2:7200`, '--relay', `${rsId.id}@[2001:db8:a::2]:7200`, '--pool', '198.18.1.0/24'],
          dir('dc'),
        );
        started.push(dc);
        started.push(
          await startNtm(tb, 'vcpe', 'rs', ['--report-to', `${dcId.id}@198.51.100.2:7100`, '--advertise', '198.51.100.2:7200', '--advertise', '[2001:db8:a::2]:7200'], dir('rs')),
        );
        const dcRef = `${dcId.publicKey}@198.51.100.2:7100`;
        const home = await startNtm(tb, 'vcpe', 'up', ['--dc', dcRef, '--name', 'home', '--dns', ''], dir('home'));
        started.push(home);
        const phone = await startNtm(tb, 'phone', 'up', ['--dc', dcRef, '--name', 'phone', '--dns', ''], dir('phone'));
        started.push(phone);
        assert.equal(phone.ready.behindNat, true);
        const homeV4 = String(home.ready.v4);
        const phoneV4 = String(phone.ready.v4);

        // The transfer: home sends, the phone receives (a download, as a phone mostly does).
        const source = tb.spawn('vcpe', [process.execPath, '-e', TCP_SOURCE, '9000', String(TOTAL), String(RATE)]);
        await firstJsonLine(source, 10_000, 'tcp source');
        const sink = tb.spawn('phone', [process.execPath, '-e', TCP_SINK, homeV4, '9000']);
        const report = firstJsonLine<SinkReport>(sink, 60_000, 'tcp sink');
        report.catch(() => undefined);

        const homeId = String(home.ready.id);
        const phoneId = String(phone.ready.id);
        await waitFor('the tunnel carries the transfer', async () => ((await tunnelTo(phone, homeId))?.rxBytes ?? 0) > 1_000_000, 15_000, 100);
        const before = (await tunnelTo(home, phoneId))!;
        assert.match(before.endpoint ?? '', /^192\.0\.2\.2:/, 'home reaches the phone through the Wi-Fi NAT');

        const moveToLte = Date.now();
        await tb.move('phone', 'lte');
        await waitFor('home follows the phone to the LTE NAT', async () => /^192\.0\.2\.66:/.test((await tunnelTo(home, phoneId))?.endpoint ?? ''), 10_000, 20);
        await new Promise((r) => setTimeout(r, 3000));
        const moveToWifi = Date.now();
        await tb.move('phone', 'wifi');
        await waitFor('home follows the phone back to Wi-Fi', async () => /^192\.0\.2\.2:/.test((await tunnelTo(home, phoneId))?.endpoint ?? ''), 10_000, 20);

        const r = await report;
        assert.equal(r.error, undefined, JSON.stringify(r));
        assert.deepEqual({ bytes: r.bytes, sha256: r.sha256 }, expectedTransfer(TOTAL), 'every byte arrived, in order, unchanged');

        const st = await phone.status();
        const interruptions = st.interruptionsMs as number[];
        const after = (await tunnelTo(phone, homeId))!;
        assert.equal(after.tunnelId, before.tunnelId, 'the same tunnel moved (no new handshake through the DC)');
        assert.equal(after.path, 'direct');
        const node = (st.nodes as Array<{ v4: string; observed: string }>)[0]!;
        assert.equal(node.v4, phoneV4, 'the virtual address never changed');
        assert.equal(interruptions.length, 2, `one interruption per move: ${JSON.stringify(interruptions)}`);
        for (const ms of interruptions) assert.ok(ms < 3000, `interruption ${ms} ms`);
        assert.ok(r.maxGapMs < 5000, `largest application gap ${r.maxGapMs} ms`);
        // The application's view of each move: its largest gap in the 3 s after the move began.
        const gapAfter = (at: number) => Math.max(0, ...r.gaps.filter(([end, ms]) => end > at && end - ms < at + 3000).map(([, ms]) => ms));
        const figure = {
          transfer: { bytes: r.bytes, seconds: Math.round(r.ms / 100) / 10, rateBytesPerS: RATE },
          terminalInterruptionsMs: { toLte: interruptions[0], toWifi: interruptions[1] },
          applicationGapMs: { toLte: gapAfter(moveToLte), toWifi: gapAfter(moveToWifi), largestOverall: r.maxGapMs },
        };
        t.diagnostic(JSON.stringify(figure));
        console.log(JSON.stringify(figure));
        // The terminals' own account of the moves (for when a figure looks odd).
        for (const d of [phone, home]) for (const l of d.output().split('\n')) if (/address changed|tunnel moved|re-register|location/.test(l)) t.diagnostic(`${d.host}: ${l}`);
        source.kill();
        sink.kill();
      }),
    );
  });
});
