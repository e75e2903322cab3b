// NtmRegistry on a real local chain (anvil), through the viem client the DC uses: the contract refuses what a DC must
// refuse (forged signatures, replays, a revocation undone), skips bad entries of a batch without losing the good ones,
// keeps DCs and their address blocks disjoint, and its events rebuild the same state a cache keeps.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Identity } from '../../agent/src/protocol/identity.js';
import * as NT from '../../agent/src/protocol/node-transaction.js';
import { ContractRevertError } from '../../agent/src/registry/evm/errors.js';
import { RegistryContract, submitGas, type LedgerEvent } from '../../agent/src/registry/evm/contract.js';
import { startChain, withChain, type LocalChain } from '../../scripts/chain.js';
import { tempDir } from '../lib/ntm.js';

const N = BigInt('0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141');

/** A DC: its identity is its chain account; registered with a placeholder record (the contract keeps it opaque). */
async function dcOn(chain: LocalChain, address: string, register = true): Promise<{ id: Identity; c: RegistryContract }> {
  const id = Identity.generate();
  await chain.fund(id.idHex);
  const key = id.exportPrivateKey();
  const c = await RegistryContract.connect({ rpcUrl: chain.rpcUrl, address, privateKey: key, pollMs: 20 });
  key.fill(0);
  if (register) await c.registerDc(id.publicKeyUncompressed, Buffer.from(`record of ${id.idHex}`));
  return { id, c };
}

function nt(t: Identity, dc: Identity, timestamp: number, revoked = false): Buffer {
  return NT.encode(NT.sign(t, { dcId: dc.id, revoked, timestamp }));
}

/** A Node Transaction for `victim` made by someone without its key: victim's ID, the forger's key and signature. */
function forged(victim: Identity, forger: Identity, dc: Identity, timestamp: number): Buffer {
  const fields = { id: victim.id, publicKey: forger.publicKey, dcId: dc.id, revoked: false, timestamp };
  return NT.encode({ ...fields, version: 1, signature: forger.signDigest(NT.digest(fields)) });
}

/** The same signature's malleable twin (s → n − s, v flipped): valid ECDSA, refused because it is high-s. */
function highS(bytes: Buffer): Buffer {
  const out = Buffer.from(bytes);
  const s = BigInt(`0x${out.subarray(115, 147).toString('hex')}`);
  Buffer.from((N - s).toString(16).padStart(64, '0'), 'hex').copy(out, 115);
  out[147] = out[147] === 27 ? 28 : 27;
  return out;
}

function withByte(bytes: Buffer, at: number, f: (v: number) => number): Buffer {
  bytes[at] = f(bytes[at]!);
  return bytes;
}

const dcCheck = (bytes: Buffer): NT.NodeTransactionCheck => {
  const d = NT.decode(bytes);
  return d instanceof NT.NodeTransactionDecodeError ? 'malformed' : NT.check(d);
};

