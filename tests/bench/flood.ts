// Benchmark: the DC under a flood of forged registrations (issue 11 #4, "one key stops the DC"). On the natpair
// testbed with real processes, an attacker sends registrations forged with one key of its own from 32,768 spoofed
// sources at the highest rate one process here can send (tests/lib/flood.ts: a raw socket on its own core; the DC on
// the other), while a terminal renews its registration and asks for fresh directions over and over and a terminal the
// DC has never seen registers. Prints what was served and how fast (median, p99), the flood's rate, what the DC read
// of it, what it spent (CPU, ECDHs) and how it refused it (cookie replies). tests/netns/ntm-flood asserts the same run.
import { withTestbed } from '../lib/testbed.js';
import { startNatpair, withDaemons } from '../lib/ntm.js';
import { registrationFlood } from '../lib/flood.js';
import type { FloodFigures } from './results.js';

export async function benchFlood(o: { quick: boolean; log?: (line: string) => void }): Promise<FloodFigures> {
  const log = o.log ?? (() => {});
  return withTestbed('natpair', { nat: { nata: 'eim', natb: 'eim' }, delays: false }, (tb) =>
    withDaemons('ntm-bench-', log, async ({ dir, started }) => {
      const p = await startNatpair(tb, dir, started);
      const { figure: f, quiet } = await registrationFlood(tb, p, dir, started, o.quick ? 5 : 30);
      log(`flood: ${JSON.stringify(f)}`);
      return {
        flood_pps: f.flood.pps,
        flood_s: f.flood.seconds,
        flood_sources: f.flood.sources,
        dc_read_pps: Math.round(f.dc.received / f.flood.seconds),
        dc_cpu_percent: f.dc.cpuPercent,
        dc_cookie_replies: f.dc.cookieReplies,
        dc_cookie_repeats_unanswered: f.dc.cookieRepeats,
        dc_ecdh: f.dc.ecdh,
        registrations_served: f.served.registrations,
        registration_median_ms: f.served.registrationMs.median,
        registration_p99_ms: f.served.registrationMs.p99,
        directions_served: f.served.directions,
        direction_median_ms: f.served.directionMs.median,
        direction_p99_ms: f.served.directionMs.p99,
        failures: f.served.failures.length,
        first_registration_ms: f.served.newcomer.registrationMs,
        quiet_registration_ms: quiet.registerMs,
        quiet_direction_ms: quiet.connectMs,
      };
    }),
  );
}
