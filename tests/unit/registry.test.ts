// The registry compliance suite against the SQLite registry (a real database file, reopened as a restarted DC does)
// and the in-memory fake (two DCs on one fake ledger), plus what only the SQLite chain promises: tampering is found.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDb, type Db } from '../../agent/src/store/db.js';
import { Identity } from '../../agent/src/protocol/identity.js';
import { SqliteRegistry } from '../../agent/src/registry/sqlite.js';
import { FakeLedger, FakeRegistry } from '../../agent/src/registry/fake.js';
import { dcEntry, nodeEntry, registryComplianceSuite, registryTurn, type RegistryUnderTest } from '../../agent/src/registry/testing/compliance.js';

/** The DC's turn: one SQLite transaction, then the registry is told how it ended. */
function sqliteOn(dir: string, dc: Identity): RegistryUnderTest {
  const db = openDb(join(dir, 'dc.db'));
  const registry = new SqliteRegistry(db);
  const u: RegistryUnderTest = {
    registry,
    dc,
    transaction: (fn) => registryTurn(db, registry, fn),
    reopen: async () => {
      await registry.close();
      db.close();
      return sqliteOn(dir, dc);
    },
    close: async () => {
      await registry.close();
      if (db.open) db.close();
    },
  };
  return u;
}

/** sqliteOn, whose close (and that of every reopened one) removes the directory. */
function removedOnClose(dir: string, u: RegistryUnderTest): RegistryUnderTest {
  return {
    ...u,
    reopen: async () => removedOnClose(dir, await u.reopen()),
    close: async () => {
      await u.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

registryComplianceSuite('sqlite', {
  open: async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ntm-registry-'));
    return removedOnClose(dir, sqliteOn(dir, Identity.generate()));
  },
});

function fakeOn(ledger: FakeLedger, dc: Identity): RegistryUnderTest {
  const registry = new FakeRegistry(ledger);
  return {
    registry,
    dc,
    transaction: (fn) => registryTurn(undefined, registry, fn),
    reopen: async () => {
      await registry.close();
      return fakeOn(ledger, dc);
    },
    close: () => registry.close(),
  };
}

registryComplianceSuite('fake', {
  open: async () => fakeOn(new FakeLedger(), Identity.generate()),
  peer: async (of) => fakeOn((of.registry as FakeRegistry).ledger, Identity.generate()),
  propagationMs: 200,
});

// What only the hash chain promises (the DC's refusal to start on it is tests/netns/ntm-dc-restart).

async function chainWithEntries(n: number): Promise<{ db: Db; registry: SqliteRegistry; dc: Identity }> {
  const db = openDb(':memory:');
  const registry = new SqliteRegistry(db);
  const dc = Identity.generate();
  assert.ok((await registry.verify()).ok);
  registryTurn(db, registry, () => {
    registry.stage(dcEntry(dc));
    for (let i = 1; i < n; i++) registry.stage(nodeEntry(Identity.generate(), dc));
  });
  return { db, registry, dc };
}

test('sqlite: the head is the keccak chain over every entry and a changed entry breaks it at that entry', async () => {
  const { db, registry } = await chainWithEntries(4);
  const r = await registry.verify();
  assert.ok(r.ok);
  assert.equal(r.entries, 4);
  const head = (db.prepare('SELECT hash FROM registry ORDER BY seq DESC LIMIT 1').get() as { hash: Buffer }).hash;
  assert.equal(r.head, head.toString('hex'));
  db.exec('DROP TRIGGER registry_no_update');
  const row = db.prepare('SELECT bytes FROM registry WHERE seq = 3').get() as { bytes: Buffer };
  row.bytes[10]! ^= 1;
  db.prepare('UPDATE registry SET bytes = ? WHERE seq = 3').run(row.bytes);
  const bad = await new SqliteRegistry(db).verify();
  assert.deepEqual(bad, { ok: false, entries: 3, at: 3, reason: 'entry hash does not match its contents' });
});

test('sqlite: an entry taken out of the middle is found; the table refuses updates and deletes by itself', async () => {
  const { db, registry } = await chainWithEntries(4);
  assert.throws(() => db.prepare('DELETE FROM registry WHERE seq = 2').run(), /append-only/);
  assert.throws(() => db.prepare("UPDATE registry SET id = '0x' WHERE seq = 2").run(), /append-only/);
  db.exec('DROP TRIGGER registry_no_delete');
  db.prepare('DELETE FROM registry WHERE seq = 2').run();
  const bad = await registry.verify();
  assert.equal(bad.ok, false);
  assert.equal(!bad.ok && bad.at, 3);
});

test('sqlite: a rolled-back turn does not leave the next entry linked to a hash that is not in the table', async () => {
  const { db, registry, dc } = await chainWithEntries(2);
  assert.throws(() =>
    registryTurn(db, registry, () => {
      registry.stage(nodeEntry(Identity.generate(), dc));
      throw new Error('disk full');
    }),
  );
  registryTurn(db, registry, () => registry.stage(nodeEntry(Identity.generate(), dc)));
  const r = await registry.verify();
  assert.ok(r.ok, JSON.stringify(r));
  assert.equal(r.entries, 3);
});
