// Test support: the compliance suite every Registry passes (as js-libp2p's interface-compliance-tests): the SQLite
// registry and the in-memory fake in tests/unit/registry.test.ts; the EVM backend against a real local chain. It holds
// only what the DC relies on (types/registry.ts), nothing of one backend (no hash chain: that is SQLite's own test).
// Entries are real: Node Transactions signed by terminals that name the registry's DC, and that DC's signed record,
// since a contract backend checks both signatures.
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Registry, RegistryEntry } from '../../types/registry.js';
import { Identity } from '../../protocol/identity.js';
import * as NT from '../../protocol/node-transaction.js';
import { signServerRecord } from '../../protocol/dc-record.js';
import type { Db } from '../../store/db.js';

export interface RegistryUnderTest {
  readonly registry: Registry;
  /** The DC this registry belongs to: the entries it stages name it as the manager (a contract checks that). */
  readonly dc: Identity;
  /**
   * Runs `fn` as the DC runs its turn: inside a transaction on the registry's database, then committed(); if `fn`
   * throws, the transaction rolls back, rolledBack() is called and the error rethrown.
   */
  transaction(fn: () => void): void;
  /** Closes this instance and opens the same ledger again, as a restarted DC does (verify() not yet called). */
  reopen(): Promise<RegistryUnderTest>;
  /** Closes the registry and whatever the harness opened for it. */
  close(): Promise<void>;
}

/**
 * One DC turn as a harness's `transaction` runs it: `fn` inside a transaction on `db` (or bare, for a registry with no
 * database: the fake), then committed(); if `fn` throws, rolledBack() and the error rethrown.
 */
export function registryTurn(db: Db | undefined, registry: Registry, fn: () => void): void {
  try {
    if (db) db.transaction(fn)();
    else fn();
  } catch (e) {
    registry.rolledBack();
    throw e;
  }
  registry.committed();
}

export interface RegistryHarness {
  /** A new, empty ledger and a registry on it (verify() not yet called). */
  open(): Promise<RegistryUnderTest>;
  /**
   * For backends where several DCs share one ledger (the fake, EVM): another DC's registry on `of`'s ledger. Absent
   * for a single-writer backend (SQLite): the cases about others' entries are then not registered.
   */
  peer?(of: RegistryUnderTest): Promise<RegistryUnderTest>;
  /** How long another DC's committed entry may take to reach a peer's change feed (ms). */
  readonly propagationMs?: number;
}

let clock = Date.now();
/** Strictly increasing timestamps: a later Node Transaction of the same terminal is newer. */
const nextTime = (): number => (clock = Math.max(clock + 1, Date.now()));

/** A terminal's signed Node Transaction naming `dc` as its manager. */
export function nodeEntry(terminal: Identity, dc: Identity, revoked = false): RegistryEntry {
  const nt = NT.sign(terminal, { dcId: dc.id, revoked, timestamp: nextTime() });
  return { kind: 'node', id: terminal.idHex, bytes: NT.encode(nt) };
}

/** `dc`'s signed directory record. */
export function dcEntry(dc: Identity, port = 7100): RegistryEntry {
  const bytes = signServerRecord(dc, {
    role: 'dc',
    time: nextTime(),
    endpoints: [{ family: 4, address: '192.0.2.2', port }],
    poolV4: '198.18.1.0/24',
    poolV6: 'fd4e:544d:1::/48',
  });
  return { kind: 'dc', id: dc.idHex, bytes };
}

const hex = (b: Uint8Array | undefined): string | undefined => (b ? Buffer.from(b).toString('hex') : undefined);

function sameEntry(got: RegistryEntry | undefined, want: RegistryEntry, what: string): void {
  assert.ok(got, `${what}: an entry`);
  assert.equal(got.kind, want.kind, `${what}: kind`);
  assert.equal(got.id, want.id, `${what}: id`);
  assert.equal(hex(got.bytes), hex(want.bytes), `${what}: bytes`);
}

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 5));
  }
  return true;
}

/** Opens a registry with its DC's record staged (every DC stages its own first), verified. */
async function started(h: RegistryHarness): Promise<RegistryUnderTest> {
  const u = await h.open();
  const report = await u.registry.verify();
  assert.equal(report.ok, true, 'an empty ledger verifies');
  u.transaction(() => u.registry.stage(dcEntry(u.dc)));
  return u;
}

