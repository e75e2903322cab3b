// The EVM ledger beside SQLite on the paper topology (issue 12, Done-when 6): registration and communication start in
// both Table 1 columns with the DCs recording Node Transactions to the NtmRegistry contract, against the same
// procedures with each DC's own SQLite registry, interleaved on one testbed so the load of a shared machine falls on
// both alike. The DC answers a terminal at once and commits to the chain from its outbox (registry/evm/registry.ts),
// so the two should not differ beyond noise; the figures say whether they do, as ratios EVM / SQLite.
//
// The chain: anvil (scripts/chain.ts, 1 s blocks as a QBFT chain has) on the testbed's core router, which the link
// emulator does not delay (it delays forwarded packets only): each DC has a chain node beside it, as each DC of an
// ISP's QBFT chain would run or reach one in its own region. A DC on the chain is given no --peer: it finds the other
// DC in the contract's directory.
//
// Communication start on the chain is measured with DC_MN's cache of CN's Node Transaction warm (the event follower
// brought it in) and cold, alternately: before a cold run the benchmark deletes CN's row from DC_MN's cache table
// (a second connection to its SQLite file, WAL), so DC_MN's lookup of CN's managing DC misses and asks the chain
// (registry lookup(): eth_getLogs for CN's NodeTransaction events).
//
// Rounds: each round runs both backends one after the other, each with fresh roles (new keys, a new contract), the
// order alternating round by round (ABBA).
import { join } from 'node:path';
import { cpus } from 'node:os';
import { openDb } from '../../agent/src/store/db.js';
import type { RegistryBacklog } from '../../agent/src/types/registry.js';
import type { Testbed } from '../../scripts/netns/index.js';
import { withTestbed } from '../lib/testbed.js';
import { firstJsonLine, ROOT, startNtm, waitFor, withDaemons } from '../lib/ntm.js';
import {
  COLUMNS,
  communicationStartBound,
  communicationStartRuns,
  mnArgs,
  PAPER_MS,
  paperIds,
  registrationBound,
  registrationRuns,
  sleep,
  START_MS,
  startRoles,
  type Column,
  type PaperLedger,
  type PaperRoles,
} from './paper.js';
import { loadAverage, quantile, round, summarise, type ProcedureFigures } from './results.js';

const CHAIN_JS = join(ROOT, 'dist/scripts/chain.js');
/** The core router's address on each DC's site link (topologies/paper.json). */
const ROUTER = { dcmn: '192.0.2.1', dccn: '198.51.100.1' } as const;
const CHAIN_PORT = 8545;
const BLOCK_TIME_S = 1;

export type Backend = 'sqlite' | 'evm';

export interface LedgerPaperColumn {
  /** Re-registrations (the Node Transaction unchanged: nothing is staged on either backend), as in `registration`. */
  readonly registration: { readonly sqlite: ProcedureFigures; readonly evm: ProcedureFigures; readonly evm_over_sqlite: number };
  /** First-time registrations (a new MN identity each run: a new Node Transaction staged, on EVM into the outbox). */
  readonly first_registration: { readonly sqlite: ProcedureFigures; readonly evm: ProcedureFigures; readonly evm_over_sqlite: number };
  readonly communication_start: {
    readonly sqlite: ProcedureFigures;
    /** DC_MN had CN's Node Transaction in its cache (the event follower's). */
    readonly evm_warm: ProcedureFigures;
    /** DC_MN's cache had lost it: its lookup asked the chain. */
    readonly evm_cold: ProcedureFigures;
    readonly warm_over_sqlite: number;
    readonly cold_over_sqlite: number;
    /** Median cold − median warm: what a lookup on the chain adds to the critical path. */
    readonly cold_minus_warm_ms: number;
  };
  /** Both DCs' outboxes at the end of each EVM round (after waiting up to 30 s), summed over the rounds. */
  readonly chain: { readonly committed: number; readonly pending: number; readonly refused: number };
  /** Turns (one backend in one round) that failed to run through (a role not starting in time) and were run again. */
  readonly retried_turns: number;
  /** /proc/loadavg's 1-minute figure before and after the column (the machine is shared). */
  readonly load_1m: { readonly before: number; readonly after: number };
}

export interface LedgerPaperFigures {
  readonly today: LedgerPaperColumn;
  readonly vcpe: LedgerPaperColumn;
  readonly rounds: number;
  readonly cpus: number;
  readonly chain: string;
}

