// `npm run bench`: runs the benchmarks of issue 6 and writes bench-results.json (machine, date, commit, every figure
// with its unit in its key). Not a pass/fail timer: it prints the JSON and a short table; `npm run bench:report`
// compares the file with the goals. A benchmark that cannot run yet is null, with the reason in `notes`.
//
//   npm run bench [-- --only registration,dc_capacity] [--out FILE] [--quick] [--profile FILE]
//
// --only runs the named benchmarks (keys of `results`) and merges them into the existing file; --quick is the smoke
// mode (tiny runs whose figures only prove the benchmark works; its notes say so); --profile FILE writes perf's view
// of one more TCP run through the agent (throughput only). Needs root (namespaces, NFQUEUE).
import { execFileSync } from 'node:child_process';
import { cpus, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { ROOT } from '../lib/ntm.js';
import { benchAgentMemory, benchHandover, benchThroughput } from './agent.js';
import { benchDcCapacity } from './dc-capacity.js';
import { benchProvision } from './provision.js';
import { BenchmarkUnavailableError } from './errors.js';
import { benchLedger } from './ledger.js';
import { benchFlood } from './flood.js';
import { benchLedgerDcCapacity } from './ledger-dc.js';
import { benchLedgerPaper } from './ledger-paper.js';
import { benchPaperColumn, COLUMNS, type PaperColumnResult } from './paper.js';
import { BENCH_NAMES, type BenchName, type ColumnPair, type Results, readResults, type ResultsFile, summaryTable } from './results.js';

export interface RunOptions {
  readonly only?: readonly BenchName[];
  readonly out?: string;
  readonly quick?: boolean;
  /** Throughput: write the agent's data-path profile (perf's top entries) to this file. */
  readonly profile?: string;
  /** Progress lines (stderr by default). */
  readonly log?: (line: string) => void;
}

/** Full-mode sizes (issue 6: ≥ 30 registrations and ≥ 20 communication starts per column; 100,000 terminals). */
const FULL = {
  registrationRuns: 30,
  communicationRuns: 20,
  terminals: 100_000,
  reregister: 50_000,
  settleS: 12,
  gapMs: 1600,
  subscribers: 10_000,
  // The EVM ledger beside SQLite: per backend and column, in two rounds (ABBA); 10 first-time registrations each.
  ledgerPaper: { registrationRuns: 30, firstRegistrationRuns: 10, communicationRuns: 20, rounds: 2 },
  // Long enough for the outbox to empty at the rate a loaded shared machine drains it (83-145 Node Transactions/s
  // measured; 100,000 need ~1,200 s from the load's start), so rss_mib_after_drain is the DC with nothing pending.
  drainS: 900,
};
const QUICK = {
  registrationRuns: 3,
  communicationRuns: 2,
  terminals: 1500,
  reregister: 1500,
  settleS: 2,
  gapMs: 300,
  subscribers: 200,
  ledgerPaper: { registrationRuns: 2, firstRegistrationRuns: 1, communicationRuns: 1, rounds: 1 },
  drainS: 30,
};

export const DEFAULT_OUT = join(ROOT, 'bench-results.json');

export function machine(): ResultsFile['machine'] {
  return {
    cpus: cpus().length,
    model: cpus()[0]?.model.trim() ?? 'unknown',
    memory_gib: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    node: process.version,
  };
}

/** The commit the figures belong to; "-dirty" when the work tree has changes (read-only git calls). */
export function commit(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: ROOT, encoding: 'utf8' }).trim() !== '';
    return dirty ? `${head}-dirty` : head;
  } catch {
    return 'unknown';
  }
}

export function parseOnly(text: string): BenchName[] {
  const names = text.split(',').map((s) => s.trim()).filter(Boolean);
  for (const n of names) if (!(BENCH_NAMES as readonly string[]).includes(n)) throw new RangeError(`unknown benchmark "${n}"; names: ${BENCH_NAMES.join(', ')}`);
  return names as BenchName[];
}