/** Registers the suite's cases under `name` (call at the top level of a node:test file). */
export function registryComplianceSuite(name: string, h: RegistryHarness): void {
  void describe(`${name}: registry compliance`, () => {
    const open: RegistryUnderTest[] = [];
    const use = async (u: Promise<RegistryUnderTest>): Promise<RegistryUnderTest> => {
      const x = await u;
      open.push(x);
      return x;
    };
    after(async () => {
      for (const u of open) await u.close();
    });

    void test('an empty ledger verifies with no entries and knows nobody', async () => {
      const u = await use(h.open());
      const r = await u.registry.verify();
      assert.ok(r.ok);
      assert.equal(r.entries, 0);
      assert.equal(u.registry.latest('node', Identity.generate().idHex), undefined);
      assert.equal(await u.registry.lookup('node', Identity.generate().idHex), undefined);
      assert.deepEqual(u.registry.directory(), []);
    });

    void test('a staged entry is the latest at once (read-your-writes) and after the commit', async () => {
      const u = await use(started(h));
      const t = Identity.generate();
      const e = nodeEntry(t, u.dc);
      u.transaction(() => {
        u.registry.stage(e);
        sameEntry(u.registry.latest('node', t.idHex), e, 'inside the transaction');
      });
      sameEntry(u.registry.latest('node', t.idHex), e, 'after the commit');
      sameEntry(await u.registry.lookup('node', t.idHex), e, 'lookup');
      assert.equal(u.registry.latest('dc', t.idHex), undefined, 'kinds are apart');
    });

    void test('a newer entry supersedes; equal bytes again stage nothing', async () => {
      const u = await use(started(h));
      const before = await u.registry.verify();
      assert.ok(before.ok);
      const t = Identity.generate();
      const e1 = nodeEntry(t, u.dc);
      const e2 = nodeEntry(t, u.dc);
      u.transaction(() => u.registry.stage(e1));
      u.transaction(() => u.registry.stage(e2));
      u.transaction(() => u.registry.stage(e2));
      u.transaction(() => u.registry.stage({ ...e2, bytes: Uint8Array.from(e2.bytes) }));
      sameEntry(u.registry.latest('node', t.idHex), e2, 'the newer');
      const r = await u.registry.verify();
      assert.ok(r.ok);
      assert.equal(r.entries, before.entries + 2, 'two entries, not four');
    });

    void test('a rolled-back transaction leaves nothing, and the ledger goes on from where it was', async () => {
      const u = await use(started(h));
      const t = Identity.generate();
      const e = nodeEntry(t, u.dc);
      assert.throws(
        () =>
          u.transaction(() => {
            u.registry.stage(e);
            throw new Error('the turn failed');
          }),
        /the turn failed/,
      );
      assert.equal(u.registry.latest('node', t.idHex), undefined);
      const t2 = Identity.generate();
      const e2 = nodeEntry(t2, u.dc);
      u.transaction(() => u.registry.stage(e2));
      sameEntry(u.registry.latest('node', t2.idHex), e2, 'staged after the rollback');
      const r = await u.registry.verify();
      assert.ok(r.ok, JSON.stringify(r));
      // A rollback over an entry that superseded another puts the older one back.
      const e3 = nodeEntry(t2, u.dc);
      assert.throws(() =>
        u.transaction(() => {
          u.registry.stage(e3);
          throw new Error('again');
        }),
      );
      sameEntry(u.registry.latest('node', t2.idHex), e2, 'the entry before the rolled-back one');
    });

    void test('committed entries survive a restart; the reopened ledger verifies', async () => {
      const u = await h.open();
      assert.ok((await u.registry.verify()).ok);
      const own = dcEntry(u.dc);
      const ts = [Identity.generate(), Identity.generate(), Identity.generate()];
      const es = ts.map((t) => nodeEntry(t, u.dc));
      u.transaction(() => {
        u.registry.stage(own);
        for (const e of es) u.registry.stage(e);
      });
      const lost = nodeEntry(Identity.generate(), u.dc);
      assert.throws(() =>
        u.transaction(() => {
          u.registry.stage(lost);
          throw new Error('rolled back');
        }),
      );
      const before = await u.registry.verify();
      const v = await use(u.reopen());
      const r = await v.registry.verify();
      assert.ok(r.ok, JSON.stringify(r));
      assert.ok(before.ok);
      assert.equal(r.entries, before.entries);
      for (const [i, t] of ts.entries()) sameEntry(v.registry.latest('node', t.idHex), es[i]!, `terminal ${i}`);
      assert.equal(v.registry.latest('node', lost.id), undefined, 'the rolled-back entry is not there');
      sameEntry(v.registry.directory().find((e) => e.id === u.dc.idHex), own, 'our own DC record');
    });

    void test('the directory holds the latest record of each DC and nothing else', async () => {
      const u = await use(started(h));
      const newer = dcEntry(u.dc, 7200);
      u.transaction(() => {
        u.registry.stage(nodeEntry(Identity.generate(), u.dc));
        u.registry.stage(newer);
      });
      const dir = u.registry.directory();
      assert.equal(dir.length, 1, 'one DC');
      sameEntry(dir[0], newer, 'its newer record');
    });

    void test('our own entries never come back through the change feed', async () => {
      const u = await use(started(h));
      const seen: RegistryEntry[] = [];
      const stop = u.registry.onChange((e) => seen.push(e));
      u.transaction(() => u.registry.stage(nodeEntry(Identity.generate(), u.dc)));
      await new Promise((r) => setTimeout(r, h.propagationMs ?? 50));
      stop();
      assert.deepEqual(seen, []);
    });

    void test('a malformed ID is refused with a RangeError', async () => {
      const u = await use(started(h));
      const e = nodeEntry(Identity.generate(), u.dc);
      assert.throws(() => u.transaction(() => u.registry.stage({ ...e, id: e.id.toUpperCase().replace('0X', '0x') })), RangeError);
      assert.throws(() => u.transaction(() => u.registry.stage({ ...e, id: 'alice' })), RangeError);
    });

    const peer = h.peer?.bind(h);
    if (peer) {
      void test("another DC's entries reach the change feed and the local view; lookup finds them at once", async () => {
        const a = await use(started(h));
        const b = await use(peer(a));
        assert.ok((await b.registry.verify()).ok);
        const seen: RegistryEntry[] = [];
        b.registry.onChange((e) => seen.push(e));
        const record = dcEntry(b.dc);
        b.transaction(() => b.registry.stage(record));
        const t = Identity.generate();
        const reg = nodeEntry(t, a.dc);
        a.transaction(() => a.registry.stage(reg));
        // Before the feed delivers, a lookup may ask the ledger itself.
        sameEntry(await b.registry.lookup('node', t.idHex), reg, "b's lookup of a's terminal");
        const ms = h.propagationMs ?? 1000;
        assert.ok(await until(() => seen.some((e) => e.id === t.idHex), ms), 'the registration reached the feed');
        sameEntry(b.registry.latest('node', t.idHex), reg, "b's local view");
        assert.ok(await until(() => a.registry.directory().some((e) => e.id === b.dc.idHex), ms), 'a sees b join the directory');
        // A revocation by a's DC is seen by b.
        const revoked = nodeEntry(t, a.dc, true);
        a.transaction(() => a.registry.stage(revoked));
        assert.ok(await until(() => hex(b.registry.latest('node', t.idHex)?.bytes) === hex(revoked.bytes), ms), 'the revocation reached b');
        assert.equal(seen.filter((e) => e.id === t.idHex).length, 2, 'each entry once');
        assert.ok(!seen.some((e) => e.id === b.dc.idHex), "b's own record did not come back to b");
        assert.equal(b.registry.revoked(t.idHex), true, 'a signed revocation is the ledger\'s: sticky');
      });

      void test("a DC's own revocation (no terminal signature) reaches the other DCs, sticky", async () => {
        const a = await use(started(h));
        const b = await use(peer(a));
        assert.ok((await b.registry.verify()).ok);
        b.transaction(() => b.registry.stage(dcEntry(b.dc)));
        const t = Identity.generate();
        a.transaction(() => a.registry.stage(nodeEntry(t, a.dc)));
        const ms = h.propagationMs ?? 1000;
        assert.ok(await until(() => b.registry.latest('node', t.idHex) !== undefined, ms), "a's terminal reached b");
        assert.equal(b.registry.revoked(t.idHex), false);
        a.transaction(() => a.registry.revokeByDc(t.idHex));
        assert.equal(a.registry.revoked(t.idHex), true, 'read-your-writes');
        assert.ok(await until(() => b.registry.revoked(t.idHex), ms), 'the revocation reached b');
      });
    }
  });
}
