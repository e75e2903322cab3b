// Issue 3, "Done when" #5 on the natpair topology: the DC is killed with SIGKILL while two terminals behind NATs have a
// tunnel. The tunnel keeps carrying packets without it (end to end, the DC is not on the path). The registry chain on
// disk verifies (checked here with code independent of the DC's), and the restarted DC holds both registrations; it
// invites the terminals it knows to re-register (HINT), they do so by themselves within seconds and keep their
// virtual addresses, and a new tunnel through the restarted DC works. Then tampering: a changed registry row, or Node
// Transactions cut off the end of the chain, and the DC refuses to start with a clear error. And a kill -9 in a burst of
// first-time registrations: nothing the DC answered is lost.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import type BetterSqlite3 from 'better-sqlite3';
import { keccak_256 } from '@noble/hashes/sha3.js';
import { withTestbed } from '../lib/testbed.js';
import { NTM, printId, startNatpair, startNtm, tunnelTo, waitFor, type Daemon, type NatpairRun, withDaemons } from '../lib/ntm.js';
import { startBurst } from '../lib/dc-burst.js';
import { probe, startEcho } from '../lib/probes.js';
import * as NT from '../../agent/src/protocol/node-transaction.js';
import type { Testbed } from '../../scripts/netns/index.js';

const require = createRequire(import.meta.url);
const Database = require('better-sqlite3') as typeof BetterSqlite3;

interface Row {
  seq: number;
  kind: 'node' | 'dc';
  id: string;
  bytes: Buffer;
  prev_hash: Buffer;
  hash: Buffer;
}

/** The chain as the DC left it on disk, re-verified from the rows: keccak256(prev ‖ kind byte ‖ bytes) links. */
function readChain(dbPath: string): { rows: Row[]; head: string; terminals: Array<{ id: string; v4: string; nt: Buffer }> } {
  const db = new Database(dbPath, { readonly: true });
  try {
    const rows = db.prepare('SELECT * FROM registry ORDER BY seq').all() as Row[];
    let prev = Buffer.alloc(32);
    rows.forEach((r, i) => {
      assert.equal(r.seq, i + 1, 'no gap in the chain');
      assert.ok(r.prev_hash.equals(prev), `entry ${r.seq} links to the one before`);
      const h = Buffer.from(keccak_256(Buffer.concat([prev, Buffer.from([r.kind === 'node' ? 1 : 2]), r.bytes])));
      assert.ok(h.equals(r.hash), `entry ${r.seq} hash matches its contents`);
      prev = h;
    });
    const terminals = db.prepare('SELECT id, v4, nt FROM dc_terminals').all() as Array<{ id: string; v4: string; nt: Buffer }>;
    return { rows, head: prev.toString('hex'), terminals };
  } finally {
    db.close();
  }
}

async function echoWorks(tb: Testbed, from: string, to: Daemon): Promise<number> {
  const r = await probe(tb, from, [`${String(to.ready.v4)}:7777`], { count: 10, intervalMs: 20 });
  return r.results[0]!.received;
}

/** `ntm dc` in the DC host expected to refuse to start: its exit code and stderr. */
async function dcRefuses(tb: Testbed, run: NatpairRun): Promise<{ code: number | null; stderr: string }> {
  const r = await tb.exec('dc', [process.execPath, NTM, 'dc', '--data-dir', run.dirs.dc, ...run.dcArgs], { timeoutMs: 20_000 });
  return { code: r.code, stderr: r.stderr };
}

