// What the NtmRegistry contract holds, read straight from the chain with viem (never through a DC): the tests run it
// inside a testbed host that reaches the chain, and compare it with what the DCs answered.
//
//   node dist/tests/lib/chain-read.js --rpc URL --contract 0xADDR [--from BLOCK] [--ids FILE]
//
// Prints one JSON line (ChainView): per terminal ID, how many NodeTransaction events the contract emitted for it
// (an ID on the chain once has exactly one), refusals by status, the IDs revoked by a DC, the Relay Servers announced
// and their events, and for each ID of FILE (a JSON array) the contract's own state of it (managing DC, revoked).
import { readFileSync } from 'node:fs';
import { createPublicClient, getAddress, http, type Hex } from 'viem';
import { NtmRegistryAbi } from '../../agent/src/registry/evm/abi.js';
import { NT_STATUSES } from '../../agent/src/registry/evm/contract.js';

export interface ChainView {
  readonly head: number;
  /** NodeTransaction events by terminal ID (lowercase). */
  readonly nodeTransactions: Record<string, number>;
  /** NodeTransactionRefused events by status name. */
  readonly refused: Record<string, number>;
  /** RevokedByDc events: [terminal ID, DC ID]. */
  readonly revokedByDc: Array<[string, string]>;
  /** The contract's state of each ID asked for. */
  readonly terminals: Record<string, { dc: string; revoked: boolean }>;
  /** The Relay Servers announced now: [RS ID, the DC it serves]. */
  readonly relays: Array<[string, string]>;
  /** RelayRecord and RelayWithdrawn events, in chain order: [kind, RS ID, DC ID]. */
  readonly relayEvents: Array<['announced' | 'withdrawn', string, string]>;
}

async function main(argv: string[]): Promise<void> {
  const arg = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const rpc = arg('rpc');
  const contract = arg('contract');
  if (!rpc || !contract) throw new RangeError('usage: chain-read.js --rpc URL --contract 0xADDR [--from BLOCK] [--ids FILE]');
  const fromBlock = BigInt(arg('from') ?? '0');
  const idsFile = arg('ids');
  const ids = idsFile ? (JSON.parse(readFileSync(idsFile, 'utf8')) as string[]) : [];
  const client = createPublicClient({ transport: http(rpc, { timeout: 30_000 }) });
  const address = getAddress(contract);
  const head = await client.getBlockNumber();
  const lower = (a: Hex): string => a.toLowerCase();

  const nodeTransactions: Record<string, number> = {};
  for (const l of await client.getContractEvents({ address, abi: NtmRegistryAbi, eventName: 'NodeTransaction', fromBlock, toBlock: head })) {
    const id = lower(l.args.id!);
    nodeTransactions[id] = (nodeTransactions[id] ?? 0) + 1;
  }
  const refused: Record<string, number> = {};
  for (const l of await client.getContractEvents({ address, abi: NtmRegistryAbi, eventName: 'NodeTransactionRefused', fromBlock, toBlock: head })) {
    const s = NT_STATUSES[l.args.status!] ?? String(l.args.status);
    refused[s] = (refused[s] ?? 0) + 1;
  }
  const revokedByDc = (await client.getContractEvents({ address, abi: NtmRegistryAbi, eventName: 'RevokedByDc', fromBlock, toBlock: head })).map(
    (l) => [lower(l.args.id!), lower(l.args.dc!)] as [string, string],
  );
  const terminals: Record<string, { dc: string; revoked: boolean }> = {};
  for (let i = 0; i < ids.length; i += 50) {
    await Promise.all(
      ids.slice(i, i + 50).map(async (id) => {
        const [dc, , revoked] = await client.readContract({ address, abi: NtmRegistryAbi, functionName: 'terminal', args: [getAddress(id)], blockNumber: head });
        terminals[id.toLowerCase()] = { dc: lower(dc), revoked };
      }),
    );
  }
  const relays: Array<[string, string]> = [];
  const relayCount = await client.readContract({ address, abi: NtmRegistryAbi, functionName: 'relayCount', blockNumber: head });
  for (let i = 0n; i < relayCount; i++) {
    const rs = await client.readContract({ address, abi: NtmRegistryAbi, functionName: 'relayAt', args: [i], blockNumber: head });
    const [dc] = await client.readContract({ address, abi: NtmRegistryAbi, functionName: 'relay', args: [rs], blockNumber: head });
    relays.push([lower(rs), lower(dc)]);
  }
  const relayEvents: ChainView['relayEvents'] = [];
  for (const l of await client.getContractEvents({ address, abi: NtmRegistryAbi, fromBlock, toBlock: head })) {
    if (l.eventName === 'RelayRecord') relayEvents.push(['announced', lower(l.args.rs!), lower(l.args.dc!)]);
    if (l.eventName === 'RelayWithdrawn') relayEvents.push(['withdrawn', lower(l.args.rs!), lower(l.args.dc!)]);
  }
  const view: ChainView = { head: Number(head), nodeTransactions, refused, revokedByDc, terminals, relays, relayEvents };
  process.stdout.write(`${JSON.stringify(view)}\n`);
}

main(process.argv.slice(2)).catch((e: unknown) => {
  process.stderr.write(`${(e as Error).message}\n`);
  process.exit(1);
});
