// A local EVM chain for tests, benchmarks, the demo and a developer's machine: anvil from npm (@foundry-rs/anvil) on a
// loopback port (or inside a testbed host), ready when it answers eth_chainId, with helpers to fund accounts and
// deploy the NtmRegistry contract. Like the other test hosts, it is always stopped: withChain() stops it when its
// body throws, and an exiting process takes its chains with it. An ISP runs a permissioned chain instead
// (docs/ledger.md); nothing but this file knows the chain is anvil.
//
//   node dist/scripts/chain.js [--host ADDR] [--port P] [--block-time S] [--state FILE] [--deploy] [--fund 0xADDR,…]
//
// prints one JSON line {"ready":true,"rpcUrl":…,"pid":anvil's,"contract":…} and runs until SIGINT/SIGTERM.
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { RegistryContract } from '../agent/src/registry/evm/contract.js';
import { randomPrivateKey, KeyPair } from '../agent/src/crypto/secp256k1.js';
import { NtmError } from '../agent/src/types/errors.js';

/** anvil did not start, or stopped answering. */
export class ChainStartError extends NtmError {
  override readonly name = 'ChainStartError';
  override readonly code = 'chain_start';
}

export interface ChainOptions {
  /** Address anvil listens on (default 127.0.0.1; inside a testbed host, that host's address). */
  readonly host?: string;
  /** 0 (default): a free port, as anvil reports it. */
  readonly port?: number;
  /** Seconds per block; 0 (default): a block per transaction as soon as it arrives ("automine"). */
  readonly blockTimeS?: number;
  /** Block gas limit (default 30,000,000, Ethereum mainnet's and Besu's default). */
  readonly gasLimit?: number;
  /**
   * Gas free, as on the ISP's QBFT chain (docs/ledger.md: zeroBaseFee, --min-gas-price=0): anvil's base fee starts at
   * 0 and stays there. Otherwise (default) it starts at 1 gwei and, by EIP-1559, rises 12.5% per full block: a DC
   * that fills a hundred blocks in a row (ledger_dc_capacity) has spent its 1,000 ether and its outbox stops.
   */
  readonly freeGas?: boolean;
  /** Load the chain from this file at start and write it back at a clean stop (a chain that survives restarts). */
  readonly statePath?: string;
  /** Starts the process (default: a child of this one); a testbed passes `(argv) => tb.spawn(host, argv)`. */
  readonly spawn?: (argv: string[]) => ChildProcess;
  readonly startTimeoutMs?: number;
}

