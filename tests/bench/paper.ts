// Paper Table 2 on the `paper` topology (Fig. 1, Table 1's RTTs by the testbed's link emulator): registration
// (§2.2) and communication start (§2.3), each in the "today" and "vcpe" columns, with real `ntm dc|rs|up` processes.
// The lower bounds are computed from the same RTT matrix the emulator uses (scripts/netns/topologies/paper.json).
//
// Communication start, our message sequence (MN IPv6-only, CN IPv4-only behind a NAT: the route runs through the
// dual-stack RS), with ow(x,y) = one-way delay = RTT(x,y) / 2 and t = 0 when MN sends its Direction Request:
//   1. MN → DC_MN            Direction Request                       DR  = ow(mn,dcmn)
//   2. DC_MN → DC_CN         peer info request (federation)          PI  = DR + ow(dcmn,dccn)
//   3. DC_CN computes the route (it now knows both ends) and, at once,
//      a. DC_CN → CN         Route Direction (CN initiates)          RC  = PI + ow(dccn,cn)
//      b. DC_CN → DC_MN      peer info response with MN's route
//   4. DC_MN → MN            Route Direction                         RM  = PI + ow(dccn,dcmn) + ow(dcmn,mn)
//   5. CN → RS               RELAY_BIND, then TUNNEL_REQUEST         QR  = RC + ow(cn,rs)
//      MN → RS               RELAY_BIND on receipt of its route      BM  = RM + ow(mn,rs)
//   6. RS → MN               the request (held until MN is bound)    QM  = max(QR, BM) + ow(rs,mn)   MN can send
//   7. MN → RS → CN          TUNNEL_RESPONSE                         AC  = QM + ow(mn,rs) + ow(rs,cn) CN can send
//   bound = max(QM, AC) = AC.
// today: DR 10.5, PI 61, RC 81.5, RM 122, QR 162.5, BM 133, QM 173.5, AC 173.5 + 11 + 81 = 265.5 ms.
// vcpe:  DR 7.5, PI 58, RC 65.5, RM 116, QR 123.5, BM 123.5, QM 131, AC 131 + 7.5 + 58 = 196.5 ms.
// CN initiates because it learns its route 40.5 ms (today) before MN does; with MN initiating, the request would
// wait at the RS for CN's bind (162.5) and the bound would be 335.5 ms.
import { loadTopology } from '../../scripts/netns/index.js';
import type { Testbed } from '../../scripts/netns/index.js';
import { withTestbed } from '../lib/testbed.js';
import { printId, startNtm, waitFor, withDaemons, type Daemon } from '../lib/ntm.js';
import { probe, startEcho } from '../lib/probes.js';
import { quantile, round, summarise, type ProcedureFigures } from './results.js';

export type Column = 'today' | 'vcpe';
export const COLUMNS: readonly Column[] = ['today', 'vcpe'];

/** Paper Table 2 (ms). */
export const PAPER_MS = {
  registration: { today: 32.3, vcpe: 26.3 },
  communication_start: { today: 525.2, vcpe: 440.2 },
} as const;

/** RTT (ms) of a pair of paper sites in a column, from the topology file the emulator is configured from. */
export function paperRtt(column: Column): (a: string, b: string) => number {
  const topo = loadTopology('paper');
  const pairs = topo.emulation.flatMap((e) => e.pairs);
  return (a, b) => {
    const p = pairs.find((x) => (x.a === a && x.b === b) || (x.a === b && x.b === a));
    const rtt = p?.rttMs[column];
    if (rtt === undefined) throw new Error(`paper topology has no RTT for ${a}-${b} in column ${column}`);
    return rtt;
  };
}

/** Registration's lower bound: one MN–DC_MN round trip (the request and the response, nothing else). */
export function registrationBound(column: Column): number {
  return paperRtt(column)('mn', 'dcmn');
}

/** The critical path of our communication-start sequence (the comment at the top of this file), step by step. */
export function communicationStartBound(column: Column): { boundMs: number; steps: Record<string, number> } {
  const rtt = paperRtt(column);
  const ow = (a: string, b: string) => rtt(a, b) / 2;
  const DR = ow('mn', 'dcmn');
  const PI = DR + ow('dcmn', 'dccn');
  const RC = PI + ow('dccn', 'cn');
  const RM = PI + ow('dccn', 'dcmn') + ow('dcmn', 'mn');
  const QR = RC + ow('cn', 'rs');
  const BM = RM + ow('mn', 'rs');
  const QM = Math.max(QR, BM) + ow('rs', 'mn');
  const AC = QM + ow('mn', 'rs') + ow('rs', 'cn');
  return { boundMs: Math.max(QM, AC), steps: { DR, PI, RC, RM, QR, BM, QM, AC } };
}

export interface PaperIds {
  readonly dcmn: { id: string; publicKey: string };
  readonly dccn: { id: string; publicKey: string };
  readonly rs: { id: string; publicKey: string };
}

export interface PaperRoles {
  dcmn: Daemon;
  dccn: Daemon;
  rs: Daemon;
  mn: Daemon;
  cn: Daemon;
  readonly ids: PaperIds;
}

