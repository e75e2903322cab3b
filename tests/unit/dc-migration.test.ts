// The DC's database as an older release left it (issue 15's schema change): the terminal table keyed by the random
// terminal ID and the registry indexed by it. A DC opening such a file migrates it in place and keeps every terminal
// (same addresses, same name), the whole hash chain byte for byte, and goes on registering. And a row, numbered by the
// one process that writes the file, is never overwritten by another terminal's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { migrate, openDb, type Db } from '../../agent/src/store/db.js';
import { loadSection } from '../../agent/src/config/schema.js';
import { Identity } from '../../agent/src/protocol/identity.js';
import { DcServer } from '../../agent/src/dc/server.js';
import { DC_MIGRATIONS, TerminalTable } from '../../agent/src/dc/terminals.js';
import { IntegrityError } from '../../agent/src/types/errors.js';
import { REGISTRY_MIGRATIONS, SqliteRegistry } from '../../agent/src/registry/sqlite.js';
import { TerminalHost } from '../../agent/src/terminal/host.js';
import { FakeNetwork } from '../../agent/src/dataplane/conn/fake.js';
import { DataEngine } from '../../agent/src/dataplane/engine.js';
import { PASS_THROUGH } from '../../agent/src/dataplane/policy.js';
import type { Node } from '../../agent/src/terminal/node.js';

const RETRY = { initialMs: 100, maxMs: 400, deadlineMs: 4000 };
/** The steps each module had before the change (the rest are the change). */
const OLD_STEPS = { dc: 4, registry: 4 };

async function startDc(net: FakeNetwork, identity: Identity, db: Db): Promise<DcServer> {
  const config = loadSection('dc', undefined, { 'dc.listen': '10.0.0.1:7100', 'dc.advertise': ['10.0.0.1:7100'] });
  return DcServer.start({ identity, db, registry: new SqliteRegistry(db), bind: net.open(['10.0.0.1'], 7100), probeBind: net.open(['10.0.0.1'], 7101), config });
}

function terminal(net: FakeNetwork, address: string, dc: Identity, name: string, identity = Identity.generate()): { host: TerminalHost; node: Node } {
  const bind = net.open([address]);
  const host = new TerminalHost({ bind, locals: () => [bind.endpoint()], retry: RETRY });
  // The engine reads the bind and hands the host its control packets; no data is sent.
  new DataEngine({ bind, tunnels: host, policy: PASS_THROUGH, writer: { write: () => true } });
  const node = host.addNode(identity, { id: dc.id, publicKey: dc.publicKey, endpoint: { family: 4, address: '10.0.0.1', port: 7100 } }, { name });
  return { host, node };
}

type Rows = Array<Record<string, unknown>>;
const all = (db: Db, sql: string): Rows => db.prepare(sql).all() as Rows;
const TERMINAL_COLUMNS = 'id, public_key, v4, v6, name, nt, last_req_time, observed, locals, nat, last_seen, revoked, seen_service';

