// The EVM registry backend passes the registry compliance suite (registry/testing/compliance.ts) against a real anvil
// chain: each ledger is a freshly deployed contract, each DC a real SQLite file and its own chain account. Then what
// only this backend promises: the outbox survives the DC's death and a chain that is down, and reaches the chain once.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDb, type Db } from '../../agent/src/store/db.js';
import { Identity } from '../../agent/src/protocol/identity.js';
import { EvmRegistry } from '../../agent/src/registry/evm/registry.js';
import { RegistryContract } from '../../agent/src/registry/evm/contract.js';
import { dcEntry, nodeEntry, registryComplianceSuite, registryTurn, type RegistryUnderTest } from '../../agent/src/registry/testing/compliance.js';
import { startChain, type LocalChain } from '../../scripts/chain.js';

let chain: Promise<LocalChain> | undefined;
const theChain = (): Promise<LocalChain> => (chain ??= startChain({}));
after(async () => {
  if (chain) await (await chain).stop();
});

interface Ledger {
  readonly rpcUrl: string;
  readonly contract: string;
  readonly deployBlock: number;
}

function evmOn(ledger: Ledger, dir: string, dc: Identity): RegistryUnderTest {
  const db = openDb(join(dir, 'dc.db'));
  const registry = new EvmRegistry(db, { rpcUrl: ledger.rpcUrl, contract: ledger.contract, deployBlock: ledger.deployBlock, identity: dc, pollMs: 50, batchDelayMs: 10, missWaitMs: 3000 });
  const u: RegistryUnderTest & { ledger: Ledger } = {
    ledger,
    registry,
    dc,
    transaction: (fn) => registryTurn(db, registry, fn),
    reopen: async () => {
      await registry.close();
      db.close();
      return evmOn(ledger, dir, dc);
    },
    // Whichever instance is closed last takes the directory with it (a reopened one replaces its predecessor).
    close: async () => {
      await registry.close();
      if (db.open) db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return u;
}

async function newDc(c: LocalChain): Promise<{ dc: Identity; dir: string }> {
  const dc = Identity.generate();
  await c.fund(dc.idHex);
  return { dc, dir: mkdtempSync(join(tmpdir(), 'ntm-evm-registry-')) };
}

registryComplianceSuite('evm', {
  open: async () => {
    const c = await theChain();
    const { address, block } = await c.deploy();
    const { dc, dir } = await newDc(c);
    return evmOn({ rpcUrl: c.rpcUrl, contract: address, deployBlock: block }, dir, dc);
  },
  peer: async (of) => {
    const c = await theChain();
    const { dc, dir } = await newDc(c);
    return evmOn((of as RegistryUnderTest & { ledger: Ledger }).ledger, dir, dc);
  },
  propagationMs: 5000,
});

test('evm: entries answered before the chain comes up are on it once, after a restart of the DC and of the chain', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ntm-evm-outbox-'));
  const first = await startChain({ statePath: join(dir, 'chain.json') });
  let second: LocalChain | undefined;
  const opened: EvmRegistry[] = [];
  const dbs: Db[] = [];
  try {
    const { address, block } = await first.deploy();
    const dc = Identity.generate();
    await first.fund(dc.idHex);
    await first.stop();
    // The DC starts while the chain is down, and answers: its entries go to the outbox.
    const open = (): { db: Db; r: EvmRegistry } => {
      const db = openDb(join(dir, 'dc.db'));
      const r = new EvmRegistry(db, { rpcUrl: first.rpcUrl, contract: address, deployBlock: block, identity: dc, pollMs: 50, batchDelayMs: 10, connectWaitMs: 300 });
      opened.push(r);
      dbs.push(db);
      return { db, r };
    };
    let { db, r } = open();
    assert.ok((await r.verify()).ok);
    const terminals = Array.from({ length: 50 }, () => Identity.generate());
    registryTurn(db, r, () => {
      r.stage(dcEntry(dc));
      for (const t of terminals.slice(0, 25)) r.stage(nodeEntry(t, dc));
    });
    registryTurn(db, r, () => {
      for (const t of terminals.slice(25)) r.stage(nodeEntry(t, dc));
    });
    assert.equal(r.pending(), 51);
    // The DC dies: its background work stops, nothing is flushed (close() writes nothing), the database holds the
    // committed transactions only, as after a kill -9.
    await r.close();
    ({ db, r } = open());
    assert.ok((await r.verify()).ok);
    assert.equal(r.pending(), 51, 'the outbox survived');
    second = await startChain({ statePath: join(dir, 'chain.json'), port: first.port });
    const deadline = Date.now() + 30_000;
    while (r.pending() > 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100));
    assert.equal(r.pending(), 0, 'the outbox drained');
    const reader = await RegistryContract.connect({ rpcUrl: second.rpcUrl, address });
    try {
      const events = await reader.events(block, await reader.blockNumber());
      const nodeEvents = events.filter((e) => e.kind === 'node');
      assert.equal(nodeEvents.length, 50, 'each registration on the chain once');
      assert.deepEqual(new Set(nodeEvents.map((e) => e.kind === 'node' && e.id)), new Set(terminals.map((t) => t.idHex)));
    } finally {
      reader.close();
    }
  } finally {
    for (const r of opened) await r.close();
    for (const db of dbs) if (db.open) db.close();
    await first.stop();
    await second?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("evm: an entry the contract refuses leaves the outbox and is counted in the backlog the DC's status shows", async () => {
  const c = await theChain();
  const { address, block } = await c.deploy();
  const { dc, dir } = await newDc(c);
  const u = evmOn({ rpcUrl: c.rpcUrl, contract: address, deployBlock: block }, dir, dc);
  const r = u.registry as EvmRegistry;
  try {
    assert.ok((await r.verify()).ok);
    const good = Array.from({ length: 3 }, () => nodeEntry(Identity.generate(), dc));
    // A signature over other bytes: the DC checks signatures before it stages, so only a DC bug (or a disagreement
    // with the contract) brings one here; the contract recovers another key and refuses it.
    const forged = nodeEntry(Identity.generate(), dc);
    const bytes = Buffer.from(forged.bytes);
    bytes[100]! ^= 0x01;
    u.transaction(() => {
      r.stage(dcEntry(dc));
      for (const e of good) r.stage(e);
      r.stage({ ...forged, bytes });
    });
    const deadline = Date.now() + 20_000;
    while (r.pending() > 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
    const b = r.backlog();
    assert.equal(b.pending, 0, 'a refused entry is not retried');
    assert.equal(b.committed, 3);
    assert.equal(b.refused, 1);
    assert.equal(Object.values(b.refusedBy).reduce((a, n) => a + n, 0), 1, JSON.stringify(b.refusedBy));
    assert.ok(['signature', 'public-key'].includes(Object.keys(b.refusedBy)[0]!), JSON.stringify(b.refusedBy));
  } finally {
    await u.close();
  }
});

test("evm: a DC's revocation of a terminal the chain lists under another DC is not sent, and is counted as refused", async () => {
  const c = await theChain();
  const { address, block } = await c.deploy();
  const ledger = { rpcUrl: c.rpcUrl, contract: address, deployBlock: block };
  const [x, y] = await Promise.all([newDc(c), newDc(c)]);
  const a = evmOn(ledger, x.dir, x.dc);
  const b = evmOn(ledger, y.dir, y.dc);
  try {
    assert.ok((await a.registry.verify()).ok);
    assert.ok((await b.registry.verify()).ok);
    a.transaction(() => a.registry.stage(dcEntry(a.dc)));
    b.transaction(() => b.registry.stage(dcEntry(b.dc)));
    const ours = Identity.generate();
    const theirs = Identity.generate();
    a.transaction(() => a.registry.stage(nodeEntry(ours, a.dc)));
    b.transaction(() => b.registry.stage(nodeEntry(theirs, b.dc)));
    const evm = a.registry as EvmRegistry;
    const until = async (cond: () => boolean, what: string): Promise<void> => {
      const end = Date.now() + 15_000;
      while (!cond()) {
        if (Date.now() > end) throw new Error(`timed out: ${what}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    await until(() => evm.pending() === 0 && (b.registry as EvmRegistry).pending() === 0, 'both outboxes drained');
    a.transaction(() => {
      a.registry.revokeByDc(ours.idHex);
      a.registry.revokeByDc(theirs.idHex);
    });
    await until(() => evm.pendingRevocations() === 0, 'the revocations left the outbox');
    const backlog = evm.backlog();
    assert.equal(backlog.refusedBy['revoke-not-managed'], 1, JSON.stringify(backlog));
    assert.equal(backlog.refused, 1, 'the refused revocation shows in the DC status');
    assert.equal(backlog.pending, 0);
    const reader = await RegistryContract.connect({ rpcUrl: c.rpcUrl, address });
    try {
      assert.equal((await reader.terminal(ours.idHex))?.revoked, true);
      assert.equal((await reader.terminal(theirs.idHex))?.revoked, false, "b's terminal is not revoked on the chain");
    } finally {
      reader.close();
    }
    await until(() => b.registry.revoked(ours.idHex), "b sees a's revocation");
    assert.equal(b.registry.revoked(theirs.idHex), false);
  } finally {
    await a.close();
    await b.close();
  }
});
