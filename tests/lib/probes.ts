// Probe helpers for netns tests: start the UDP echo server in a host, run the UDP prober from another, parse results.
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { realtime, type Testbed } from '../../scripts/netns/index.js';
import type { ProbeReport } from './probe-format.js';

export { type EchoReply, median, type ProbeReport, type ProbeTargetResult } from './probe-format.js';

export const ECHO_PORT = 7777;
/** dist/tests/lib, where the compiled udp-echo.js and udp-probe.js live. */
export const LIB_DIR = import.meta.dirname;

/** Starts udp-echo.js in `host` and resolves once it listens; down() kills it. */
export async function startEcho(tb: Testbed, host: string, port = ECHO_PORT): Promise<ChildProcess> {
  // Real-time like the emulator, so CPU contention from unrelated work does not show up as path delay.
  const child = tb.spawn(host, [...realtime(), process.execPath, join(LIB_DIR, 'udp-echo.js'), '--port', String(port)]);
  await new Promise<void>((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`udp-echo in ${host} did not start: ${err}`)), 5000);
    child.stderr?.on('data', (b: Buffer) => (err += b.toString()));
    child.stdout?.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('"listening"')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`udp-echo in ${host} exited (${code}): ${err}`));
    });
  });
  return child;
}

export interface ProbeOptions {
  count?: number;
  intervalMs?: number;
  timeoutMs?: number;
  warmup?: number;
}

/** Runs udp-probe.js in `host` against targets ("addr:port" or "[v6]:port") from one socket. */
export async function probe(tb: Testbed, host: string, targets: readonly string[], opts: ProbeOptions = {}): Promise<ProbeReport> {
  const args = [...realtime(), process.execPath, join(LIB_DIR, 'udp-probe.js')];
  for (const t of targets) args.push('--target', t);
  if (opts.count !== undefined) args.push('--count', String(opts.count));
  if (opts.intervalMs !== undefined) args.push('--interval-ms', String(opts.intervalMs));
  if (opts.timeoutMs !== undefined) args.push('--timeout-ms', String(opts.timeoutMs));
  if (opts.warmup !== undefined) args.push('--warmup', String(opts.warmup));
  const r = await tb.exec(host, args, { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`udp-probe in ${host} failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as ProbeReport;
}

/**
 * Round-trip times (ms) of `count` ICMP echoes from `host` to `address` (iputils ping, 100 ms apart, after one
 * unmeasured echo for ARP/neighbour discovery). The kernel answers and timestamps them, so this measures the path —
 * links, routers, NATs, the delay emulator — without a user-space prober's or echo server's scheduling in it. (ping
 * prints whole milliseconds above 100 ms.)
 */
export async function pingRtts(tb: Testbed, host: string, address: string, count = 20): Promise<number[]> {
  const family = address.includes(':') ? '-6' : '-4';
  const warm = await tb.exec(host, ['ping', family, '-n', '-c', '1', '-W', '2', address], { timeoutMs: 10_000 });
  if (warm.code !== 0) throw new Error(`ping ${address} from ${host} failed: ${warm.stdout}${warm.stderr}`);
  const r = await tb.exec(host, ['ping', family, '-n', '-c', String(count), '-i', '0.1', '-W', '2', address], { timeoutMs: 60_000 });
  const rtts = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
  if (rtts.length === 0) throw new Error(`ping ${address} from ${host}: no replies (${r.code}): ${r.stdout}${r.stderr}`);
  return rtts;
}
