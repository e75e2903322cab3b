// Handover (issue 6, item 5) on `household` with its link delays: the lamp streams TCP to the phone through the
// agent while the phone moves between Wi-Fi and LTE (tb.move: the new uplink comes up, the default route moves, the
// old uplink goes down), alternately. Two figures per move:
// - the terminal's: `interruptionsMs` of `ntm status`, from the first netlink event of the move until an authentic
//   packet arrived over the new path (terminal/host.ts) — this is `median_ms`;
// - the application's: the largest gap between two arrivals of bytes at the phone's TCP reader that ends after the
//   move and before the next one. It adds TCP's own recovery (a retransmission of what was lost on the old path).
// RTT: a ping phone → lamp through the tunnel once the transfer flows again (phone–agent plus the LAN hop), per move.
import { createInterface } from 'node:readline';
import type { ChildProcess } from 'node:child_process';
import { loadTopology } from '../../scripts/netns/index.js';
import type { Testbed } from '../../scripts/netns/index.js';
import { withTestbed } from '../lib/testbed.js';
import { TCP_SOURCE, firstJsonLine, waitFor, withDaemons } from '../lib/ntm.js';
import { connectPhone, startHousehold } from './household.js';
import { quantile, round } from './results.js';
import type { HandoverFigures } from './agent.js';

const PORT = 9000;
/** Bytes/s the lamp sends: a steady stream (a camera's), one segment every few ms, so a gap is seen to a few ms. */
const RATE = 400_000;
/** Gaps shorter than this are the sender's own pacing (it writes every 5 ms), not an interruption. */
const GAP_MS = 10;

/**
 * Reader on the phone: `node -e SINK HOST PORT`. Prints {"gap":ms,"at":epoch ms} for each gap between arrivals longer
 * than GAP_MS as it ends, and {"t":epoch ms,"bytes":n} every 100 ms.
 */
const SINK = `const net = require('node:net');
const [host, port] = process.argv.slice(1);
let got = 0, last = 0;
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
const s = net.connect(Number(port), host);
s.on('data', (d) => { const now = Date.now(); if (last && now - last > ${GAP_MS}) out({ gap: now - last, at: now }); last = now; got += d.length; });
setInterval(() => out({ t: Date.now(), bytes: got }), 100);
s.on('end', () => { out({ end: true, bytes: got }); process.exit(0); });
s.on('error', (e) => { out({ error: e.message, bytes: got }); process.exit(1); });`;

interface SinkState {
  gaps: Array<{ gap: number; at: number }>;
  progress: { t: number; bytes: number };
  ended: string | undefined;
}

function follow(child: ChildProcess): SinkState {
  const s: SinkState = { gaps: [], progress: { t: 0, bytes: 0 }, ended: undefined };
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let j: { gap?: number; at?: number; t?: number; bytes?: number; end?: boolean; error?: string };
    try {
      j = JSON.parse(line) as typeof j;
    } catch {
      return;
    }
    if (j.gap !== undefined && j.at !== undefined) s.gaps.push({ gap: j.gap, at: j.at });
    else if (j.t !== undefined && j.bytes !== undefined) s.progress = { t: j.t, bytes: j.bytes };
    else if (j.end || j.error) s.ended = j.error ?? 'end';
  });
  return s;
}

/** Median of `time=` values of a ping through the tunnel. */
async function pingMs(tb: Testbed, to: string): Promise<number> {
  const r = await tb.exec('phone', ['ping', '-n', '-c', '3', '-i', '0.2', '-W', '2', to], { timeoutMs: 10_000 });
  const times = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
  if (times.length === 0) throw new Error(`no ping reply from ${to} through the tunnel: ${r.stdout}${r.stderr}`);
  return quantile(times, 0.5);
}

/** The testbed's nominal RTT between the vCPE and a phone network (scripts/netns/topologies/household.json). */
function nominalRtt(network: string): number {
  const pairs = loadTopology('household').emulation.flatMap((e) => e.pairs);
  const p = pairs.find((x) => (x.a === 'vcpe' && x.b === network) || (x.b === 'vcpe' && x.a === network));
  return p?.rttMs.typical ?? NaN;
}