test('NtmRegistry on anvil', async (t) => {
  await withChain({}, async (chain) => {
    const { address, block: deployBlock } = await chain.deploy();
    const a = await dcOn(chain, address);
    const b = await dcOn(chain, address);

    await t.test('an accepted Node Transaction is readable: managing DC, timestamp, and its exact bytes', async () => {
      const term = Identity.generate();
      const bytes = nt(term, a.id, 1_700_000_000_000);
      const r = await a.c.submit([bytes]);
      assert.deepEqual(r.statuses, ['accepted']);
      assert.deepEqual(await a.c.terminal(term.idHex), { dc: a.id.idHex, timestamp: 1_700_000_000_000, revoked: false });
      assert.deepEqual(await b.c.nodeTransaction(term.idHex), bytes);
      assert.equal(await a.c.terminal(Identity.generate().idHex), undefined);
    });

    await t.test('a forged signature is refused by the contract, as by the DC before it', async () => {
      const victim = Identity.generate();
      const forger = Identity.generate();
      const cases: Array<[string, Buffer]> = [
        ['victim ID signed by another key', forged(victim, forger, a.id, 1000)],
        ['high-s twin of a genuine signature', highS(nt(victim, a.id, 1001))],
        ['one bit of the signed timestamp changed', withByte(nt(victim, a.id, 1002), 82, (v) => v ^ 1)],
        ['v outside {27, 28}', withByte(nt(victim, a.id, 1003), 147, () => 29)],
      ];
      for (const [what, bytes] of cases) assert.notEqual(dcCheck(bytes), 'ok', `the DC accepts: ${what}`);
      const r = await a.c.submit(cases.map(([, x]) => x));
      assert.deepEqual(r.statuses, ['signature', 'signature', 'signature', 'signature']);
      assert.equal(await a.c.terminal(victim.idHex), undefined, 'the victim ID was registered');
    });

    await t.test('a Node Transaction carrying another key than its ID is refused (public-key)', async () => {
      const term = Identity.generate();
      const fields = { id: term.id, publicKey: Identity.generate().publicKey, dcId: a.id.id, revoked: false, timestamp: 5 };
      const bytes = NT.encode({ ...fields, version: 1, signature: term.signDigest(NT.digest(fields)) });
      assert.equal(dcCheck(bytes), 'public-key');
      assert.deepEqual((await a.c.submit([bytes])).statuses, ['public-key']);
    });

    await t.test('a replayed older or equal Node Transaction is refused; the same one again is a duplicate', async () => {
      const term = Identity.generate();
      const older = nt(term, a.id, 1000);
      const newer = nt(term, a.id, 2000);
      assert.deepEqual((await a.c.submit([older, newer])).statuses, ['accepted', 'accepted']);
      const r = await a.c.submit([older, newer, nt(term, a.id, 2000, true)]);
      assert.deepEqual(r.statuses, ['stale', 'duplicate', 'stale']);
      assert.deepEqual(await a.c.terminal(term.idHex), { dc: a.id.idHex, timestamp: 2000, revoked: false });
    });

    await t.test('revocation is sticky: no later Node Transaction clears it, and an unseen ID can be revoked', async () => {
      const term = Identity.generate();
      assert.deepEqual((await a.c.submit([nt(term, a.id, 1000), nt(term, a.id, 2000, true)])).statuses, ['accepted', 'accepted']);
      const r = await a.c.submit([nt(term, a.id, 3000), nt(term, a.id, 4000, true)]);
      assert.deepEqual(r.statuses, ['revoked', 'revoked']);
      assert.deepEqual(await a.c.terminal(term.idHex), { dc: a.id.idHex, timestamp: 2000, revoked: true });
      // Moving to another DC does not clear it either.
      assert.deepEqual((await b.c.submit([nt(term, b.id, 5000)])).statuses, ['revoked']);

      const unseen = Identity.generate();
      assert.deepEqual((await b.c.submit([nt(unseen, b.id, 10, true)])).statuses, ['accepted']);
      assert.deepEqual(await a.c.terminal(unseen.idHex), { dc: b.id.idHex, timestamp: 10, revoked: true });
      assert.deepEqual((await b.c.submit([nt(unseen, b.id, 11)])).statuses, ['revoked']);
    });

    await t.test('a DC revokes its own terminals without their signature, and only its own', async () => {
      const mine = Identity.generate();
      const theirs = Identity.generate();
      await a.c.submit([nt(mine, a.id, 100)]);
      await b.c.submit([nt(theirs, b.id, 100)]);
      await a.c.revokeByDc([mine.idHex]);
      assert.equal((await b.c.terminal(mine.idHex))?.revoked, true);
      assert.deepEqual((await a.c.submit([nt(mine, a.id, 200)])).statuses, ['revoked']);
      await assert.rejects(a.c.revokeByDc([theirs.idHex]), (e: unknown) => e instanceof ContractRevertError && e.reason === 'NotManagingDc');
      assert.equal((await a.c.terminal(theirs.idHex))?.revoked, false);
    });

    await t.test('one bad entry does not block a batch: the good ones around it are recorded', async () => {
      const t1 = Identity.generate();
      const t2 = Identity.generate();
      const victim = Identity.generate();
      const r = await a.c.submit([nt(t1, a.id, 1), forged(victim, t1, a.id, 1), nt(t2, b.id, 1), nt(t2, a.id, 1)]);
      assert.deepEqual(r.statuses, ['accepted', 'signature', 'wrong-dc', 'accepted']);
      const many = Array.from({ length: 40 }, () => nt(Identity.generate(), a.id, 7));
      const big = await a.c.submit(many);
      assert.ok(big.statuses.every((s) => s === 'accepted'));
      assert.ok(big.gasUsed <= Number(submitGas(40 * 148)), `40 first-time entries used ${big.gasUsed} gas, over the client's bound`);
      assert.equal((await a.c.terminal(t1.idHex))?.dc, a.id.idHex);
      assert.equal((await a.c.terminal(t2.idHex))?.dc, a.id.idHex);
    });

    await t.test('only registered DCs submit, and only for their own account key', async () => {
      const stranger = await dcOn(chain, address, false);
      await assert.rejects(stranger.c.submit([nt(Identity.generate(), stranger.id, 1)]), (e: unknown) => e instanceof ContractRevertError && e.reason === 'NotADc');
      await assert.rejects(stranger.c.registerDc(a.id.publicKeyUncompressed, Buffer.from('x')), (e: unknown) => e instanceof ContractRevertError && e.reason === 'BadPublicKey');
      assert.deepEqual((await a.c.dcs()).map((d) => d.id).sort(), [a.id.idHex, b.id.idHex].sort());
      assert.deepEqual((await a.c.dc(b.id.idHex))?.publicKey, b.id.publicKey);
    });

    await t.test('an address block that overlaps a claimed one is refused, in either direction and family', async () => {
      assert.equal(await a.c.claimBlock('198.18.4.0/24'), '198.18.4.0/24');
      assert.equal(await a.c.claimBlock('fd4e:544d:1::/48'), 'fd4e:544d:1::/48');
      const overlaps = (e: unknown): boolean => e instanceof ContractRevertError && e.reason === 'BlockOverlaps';
      await assert.rejects(b.c.claimBlock('198.18.0.0/16'), overlaps); // contains a's block
      await assert.rejects(b.c.claimBlock('198.18.4.128/25'), overlaps); // inside a's block
      await assert.rejects(b.c.claimBlock('198.18.4.0/24'), overlaps);
      await assert.rejects(b.c.claimBlock('fd4e:544d::/32'), overlaps);
      assert.equal(await b.c.claimBlock('198.18.5.0/24'), '198.18.5.0/24');
      assert.equal(await b.c.claimBlock('fd4e:544d:2::/48'), 'fd4e:544d:2::/48');
      assert.deepEqual(await b.c.blocks(), [
        { dc: a.id.idHex, cidr: '198.18.4.0/24' },
        { dc: a.id.idHex, cidr: 'fd4e:544d:1::/48' },
        { dc: b.id.idHex, cidr: '198.18.5.0/24' },
        { dc: b.id.idHex, cidr: 'fd4e:544d:2::/48' },
      ]);
    });

    await t.test('the event log replays to the state the contract holds', async () => {
      const events: LedgerEvent[] = [];
      const head = await a.c.blockNumber();
      const done = new Promise<void>((resolve) => {
        const stop = a.c.follow(deployBlock, (evs, next) => {
          events.push(...evs);
          if (next > head) {
            stop();
            resolve();
          }
        });
      });
      await done;
      const terminals = new Map<string, { dc: string; timestamp: number; revoked: boolean }>();
      for (const e of events) {
        if (e.kind === 'node') terminals.set(e.id, { dc: e.dc, timestamp: e.timestamp, revoked: e.revoked });
        if (e.kind === 'revoked-by-dc') terminals.set(e.id, { ...terminals.get(e.id)!, revoked: true });
      }
      assert.ok(terminals.size >= 8, `only ${terminals.size} terminals in the events`);
      for (const [id, state] of terminals) assert.deepEqual(await a.c.terminal(id), state, id);
      assert.equal(events.filter((e) => e.kind === 'dc').length, 2);
      assert.deepEqual(events.filter((e) => e.kind === 'block').map((e) => e.kind === 'block' && e.cidr), ['198.18.4.0/24', 'fd4e:544d:1::/48', '198.18.5.0/24', 'fd4e:544d:2::/48']);
    });
    a.c.close();
    b.c.close();
  });
});