void describe('the DC killed with SIGKILL and restarted (natpair)', () => {
  test('registry intact, terminals recover by themselves, tampering is refused', async (t) => {
    await withTestbed('natpair', { nat: { nata: 'eim', natb: 'eim' } }, (tb) =>
      withDaemons('ntm-test-', (line) => t.diagnostic(line), async ({ dir, started }) => {
        const run = await startNatpair(tb, dir, started);
        const { a, b } = run;
        const bId = String(b.ready.id);
        const before = (await a.call({ cmd: 'connect', target: 'b.ntm' }, 30_000)) as { tunnel: { tunnelId: string } };
        await startEcho(tb, 'a');
        await startEcho(tb, 'b');
        assert.ok((await echoWorks(tb, 'b', a)) >= 9, 'UDP through the tunnel before the kill');

        await run.dc.stop('SIGKILL');
        assert.equal(run.dc.proc.signalCode, 'SIGKILL');
        const killedAt = Date.now();

        // The tunnel does not need the DC.
        assert.ok((await echoWorks(tb, 'b', a)) >= 9, 'UDP through the tunnel while the DC is dead');
        assert.equal((await tunnelTo(a, bId))?.tunnelId, before.tunnel.tunnelId);

        // What the killed DC left on disk: a chain that verifies, both terminals' signed Node Transactions in it.
        const dbPath = join(run.dirs.dc, 'dc.db');
        const chain = readChain(dbPath);
        for (const d of [a, b]) {
          const id = String(d.ready.id);
          const entry = chain.rows.filter((r) => r.kind === 'node' && r.id === id).at(-1);
          assert.ok(entry, `${d.host}'s Node Transaction is in the registry`);
          const nt = NT.decode(entry.bytes);
          assert.ok(!(nt instanceof NT.NodeTransactionDecodeError));
          assert.equal(NT.check(nt), 'ok', 'its signature verifies');
          assert.equal(`0x${nt.dcId.toString('hex')}`, run.dcId.id, 'it names this DC as manager');
          const row = chain.terminals.find((x) => x.id === id);
          assert.equal(row?.v4, String(d.ready.v4), `${d.host}'s virtual address is recorded`);
          assert.ok(row.nt.equals(entry.bytes));
        }

        // Restart with the same data: the DC verifies the chain, then invites the terminals it knows to re-register.
        const spawnedAt = Date.now();
        const dc2 = await startNtm(tb, 'dc', 'dc', run.dcArgs, run.dirs.dc);
        started.push(dc2);
        const restartedAt = Date.now();
        const st = await dc2.status();
        assert.deepEqual((st.registry as { verifiedAtStart: unknown }).verifiedAtStart, { entries: chain.rows.length, head: chain.head });
        assert.equal(st.terminals, 2, 'both registrations survived');
        await waitFor(
          'both terminals re-registered with the restarted DC',
          async () => {
            const s = await dc2.status();
            return s.online === 2 && ((s.counts as Record<string, number>)['registrations-renewed'] ?? 0) >= 2;
          },
          15_000,
          20,
        );
        const recoveredMs = Date.now() - restartedAt;
        for (const d of [a, b]) {
          const node = ((await d.status()).nodes as Array<{ registered: boolean; v4: string }>)[0]!;
          assert.equal(node.registered, true);
          assert.equal(node.v4, String(d.ready.v4), `${d.host} kept its virtual address`);
          assert.match(d.output(), /dc asked us to re-register/, `${d.host} re-registered because the DC's HINT asked it to`);
        }
        assert.equal(((await dc2.status()).counts as Record<string, number>)['registrations-new'] ?? 0, 0, 'nobody registered as new');
        // Far below the keep-alive watchdog (3 × 20 s): the HINT did it.
        assert.ok(recoveredMs < 5000, `recovered in ${recoveredMs} ms`);

        // A new tunnel through the restarted DC, the other way round.
        const after = (await b.call({ cmd: 'connect', target: 'a.ntm' }, 30_000)) as { ms: number; tunnel: { tunnelId: string; path: string; state: string } };
        assert.equal(after.tunnel.state, 'up');
        assert.notEqual(after.tunnel.tunnelId, before.tunnel.tunnelId);
        assert.ok((await echoWorks(tb, 'a', b)) >= 9, 'UDP through the new tunnel');
        assert.ok((await echoWorks(tb, 'b', a)) >= 9);
        assert.equal((await tunnelTo(a, bId))?.tunnelId, after.tunnel.tunnelId);
        const figure = {
          deadForMs: restartedAt - killedAt,
          dcStartMs: restartedAt - spawnedAt,
          reRegisteredAfterDcReadyMs: recoveredMs,
          newTunnel: { ms: Math.round(after.ms), path: after.tunnel.path },
          registryEntries: chain.rows.length,
        };
        t.diagnostic(JSON.stringify(figure));
        console.log(JSON.stringify(figure));
        if (after.ms > 1000) for (const d of [a, b]) for (const l of d.output().split('\n')) if (/tunnel|register/.test(l)) t.diagnostic(`${d.host}: ${l}`);

        // Tampering. Stop the DC cleanly and keep a copy of the database to restore between the cases.
        await dc2.stop();
        const backup = `${dbPath}.orig`;
        for (const ext of ['', '-wal', '-shm']) if (existsSync(dbPath + ext)) copyFileSync(dbPath + ext, backup + ext);
        const restore = () => {
          for (const ext of ['', '-wal', '-shm']) if (existsSync(backup + ext)) copyFileSync(backup + ext, dbPath + ext);
        };
        const entryOfA = readChain(dbPath).rows.find((r) => r.kind === 'node' && r.id === String(a.ready.id))!;

        // 1. A changed row (a flipped signature byte in A's Node Transaction; the append-only trigger removed first).
        {
          const db = new Database(dbPath);
          db.exec('DROP TRIGGER registry_no_update');
          const bytes = Buffer.from(entryOfA.bytes);
          bytes[bytes.length - 2]! ^= 0x01;
          db.prepare('UPDATE registry SET bytes = ? WHERE seq = ?').run(bytes, entryOfA.seq);
          db.close();
          const r = await dcRefuses(tb, run);
          assert.equal(r.code, 65, r.stderr); // EX_DATAERR: an IntegrityError (agent/src/cmd/exit.ts)
          assert.match(r.stderr, new RegExp(`registry chain broken at entry ${entryOfA.seq}: entry hash does not match its contents`));
          assert.match(r.stderr, /refuses to start/);
          t.diagnostic(`changed row: ${r.stderr.trim()}`);
        }
        // 2. Node Transactions cut off the end of the chain (the links alone still verify).
        restore();
        {
          const db = new Database(dbPath);
          db.exec('DROP TRIGGER registry_no_delete');
          db.prepare('DELETE FROM registry WHERE seq >= ?').run(entryOfA.seq);
          db.close();
          const r = await dcRefuses(tb, run);
          assert.equal(r.code, 65, r.stderr); // EX_DATAERR: an IntegrityError (agent/src/cmd/exit.ts)
          assert.match(r.stderr, /has no Node Transaction in the registry/);
          t.diagnostic(`truncated chain: ${r.stderr.trim()}`);
        }
        // And the untouched database starts again.
        restore();
        started.push(await startNtm(tb, 'dc', 'dc', run.dcArgs, run.dirs.dc));
      }),
    );
  });
});

