// A flood from spoofed sources at the highest rate one process here can send, for the flood test and benchmark
// (tests/netns/ntm-flood.test.ts, tests/bench/flood.ts; issue 11 #4). A Python raw socket (IP_HDRINCL; python3 is
// installed by scripts/setup) sends one UDP payload from a different source address and port each packet, cycling
// through a precomputed set, as fast as the kernel takes them. Nothing can answer to those sources, as with a real
// spoofed flood: whatever the target sends back is routed to the flooder's host and dropped there.
import type { ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Testbed } from '../../scripts/netns/index.js';
import { firstJsonLine, startNtm, type Daemon, type NatpairRun } from './ntm.js';
import { Identity } from '../../agent/src/protocol/identity.js';
import * as NT from '../../agent/src/protocol/node-transaction.js';
import { encodeRegistrationRequest, mac1Key } from '../../agent/src/protocol/registration.js';

const FLOODER = `
import json, random, socket, struct, sys, time
payload = bytes.fromhex(sys.argv[1]); dst = socket.inet_aton(sys.argv[2]); dport = int(sys.argv[3])
seconds = float(sys.argv[4]); net, bits = sys.argv[5].split('/'); sources = int(sys.argv[6]); sport = int(sys.argv[7])
base = struct.unpack('!I', socket.inet_aton(net))[0]; span = 1 << (32 - int(bits))
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
packets = []
for i in range(sources):
    src = struct.pack('!I', base if span == 1 else base + 1 + random.randrange(span - 2))
    udp = struct.pack('!HHHH', sport or random.randrange(1024, 65536), dport, 8 + len(payload), 0) + payload
    # Total length and header checksum are filled in by the kernel (raw(7)); a UDP checksum of 0 means none (IPv4).
    packets.append(struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, src, dst) + udp)
print(json.dumps({'ready': True}), flush=True)
to = (sys.argv[2], 0); send = s.sendto; sent = 0; t0 = time.monotonic(); end = t0 + seconds
while time.monotonic() < end:
    for p in packets[(sent % sources):(sent % sources) + 512]:
        send(p, to)
    sent += min(512, sources - sent % sources)
print(json.dumps({'sent': sent, 'seconds': time.monotonic() - t0}), flush=True)
`;

/**
 * The attacker is another machine: here it gets one core and the server under attack the other (as the DC capacity
 * benchmark splits them), and the server a higher priority than the other processes of this shared machine (nice
 * -10, as a server with a core of its own). The flooder runs at ordinary priority: raised too, it starved the
 * terminals and NATs whose service is measured, and the figure was the scheduler's.
 */
export const FLOODER_CPU = 0;
export const SERVER_CPU = 1;

/** Moves a running server (every thread) to SERVER_CPU, at nice -10. */
export function pinServer(pid: number): void {
  execFileSync('taskset', ['-a', '-p', '-c', String(SERVER_CPU), String(pid)], { stdio: 'ignore' });
  for (const task of readdirSync(`/proc/${pid}/task`)) execFileSync('renice', ['-n', '-10', '-p', task], { stdio: 'ignore' });
}

export interface FloodResult {
  readonly sent: number;
  readonly seconds: number;
}

export interface Flood {
  readonly proc: ChildProcess;
  /** Resolves when the flood is over. */
  readonly done: Promise<FloodResult>;
}

/**
 * Starts a flood of `payload` from `host` to `dst`:`port`, from `sources` random addresses of `sourceNet` (a CIDR the
 * network routes to `host`; a /32 is that one address) and random ports (or `sourcePort`), for `seconds`. Resolves once the packets are built and the first is about to go.
 */
