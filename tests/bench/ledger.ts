// Ledger benchmark (issue 12): Node Transactions committed to the chain per second when the DC batches them, on the
// local node (anvil with a fixed block period, as a QBFT chain has), and the gas a Node Transaction costs inside a
// batch, measured from receipts — the figures docs/ledger.md turns into a permissioned chain's capacity.
//
//   node dist/tests/bench/ledger.js [--quick] [--block-time S]      prints the figures as JSON
import { Identity } from '../../agent/src/protocol/identity.js';
import * as NT from '../../agent/src/protocol/node-transaction.js';
import { maxBatch, RegistryContract } from '../../agent/src/registry/evm/contract.js';
import { withChain } from '../../scripts/chain.js';
import { createLogger } from '../../agent/src/util/log.js';
import { loadAverage, round } from './results.js';

export interface LedgerFigures {
  /** First-time Node Transactions on the chain per second, batches as large as the DC makes them, one in flight. */
  readonly node_transactions_committed_per_s: number;
  readonly committed: number;
  readonly elapsed_s: number;
  readonly block_time_s: number;
  readonly block_gas_limit: number;
  readonly batch_size: number;
  /** Gas a first-time Node Transaction adds to a batch (new storage slot): the slope between two batch sizes. */
  readonly gas_per_nt_first: number;
  /** Gas a newer Node Transaction of a known ID adds (storage slot rewritten). */
  readonly gas_per_nt_update: number;
  /** Gas of a batch beyond its entries (21,000 intrinsic, the call, the status array). */
  readonly gas_per_batch_fixed: number;
  /** (block gas limit − fixed) / gas_per_nt_first / block time: what the chain could carry with full blocks. */
  readonly ceiling_nt_per_s: number;
  /** /proc/loadavg's 1-minute figure before and after (the machine is shared). */
  readonly load_1m: { readonly before: number; readonly after: number };
}

export interface LedgerBenchOptions {
  readonly quick?: boolean;
  readonly blockTimeS?: number;
  readonly log?: (line: string) => void;
}

const GAS_LIMIT = 30_000_000;

function signedNts(n: number, dc: Identity, timestamp: number, terminals?: Identity[]): { nts: Buffer[]; terminals: Identity[] } {
  const ts = terminals ?? Array.from({ length: n }, () => Identity.generate());
  return { nts: ts.map((t) => NT.encode(NT.sign(t, { dcId: dc.id, revoked: false, timestamp }))), terminals: ts };
}

export async function benchLedger(opts: LedgerBenchOptions = {}): Promise<LedgerFigures> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const blockTimeS = opts.blockTimeS ?? 1;
  const total = opts.quick ? 1500 : 20_000;
  const before = loadAverage();
  return withChain({ blockTimeS, gasLimit: GAS_LIMIT }, async (chain) => {
    const { address } = await chain.deploy();
    const dc = Identity.generate();
    await chain.fund(dc.idHex, 1_000_000);
    const key = dc.exportPrivateKey();
    const c = await RegistryContract.connect({ rpcUrl: chain.rpcUrl, address, privateKey: key, pollMs: 50, log: createLogger(process.env.NTM_LOG ?? 'warn') });
    key.fill(0);
    try {
      await c.registerDc(dc.publicKeyUncompressed, Buffer.from('bench'));

      // Gas per entry: the slope between a batch of 10 and one of 110 (same kind of entries).
      const small = signedNts(10, dc, 1);
      const big = signedNts(110, dc, 1);
      const g10 = (await c.submit(small.nts)).gasUsed;
      const g110 = (await c.submit(big.nts)).gasUsed;
      const first = (g110 - g10) / 100;
      const fixed = g10 - 10 * first;
      const u10 = (await c.submit(signedNts(10, dc, 2, small.terminals).nts)).gasUsed;
      const u110 = (await c.submit(signedNts(110, dc, 2, big.terminals).nts)).gasUsed;
      const update = (u110 - u10) / 100;
      const batch = maxBatch(BigInt(GAS_LIMIT));
      log(`ledger: ${round(first, 0)} gas per first-time NT, ${round(update, 0)} per update, ${round(fixed, 0)} per batch; batches of ${batch}`);

      const { nts } = signedNts(total, dc, 3);
      const t0 = performance.now();
      let committed = 0;
      for (let i = 0; i < nts.length; i += batch) {
        const r = await c.submit(nts.slice(i, i + batch));
        committed += r.statuses.filter((s) => s === 'accepted').length;
      }
      const elapsed = (performance.now() - t0) / 1000;
      if (committed !== total) throw new Error(`only ${committed} of ${total} Node Transactions were accepted`);
      return {
        node_transactions_committed_per_s: round(committed / elapsed, 1),
        committed,
        elapsed_s: round(elapsed, 2),
        block_time_s: blockTimeS,
        block_gas_limit: GAS_LIMIT,
        batch_size: batch,
        gas_per_nt_first: round(first, 0),
        gas_per_nt_update: round(update, 0),
        gas_per_batch_fixed: round(fixed, 0),
        ceiling_nt_per_s: round((GAS_LIMIT - fixed) / first / blockTimeS, 0),
        load_1m: { before, after: loadAverage() },
      };
    } finally {
      c.close();
    }
  });
}

if (import.meta.filename === process.argv[1]) {
  const argv = process.argv.slice(2);
  const bt = argv.indexOf('--block-time');
  benchLedger({ quick: argv.includes('--quick'), ...(bt >= 0 ? { blockTimeS: Number(argv[bt + 1]) } : {}) }).then(
    (f) => process.stdout.write(`${JSON.stringify({ ledger: f }, null, 2)}\n`),
    (e: unknown) => {
      process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
      process.exit(1);
    },
  );
}
