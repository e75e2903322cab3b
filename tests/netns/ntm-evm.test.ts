// Issue 12 on real processes in network namespaces, with a real local chain (anvil, started inside a testbed host by
// the project's own scripts/chain.ts) and the NtmRegistry contract on it:
//  - "Done when" 1: the paper topology with the EVM ledger and no --peer: DC_MN finds DC_CN in the contract's
//    directory only, and MN reaches CN through the RS as in ntm-paper;
//  - "Done when" 4: a terminal revoked at DC_CN (its operator's revocation, no signature) is refused a direction by
//    DC_MN within 5 s, with the two DCs cut off from each other, so the refusal can only come from the ledger;
//  - "Done when" 3: a kill -9 of the DC in a burst of 1,000 first-time registrations, and the chain stopped for 60 s
//    in the middle of one: every registration the DC answered is on the chain exactly once (read with viem from the
//    chain itself, tests/lib/chain-read.ts).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import { withTestbed } from '../lib/testbed.js';
import { startBurst } from '../lib/dc-burst.js';
import { printId, startNtm, startPaper, waitFor, withDaemons, type Daemon } from '../lib/ntm.js';
import type { ChainView } from '../lib/chain-read.js';
import { ledgerArgs, readChain, startChainIn, stopChain, type Chain } from '../lib/testbed-chain.js';
import type { Testbed } from '../../scripts/netns/index.js';

const require = createRequire(import.meta.url);
const Database = require('better-sqlite3') as typeof BetterSqlite3;

interface DcStatus {
  terminals: number;
  peers: Array<{ id: string; known: boolean; source: string }>;
  relays: Array<{ load: number | null }>;
  counts: Record<string, number>;
  registry: { backlog: { pending: number; refused: number; refusedBy: Record<string, number> } };
}
const dcStatus = async (d: Daemon): Promise<DcStatus> => (await d.status()) as unknown as DcStatus;

void describe('the EVM ledger on the paper topology (issue 12)', () => {
  test('no --peer: DC_MN finds DC_CN in the contract, MN reaches CN through the RS; a revocation at DC_CN is refused by DC_MN from the ledger within 5 s', async () => {
    await withTestbed('paper', { column: 'today' }, async (tb) => {
      let chain: Chain | undefined;
      try {
        await withDaemons('ntm-evm-paper-', (l) => console.error(l), async ({ dir, started }) => {
          // The chain runs in the RS's host (Japan, beside DC_MN; 101 ms from DC_CN): the DCs know its URL only.
          const run = await startPaper(tb, dir, {
            ledger: async (ids) => {
              chain = await startChainIn(tb, 'rs', '192.0.2.66', [ids.dcmn.id, ids.dccn.id]);
              return ledgerArgs(chain);
            },
          });
          const { dcmn, dccn, rs, mn, cn, ids } = run;
          started.push(dcmn, dccn, rs, mn, cn);
          assert.ok(chain);
          const mnView = await dcStatus(dcmn);
          assert.deepEqual(
            mnView.peers.map((p) => [p.id, p.source]),
            [[ids.dccn!.id, 'ledger']],
            'DC_MN was given no --peer: its one peer DC came from the contract',
          );
          assert.match(dcmn.output(), new RegExp(`peer dc found in the ledger.*${ids.dccn!.id}`));
          const cnId = String(cn.ready.id);
          assert.match(String(mn.ready.v4), /^198\.18\.1\./);
          assert.match(String(cn.ready.v4), /^198\.18\.2\./);
          // DC_MN learns which DC manages CN from the chain: wait until CN's Node Transaction is there.
          await waitFor('CN on the chain', async () => (await readChain(tb, 'rs', chain!)).nodeTransactions[cnId] === 1, 20_000, 500);

          const conn = (await mn.call({ cmd: 'connect', target: cnId }, 20_000)) as { tunnel: { path: string; state: string } };
          assert.equal(conn.tunnel.state, 'up');
          assert.equal(conn.tunnel.path, 'relayed', 'IPv6-only MN and IPv4-only CN meet at the dual-stack RS');
          const www = join(dir, 'www');
          mkdirSync(www);
          const body = `evm ledger ${Date.now()}\n`.repeat(200);
          writeFileSync(join(www, 'file.txt'), body);
          const server = tb.spawn('cn', ['python3', '-m', 'http.server', '--bind', '::', '--directory', www, '8080'], { stdio: 'ignore' });
          try {
            await waitFor('http server on CN', async () => (await tb.exec('cn', ['python3', '-c', 'import socket; socket.create_connection(("127.0.0.1", 8080), 1)'])).code === 0);
            const get = await tb.exec('mn', ['curl', '-sS', '--max-time', '20', `http://${String(cn.ready.v4)}:8080/file.txt`], { timeoutMs: 25_000 });
            assert.equal(get.code, 0, get.stderr);
            assert.equal(get.stdout, body, 'HTTP from MN to CN over their virtual addresses');
          } finally {
            server.kill();
          }
          assert.ok(((await rs.status()).counts as Record<string, number>).relayed! > 5, 'the RS relayed the exchange');

          // Done when 4. The DCs can no longer talk to each other (both directions blackholed): whatever DC_MN says
          // about CN now, it has from the chain. The revocation is DC_CN's operator's: no signature, no Node
          // Transaction to announce; it reaches the chain as revokeByDc.
          for (const [host, to4, to6] of [
            ['dcmn', '198.51.100.2/32', '2001:db8:3::2/128'],
            ['dccn', '192.0.2.2/32', '2001:db8:1::2/128'],
          ] as const) {
            for (const args of [['ip', 'route', 'add', 'blackhole', to4], ['ip', '-6', 'route', 'add', 'blackhole', to6]]) {
              const r = await tb.exec(host, args);
              assert.equal(r.code, 0, r.stderr);
            }
          }
          const revokedAt = Date.now();
          const rv = (await dccn.call({ cmd: 'revoke', id: cnId })) as { revoked: boolean; known: boolean };
          assert.deepEqual(rv, { id: cnId, revoked: true, known: true });
          await new Promise((r) => setTimeout(r, Math.max(0, revokedAt + 5000 - Date.now())));
          const askedAt = Date.now();
          const refusal = await mn.call({ cmd: 'connect', target: cnId, fresh: true }, 20_000).then(
            (v) => ({ ok: true as const, v }),
            (e: Error) => ({ ok: false as const, message: e.message }),
          );
          const answeredMs = Date.now() - askedAt;
          assert.equal(refusal.ok, false, `5 s after the revocation DC_MN still routed to CN: ${JSON.stringify(refusal)}`);
          assert.match(refusal.ok ? '' : refusal.message, /revoked/i);
          // Asking DC_CN (blackholed) would have taken the peer request's full 8 s and ended "unreachable".
          assert.ok(answeredMs < 3000, `the refusal came from DC_MN's own ledger view (${answeredMs} ms)`);
          const after = await dcStatus(dcmn);
          assert.ok((after.counts['direction-revoked-by-ledger'] ?? 0) >= 1, JSON.stringify(after.counts));
          const onChain = await readChain(tb, 'rs', chain, undefined);
          assert.deepEqual(onChain.revokedByDc, [[cnId, ids.dccn!.id]], 'the operator revocation is on the chain, by DC_CN');
          // A revocation on a shared ledger is sticky: DC_CN refuses to lift it (README, docs/ledger.md).
          await assert.rejects(dccn.call({ cmd: 'reinstate', id: cnId }), /revoked on the ledger/);
          for (const d of [after, await dcStatus(dccn)]) {
            assert.equal(d.registry.backlog.pending, 0, 'nothing left in the outbox');
            assert.equal(d.registry.backlog.refused, 0, 'the contract refused nothing');
          }
        });
      } finally {
        await stopChain(chain);
      }
    });
  });
});