export async function startFlood(
  tb: Testbed,
  host: string,
  o: { payload: Buffer; dst: string; port: number; seconds: number; sourceNet: string; sources?: number; sourcePort?: number },
): Promise<Flood> {
  const proc = tb.spawn(host, ['taskset', '-c', String(FLOODER_CPU), 'python3', '-c', FLOODER, o.payload.toString('hex'), o.dst, String(o.port), String(o.seconds), o.sourceNet, String(o.sources ?? 32768), String(o.sourcePort ?? 0)]);
  const lines: Array<Record<string, unknown>> = [];
  let buf = '';
  let resolveDone: (r: FloodResult) => void = () => {};
  let rejectDone: (e: Error) => void = () => {};
  const done = new Promise<FloodResult>((res, rej) => ((resolveDone = res), (rejectDone = rej)));
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const j = JSON.parse(buf.slice(0, i)) as Record<string, unknown>;
      buf = buf.slice(i + 1);
      lines.push(j);
      if (typeof j.sent === 'number') resolveDone({ sent: j.sent, seconds: Number(j.seconds) });
    }
  });
  proc.once('exit', (code: number | null) => code !== 0 && rejectDone(new Error(`flooder exited ${code}: ${err}`)));
  await firstJsonLine(proc, 30_000, 'flooder', (j) => !!j.ready).catch((e: Error) => {
    throw new Error(`${e.message}: ${err}`);
  });
  return { proc, done };
}

/**
 * What one attacker key makes (issue 11 #4, "one key stops the DC"): a Registration Request whose Node Transaction is
 * genuine and names the DC (anyone can sign one with a key of their own) and whose mac1 holds (the DC's public key is
 * public), with a MAC under a wrong K_ss. The DC does not know the ID, so before its cookie it did an ECDH for each.
 */
export function forgedRegistration(dcPublicKeyHex: string, dcIdHex: string): Buffer {
  const key = Identity.generate();
  const dcPub = Buffer.from(dcPublicKeyHex, 'hex');
  const nt = NT.encode(NT.sign(key, { dcId: Buffer.from(dcIdHex.replace(/^0x/, ''), 'hex'), revoked: false, timestamp: Date.now() }));
  const req = { terminalIndex: 1, txid: 1n, nonce: Buffer.alloc(16, 1), time: Date.now(), nt, locals: [], name: '', token: new Uint8Array(0) };
  return encodeRegistrationRequest(req, Buffer.alloc(32, 0x5a), mac1Key(dcPub));
}

/** CPU time (user + system, ms) a process has used so far, from /proc (clock ticks of 10 ms). */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

export interface Served {
  registrations: number[];
  connects: number[];
  failures: string[];
}

