// The DC's capacity and memory on the EVM ledger beside SQLite (issue 12, Done-when 6): dc-capacity.ts's run twice in
// one benchmark, first with the DC's own SQLite registry, then with the NtmRegistry contract on a local anvil, so the
// machine's load of the moment falls on both. On the chain the DC answers each registration at once and its outbox
// (SQLite, on disk) drains to the contract in batches; the outbox figures say what was still pending when the memory
// was read, and how fast the local node took it.
//
// The chain mines a block per transaction as it arrives (anvil's automine), gas free (base fee 0, as the ISP's QBFT
// chain in docs/ledger.md): the fastest the local node goes, so the outbox lags the DC by as little as it can here
// (a QBFT chain's rate is in docs/ledger.md). anvil runs on the load generator's core, leaving the DC's core to the DC.
import { spawn } from 'node:child_process';
import { cpus } from 'node:os';
import { withChain } from '../../scripts/chain.js';
import { benchDcCapacity, type OutboxFigures } from './dc-capacity.js';
import { loadAverage, round, type DcCapacityFigures } from './results.js';

export interface LedgerDcCapacityFigures {
  readonly sqlite: DcCapacityFigures;
  readonly evm: DcCapacityFigures & { readonly outbox: OutboxFigures };
  /** VmRSS holding the terminals, EVM / SQLite (each settled the same way, rss_mib_100k). */
  readonly rss_evm_over_sqlite: number;
  /** First-time registrations answered per second, EVM / SQLite. */
  readonly registrations_evm_over_sqlite: number;
  readonly load_1m: { readonly before: number; readonly between: number; readonly after: number };
  readonly cpus: number;
  readonly chain: string;
}

export interface LedgerDcCapacityOptions {
  readonly terminals: number;
  readonly reregister: number;
  readonly settleS: number;
  /** How long the EVM run waits after the load for its outbox to drain (s). */
  readonly drainS: number;
  readonly log?: (line: string) => void;
}

export async function benchLedgerDcCapacity(o: LedgerDcCapacityOptions): Promise<LedgerDcCapacityFigures> {
  const log = o.log ?? (() => undefined);
  // The phases' time bound: on EVM the DC also stages to its outbox and runs the batcher; on the loaded shared machine
  // 300 s (dc_capacity's) ended the first-time phase at 82,944 of 100,000; at load ~20 the 100,000 took 353 s.
  const base = { terminals: o.terminals, reregister: o.reregister, settleS: o.settleS, seconds: 900, log };
  const before = loadAverage();
  log('ledger dc capacity: SQLite');
  const sqlite = await benchDcCapacity(base);
  const between = loadAverage();
  log('ledger dc capacity: EVM');
  // dc-capacity.ts gives the DC the last core and the load generator core 0.
  const genCore = '0';
  const evm = await withChain(
    // Gas free, as on the ISP's QBFT chain: with anvil's default fee market the 140 full blocks of 100,000 Node
    // Transactions raise the base fee ~10% a block, and after ~66,000 the DC's account could pay for no more (the
    // outbox then waits, retried, for ever: the 82,944 / 66,027 runs' "drain rate" was that).
    { blockTimeS: 0, freeGas: true, spawn: (argv) => spawn('taskset', ['-c', genCore, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] }) },
    async (chain) => {
      const { address, block } = await chain.deploy();
      return benchDcCapacity({ ...base, drainS: o.drainS, ledger: { rpcUrl: chain.rpcUrl, contract: address, deployBlock: block, fund: (id) => chain.fund(id) } });
    },
  );
  if (!evm.outbox) throw new Error('the EVM run reported no outbox');
  return {
    sqlite,
    evm: { ...evm, outbox: evm.outbox },
    rss_evm_over_sqlite: round(evm.rss_mib_100k / sqlite.rss_mib_100k, 3),
    registrations_evm_over_sqlite: round(evm.registrations_per_s / sqlite.registrations_per_s, 3),
    load_1m: { before, between, after: loadAverage() },
    cpus: cpus().length,
    chain: 'anvil: a block per transaction (automine), 30,000,000 gas per block, base fee 0, on the load generator\'s core',
  };
}