export interface LocalChain {
  readonly rpcUrl: string;
  readonly chainId: number;
  readonly port: number;
  readonly proc: ChildProcess;
  /** What anvil printed (for failure messages). */
  output(): string;
  /** Gives `address` `eth` ether (anvil_setBalance), so it can pay for gas. */
  fund(address: string, eth?: number): Promise<void>;
  /** Deploys NtmRegistry from a fresh funded account. */
  deploy(): Promise<{ address: string; block: number }>;
  /** SIGTERM (anvil writes its state file), SIGKILL after 5 s. Idempotent. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** The anvil binary of the installed platform package (bin.mjs would add a node process between us and anvil). */
export function anvilBinary(): string {
  const require = createRequire(import.meta.url);
  const pkg = require.resolve(`@foundry-rs/anvil-${process.platform}-${process.arch === 'x64' ? 'amd64' : process.arch}/package.json`);
  return join(dirname(pkg), 'bin', 'anvil');
}

/** One JSON-RPC call (fetch: anvil's own methods are not in viem's typed public actions). */
export async function rpc<T>(rpcUrl: string, method: string, params: unknown[] = [], timeoutMs = 5000): Promise<T> {
  const res = await fetch(rpcUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const j = (await res.json()) as { result?: T; error?: { message: string } };
  if (j.error) throw new ChainStartError(`${method}: ${j.error.message}`);
  return j.result as T;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

export async function startChain(opts: ChainOptions = {}): Promise<LocalChain> {
  const host = opts.host ?? '127.0.0.1';
  const argv = [
    anvilBinary(),
    '--host', host,
    '--port', String(opts.port ?? 0),
    '--hardfork', 'cancun',
    '--gas-limit', String(opts.gasLimit ?? 30_000_000),
    '--accounts', '1',
    ...(opts.blockTimeS ? ['--block-time', String(opts.blockTimeS)] : []),
    ...(opts.freeGas ? ['--block-base-fee-per-gas', '0'] : []),
    ...(opts.statePath ? ['--state', opts.statePath] : []),
  ];
  const proc = opts.spawn ? opts.spawn(argv) : spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(proc);
  let out = '';
  const collect = (d: string): void => {
    if (out.length < 200_000) out += d;
  };
  proc.stdout?.setEncoding('utf8').on('data', collect);
  proc.stderr?.setEncoding('utf8').on('data', collect);
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  void exited.then(() => running.delete(proc));

  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill(signal);
    const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  };

  try {
    const deadline = Date.now() + (opts.startTimeoutMs ?? 20_000);
    let port = 0;
    while (port === 0) {
      const m = /Listening on [^\s]*:(\d+)/.exec(out);
      if (m) port = Number(m[1]);
      else if (proc.exitCode !== null || proc.signalCode !== null) throw new ChainStartError(`anvil exited: ${out.slice(-2000)}`);
      else if (Date.now() > deadline) throw new ChainStartError(`anvil did not listen in time: ${out.slice(-2000)}`);
      else await new Promise((r) => setTimeout(r, 50));
    }
    const rpcUrl = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
    let chainId: number | undefined;
    while (chainId === undefined) {
      try {
        chainId = Number(await rpc<string>(rpcUrl, 'eth_chainId', [], 1000));
      } catch (e) {
        if (Date.now() > deadline) throw new ChainStartError(`anvil does not answer eth_chainId: ${(e as Error).message}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    const fund = async (address: string, eth = 1000): Promise<void> => {
      await rpc(rpcUrl, 'anvil_setBalance', [address, `0x${(BigInt(eth) * 10n ** 18n).toString(16)}`]);
    };
    return {
      rpcUrl,
      chainId,
      port,
      proc,
      output: () => out,
      fund,
      deploy: async () => {
        const key = randomPrivateKey();
        try {
          await fund(KeyPair.fromPrivateKey(key).idHex);
          return await RegistryContract.deploy({ rpcUrl, privateKey: key, pollMs: 50 });
        } finally {
          key.fill(0);
        }
      },
      stop,
    };
  } catch (e) {
    await stop('SIGKILL');
    throw e;
  }
}

/** Runs `body` with a fresh chain and always stops it. */
export async function withChain<T>(opts: ChainOptions, body: (chain: LocalChain) => Promise<T>): Promise<T> {
  const chain = await startChain(opts);
  try {
    return await body(chain);
  } catch (e) {
    process.stderr.write(`--- anvil output (last lines)\n${chain.output().slice(-1500)}\n`);
    throw e;
  } finally {
    await chain.stop();
  }
}

async function main(argv: string[]): Promise<void> {
  let host = '127.0.0.1';
  let port = 0;
  let blockTimeS = 0;
  let statePath: string | undefined;
  let deploy = false;
  const fund: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--host') host = argv[++i] ?? host;
    else if (a === '--port') port = Number(argv[++i]);
    else if (a === '--block-time') blockTimeS = Number(argv[++i]);
    else if (a === '--state') statePath = argv[++i];
    else if (a === '--deploy') deploy = true;
    else if (a === '--fund') fund.push(...(argv[++i] ?? '').split(',').filter(Boolean));
    else throw new ChainStartError(`unknown argument ${a}; usage: chain.js [--host ADDR] [--port P] [--block-time S] [--state FILE] [--deploy] [--fund 0xADDR,…]`);
  }
  const chain = await startChain({ host, port, blockTimeS, ...(statePath ? { statePath } : {}) });
  const stop = (): void => void chain.stop().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  for (const a of fund) await chain.fund(a);
  const contract = deploy ? await chain.deploy() : undefined;
  process.stdout.write(`${JSON.stringify({ ready: true, rpcUrl: chain.rpcUrl, chainId: chain.chainId, pid: chain.proc.pid, ...(contract ? { contract: contract.address, deployBlock: contract.block } : {}) })}\n`);
}

if (import.meta.filename === process.argv[1]) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`${(e as Error).message}\n`);
    process.exit(1);
  });
}
