// Deploys the NtmRegistry contract to any EVM chain (an ISP's permissioned chain, docs/ledger.md) from an NTM
// identity file, and prints where it went: the address and block every DC is then configured with.
//
//   node dist/scripts/ledger-deploy.js --rpc http://besu-1:8545 --key /var/lib/ntm/deployer.key
import { Identity } from '../agent/src/protocol/identity.js';
import { RegistryContract } from '../agent/src/registry/evm/contract.js';
import { createLogger } from '../agent/src/util/log.js';

async function main(argv: string[]): Promise<void> {
  let rpcUrl = '';
  let keyPath = '';
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--rpc') rpcUrl = argv[++i] ?? '';
    else if (argv[i] === '--key') keyPath = argv[++i] ?? '';
    else throw new RangeError(`unknown argument ${argv[i]}`);
  }
  if (!rpcUrl || !keyPath) throw new RangeError('usage: ledger-deploy.js --rpc URL --key IDENTITY-FILE');
  const id = await Identity.load(keyPath);
  const key = id.exportPrivateKey();
  try {
    const { address, block } = await RegistryContract.deploy({ rpcUrl, privateKey: key, log: createLogger('info') });
    process.stdout.write(`${JSON.stringify({ contract: address, deployBlock: block, deployer: id.idHex })}\n`);
  } finally {
    key.fill(0);
  }
}

main(process.argv.slice(2)).catch((e: unknown) => {
  process.stderr.write(`${(e as Error).message}\n`);
  process.exit(1);
});