test('a DC database of the older schema (tables keyed by the terminal ID) opens: every terminal and the hash chain are kept', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dc-migration-'));
  const net = new FakeNetwork();
  const identity = Identity.generate();
  const hosts: TerminalHost[] = [];
  let dc: DcServer | undefined;
  try {
    // Real registrations, on a file of today's schema, are the content the older file is then given.
    const source = openDb(join(dir, 'source.db'));
    dc = await startDc(net, identity, source);
    const named = ['alice', 'bob', 'carol', 'dave', 'erin'];
    const ts = named.map((n, i) => terminal(net, `10.0.1.${i + 1}`, identity, n));
    hosts.push(...ts.map((t) => t.host));
    const leases = new Map<string, { v4: string; v6: string }>();
    for (const t of ts) {
      const r = await t.node.register();
      leases.set(t.node.id, { v4: r.v4, v6: r.v6 });
    }
    await dc.stop();
    dc = undefined;
    const registry = all(source, 'SELECT * FROM registry ORDER BY seq');
    const terminals = all(source, `SELECT ${TERMINAL_COLUMNS} FROM dc_terminals ORDER BY row`);
    const meta = all(source, 'SELECT * FROM dc_meta');
    source.close();
    assert.equal(terminals.length, named.length);

    // The older file: only the older steps, then the same rows (terminals in another order than their addresses').
    const file = join(dir, 'dc.db');
    let db = openDb(file);
    migrate(db, { module: 'dc', steps: DC_MIGRATIONS.steps.slice(0, OLD_STEPS.dc) });
    migrate(db, { module: 'registry', steps: REGISTRY_MIGRATIONS.steps.slice(0, OLD_STEPS.registry) });
    const oldOrder = [...terminals].reverse();
    db.transaction(() => {
      const ins = db.prepare('INSERT INTO registry (seq, kind, id, bytes, prev_hash, hash) VALUES (@seq, @kind, @id, @bytes, @prev_hash, @hash)');
      for (const r of registry) ins.run(r);
      const t = db.prepare(`INSERT INTO dc_terminals (${TERMINAL_COLUMNS}) VALUES (${TERMINAL_COLUMNS.replace(/(\w+)/g, '@$1')})`);
      for (const r of oldOrder) t.run(r);
      const m = db.prepare('INSERT INTO dc_meta (key, value) VALUES (@key, @value)');
      for (const r of meta) m.run(r);
    })();
    assert.ok(all(db, "SELECT name FROM sqlite_master WHERE name = 'registry_by_id'").length === 1, 'the older index is there');
    db.close();

    // Opened by this release: migrated, and the DC starts on it (start() checks each terminal's Node Transaction
    // against its latest registry entry and the whole chain).
    db = openDb(file);
    dc = await startDc(net, identity, db);
    assert.deepEqual(all(db, "SELECT name FROM sqlite_master WHERE name = 'registry_by_id'"), [], 'no index by ID on the registry');
    const idIndexes = all(db, "SELECT name FROM pragma_index_list('dc_terminals')").map((r) => r.name);
    assert.deepEqual(idIndexes.filter((n) => (all(db, `SELECT name FROM pragma_index_info('${String(n)}')`)).some((c) => c.name === 'id')), [], 'no index by ID on the terminal table');
    // The DC appends its own signed record at every start: the older chain is the beginning of the new one.
    assert.deepEqual(all(db, 'SELECT * FROM registry ORDER BY seq').slice(0, registry.length), registry, 'the chain, byte for byte');
    assert.deepEqual(all(db, `SELECT ${TERMINAL_COLUMNS} FROM dc_terminals ORDER BY row`), oldOrder, 'every terminal, in the order it was written');
    assert.deepEqual(all(db, 'SELECT row FROM dc_terminals ORDER BY row').map((r) => r.row), [1, 2, 3, 4, 5]);
    const status = dc.status() as { terminals: number };
    assert.equal(status.terminals, named.length);
    for (const [i, t] of ts.entries()) {
      const rec = dc.terminals.byId.get(t.node.id);
      assert.ok(rec, named[i]);
      assert.deepEqual({ v4: rec.v4, v6: rec.v6 }, leases.get(t.node.id), `${named[i]} keeps its addresses`);
      assert.equal(rec.name, named[i]);
      assert.ok(rec.nt.equals(dc.registry.latest('node', t.node.id)?.bytes ?? new Uint8Array()), 'latest() finds its Node Transaction without the index');
    }
    assert.ok(dc.registry.directory().some((e) => e.id === identity.idHex), "the DC's own record is in the directory");

    // It goes on: a known terminal renews with the same addresses, a new one gets the next row, and all of it survives
    // another restart.
    const again = await ts[0]!.node.register();
    assert.deepEqual({ v4: again.v4, v6: again.v6 }, leases.get(ts[0]!.node.id));
    const frank = terminal(net, '10.0.1.9', identity, 'frank');
    hosts.push(frank.host);
    const rf = await frank.node.register();
    assert.deepEqual(all(db, `SELECT row FROM dc_terminals WHERE id = '${frank.node.id}'`), [{ row: 6 }]);
    await dc.stop();
    const head = (await new SqliteRegistry(db).verify()) as { ok: boolean; entries: number };
    assert.ok(head.ok);
    db.close();
    db = openDb(file);
    dc = await startDc(net, identity, db);
    assert.equal(dc.terminals.size, named.length + 1);
    assert.equal(dc.terminals.byId.get(frank.node.id)?.v4, rf.v4);
    assert.equal((dc.status() as { registry: { verifiedAtStart: { entries: number } } }).registry.verifiedAtStart.entries, head.entries);
  } finally {
    for (const h of hosts) await h.close();
    await dc?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a terminal row is never overwritten by another terminal: a second writer of the file makes the commit fail', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dc-rows-'));
  const file = join(dir, 'dc.db');
  const [a, b] = [openDb(file), openDb(file)];
  try {
    // Two processes' tables on one file (a configuration the DC does not make): both number their first new row 1.
    const ta = new TerminalTable(a, '198.18.0.0/24', 'fd4e:544d::/120');
    const tb = new TerminalTable(b, '198.18.1.0/24', 'fd4e:544d::100/120');
    const made = (t: TerminalTable, n: number) => {
      const nt = Buffer.alloc(148, n);
      return t.create({ id: `0x${String(n).repeat(40)}`, idBytes: nt.subarray(1, 21), publicKey: nt.subarray(21, 54), nt, lastReqTime: 1, now: 1 });
    };
    assert.equal(made(ta, 1).row, 1);
    assert.equal(made(tb, 2).row, 1);
    a.transaction(() => ta.flushSync())();
    assert.throws(() => b.transaction(() => tb.flushSync())(), (e: unknown) => e instanceof IntegrityError && /row 1 holds another terminal/.test(e.message));
    assert.deepEqual(all(a, 'SELECT row, id FROM dc_terminals'), [{ row: 1, id: `0x${'1'.repeat(40)}` }], "the first terminal's row stands");
  } finally {
    a.close();
    b.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