void describe('the DC killed with SIGKILL in a burst of first-time registrations (SQLite ledger)', () => {
  test('after a restart every terminal it answered is in its table once, with its Node Transaction on the chain once', async (t) => {
    await withTestbed('natpair', {}, (tb) =>
      withDaemons('ntm-dc-burst-', (line) => t.diagnostic(line), async ({ dir, started }) => {
        const dcDir = join(dir, 'dc');
        const dbPath = join(dcDir, 'dc.db');
        const dcId = await printId(tb, 'dc', 'dc', dcDir);
        // The generator plays every terminal from one loopback address: the per-source limit on newcomers is lifted.
        const args = ['--advertise', '192.0.2.2:7100', '--pool', '198.18.16.0/20', '--operator-listen', '', '--set', 'dc.newPerSourceBurst=1000000', '--set', 'dc.newPerSourcePerMin=1000000'];
        const dc = await startNtm(tb, 'dc', 'dc', args, dcDir, 60_000);
        started.push(dc);
        const answeredFile = join(dir, 'answered.json');
        const burst = startBurst(tb, dcId, answeredFile);
        await waitFor('300 registrations answered', async () => ((await dc.status()) as { terminals: number }).terminals >= 300, 60_000, 20);
        await dc.stop('SIGKILL');
        // What the killed DC left on disk: a chain that verifies (readChain), mid-burst.
        const atKill = readChain(dbPath).terminals.length;
        assert.ok(atKill < 1000, `the kill came in the middle of the burst (${atKill} registered)`);
        // Restarted at once, as its supervisor would: the burst goes on against the new process (terminals whose
        // request went to the dead one are not answered; the generator does not retry them).
        const again = await startNtm(tb, 'dc', 'dc', args, dcDir, 60_000);
        started.push(again);
        const result = await burst.done;
        const answered = JSON.parse(readFileSync(answeredFile, 'utf8')) as string[];
        t.diagnostic(`kill -9 at ${atKill} registered; ${answered.length} answered in all, ${result.lost} unanswered`);
        assert.ok(answered.length > atKill, 'the restarted DC answered the rest of the burst');
        const { rows, terminals } = readChain(dbPath);
        const inTable = new Map<string, number>();
        for (const r of terminals) inTable.set(r.id, (inTable.get(r.id) ?? 0) + 1);
        const onChain = new Map<string, Row[]>();
        for (const r of rows) if (r.kind === 'node') onChain.set(r.id, [...(onChain.get(r.id) ?? []), r]);
        assert.deepEqual(answered.filter((id) => inTable.get(id) !== 1), [], 'answered, and not in the terminal table exactly once');
        assert.deepEqual(answered.filter((id) => onChain.get(id)?.length !== 1), [], 'answered, and not on the chain exactly once');
        for (const r of terminals) assert.ok(onChain.get(r.id)?.at(-1)?.bytes.equals(r.nt), `${r.id}: its row holds its latest Node Transaction`);
      }),
    );
  });
});