/**
 * Where the DCs record Node Transactions. Absent: each its own SQLite registry, the other DC given as --peer. Else the
 * NtmRegistry contract on a chain; each DC reaches it at its own URL and finds the other DC through it (no --peer).
 */
export interface PaperLedger {
  readonly rpc: { readonly dcmn: string; readonly dccn: string };
  readonly contract: string;
  readonly deployBlock: number;
}

/** The DCs' and the RS's IDs (each key made in its data directory under `root`). */
export async function paperIds(tb: Testbed, root: string): Promise<PaperIds> {
  const dir = (h: string) => `${root}/${h}`;
  return {
    dcmn: await printId(tb, 'dcmn', 'dc', dir('dcmn')),
    dccn: await printId(tb, 'dccn', 'dc', dir('dccn')),
    rs: await printId(tb, 'rs', 'rs', dir('rs')),
  };
}

/** How long a role may take to start: on the loaded shared machine a Node process was seen taking 19 s to start. */
export const START_MS = 60_000;

/** MN's arguments: DC_MN over IPv6 (MN has no IPv4), a name of its own. */
export const mnArgs = (ids: PaperIds, name = 'mn'): string[] => ['--dc', `${ids.dcmn.publicKey}@[2001:db8:1::2]:7100`, '--name', name, '--dns', ''];

/**
 * DC_MN, DC_CN, RS, then CN and MN, as on the paper's Fig. 1; resolves when federation and load reports settled.
 */