/** Runs the selected benchmarks, merges them into `out` (created if absent), returns the file's new content. */
export async function runBenchmarks(opts: RunOptions = {}): Promise<{ file: ResultsFile; failed: BenchName[] }> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const out = opts.out ?? DEFAULT_OUT;
  const selected = new Set<BenchName>(opts.only && opts.only.length > 0 ? opts.only : BENCH_NAMES);
  const size = opts.quick ? QUICK : FULL;
  const results: Results = {};
  const notes: Partial<Record<BenchName, string>> = {};
  const failed: BenchName[] = [];

  const attempt = async <K extends BenchName>(name: K, fn: () => Promise<Results[K]>): Promise<void> => {
    if (!selected.has(name)) return;
    const t0 = performance.now();
    try {
      results[name] = await fn();
      if (opts.quick) notes[name] = 'quick (smoke) mode: tiny runs; the figures only show that the benchmark works';
      log(`${name}: done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    } catch (e) {
      results[name] = null;
      if (e instanceof BenchmarkUnavailableError) notes[name] = e.reason;
      else {
        failed.push(name);
        notes[name] = `failed: ${(e as Error).message.split('\n')[0]}`;
        log(`${name}: FAILED: ${(e as Error).stack ?? String(e)}`);
      }
    }
  };

  // Registration and communication start share one testbed (and one set of roles) per column.
  if (selected.has('registration') || selected.has('communication_start')) {
    const cols: Partial<Record<(typeof COLUMNS)[number], PaperColumnResult>> = {};
    const err: Error[] = [];
    for (const column of COLUMNS) {
      try {
        cols[column] = await benchPaperColumn(column, {
          registrationRuns: selected.has('registration') ? size.registrationRuns : 0,
          communicationRuns: selected.has('communication_start') ? size.communicationRuns : 0,
          gapMs: size.gapMs,
          log,
        });
      } catch (e) {
        err.push(e as Error);
      }
    }
    const pair = <K extends 'registration' | 'communication_start'>(k: K): Promise<ColumnPair> => {
      const today = cols.today?.[k];
      const vcpe = cols.vcpe?.[k];
      if (!today || !vcpe) return Promise.reject(err[0] ?? new Error(`${k}: no figures`));
      return Promise.resolve({ today, vcpe });
    };
    await attempt('registration', () => pair('registration'));
    await attempt('communication_start', () => pair('communication_start'));
  }
  await attempt('dc_capacity', async () => {
    const oneCore = await benchDcCapacity({ terminals: size.terminals, reregister: size.reregister, settleS: size.settleS, log });
    // The second figure (more cores): the EC work on a worker thread, a shorter run (the rate settles within seconds).
    const ecWorkers = await benchDcCapacity({ terminals: Math.min(size.terminals, 30_000), reregister: 0, settleS: size.settleS, ecWorkers: 1, log });
    // Issue 15's other second figure: one and two DC worker processes (dc.workers, SO_REUSEPORT) side by side, the
    // same generator for both (16 source ports: the kernel picks a worker per 4-tuple), the DC on both cores.
    const side = { terminals: Math.min(size.terminals, 20_000), reregister: 0, settleS: size.settleS, sockets: 16, log };
    const workers1 = await benchDcCapacity({ ...side, workers: 1 });
    const workers2 = await benchDcCapacity({ ...side, workers: 2 });
    return { ...oneCore, ec_workers_1: ecWorkers, workers_1: workers1, workers_2: workers2 };
  });
  await attempt('agent_memory', () => benchAgentMemory({ quick: !!opts.quick, log }));
  await attempt('handover', () => benchHandover({ quick: !!opts.quick, log }));
  await attempt('throughput', () => benchThroughput({ quick: !!opts.quick, log, ...(opts.profile ? { profile: opts.profile } : {}) }));
  await attempt('ledger', () => benchLedger({ quick: !!opts.quick, log }));
  await attempt('ledger_paper', () => benchLedgerPaper({ ...size.ledgerPaper, gapMs: size.gapMs, log }));
  await attempt('ledger_dc_capacity', () => benchLedgerDcCapacity({ terminals: size.terminals, reregister: size.reregister, settleS: size.settleS, drainS: size.drainS, log }));
  await attempt('provisioning', () => benchProvision({ subscribers: size.subscribers, log }));
  await attempt('flood', () => benchFlood({ quick: !!opts.quick, log }));

  const prev = readResults(out);
  const mergedNotes: Partial<Record<BenchName, string>> = { ...(prev?.notes ?? {}) };
  for (const n of selected) delete mergedNotes[n];
  Object.assign(mergedNotes, notes);
  const file: ResultsFile = {
    machine: machine(),
    date: new Date().toISOString(),
    commit: commit(),
    results: { ...(prev?.results ?? {}), ...results },
    ...(Object.keys(mergedNotes).length > 0 ? { notes: mergedNotes } : {}),
  };
  writeFileSync(out, `${JSON.stringify(file, null, 2)}\n`);
  return { file, failed };
}

function usage(): string {
  return `usage: npm run bench -- [--only NAME[,NAME…]] [--out FILE] [--quick] [--profile FILE]\n  names: ${BENCH_NAMES.join(', ')}\n`;
}

async function main(argv: string[]): Promise<number> {
  let only: BenchName[] | undefined;
  let out: string | undefined;
  let quick = false;
  let profile: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--only') {
      try {
        only = parseOnly(argv[++i] ?? '');
      } catch (e) {
        process.stderr.write(`${(e as Error).message}\n${usage()}`);
        return 2;
      }
    } else if (a === '--out') out = argv[++i];
    else if (a === '--quick') quick = true;
    else if (a === '--profile') profile = argv[++i];
    else if (a === '--help' || a === '-h') {
      process.stdout.write(usage());
      return 0;
    } else {
      process.stderr.write(`unknown argument: ${a}\n${usage()}`);
      return 2;
    }
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('the benchmarks need root (network namespaces, NFQUEUE, taskset)\n');
    return 1;
  }
  const { file, failed } = await runBenchmarks({ ...(only ? { only } : {}), ...(out ? { out } : {}), ...(profile ? { profile } : {}), quick });
  process.stdout.write(`${JSON.stringify(file, null, 2)}\n\n${summaryTable(file)}\n`);
  return failed.length > 0 ? 1 : 0;
}

if (import.meta.filename === process.argv[1]) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
      process.exit(1);
    },
  );
}
