// Issue 13 part 3, the RS half of "RSs that announce themselves to their DC (through the chain when the EVM ledger is
// used)" (paper §3.1), on real processes in the natpair topology with a real local chain (anvil in the RS's host):
// `ntm dc` on the EVM ledger with no --relay and no --accept-relay, and `ntm rs` given only the chain and the DC's ID
// (no --report-to: it finds the DC's address in the DC's record on the chain). The RS announces itself on the
// contract; the DC learns it from the chain, pings it, and directs the two terminals (behind symmetric NATs: no direct
// path) through it; a TCP transfer over their virtual addresses goes through the RS intact. A SIGTERM to the RS
// withdraws it on the chain first, and the DC forgets it: it offers it no more.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { withTestbed } from '../lib/testbed.js';
import { TCP_SINK, TCP_SOURCE, expectedTransfer, firstJsonLine, printId, startNtm, tunnelTo, waitFor, withDaemons, type Daemon, type SinkReport } from '../lib/ntm.js';
import { ledgerArgs, readChain, startChainIn, stopChain, type Chain } from '../lib/testbed-chain.js';

const TCP_TOTAL = 1024 * 1024;
const TCP_RATE = 512 * 1024;

interface RelayRow {
  id: string;
  source: string;
  v4: string | null;
  v6: string | null;
  load: number | null;
  dcRttMs: number | null;
}
const relaysOf = async (dc: Daemon): Promise<RelayRow[]> => (await dc.status()).relays as RelayRow[];
const choicesOf = async (dc: Daemon): Promise<unknown[]> => (await dc.status()).relayChoices as unknown[];
const relayedBytes = async (rs: Daemon): Promise<number> => ((await rs.status()).counts as Record<string, number>)['relayed-bytes'] ?? 0;