export async function startRoles(tb: Testbed, root: string, started: Daemon[], ids: PaperIds, ledger?: PaperLedger): Promise<PaperRoles> {
  const dir = (h: string) => `${root}/${h}`;
  const keep = (d: Daemon) => (started.push(d), d);
  const relay = ['--relay', `${ids.rs.id}@192.0.2.66:7200`, '--relay', `${ids.rs.id}@[2001:db8:2::2]:7200`];
  const peerOr = (peer: string, rpc: string | undefined) =>
    ledger && rpc ? ['--ledger', 'evm', '--chain-rpc', rpc, '--chain-contract', ledger.contract, '--chain-deploy-block', String(ledger.deployBlock)] : ['--peer', peer];
  const [dcmn, dccn] = await Promise.all([
    startNtm(
      tb,
      'dcmn',
      'dc',
      ['--advertise', '192.0.2.2:7100', '--advertise', '[2001:db8:1::2]:7100', ...peerOr(`${ids.dccn.id}@198.51.100.2:7100`, ledger?.rpc.dcmn), ...relay, '--pool', '198.18.1.0/24'],
      dir('dcmn'),
      START_MS,
    ).then(keep),
    startNtm(
      tb,
      'dccn',
      'dc',
      ['--advertise', '198.51.100.2:7100', '--advertise', '[2001:db8:3::2]:7100', ...peerOr(`${ids.dcmn.id}@192.0.2.2:7100`, ledger?.rpc.dccn), ...relay, '--pool', '198.18.2.0/24'],
      dir('dccn'),
      START_MS,
    ).then(keep),
  ]);
  const rs = keep(
    await startNtm(
      tb,
      'rs',
      'rs',
      ['--report-to', `${ids.dcmn.id}@192.0.2.2:7100`, '--report-to', `${ids.dccn.id}@198.51.100.2:7100`, '--advertise', '192.0.2.66:7200', '--advertise', '[2001:db8:2::2]:7200'],
      dir('rs'),
      START_MS,
    ),
  );
  const [cn, mn] = await Promise.all([
    startNtm(tb, 'cn', 'up', ['--dc', `${ids.dccn.publicKey}@198.51.100.2:7100`, '--name', 'cn', '--dns', ''], dir('cn'), START_MS).then(keep),
    startNtm(tb, 'mn', 'up', mnArgs(ids), dir('mn'), START_MS).then(keep),
  ]);
  await waitFor(
    'DCs know each other and the RS',
    async () => {
      // On a chain the peer is found in the contract's directory: until then the list is empty.
      const ok = (s: Record<string, unknown>) => {
        const peers = s.peers as Array<{ known: boolean }>;
        return peers.length > 0 && peers.every((p) => p.known) && (s.relays as Array<{ load: number | null }>).every((r) => r.load !== null);
      };
      return ok(await dcmn.status()) && ok(await dccn.status());
    },
    ledger ? 30_000 : 15_000,
  );
  return { dcmn, dccn, rs, mn, cn, ids };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A trivial UDP echo (tests/lib's, real-time too) across the same MN–DC_MN link: the round trip any Node request and
 * answer sees on this testbed (the emulator's and two event loops' own cost), to read registration's excess against.
 */
export async function echoFloor(tb: Testbed): Promise<number> {
  const echo = await startEcho(tb, 'dcmn');
  try {
    const r = await probe(tb, 'mn', ['[2001:db8:1::2]:7777'], { count: 20, intervalMs: 100, warmup: 2 });
    return quantile(r.results[0]!.rttMs, 0.5);
  } finally {
    echo.kill();
  }
}

/** MN registers again `runs` times through its control socket; each figure is the MN's own request→response time. */
export async function registrationRuns(r: PaperRoles, runs: number, gapMs: number): Promise<number[]> {
  const out: number[] = [];
  // One unmeasured round: the first re-registration after start may still overlap the start-up RS probes.
  await r.mn.call({ cmd: 'register' });
  for (let i = 0; i < runs; i++) {
    // The terminal probes the RS (3 pings within 400 ms) and reports the RTTs at 1.5 s after each registration;
    // spacing the runs by more than that keeps the traffic out of the next measurement.
    await sleep(gapMs);
    const a = (await r.mn.call({ cmd: 'register' })) as { ms: number };
    out.push(a.ms);
  }
  return out;
}

interface TunnelView {
  tunnelId: string;
  state: string;
  path: string;
  createdAtMs: number;
  establishedAtMs: number | null;
}

/**
 * MN asks for a new connection to CN `runs` times. Each Direction Request gets a fresh tunnel ID from the DCs, so each
 * run builds a whole new tunnel (both ends, new RS binding, new handshake); the older tunnel is closed when the new
 * one comes up. Figure: from MN's Direction Request until both ends can send (the later of the two ends' up times).
 * `beforeRun` runs before each measured run, after the pause (samples are in run order).
 */
export async function communicationStartRuns(
  r: PaperRoles,
  runs: number,
  gapMs: number,
  beforeRun: (run: number) => Promise<void> = () => Promise.resolve(),
): Promise<{ samples: number[]; mnUpMs: number[]; paths: string[] }> {
  const cnId = String(r.cn.ready.id);
  const samples: number[] = [];
  const mnUpMs: number[] = [];
  const paths = new Set<string>();
  for (let i = 0; i < runs + 1; i++) {
    await sleep(i === 0 ? 500 : gapMs);
    if (i > 0) await beforeRun(i - 1);
    const a = (await r.mn.call({ cmd: 'connect', target: cnId, fresh: true }, 20_000)) as { ms: number; startedAtMs: number; tunnel: TunnelView };
    const cnSide = await waitFor(
      "CN's end of the tunnel",
      async () => {
        const s = (await r.cn.status()) as { tunnels: TunnelView[] };
        const t = s.tunnels.find((x) => x.tunnelId === a.tunnel.tunnelId);
        return t?.establishedAtMs ? t : undefined;
      },
      10_000,
      20,
    );
    // The first connection also warms both ends up (first handshake, JIT); it is not counted.
    if (i === 0) continue;
    paths.add(a.tunnel.path);
    samples.push(Math.max(a.tunnel.establishedAtMs!, cnSide.establishedAtMs!) - a.startedAtMs);
    mnUpMs.push(a.tunnel.establishedAtMs! - a.startedAtMs);
  }
  return { samples, mnUpMs, paths: [...paths] };
}

export interface PaperBenchOptions {
  readonly registrationRuns?: number;
  readonly communicationRuns?: number;
  /** Pause before each run (ms); default 1,600 (the terminal's RS probing after a registration lasts 1.5 s). */
  readonly gapMs?: number;
  readonly log?: (line: string) => void;
}

export interface PaperColumnResult {
  registration?: ProcedureFigures;
  communication_start?: ProcedureFigures;
}

/** Brings `paper` up in one column, starts the roles once, runs what is asked (0 runs: skipped), tears down. */
export async function benchPaperColumn(column: Column, opts: PaperBenchOptions): Promise<PaperColumnResult> {
  const log = opts.log ?? (() => undefined);
  return withTestbed('paper', { column }, (tb) =>
    withDaemons('ntm-bench-', log, async ({ dir, started }) => {
      const roles = await startRoles(tb, dir, started, await paperIds(tb, dir));
      // The roles run at normal priority. Under SCHED_FIFO on every thread (chrt -a), two DCs were seen livelocked on
      // this 2-core machine: each main thread spinning at 94% CPU, waiting for its own V8 helper threads that the
      // two equal-priority spinners never let run; MN and the probes starved with them.
      const rt = false;
      const out: PaperColumnResult = {};
      if (opts.registrationRuns) {
        log(`registration (${column}): ${opts.registrationRuns} runs`);
        const s = await registrationRuns(roles, opts.registrationRuns, opts.gapMs ?? 1600);
        const echo = await echoFloor(tb);
        out.registration = { ...summarise(s, PAPER_MS.registration[column], registrationBound(column)), echo_rtt_ms: round(echo, 2), realtime: rt };
      }
      if (opts.communicationRuns) {
        log(`communication start (${column}): ${opts.communicationRuns} runs`);
        const c = await communicationStartRuns(roles, opts.communicationRuns, opts.gapMs ?? 1600);
        out.communication_start = {
          ...summarise(c.samples, PAPER_MS.communication_start[column], communicationStartBound(column).boundMs),
          mn_can_send_median_ms: round(quantile(c.mnUpMs, 0.5), 2),
          path: c.paths.join(','),
          realtime: rt,
        };
      }
      return out;
    }),
  );
}
