// Relay Servers on the NtmRegistry contract (paper §3.1: RSs that come and go announce themselves to their DC; here
// through the chain), on a real local chain (anvil), through the viem client the RS and the DC use: an RS announces
// itself from its own account for a registered DC, nobody announces with a key that is not their account's, an
// unknown DC is refused, a withdrawal removes it, and the events say all of it to the DC that follows them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Identity } from '../../agent/src/protocol/identity.js';
import { signServerRecord } from '../../agent/src/protocol/dc-record.js';
import { ContractRevertError } from '../../agent/src/registry/evm/errors.js';
import { RegistryContract, type LedgerEvent } from '../../agent/src/registry/evm/contract.js';
import { withChain, type LocalChain } from '../../scripts/chain.js';

/** A funded account with a client whose sender it is. */
async function account(chain: LocalChain, address: string): Promise<{ id: Identity; c: RegistryContract }> {
  const id = Identity.generate();
  await chain.fund(id.idHex);
  const key = id.exportPrivateKey();
  const c = await RegistryContract.connect({ rpcUrl: chain.rpcUrl, address, privateKey: key, pollMs: 20 });
  key.fill(0);
  return { id, c };
}

const rsRecord = (rs: Identity, port: number): Uint8Array =>
  signServerRecord(rs, { role: 'rs', time: Date.now(), endpoints: [{ family: 4, address: '192.0.2.66', port }], poolV4: '', poolV6: '' });

const refused = (reason: string) => (e: unknown) => e instanceof ContractRevertError && e.reason === reason;

/** The relay events of blocks [from, head], as (kind, rs, dc). */
async function relayEvents(c: RegistryContract, from: number): Promise<Array<[string, string, string]>> {
  const evs = await c.events(from, await c.blockNumber());
  return evs.filter((e): e is Extract<LedgerEvent, { kind: 'relay' | 'relay-withdrawn' }> => e.kind === 'relay' || e.kind === 'relay-withdrawn').map((e) => [e.kind, e.id, e.dc]);
}

test('Relay Servers on NtmRegistry (anvil)', async (t) => {
  await withChain({}, async (chain) => {
    const { address } = await chain.deploy();
    const dcA = await account(chain, address);
    const dcB = await account(chain, address);
    await dcA.c.registerDc(dcA.id.publicKeyUncompressed, Buffer.from('a'));
    await dcB.c.registerDc(dcB.id.publicKeyUncompressed, Buffer.from('b'));
    const rs1 = await account(chain, address);
    const rs2 = await account(chain, address);

    await t.test('an RS announces itself for its DC from its own account: relay(), the list and a RelayRecord event', async () => {
      const from = await rs1.c.blockNumber();
      const record = rsRecord(rs1.id, 7200);
      await rs1.c.announceRelay(rs1.id.publicKeyUncompressed, dcA.id.idHex, record);
      const r = await dcA.c.relay(rs1.id.idHex);
      assert.deepEqual(r && { dc: r.dc, publicKey: r.publicKey, record: r.record }, { dc: dcA.id.idHex, publicKey: rs1.id.publicKey, record: Buffer.from(record) });
      const list = await dcA.c.relays();
      assert.deepEqual(list.relays.map((x) => x.id), [rs1.id.idHex]);
      const evs = await dcA.c.events(from + 1, await dcA.c.blockNumber());
      const ev = evs.find((e) => e.kind === 'relay');
      assert.ok(ev && ev.kind === 'relay');
      assert.deepEqual([ev.id, ev.dc, ev.publicKey, ev.record], [rs1.id.idHex, dcA.id.idHex, rs1.id.publicKey, Buffer.from(record)]);
    });

    await t.test('an announcement with a key that is not the sender\'s is refused (nobody announces another\'s RS)', async () => {
      const victim = Identity.generate();
      await assert.rejects(rs2.c.announceRelay(victim.publicKeyUncompressed, dcA.id.idHex, rsRecord(victim, 7200)), refused('BadPublicKey'));
      // A DC's own key, sent from the RS's account, no more.
      await assert.rejects(rs2.c.announceRelay(dcA.id.publicKeyUncompressed, dcA.id.idHex, rsRecord(rs2.id, 7200)), refused('BadPublicKey'));
      assert.equal(await dcA.c.relay(victim.idHex), undefined);
      assert.equal(await dcA.c.relay(rs2.id.idHex), undefined);
    });

    await t.test('an RS cannot name a DC the contract does not know', async () => {
      const nobody = Identity.generate();
      await assert.rejects(rs2.c.announceRelay(rs2.id.publicKeyUncompressed, nobody.idHex, rsRecord(rs2.id, 7200)), refused('UnknownDc'));
      assert.equal(await dcA.c.relay(rs2.id.idHex), undefined);
    });

    await t.test('moving to another DC withdraws it from the first; a withdrawal removes it, once', async () => {
      await rs2.c.announceRelay(rs2.id.publicKeyUncompressed, dcA.id.idHex, rsRecord(rs2.id, 7201));
      const from = (await rs2.c.blockNumber()) + 1;
      await rs2.c.announceRelay(rs2.id.publicKeyUncompressed, dcB.id.idHex, rsRecord(rs2.id, 7201));
      assert.equal((await dcA.c.relay(rs2.id.idHex))?.dc, dcB.id.idHex);
      // rs1 leaves: the list keeps rs2 (the last entry moved into rs1's place).
      await rs1.c.withdrawRelay();
      assert.equal(await dcA.c.relay(rs1.id.idHex), undefined);
      assert.deepEqual((await dcA.c.relays()).relays.map((x) => [x.id, x.dc]), [[rs2.id.idHex, dcB.id.idHex]]);
      await assert.rejects(rs1.c.withdrawRelay(), refused('NotARelay'));
      await rs2.c.withdrawRelay();
      assert.equal((await dcA.c.relays()).relays.length, 0);
      assert.deepEqual(await relayEvents(dcA.c, from), [
        ['relay-withdrawn', rs2.id.idHex, dcA.id.idHex],
        ['relay', rs2.id.idHex, dcB.id.idHex],
        ['relay-withdrawn', rs1.id.idHex, dcA.id.idHex],
        ['relay-withdrawn', rs2.id.idHex, dcB.id.idHex],
      ]);
      // It may come back.
      await rs1.c.announceRelay(rs1.id.publicKeyUncompressed, dcA.id.idHex, rsRecord(rs1.id, 7200));
      assert.deepEqual((await dcA.c.relays()).relays.map((x) => x.id), [rs1.id.idHex]);
    });

    for (const x of [dcA, dcB, rs1, rs2]) x.c.close();
  });
});