/** The DC of a burst test: `ntm dc` on the natpair's DC host, the chain on the RS host (2 ms away), 1 s blocks. */
async function burstSetup(tb: Testbed, dir: string): Promise<{ chain: Chain; dcId: { id: string; publicKey: string }; args: string[] }> {
  const dcId = await printId(tb, 'dc', 'dc', join(dir, 'dc'));
  // 1 s blocks, as a real chain has: the outbox then always holds what the DC answered in the last second.
  const chain = await startChainIn(tb, 'rs', '192.0.2.66', [dcId.id], 1);
  const args = [
    '--advertise', '192.0.2.2:7100', '--pool', '198.18.16.0/20', '--operator-listen', '',
    // The generator plays every terminal from one loopback address: the per-source limit on newcomers is lifted.
    '--set', 'dc.newPerSourceBurst=1000000', '--set', 'dc.newPerSourcePerMin=1000000',
    ...ledgerArgs(chain),
  ];
  return { chain, dcId, args };
}

/** Every ID in `answered` has exactly one NodeTransaction event, and the contract says this DC manages it. */
function assertOnChainOnce(view: ChainView, answered: string[], dcId: string): void {
  const missing = answered.filter((id) => view.nodeTransactions[id] === undefined);
  const twice = answered.filter((id) => (view.nodeTransactions[id] ?? 0) > 1);
  const elsewhere = answered.filter((id) => view.terminals[id]?.dc !== dcId);
  assert.deepEqual(missing, [], `answered but not on the chain: ${missing.length} of ${answered.length}`);
  assert.deepEqual(twice, [], 'answered and on the chain more than once');
  assert.deepEqual(elsewhere, [], 'on the chain with another managing DC');
}

