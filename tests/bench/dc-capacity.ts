// DC capacity (issue 6, item 3): how many registrations per second one `ntm dc` process sustains on one core with
// every signature check on, and its memory holding 100,000 registered terminals. The DC is pinned to one core
// (taskset), the load generator (dc-load.ts) to the other; both talk over loopback in the root namespace (no link
// emulation: this measures the DC's CPU, not the network). Memory is the DC's VmRSS from /proc/<pid>/status once
// the phase has settled; the peak (VmHWM) is reported beside it.
import type { PhaseResult } from './dc-load.js';
import { NODE_FLAGS } from '../../agent/src/cmd/node-flags.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from '../../agent/src/cmd/control-socket.js';
import { NTM, ROOT, firstJsonLine, freePortPair, tempDir } from '../lib/ntm.js';
import type { RegistryBacklog } from '../../agent/src/types/registry.js';
import { loadAverage, round, type DcCapacityFigures } from './results.js';
import { processCpuSeconds } from './household.js';

const LOAD_JS = join(ROOT, 'dist/tests/bench/dc-load.js');
const CRYPTO_JS = join(ROOT, 'dist/tests/bench/crypto-bench.js');

export interface DcCapacityOptions {
  /** First-time registrations (distinct IDs); 100,000 for the memory figure. */
  readonly terminals?: number;
  /** How many of them register a second time (the re-registration rate). */
  readonly reregister?: number;
  /** Seconds the DC idles after each phase while its memory is read (default 12). */
  readonly settleS?: number;
  /** Upper bound of each phase (s). */
  readonly seconds?: number;
  readonly log?: (line: string) => void;
  /** Record to the NtmRegistry contract instead of the DC's SQLite registry; `fund` gives the DC's account gas. */
  readonly ledger?: { readonly rpcUrl: string; readonly contract: string; readonly deployBlock: number; fund(id: string): Promise<void> };
  /**
   * dc.ecWorkers: the first registrations' EC work on this many worker threads. The DC may then use every core (the
   * generator's too: on a 2-core machine they share it); without, the DC has one core of its own.
   */
  readonly ecWorkers?: number;
  /** With a ledger: how long to wait after the load for the outbox to drain (s; default 0). */
  readonly drainS?: number;
  /**
   * dc.workers (issue 15): this many DC processes on one port (SO_REUSEPORT) and one ledger; the generator then sends
   * from `sockets` source ports (the kernel picks a worker per 4-tuple). Set (1 included) for the side-by-side figure:
   * the DC may use every core, the generator's included, as with ecWorkers. CPU and memory are the workers' sums.
   */
  readonly workers?: number;
  readonly sockets?: number;
}

/** The EVM ledger's outbox during the capacity run (DC status, registry.backlog). */
export interface OutboxFigures {
  /** Node Transactions still in the outbox when the memory figure was read (after the first-time phase settled). */
  readonly pending_at_rss: number;
  /** On the chain when the DC stopped (accepted by the contract). */
  readonly committed: number;
  /** Still in the outbox when the DC stopped (after up to drainS of waiting). */
  readonly pending_at_end: number;
  readonly refused: number;
  /** committed / seconds from the start of the load until the outbox was empty (or the DC stopped). */
  readonly drain_nt_per_s: number;
  readonly drained: boolean;
  /** VmRSS settled after the outbox drained (or the wait ended): the DC holding the terminals with nothing pending. */
  readonly rss_mib_after_drain: number;
}


/**
 * The rate a first-time registration could reach if it cost nothing but its two unavoidable EC operations (recovering
 * the Node Transaction's signer, ECDH for K_ss), measured with crypto-bench on the DC's core right beside the load:
 * the machine drifts, so the DC's rate is best read as a fraction of this.
 */