export interface LedgerPaperOptions {
  /** Per backend and column, over all rounds. */
  readonly registrationRuns: number;
  readonly firstRegistrationRuns: number;
  /** Per backend and column (the EVM backend runs this many warm and as many cold). */
  readonly communicationRuns: number;
  readonly rounds: number;
  readonly gapMs: number;
  readonly log?: (line: string) => void;
}

/** anvil with the contract deployed, inside the testbed's core router, listening on every address of it. */
async function chainOnRouter(tb: Testbed, fund: string[]): Promise<{ ledger: PaperLedger; stop(): Promise<void> }> {
  const proc = tb.spawn('inet', [process.execPath, CHAIN_JS, '--host', '0.0.0.0', '--port', String(CHAIN_PORT), '--block-time', String(BLOCK_TIME_S), '--deploy', '--fund', fund.join(',')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stop = () =>
    new Promise<void>((r) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return r();
      // chain.js stops its anvil on SIGTERM; a SIGKILL would leave anvil behind, so it gets time.
      const kill = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      proc.once('exit', () => (clearTimeout(kill), r()));
      proc.kill('SIGTERM');
    });
  try {
    const ready = await firstJsonLine<{ contract: string; deployBlock: number }>(proc, START_MS, 'chain on the core router', (j) => !!j.contract);
    const url = (a: string) => `http://${a}:${CHAIN_PORT}`;
    return { ledger: { rpc: { dcmn: url(ROUTER.dcmn), dccn: url(ROUTER.dccn) }, contract: ready.contract, deployBlock: ready.deployBlock }, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/**
 * A new MN (new data directory: a new identity) `runs` times, each after the one before stopped: each figure is its
 * first registration at DC_MN (the terminal's own request→response time, from its ready line). The last MN stays up.
 */
async function firstRegistrationRuns(tb: Testbed, r: PaperRoles, root: string, started: PaperRoles['mn'][], runs: number, gapMs: number, tag: string): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    await r.mn.stop();
    await sleep(gapMs);
    const mn = await startNtm(tb, 'mn', 'up', mnArgs(r.ids, `mn-${tag}-${i}`), join(root, `mn-${i}`), START_MS);
    started.push(mn);
    r.mn = mn;
    out.push(Number(mn.ready.registrationMs));
  }
  return out;
}

interface Samples {
  registration: number[];
  first: number[];
  comm: number[];
  commCold: number[];
}

const backlogOf = async (d: PaperRoles['dcmn']): Promise<RegistryBacklog> => ((await d.status()).registry as { backlog: RegistryBacklog }).backlog;

async function evmRound(
  tb: Testbed,
  r: PaperRoles,
  dir: string,
  started: PaperRoles['mn'][],
  s: Samples,
  o: LedgerPaperOptions,
  perRound: (n: number) => number,
  round: number,
): Promise<void> {
  const dcmnDb = openDb(join(dir, 'dcmn', 'dc.db'));
  try {
    const cn = String(r.cn.ready.id).toLowerCase();
    const cached = () => !!dcmnDb.prepare("SELECT 1 FROM evm_view WHERE kind = 'node' AND id = ?").get(cn);
    s.registration.push(...(await registrationRuns(r, perRound(o.registrationRuns), o.gapMs)));
    s.first.push(...(await firstRegistrationRuns(tb, r, dir, started, perRound(o.firstRegistrationRuns), o.gapMs, `evm${round}`)));
    // Cold and warm alternate; which comes first alternates by round.
    const cold: boolean[] = [];
    const c = await communicationStartRuns(r, 2 * perRound(o.communicationRuns), o.gapMs, async (i) => {
      const isCold = (i + round) % 2 === 1;
      cold.push(isCold);
      if (isCold) dcmnDb.prepare("DELETE FROM evm_view WHERE kind = 'node' AND id = ?").run(cn);
      else await waitFor("CN's Node Transaction in DC_MN's cache", cached, 15_000);
    });
    c.samples.forEach((x, i) => (cold[i] ? s.commCold : s.comm).push(x));
  } finally {
    dcmnDb.close();
  }
}

async function column(column: Column, o: LedgerPaperOptions): Promise<LedgerPaperColumn> {
  const log = o.log ?? (() => undefined);
  const before = loadAverage();
  const samples: Record<Backend, Samples> = {
    sqlite: { registration: [], first: [], comm: [], commCold: [] },
    evm: { registration: [], first: [], comm: [], commCold: [] },
  };
  const chain = { committed: 0, pending: 0, refused: 0 };
  let retried = 0;
  // Runs per round: the total spread over the rounds, at least one each.
  const perRound = (n: number) => Math.max(1, Math.ceil(n / o.rounds));
  /** One backend's turn in a round, with fresh roles; its samples count only if the whole turn ran. */
  const turn = (tb: Testbed, backend: Backend, round: number): Promise<{ s: Samples; backlogs: RegistryBacklog[] }> =>
    withDaemons(`ntm-bench-${backend}-`, log, async ({ dir, started, defer }) => {
      const ids = await paperIds(tb, dir);
      let ledger: PaperLedger | undefined;
      if (backend === 'evm') {
        const c = await chainOnRouter(tb, [ids.dcmn.id, ids.dccn.id]);
        // Deferred clean-ups run before the daemons stop: the DCs outlive their chain by a moment, as after a crash.
        defer(() => c.stop());
        ledger = c.ledger;
      }
      const roles = await startRoles(tb, dir, started, ids, ledger);
      const s: Samples = { registration: [], first: [], comm: [], commCold: [] };
      if (backend === 'sqlite') {
        s.registration.push(...(await registrationRuns(roles, perRound(o.registrationRuns), o.gapMs)));
        s.first.push(...(await firstRegistrationRuns(tb, roles, dir, started, perRound(o.firstRegistrationRuns), o.gapMs, `sqlite${round}`)));
        s.comm.push(...(await communicationStartRuns(roles, perRound(o.communicationRuns), o.gapMs)).samples);
        return { s, backlogs: [] };
      }
      await evmRound(tb, roles, dir, started, s, o, perRound, round);
      // Whatever the DCs answered is on the chain within a few blocks.
      const both = () => Promise.all([backlogOf(roles.dcmn), backlogOf(roles.dccn)]);
      const backlogs = await waitFor('both outboxes drained', async () => ((await both()).every((x) => x.pending === 0) ? both() : undefined), 30_000, 500).catch(both);
      return { s, backlogs };
    });
  await withTestbed('paper', { column }, async (tb) => {
    for (let round = 0; round < o.rounds; round++) {
      for (const backend of round % 2 === 0 ? (['sqlite', 'evm'] as const) : (['evm', 'sqlite'] as const)) {
        log(`ledger paper (${column}): round ${round + 1}/${o.rounds}, ${backend}`);
        // On the loaded shared machine a role has been seen not starting in time: such a turn is run once more.
        const t = await turn(tb, backend, round).catch((e: unknown) => {
          log(`ledger paper (${column}): ${backend} turn failed (${(e as Error).message.split('\n')[0]}); once more`);
          retried++;
          return turn(tb, backend, round);
        });
        const into = samples[backend];
        for (const k of ['registration', 'first', 'comm', 'commCold'] as const) into[k].push(...t.s[k]);
        for (const x of t.backlogs) {
          chain.committed += x.committed;
          chain.pending += x.pending;
          chain.refused += x.refused;
        }
      }
    }
  });
  const reg = (xs: number[]) => summarise(xs, PAPER_MS.registration[column], registrationBound(column));
  const comm = (xs: number[]) => summarise(xs, PAPER_MS.communication_start[column], communicationStartBound(column).boundMs);
  const ratio = (a: number[], b: number[]) => round(quantile(a, 0.5) / quantile(b, 0.5), 3);
  const { sqlite, evm } = samples;
  return {
    registration: { sqlite: reg(sqlite.registration), evm: reg(evm.registration), evm_over_sqlite: ratio(evm.registration, sqlite.registration) },
    first_registration: { sqlite: reg(sqlite.first), evm: reg(evm.first), evm_over_sqlite: ratio(evm.first, sqlite.first) },
    communication_start: {
      sqlite: comm(sqlite.comm),
      evm_warm: comm(evm.comm),
      evm_cold: comm(evm.commCold),
      warm_over_sqlite: ratio(evm.comm, sqlite.comm),
      cold_over_sqlite: ratio(evm.commCold, sqlite.comm),
      cold_minus_warm_ms: round(quantile(evm.commCold, 0.5) - quantile(evm.comm, 0.5), 2),
    },
    chain,
    retried_turns: retried,
    load_1m: { before, after: loadAverage() },
  };
}

export async function benchLedgerPaper(o: LedgerPaperOptions): Promise<LedgerPaperFigures> {
  const out: Partial<Record<Column, LedgerPaperColumn>> = {};
  for (const c of COLUMNS) out[c] = await column(c, o);
  return {
    today: out.today!,
    vcpe: out.vcpe!,
    rounds: o.rounds,
    cpus: cpus().length,
    chain: `anvil on the core router (no emulated delay to either DC), ${BLOCK_TIME_S} s blocks`,
  };
}
