// Soak (issue 11, "Long-lived busy tunnels"): one tunnel between two terminals behind endpoint-independent NATs
// (natpair, hole-punched) carries a constant-rate UDP stream in each direction for an hour, through ~30 rekeys at
// the default keypair lifetimes. Prints a JSON line per report period and one at the end: packets sent and lost per
// direction, both terminals' RSS, and the handshakes each end has done. A measurement, not a pass/fail timer; not
// part of the test command (it runs for an hour):
//
//   npm run -s build && npm run bench:soak [-- --minutes 60] [--rate 500] [--report-s 60] [--rekey-ms 120000]
//
// --rekey-ms shortens the keypair lifetimes (reject = 1.5 × rekey, the defaults' ratio) to go through more rekeys.
// Needs root (network namespaces, NFQUEUE).
import { readFileSync } from 'node:fs';
import { withTestbed } from '../lib/testbed.js';
import { startNatpair, tunnelTo, withDaemons, type Daemon, type TunnelStatus } from '../lib/ntm.js';
import { startStream, type StreamReport } from '../lib/probes.js';

const PORT = 9310;

interface SoakOptions {
  minutes: number;
  rate: number;
  reportS: number;
  rekeyMs: number | undefined;
}

function parse(argv: readonly string[]): SoakOptions {
  const o: SoakOptions = { minutes: 60, rate: 500, reportS: 60, rekeyMs: undefined };
  for (let i = 0; i < argv.length; i += 2) {
    const v = Number(argv[i + 1]);
    if (!Number.isFinite(v) || v <= 0) throw new RangeError(`${argv[i]} needs a positive number`);
    if (argv[i] === '--minutes') o.minutes = v;
    else if (argv[i] === '--rate') o.rate = v;
    else if (argv[i] === '--report-s') o.reportS = v;
    else if (argv[i] === '--rekey-ms') o.rekeyMs = v;
    else throw new RangeError(`unknown argument ${argv[i]} (--minutes, --rate, --report-s, --rekey-ms)`);
  }
  return o;
}

/** Resident set of a daemon's process (MiB), from /proc. */
function rssMiB(d: Daemon): number | null {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${d.proc.pid}/status`, 'utf8'));
    return m ? Math.round((Number(m[1]) / 1024) * 10) / 10 : null;
  } catch {
    return null;
  }
}

async function handshakes(d: Daemon, peer: Daemon): Promise<number | null> {
  const t = await tunnelTo(d, String(peer.ready.id)).catch(() => undefined);
  return t ? t.handshakes : null;
}

async function main(): Promise<void> {
  const o = parse(process.argv.slice(2));
  const seconds = Math.round(o.minutes * 60);
  const extra = o.rekeyMs ? ['--set', `terminal.rekeyAfterMs=${o.rekeyMs}`, '--set', `terminal.rejectAfterMs=${Math.round(o.rekeyMs * 1.5)}`] : [];
  await withTestbed('natpair', { nat: { nata: 'eim', natb: 'eim' } }, (tb) =>
    withDaemons('ntm-soak-', (line) => console.error(line), async ({ dir, started }) => {
      const p = await startNatpair(tb, dir, started, { terminalArgs: extra });
      const c = (await p.a.call({ cmd: 'connect', target: 'b.ntm' }, 30_000)) as { tunnel: TunnelStatus };
      const opts = { port: PORT, rate: o.rate, seconds, graceMs: 2000, reportEveryS: o.reportS, waitForGo: true };
      const [sa, sb] = await Promise.all([
        startStream(tb, 'a', { ...opts, peer: `${String(p.b.ready.v4)}:${PORT}` }),
        startStream(tb, 'b', { ...opts, peer: `${String(p.a.ready.v4)}:${PORT}` }),
      ]);
      const t0 = performance.now();
      sa.go();
      sb.go();
      const snapshot = async (): Promise<Record<string, unknown>> => {
        const last = (lines: Record<string, unknown>[]): { sent: number; unique: number } => {
          const l = [...lines].reverse().find((x) => 'sent' in x) as { sent: number; unique: number } | undefined;
          return l ?? { sent: 0, unique: 0 };
        };
        const [la, lb] = [last(sa.lines), last(sb.lines)];
        return {
          elapsed_s: Math.round((performance.now() - t0) / 1000),
          path: (await tunnelTo(p.a, String(p.b.ready.id)).catch(() => undefined))?.path ?? null,
          // Interim: what is in flight at the instant of the two reports shows as a few lost packets.
          sent_a_to_b: la.sent,
          lost_a_to_b: la.sent - lb.unique,
          sent_b_to_a: lb.sent,
          lost_b_to_a: lb.sent - la.unique,
          rss_mib: { a: rssMiB(p.a), b: rssMiB(p.b) },
          handshakes: { a: await handshakes(p.a, p.b), b: await handshakes(p.b, p.a) },
        };
      };
      const timer = setInterval(() => void snapshot().then((s) => console.log(JSON.stringify({ soak: 'interim', ...s }))), o.reportS * 1000 + 500);
      let atA: StreamReport;
      let atB: StreamReport;
      try {
        [atA, atB] = await Promise.all([sa.done, sb.done]);
      } finally {
        clearInterval(timer);
      }
      const end = await snapshot();
      console.log(
        JSON.stringify({
          soak: 'final',
          minutes: o.minutes,
          rate_pps: o.rate,
          rekey_ms: o.rekeyMs ?? 120_000,
          tunnel: c.tunnel.tunnelId,
          ...end,
          sent_a_to_b: atA.sent,
          lost_a_to_b: atA.sent - atB.unique,
          sent_b_to_a: atB.sent,
          lost_b_to_a: atB.sent - atA.unique,
          duplicates: atA.duplicates + atB.duplicates,
          max_gap_ms: { at_a: atA.maxGapMs, at_b: atB.maxGapMs },
        }),
      );
    }),
  );
}

await main();