async function ecFloorPerSecond(core: number): Promise<{ wall: number; cpu: number }> {
  const p = spawn('taskset', ['-c', String(core), process.execPath, CRYPTO_JS, '--ms', '400', '--only', 'secp256k1.native'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  await new Promise((r) => p.once('exit', r));
  try {
    const res = (JSON.parse(out) as { results: Array<{ name: string; usPerOp: number; cpuUsPerOp: number }> }).results;
    const op = (n: string) => res.find((r) => r.name === `secp256k1.native.${n}`);
    const us = (k: 'usPerOp' | 'cpuUsPerOp') => (op('recover')?.[k] ?? NaN) + (op('ecdh')?.[k] ?? NaN);
    return { wall: 1e6 / us('usPerOp'), cpu: 1e6 / us('cpuUsPerOp') };
  } catch {
    // No calibration (crypto-bench failed): the figure is null in the file, the rest stands.
    return { wall: NaN, cpu: NaN };
  }
}


/** CPU time (s) of the process's main thread alone (/proc/<pid>/task/<pid>/stat): its event loop. */
function mainThreadCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

/** The lowest VmRSS (MiB, summed over `pids`) over `ms`, sampled twice a second. */
async function settledRss(pids: readonly number[], ms: number): Promise<number> {
  let low = Infinity;
  for (const end = Date.now() + ms; Date.now() < end; ) {
    low = Math.min(low, pids.reduce((sum, p) => sum + memoryMiB(p).rss, 0));
    await new Promise((r) => setTimeout(r, 500));
  }
  return low;
}

interface DcStatus {
  readonly terminals: number;
  readonly counts: Record<string, number>;
  readonly memory: Record<string, number>;
}

/** A DC's counters from its status; a DC of several workers (dc.workers) answers with each one's: summed. */
function sumCounts(status: unknown): Record<string, number> {
  const s = status as DcStatus & { workers?: DcStatus[] };
  const out: Record<string, number> = {};
  for (const w of s.workers ?? [s]) for (const [k, v] of Object.entries(w.counts)) out[k] = (out[k] ?? 0) + v;
  return out;
}

function memoryMiB(pid: number): { rss: number; peak: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

/** The two cores the benchmark uses: the DC gets the last one, the generator the first. */
function cores(): { dc: number; gen: number } {
  const n = Number(readFileSync('/sys/devices/system/cpu/online', 'utf8').trim().split('-').pop() ?? 0);
  return { dc: n, gen: 0 };
}


function stop(proc: ChildProcess | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return resolve();
    const kill = setTimeout(() => proc.kill('SIGKILL'), 5000);
    proc.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    proc.kill('SIGTERM');
  });
}

export async function benchDcCapacity(opts: DcCapacityOptions = {}): Promise<DcCapacityFigures & { outbox?: OutboxFigures }> {
  const log = opts.log ?? (() => undefined);
  const terminals = opts.terminals ?? 100_000;
  const reregister = opts.reregister ?? Math.min(terminals, 50_000);
  const seconds = opts.seconds ?? 300;
  const SETTLE_S = opts.settleS ?? 12;
  const cpu = cores();
  const tmp = tempDir('ntm-bench-dc-');
  let dc: ChildProcess | undefined;
  let gen: ChildProcess | undefined;
  let watch: NodeJS.Timeout | undefined;
  try {
    const idRun = spawn(process.execPath, [NTM, 'dc', '--data-dir', tmp.path, '--print-id'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let idOut = '';
    idRun.stdout.setEncoding('utf8').on('data', (d: string) => (idOut += d));
    await new Promise((r) => idRun.once('exit', r));
    const { id, publicKey } = JSON.parse(idOut.trim()) as { id: string; publicKey: string };
    const loadBefore = loadAverage();
    const floorBefore = await ecFloorPerSecond(cpu.dc);
    const { ledger } = opts;
    await ledger?.fund(id);
    const ledgerArgs = ledger ? ['--ledger', 'evm', '--chain-rpc', ledger.rpcUrl, '--chain-contract', ledger.contract, '--chain-deploy-block', String(ledger.deployBlock)] : [];

    // A /15 pool: room for 131,070 terminals. The generator plays them all from one loopback address, where the
    // open DC's per-source limit on newcomers (dc.newPerSource*) would hold all but ten: lifted, as if each had its own.
    // So is the cookie reply under load (dc.cookieAbovePerSec): this measures the DC's EC work, not a flood's refusal
    // (tests/bench/flood.ts measures that).
    const workers = opts.workers;
    const everyCore = !!opts.ecWorkers || workers !== undefined;
    const listen = workers !== undefined ? `127.0.0.1:${await freePortPair()}` : '127.0.0.1:0';
    dc = spawn(
      'taskset',
      [
        ...['-c', everyCore ? `0-${cpu.dc}` : String(cpu.dc), process.execPath, ...NODE_FLAGS.dc, NTM, 'dc', '--data-dir', tmp.path, '--listen', listen, '--pool', '198.18.0.0/15'],
        ...(workers !== undefined && workers > 1 ? ['--workers', String(workers)] : []),
        // No operator API: its fixed loopback port would collide with any other DC on the host (the status used here
        // is the control socket's).
        ...['--operator-listen', ''],
        ...['--set', 'dc.newPerSourceBurst=1000000', '--set', 'dc.newPerSourcePerMin=1000000', '--set', 'dc.cookieAbovePerSec=1000000'],
        ...ledgerArgs,
        ...(opts.ecWorkers ? ['--set', `dc.ecWorkers=${opts.ecWorkers}`] : []),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const ready = await firstJsonLine(dc, 20_000, 'ntm dc', (j) => !!j.ready);
    const port = Number(ready.port);
    const pid = dc.pid!;
    // The DC's processes: the supervisor and its workers, or the one DC.
    const pids = Array.isArray(ready.pids) ? [pid, ...(ready.pids as number[])] : [pid];
    const cpuOf = (f: (p: number) => number) => pids.reduce((sum, p) => sum + f(p), 0);
    const sock = join(tmp.path, 'dc.sock');
    type WithBacklog = { registry: { backlog: RegistryBacklog | null } };
    const backlog = async () => {
      const st = (await request(sock, { cmd: 'status' })) as WithBacklog & { workers?: WithBacklog[] };
      return (st.workers?.[0] ?? st).registry.backlog;
    };
    log(`dc capacity: DC pid ${pids.join(',')} on core ${everyCore ? `0-${cpu.dc}` : cpu.dc}${opts.ecWorkers ? ` with ${opts.ecWorkers} EC workers` : ''}${workers ? `, ${workers} worker(s)` : ''}, port ${port}; generating ${terminals} identities`);

    gen = spawn(
      process.execPath,
      [
        LOAD_JS,
        ...['--dc-public-key', publicKey, '--dc-id', id, '--port', String(port), '--count', String(terminals), '--reregister', String(reregister)],
        ...['--seconds', String(seconds), '--pause', String(SETTLE_S), '--cpu', String(cpu.gen), '--sockets', String(opts.sockets ?? 1)],
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const phases: Record<string, PhaseResult> = {};
    let genErr = '';
    gen.stderr!.setEncoding('utf8').on('data', (d: string) => (genErr += d));
    let buf = '';
    const exited = new Promise<number | null>((r) => gen!.once('exit', r));
    // Memory holding all the terminals, settled: V8 returns garbage pages some seconds after a burst, so the figure
    // is the lowest VmRSS seen while the DC idles (between the phases, and after the last), not the transient peak.
    let afterFirst: Promise<number> = Promise.resolve(NaN);
    let pendingAtRss: Promise<number> = Promise.resolve(0);
    let loadStart = performance.now();
    let firstDone = Infinity;
    // The DC's CPU time over each phase (from /proc): its rate per second of its own CPU is what one core of its own
    // would answer, whatever else the shared machine ran on that core meanwhile.
    // Registrations the DC itself counted meanwhile: on a loaded machine some answers reach the generator after it gave
    // up on them (counted lost there), but the DC did that work too.
    const cpuAt: Record<string, number> = {};
    const mainAt: Record<string, number> = {};
    const countsAt: Record<string, Promise<Record<string, number>>> = {};
    const counts = async () => sumCounts(await request(sock, { cmd: 'status' }));
    // The outbox every 2 s: when it was first empty after the first-time phase, and how much was on the chain then.
    let emptied: { at: number; committed: number } | undefined;
    watch = ledger
      ? setInterval(() => {
          void backlog().then(
            (b) => {
              if (b && b.pending === 0 && !emptied && performance.now() > firstDone) emptied = { at: performance.now(), committed: b.committed };
            },
            () => undefined,
          );
        }, 2000)
      : undefined;
    gen.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        log(`dc capacity: ${line}`);
        const j = JSON.parse(line) as PhaseResult;
        if (j.phase === 'first' || j.phase === 'again') phases[j.phase] = j;
        if (j.phase === 'generated') loadStart = performance.now();
        if (j.phase === 'generated' || j.phase === 'first' || j.phase === 'again-start' || j.phase === 'again') {
          cpuAt[j.phase] = cpuOf(processCpuSeconds);
          mainAt[j.phase] = cpuOf(mainThreadCpuSeconds);
          countsAt[j.phase] = counts();
        }
        if (j.phase === 'first') {
          firstDone = performance.now();
          afterFirst = settledRss(pids, (SETTLE_S - 1) * 1000);
          pendingAtRss = afterFirst.then(backlog).then((b) => b?.pending ?? 0);
        }
      }
    });
    const code = await exited;
    if (code !== 0 || !phases.first) throw new Error(`load generator failed (${code}): ${genErr.slice(-2000)}`);
    const rssFirst = await afterFirst;
    const rssEnd = await settledRss(pids, SETTLE_S * 1000);
    let outbox: OutboxFigures | undefined;
    if (ledger) {
      let b = (await backlog())!;
      for (const end = Date.now() + (opts.drainS ?? 0) * 1000; b.pending > 0 && Date.now() < end; b = (await backlog())!) await new Promise((r) => setTimeout(r, 500));
      clearInterval(watch);
      const rssDrained = await settledRss(pids, (SETTLE_S * 1000) / 2);
      const upTo = emptied ?? { at: performance.now(), committed: b.committed };
      const rate = upTo.committed / ((upTo.at - loadStart) / 1000);
      outbox = { pending_at_rss: await pendingAtRss, committed: b.committed, pending_at_end: b.pending, refused: b.refused, drain_nt_per_s: round(rate, 1), drained: b.pending === 0, rss_mib_after_drain: round(rssDrained, 1) };
      log(`dc capacity: outbox ${JSON.stringify(outbox)}`);
    }
    const raw = (await request(sock, { cmd: 'status' })) as DcStatus & { workers?: DcStatus[] };
    const statuses = raw.workers ?? [raw];
    const terminalsHeld = statuses.reduce((n, w) => n + w.terminals, 0);
    log(`dc capacity: the DC's own view of its memory: ${JSON.stringify(statuses.map((w) => w.memory))}`);
    const memEnd = pids.map(memoryMiB).reduce((a, b) => ({ rss: a.rss + b.rss, peak: a.peak + b.peak }));
    await stop(dc);
    const floorAfter = await ecFloorPerSecond(cpu.dc);
    const floor = (floorBefore.wall + floorAfter.wall) / 2;
    const cpuFloor = (floorBefore.cpu + floorAfter.cpu) / 2;
    const first = phases.first;
    const again = phases.again;
    const firstCpu = cpuAt.first! - cpuAt.generated!;
    const againCpu = again ? cpuAt.again! - cpuAt['again-start']! : NaN;
    const counted = async (key: string, from: string, to: string) => ((await countsAt[to]!)[key] ?? 0) - ((await countsAt[from]!)[key] ?? 0);
    const firstDoneByDc = await counted('registrations-new', 'generated', 'first');
    const againDoneByDc = again ? await counted('registrations-renewed', 'again-start', 'again') : 0;
    return {
      registrations_per_s: Math.round(first.perSecond),
      rss_mib_100k: round(Math.max(rssFirst, rssEnd), 1),
      reregistrations_per_s: again ? Math.round(again.perSecond) : 0,
      rss_peak_mib: round(memEnd.peak, 1),
      terminals: terminalsHeld,
      lost_requests: first.lost + (again?.lost ?? 0),
      verified_answers: first.verified + (again?.verified ?? 0),
      ec_floor_registrations_per_s: Math.round(floor),
      registrations_over_ec_floor: round(first.perSecond / floor, 3),
      dc_cpu_s_first: round(firstCpu, 2),
      registrations_per_dc_cpu_s: Math.round(firstDoneByDc / firstCpu),
      ec_floor_per_cpu_s: Math.round(cpuFloor),
      main_thread_cpu_s_first: round(mainAt.first! - mainAt.generated!, 2),
      registrations_per_main_thread_cpu_s: Math.round(firstDoneByDc / (mainAt.first! - mainAt.generated!)),
      registrations_per_dc_cpu_s_over_ec_floor: round(firstDoneByDc / firstCpu / cpuFloor, 3),
      ...(again ? { dc_cpu_s_again: round(againCpu, 2), reregistrations_per_dc_cpu_s: Math.round(againDoneByDc / againCpu) } : {}),
      load_1m: { before: loadBefore, after: loadAverage() },
      ...(outbox ? { outbox } : {}),
    };
  } finally {
    clearInterval(watch);
    await stop(gen);
    await stop(dc);
    tmp.remove();
  }
}