test('three DCs claiming a block in the same chain block get disjoint blocks', async () => {
  await withChain({ blockTimeS: 2 }, async (chain) => {
    const { address } = await chain.deploy();
    const dcs = await Promise.all([0, 1, 2].map(() => dcOn(chain, address)));
    // All three start from the same candidate, as three DCs whose IDs hash to the same /24 would.
    const before = await dcs[0]!.c.blockNumber();
    const claims = await Promise.all(dcs.map((d) => d.c.claimFreeBlock('198.18.0.0/15', 24, 7)));
    assert.equal(new Set(claims).size, 3, `claims: ${claims.join(', ')}`);
    assert.deepEqual([...claims].sort(), ['198.18.7.0/24', '198.18.8.0/24', '198.18.9.0/24']);
    const blocks = await dcs[0]!.c.blocks();
    assert.deepEqual(blocks.map((b) => b.dc).sort(), dcs.map((d) => d.id.idHex).sort());
    const events = await dcs[0]!.c.events(before + 1, await dcs[0]!.c.blockNumber());
    const minedIn = new Set(events.filter((e) => e.kind === 'block').map((e) => e.block));
    assert.equal(minedIn.size, 1, 'the three claims were not in one block: the test did not race them');
    for (const d of dcs) d.c.close();
  });
});

test('a batch submitted while the chain is down waits, and is mined once when the chain is back', async () => {
  const dir = tempDir('ntm-evm-');
  const state = join(dir.path, 'chain.json');
  const first = await startChain({ statePath: state });
  let second: LocalChain | undefined;
  let client: RegistryContract | undefined;
  try {
    const { address } = await first.deploy();
    const d = await dcOn(first, address);
    client = d.c;
    const t1 = Identity.generate();
    await client.submit([nt(t1, d.id, 1)]);
    await first.stop(); // SIGTERM: anvil writes its state file
    const t2 = Identity.generate();
    let settled = false;
    const pending = client.submit([nt(t2, d.id, 2), nt(t1, d.id, 1)]);
    void pending.finally(() => (settled = true)).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal(settled, false, 'the submission settled while the chain was down');
    second = await startChain({ statePath: state, port: first.port });
    const r = await pending;
    assert.deepEqual(r.statuses, ['accepted', 'duplicate']);
    assert.equal((await client.terminal(t1.idHex))?.timestamp, 1, 'state lost across the restart');
    assert.equal((await client.terminal(t2.idHex))?.timestamp, 2);
  } finally {
    client?.close();
    await first.stop();
    await second?.stop();
    dir.remove();
  }
});
