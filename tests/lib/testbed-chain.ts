// A local chain (anvil, by the project's own scripts/chain.ts) inside a testbed host, with the NtmRegistry contract
// deployed and accounts funded for gas, as the netns tests of the EVM ledger use it; read back with viem from inside a
// host (tests/lib/chain-read.ts), never through a DC. Always stopped by the test that started it (stopChain in a
// finally), SIGSTOP'd or not.
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { Testbed } from '../../scripts/netns/index.js';
import { firstJsonLine, ROOT } from './ntm.js';
import type { ChainView } from './chain-read.js';

const CHAIN_JS = join(ROOT, 'dist/scripts/chain.js');
const CHAIN_READ_JS = join(ROOT, 'dist/tests/lib/chain-read.js');

export interface Chain {
  readonly proc: ChildProcess;
  readonly rpcUrl: string;
  readonly contract: string;
  readonly deployBlock: number;
  /** anvil's own process (SIGSTOP stops the chain). */
  readonly pid: number;
}

/** scripts/chain.ts in `host`, listening on `address`:8545, the contract deployed, `fund` given ether for gas. */
export async function startChainIn(tb: Testbed, host: string, address: string, fund: string[], blockTimeS = 0): Promise<Chain> {
  const argv = [process.execPath, CHAIN_JS, '--host', address, '--port', '8545', '--deploy', '--fund', fund.join(','), ...(blockTimeS ? ['--block-time', String(blockTimeS)] : [])];
  const proc = tb.spawn(host, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  const j = await firstJsonLine<{ rpcUrl: string; contract: string; deployBlock: number; pid: number }>(proc, 60_000, `chain in ${host}`, (l) => !!(l as { ready?: boolean }).ready);
  return { proc, rpcUrl: j.rpcUrl, contract: j.contract, deployBlock: j.deployBlock, pid: j.pid };
}

export function stopChain(c: Chain | undefined): Promise<void> {
  if (!c || c.proc.exitCode !== null || c.proc.signalCode !== null) return Promise.resolve();
  return new Promise((r) => {
    c.proc.once('exit', () => r());
    try {
      process.kill(c.pid, 'SIGCONT');
    } catch {
      // anvil already gone
    }
    c.proc.kill('SIGTERM');
    setTimeout(() => c.proc.kill('SIGKILL'), 8000).unref();
  });
}

/** The contract's events and state, read in `host` with viem. */
export async function readChain(tb: Testbed, host: string, c: Chain, idsFile?: string): Promise<ChainView> {
  const r = await tb.exec(host, [process.execPath, CHAIN_READ_JS, '--rpc', c.rpcUrl, '--contract', c.contract, '--from', String(c.deployBlock), ...(idsFile ? ['--ids', idsFile] : [])], {
    timeoutMs: 60_000,
  });
  if (r.code !== 0) throw new Error(`chain-read failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as ChainView;
}

/** The flags of `ntm dc` and `ntm rs` for this chain. */
export const ledgerArgs = (c: Chain): string[] => ['--ledger', 'evm', '--chain-rpc', c.rpcUrl, '--chain-contract', c.contract, '--chain-deploy-block', String(c.deployBlock)];