interface Move {
  to: string;
  terminalMs: number;
  appGapMs: number;
  rttMs: number;
}

export async function measureHandover(o: { moves: number; log?: (line: string) => void }): Promise<HandoverFigures> {
  const log = o.log ?? (() => undefined);
  return withTestbed('household', {}, (tb) =>
    withDaemons('ntm-bench-handover-', log, async ({ dir, started, defer }) => {
      const children: ChildProcess[] = [];
      defer(() => children.forEach((c) => c.kill()));
      const h = await startHousehold(tb, dir, started, { log });
      const lamp = h.devices[0]!;
      await connectPhone(h, lamp);
      // Enough bytes for every move with room to spare; the stream is stopped when the moves are done.
      const src = tb.spawn('lamp', [process.execPath, '-e', TCP_SOURCE, String(PORT), String(RATE * (o.moves * 6 + 30)), String(RATE)], { stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(src);
      await firstJsonLine(src, 10_000, 'TCP source on the lamp');
      const sinkProc = tb.spawn('phone', [process.execPath, '-e', SINK, lamp.virtualV4, String(PORT)], { stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(sinkProc);
      const sink = follow(sinkProc);
      await waitFor('the transfer flowing', () => sink.progress.bytes > RATE / 2, 10_000);
      const moves: Move[] = [];
      for (let i = 0; i < o.moves; i++) {
        const to = tb.uplink('phone') === 'wifi' ? 'lte' : 'wifi';
        const before = ((await h.phone.status()) as { interruptionsMs: number[] }).interruptionsMs.length;
        const at = Date.now();
        await tb.move('phone', to);
        const terminalMs = await waitFor(
          `the terminal's interruption of move ${i + 1} (to ${to})`,
          async () => ((await h.phone.status()) as { interruptionsMs: number[] }).interruptionsMs[before],
          10_000,
          25,
        );
        // The application's side: bytes flow again (any TCP recovery is over), then a moment of steady stream.
        const seen = sink.progress.bytes;
        await waitFor(`the transfer flowing after move ${i + 1}`, () => sink.progress.bytes > seen + RATE / 10, 10_000, 20);
        if (sink.ended) throw new Error(`the transfer ended during move ${i + 1}: ${sink.ended}`);
        const rttMs = await pingMs(tb, lamp.virtualV4);
        await new Promise((r) => setTimeout(r, 300));
        const appGapMs = Math.max(0, ...sink.gaps.filter((g) => g.at >= at).map((g) => g.gap));
        sink.gaps = [];
        moves.push({ to, terminalMs, appGapMs, rttMs });
        log(`  move ${i + 1} → ${to}: terminal ${terminalMs.toFixed(1)} ms, application gap ${appGapMs} ms, RTT ${rttMs.toFixed(1)} ms`);
      }
      const med = (xs: number[]) => quantile(xs, 0.5);
      const byNetwork: Record<string, { moves: number; median_ms: number; app_gap_median_ms: number; rtt_ms: number; nominal_rtt_ms: number }> = {};
      for (const net of [...new Set(moves.map((m) => m.to))].sort()) {
        const ms = moves.filter((m) => m.to === net);
        byNetwork[net] = {
          moves: ms.length,
          median_ms: round(med(ms.map((m) => m.terminalMs)), 1),
          app_gap_median_ms: round(med(ms.map((m) => m.appGapMs)), 1),
          rtt_ms: round(med(ms.map((m) => m.rttMs)), 1),
          nominal_rtt_ms: nominalRtt(net),
        };
      }
      return {
        median_ms: round(med(moves.map((m) => m.terminalMs)), 1),
        rtt_ms: round(med(moves.map((m) => m.rttMs)), 1),
        app_gap_median_ms: round(med(moves.map((m) => m.appGapMs)), 1),
        moves: moves.length,
        by_network: byNetwork,
      };
    }),
  );
}
