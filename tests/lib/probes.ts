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

/** What udp-stream.js prints at the end (see its header). */
export interface StreamReport {
  sent: number;
  received: number;
  unique: number;
  duplicates: number;
  fromPeers: number;
  maxGapMs: number;
}

export interface StreamOptions {
  port: number;
  peer?: string;
  rate?: number;
  seconds: number;
  graceMs?: number;
  reportEveryS?: number;
  /** Hold the sending until `go()` (so that both ends of a test listen first). */
  waitForGo?: boolean;
}

/**
 * Starts udp-stream.js in `host`; resolves once it listens, with `done` (its final report), `lines` (every JSON
 * line so far, interim reports included) and `go` (starts the sending of a waitForGo stream). `child` lets the
 * caller kill it.
 */
export async function startStream(
  tb: Testbed,
  host: string,
  o: StreamOptions,
): Promise<{ child: ChildProcess; done: Promise<StreamReport>; lines: Record<string, unknown>[]; go: () => void }> {
  const args = [process.execPath, join(LIB_DIR, 'udp-stream.js'), '--port', String(o.port), '--seconds', String(o.seconds)];
  if (o.peer !== undefined) args.push('--peer', o.peer);
  if (o.rate !== undefined) args.push('--rate', String(o.rate));
  if (o.graceMs !== undefined) args.push('--grace-ms', String(o.graceMs));
  if (o.reportEveryS !== undefined) args.push('--report-every-s', String(o.reportEveryS));
  if (o.waitForGo) args.push('--wait-for-go');
  const child = tb.spawn(host, args);
  const lines: Record<string, unknown>[] = [];
  let buf = '';
  let err = '';
  child.stderr?.on('data', (b: Buffer) => (err += b.toString()));
  let listening: () => void = () => undefined;
  const ready = new Promise<void>((r) => (listening = r));
  const done = new Promise<StreamReport>((resolve, reject) => {
    child.stdout?.on('data', (b: Buffer) => {
      buf += b.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const j = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
        buf = buf.slice(nl + 1);
        lines.push(j);
        if ('listening' in j) listening();
        if ('received' in j) resolve(j as unknown as StreamReport);
      }
    });
    child.once('exit', (code) => reject(new Error(`udp-stream in ${host} exited (${code}) without a report: ${err.slice(-2000)}`)));
  });
  done.catch(() => undefined); // a caller that fails before awaiting it must not leave an unhandled rejection
  await Promise.race([ready, done.then(() => undefined)]);
  return { child, done, lines, go: () => void child.stdin?.write('go\n') };
}

/**
 * One udp-stream in each of two hosts, each sending to the other (rate 0: that end only receives); both listen before
 * either sends. Resolves with what each end received (its final report), in the order given.
 */
export async function streamPair(
  tb: Testbed,
  ends: readonly [{ host: string; peer: string; rate: number }, { host: string; peer: string; rate: number }],
  o: Omit<StreamOptions, 'peer' | 'rate' | 'waitForGo'>,
): Promise<[StreamReport, StreamReport]> {
  const s = await Promise.all(ends.map((e) => startStream(tb, e.host, { ...o, peer: e.peer, rate: e.rate, waitForGo: true })));
  for (const x of s) x.go();
  const [r0, r1] = await Promise.all(s.map((x) => x.done));
  return [r0!, r1!];
}