/** Renews the terminal's registration and asks for a fresh direction to `target`, over and over, until `until`. */
export async function keepServing(t: Daemon, target: string, until: number): Promise<Served> {
  const s: Served = { registrations: [], connects: [], failures: [] };
  while (Date.now() < until) {
    try {
      const r = (await t.call({ cmd: 'register' }, 15_000)) as { ms: number };
      s.registrations.push(r.ms);
      const c = (await t.call({ cmd: 'connect', target, fresh: true }, 20_000)) as { ms: number; tunnel: { state: string } };
      if (c.tunnel.state !== 'up') s.failures.push(`connect: ${c.tunnel.state}`);
      s.connects.push(c.ms);
    } catch (e) {
      s.failures.push((e as Error).message);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return s;
}

/** The `p` quantile of `xs` (nearest rank), to 0.1. */
export function quantile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round((s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN) * 10) / 10;
}

/** Where the spoofed sources are: the Internet core routes it to the attacker (the RS's host), which drops replies. */
export const SPOOFED = '100.64.0.0/10';
const SPOOFED_SOURCES = 32768;

type Counts = Record<string, number>;

export interface RegistrationFloodFigure {
  readonly flood: { sent: number; seconds: number; pps: number; sources: number };
  readonly dc: { received: number; cookieReplies: number; cookieRepeats: number; ecdh: number; sourceLimited: number; macFailures: number; cpuMs: number; cpuPercent: number };
  readonly served: {
    registrations: number;
    registrationMs: { median: number; p99: number; max: number };
    directions: number;
    directionMs: { median: number; p99: number; max: number };
    failures: string[];
    newcomer: { readyMs: number; registrationMs: number };
  };
}

/**
 * The flood of issue 11 #4 on a started natpair (tests/netns/ntm-flood, tests/bench/flood): forged registrations
 * from SPOOFED_SOURCES spoofed sources at the DC for `seconds`, while terminal A renews its registration and asks for
 * fresh directions to B over and over, and a terminal the DC has never seen (signalling only, on B's host) registers.
 * The DC is pinned (pinServer). Returns what was served, how fast, and what the flood cost the DC.
 */
export async function registrationFlood(
  tb: Testbed,
  p: NatpairRun,
  dir: string,
  started: Daemon[],
  seconds: number,
): Promise<{ figure: RegistrationFloodFigure; served: Served; quiet: { registerMs: number; connectMs: number } }> {
  await tb.exec('inet', ['ip', 'route', 'add', SPOOFED, 'via', '192.0.2.66']);
  pinServer(p.dc.proc.pid!);
  // Unflooded, for comparison: one renewal and one fresh direction.
  const r0 = (await p.a.call({ cmd: 'register' }, 15_000)) as { ms: number };
  const c0 = (await p.a.call({ cmd: 'connect', target: 'b.ntm', fresh: true }, 20_000)) as { ms: number };
  const quiet = { registerMs: Math.round(r0.ms * 10) / 10, connectMs: Math.round(c0.ms * 10) / 10 };

  const before = await p.dc.status();
  const cpuBefore = cpuMs(p.dc.proc.pid!);
  const flood = await startFlood(tb, 'rs', { payload: forgedRegistration(p.dcId.publicKey, p.dcId.id), dst: '192.0.2.2', port: 7100, seconds, sourceNet: SPOOFED, sources: SPOOFED_SOURCES });
  const floodStart = Date.now();
  await new Promise((r) => setTimeout(r, 1000));
  const newcomer = (async () => {
    const t0 = Date.now();
    const c = await startNtm(tb, 'b', 'up', ['--dc', `${p.dcId.publicKey}@192.0.2.2:7100`, '--name', 'c', '--dns', '', '--set', 'terminal.dataplane=false'], join(dir, 'c'), 30_000);
    started.push(c);
    return { readyMs: Date.now() - t0, registrationMs: Math.round(Number(c.ready.registrationMs) * 10) / 10 };
  })();
  const served = await keepServing(p.a, 'b.ntm', floodStart + (seconds - 1) * 1000);
  const fresh = await newcomer;
  const done = await flood.done;
  const cpu = cpuMs(p.dc.proc.pid!) - cpuBefore;
  await new Promise((r) => setTimeout(r, 300));
  const after = await p.dc.status();
  const d = (k: string, which: 'counts' | 'drops' = 'counts') => ((after[which] as Counts)[k] ?? 0) - ((before[which] as Counts)[k] ?? 0);
  const figure: RegistrationFloodFigure = {
    flood: { sent: done.sent, seconds: Math.round(done.seconds * 10) / 10, pps: Math.round(done.sent / done.seconds), sources: SPOOFED_SOURCES },
    dc: {
      received: d('rx'),
      cookieReplies: d('reg-cookie-sent'),
      cookieRepeats: d('reg-cookie-repeat', 'drops'),
      ecdh: d('reg-ecdh'),
      sourceLimited: d('reg-source-limit', 'drops'),
      macFailures: d('reg-mac', 'drops'),
      cpuMs: cpu,
      cpuPercent: Math.round((cpu / (done.seconds * 1000)) * 1000) / 10,
    },
    served: {
      registrations: served.registrations.length,
      registrationMs: { median: quantile(served.registrations, 0.5), p99: quantile(served.registrations, 0.99), max: quantile(served.registrations, 1) },
      directions: served.connects.length,
      directionMs: { median: quantile(served.connects, 0.5), p99: quantile(served.connects, 0.99), max: quantile(served.connects, 1) },
      failures: served.failures,
      newcomer: fresh,
    },
  };
  return { figure, served, quiet };
}