void describe('an RS announces itself to its DC through the chain (issue 13 part 3, paper §3.1)', () => {
  test('ntm dc on the EVM ledger, no --accept-relay: it learns the RS from the chain, relays a tunnel through it, and forgets it once it withdraws at SIGTERM', async (t) => {
    await withTestbed('natpair', { nat: { nata: 'symmetric', natb: 'symmetric' } }, async (tb) => {
      let chain: Chain | undefined;
      try {
        await withDaemons('ntm-rsc-', (l) => t.diagnostic(l), async ({ dir, started }) => {
          const dcId = await printId(tb, 'dc', 'dc', join(dir, 'dc'));
          const rsId = await printId(tb, 'rs', 'rs', join(dir, 'rs'));
          // Both accounts pay their own gas: the DC's for its records and Node Transactions, the RS's for its announcement.
          chain = await startChainIn(tb, 'rs', '192.0.2.66', [dcId.id, rsId.id]);
          const dc = await startNtm(tb, 'dc', 'dc', ['--advertise', '192.0.2.2:7100', '--pool', '198.18.1.0/24', '--operator-listen', '', ...ledgerArgs(chain)], join(dir, 'dc'), 60_000);
          started.push(dc);
          assert.deepEqual(await relaysOf(dc), [], 'the DC was given no RS');
          const rsArgs = ['--advertise', '192.0.2.66:7200', '--advertise', '[2001:db8:2::2]:7200', '--metrics-listen', '', '--dc', dcId.id, ...ledgerArgs(chain)];
          const rs = await startNtm(tb, 'rs', 'rs', rsArgs, join(dir, 'rs'), 60_000);
          started.push(rs);
          const startedAt = Date.now();

          const learnt = await waitFor(
            'the DC has the RS from the chain, its load report and its RTT',
            async () => {
              const [r] = await relaysOf(dc);
              return r && r.load !== null && r.dcRttMs !== null ? r : undefined;
            },
            30_000,
            100,
          );
          const learntMs = Date.now() - startedAt;
          assert.equal(learnt.id, rsId.id);
          assert.equal(learnt.source, 'ledger', 'taken because the chain lists it for this DC, not from configuration');
          assert.deepEqual([learnt.v4, learnt.v6], ['192.0.2.66:7200', '[2001:db8:2::2]:7200'], 'at the addresses of its signed record');
          assert.match(rs.output(), /the DC's address from its record on the chain/);
          assert.match(dc.output(), /relay server found in the ledger/);
          const onChain = await readChain(tb, 'rs', chain);
          assert.deepEqual(onChain.relays, [[rsId.id, dcId.id]]);

          const [a, b] = await Promise.all(
            (['a', 'b'] as const).map((h) =>
              startNtm(tb, h, 'up', ['--dc', `${dcId.publicKey}@192.0.2.2:7100`, '--name', h, '--dns', ''], join(dir, h), 60_000).then((d) => (started.push(d), d)),
            ),
          );
          const conn = (await a!.call({ cmd: 'connect', target: 'b.ntm' }, 30_000)) as { tunnel: { path: string; state: string; endpoint: string | null } };
          assert.equal(conn.tunnel.state, 'up');
          assert.equal(conn.tunnel.path, 'relayed', 'symmetric NATs: relayed');
          await waitFor('both ends relay through the chain\'s RS', async () => {
            const [ta, tbv] = [await tunnelTo(a!, String(b!.ready.id)), await tunnelTo(b!, String(a!.ready.id))];
            return ta?.endpoint === '192.0.2.66:7200' && tbv?.endpoint === '192.0.2.66:7200';
          }, 15_000);

          const source = tb.spawn('b', [process.execPath, '-e', TCP_SOURCE, '9000', String(TCP_TOTAL), String(TCP_RATE)]);
          let sink: ReturnType<typeof tb.spawn> | undefined;
          try {
            await firstJsonLine(source, 10_000, 'tcp source');
            sink = tb.spawn('a', [process.execPath, '-e', TCP_SINK, String(b!.ready.v4), '9000']);
            const r = await firstJsonLine<SinkReport>(sink, 60_000, 'tcp sink');
            assert.equal(r.error, undefined, JSON.stringify(r));
            assert.deepEqual({ bytes: r.bytes, sha256: r.sha256 }, expectedTransfer(TCP_TOTAL), 'every TCP byte arrived, in order, unchanged');
          } finally {
            source.kill();
            sink?.kill();
          }
          const relayed = await relayedBytes(rs);
          assert.ok(relayed > TCP_TOTAL, `the RS relayed the transfer (${relayed} bytes)`);
          const choices = (await choicesOf(dc)).length;
          assert.ok(choices >= 1, 'the DC chose the RS for the route');

          // A clean stop withdraws the announcement before the RS closes: the DC forgets it from the chain's event.
          const stoppedAt = Date.now();
          await rs.stop('SIGTERM');
          assert.match(rs.output(), /withdrawn from the chain/);
          await waitFor('the DC forgot the withdrawn RS', async () => (await relaysOf(dc)).length === 0, 10_000, 100);
          const forgotMs = Date.now() - stoppedAt;
          assert.match(dc.output(), /relay server withdrawn on the ledger: forgotten/);
          const after = await readChain(tb, 'rs', chain);
          assert.deepEqual(after.relays, [], 'the chain lists no RS');
          assert.deepEqual(after.relayEvents, [
            ['announced', rsId.id, dcId.id],
            ['withdrawn', rsId.id, dcId.id],
          ]);
          // It is offered no more: a new direction between the same ends gets no relay choice.
          await a!.call({ cmd: 'connect', target: 'b.ntm', fresh: true }, 10_000).catch(() => undefined);
          assert.equal((await choicesOf(dc)).length, choices, 'no route was directed through the withdrawn RS');
          const figure = { case: 'rs-on-chain', learntMs, relayedBytes: relayed, forgotAfterSigtermMs: forgotMs };
          t.diagnostic(JSON.stringify(figure));
          console.log(JSON.stringify(figure));
        });
      } finally {
        await stopChain(chain);
      }
    });
  });
});