/** The DC's outbox rows in its database (read beside the DC, as after a crash). */
function outboxRows(dataDir: string): number {
  const db = new Database(join(dataDir, 'dc.db'), { readonly: true });
  try {
    return (db.prepare('SELECT COUNT(*) AS n FROM evm_outbox').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

void describe('nothing the DC answered is lost on the way to the chain (issue 12, done when 3)', () => {
  test('kill -9 of the DC in a burst of 1,000 first-time registrations: after a restart every answered one is on the chain once', async () => {
    await withTestbed('natpair', {}, async (tb) => {
      let chain: Chain | undefined;
      try {
        await withDaemons('ntm-evm-kill-', (l) => console.error(l), async ({ dir, started }) => {
          const setup = await burstSetup(tb, dir);
          chain = setup.chain;
          const dcDir = join(dir, 'dc');
          const dc = await startNtm(tb, 'dc', 'dc', setup.args, dcDir, 60_000);
          started.push(dc);
          const answeredFile = join(dir, 'answered.json');
          const burst = startBurst(tb, setup.dcId, answeredFile);
          await waitFor('300 registrations answered', async () => (await dcStatus(dc)).terminals >= 300, 60_000, 20);
          await dc.stop('SIGKILL');
          // What the DC had acknowledged but not yet put on the chain when it died, read beside it as a restart would.
          const unsent = outboxRows(dcDir);
          const db = new Database(join(dcDir, 'dc.db'), { readonly: true });
          const atKill = (db.prepare('SELECT COUNT(*) AS n FROM dc_terminals').get() as { n: number }).n;
          db.close();
          assert.ok(atKill < 1000, `the kill came in the middle of the burst (${atKill} registered)`);
          assert.ok(unsent > 0, 'the DC died with acknowledged registrations not yet on the chain');
          // Restarted at once, as its supervisor would: the burst goes on against the new process (terminals whose
          // request went to the dead one are simply not answered; the generator does not retry them).
          const again = await startNtm(tb, 'dc', 'dc', setup.args, dcDir, 60_000);
          started.push(again);
          const result = await burst.done;
          const answered = JSON.parse(readFileSync(answeredFile, 'utf8')) as string[];
          console.error(`# kill -9 at ${atKill} registered, ${unsent} of them not yet on the chain; ${answered.length} answered in all, ${result.lost} unanswered`);
          assert.ok(answered.length > atKill, 'the restarted DC answered the rest of the burst');
          await waitFor('the outbox drained to the chain', async () => (await dcStatus(again)).registry.backlog.pending === 0, 60_000, 250);
          const view = await readChain(tb, 'rs', chain, answeredFile);
          assertOnChainOnce(view, answered, setup.dcId.id);
          assert.equal((await dcStatus(again)).registry.backlog.refused, 0, 'the contract refused none of them');
        });
      } finally {
        await stopChain(chain);
      }
    });
  });

  test('the chain stopped for 60 s in the middle of a burst: the DC answers all along, and every answered one is on the chain once', async () => {
    await withTestbed('natpair', {}, async (tb) => {
      let chain: Chain | undefined;
      try {
        await withDaemons('ntm-evm-stop-', (l) => console.error(l), async ({ dir, started }) => {
          const setup = await burstSetup(tb, dir);
          chain = setup.chain;
          const dc = await startNtm(tb, 'dc', 'dc', setup.args, join(dir, 'dc'), 60_000);
          started.push(dc);
          const answeredFile = join(dir, 'answered.json');
          const burst = startBurst(tb, setup.dcId, answeredFile);
          await waitFor('300 registrations answered', async () => (await dcStatus(dc)).terminals >= 300, 60_000, 20);
          process.kill(chain.pid, 'SIGSTOP');
          const stoppedAt = Date.now();
          const atStop = (await dcStatus(dc)).terminals;
          const result = await burst.done;
          const answeredWhileStopped = (await dcStatus(dc)).terminals - atStop;
          assert.ok(Date.now() - stoppedAt < 60_000, 'the burst ended while the chain was still stopped');
          await new Promise((r) => setTimeout(r, Math.max(0, stoppedAt + 60_000 - Date.now())));
          const st = await dcStatus(dc);
          assert.ok(st.registry.backlog.pending > 0, 'the outbox held what the stopped chain could not take');
          process.kill(chain.pid, 'SIGCONT');
          const answered = JSON.parse(readFileSync(answeredFile, 'utf8')) as string[];
          console.error(`# chain stopped 60 s: ${answered.length} answered (${answeredWhileStopped} while stopped), ${result.lost} unanswered, ${st.registry.backlog.pending} waiting`);
          assert.ok(answeredWhileStopped > 0, 'the DC answered registrations while the chain was stopped');

          await waitFor('the outbox drained to the chain', async () => (await dcStatus(dc)).registry.backlog.pending === 0, 120_000, 250);
          const view = await readChain(tb, 'rs', chain, answeredFile);
          assertOnChainOnce(view, answered, setup.dcId.id);
          assert.equal((await dcStatus(dc)).registry.backlog.refused, 0, 'the contract refused none of them');
        });
      } finally {
        await stopChain(chain);
      }
    });
  });
});
