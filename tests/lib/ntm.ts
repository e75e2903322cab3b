// Starting real `ntm` processes (dc, rs, up, agent) inside testbed hosts and talking to them: wait for the ready
// line, query the control socket, stop with a signal (or kill -9). Data directories live in one temp dir per test.
import type { ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Testbed } from '../../scripts/netns/index.js';
import { request } from '../../agent/src/cmd/control-socket.js';
import { NODE_FLAGS } from '../../agent/src/cmd/node-flags.js';

export const ROOT = resolve(import.meta.dirname, '..', '..', '..');
export const NTM = join(ROOT, 'dist/agent/src/cmd/ntm.js');

export interface Daemon {
  readonly host: string;
  readonly proc: ChildProcess;
  readonly ready: Record<string, unknown>;
  readonly dataDir: string;
  /** Everything the process wrote, for failure messages. */
  readonly output: () => string;
  status(): Promise<Record<string, unknown>>;
  call(req: Record<string, unknown>, timeoutMs?: number): Promise<unknown>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export function tempDir(prefix = 'ntm-test-'): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** What `withDaemons` lends its body: a fresh directory, the list to put started daemons in, and extra clean-ups. */
export interface DaemonScope {
  readonly dir: string;
  readonly started: Daemon[];
  /** Runs `f` at the end, before the daemons stop (last deferred first). */
  defer(f: () => unknown): void;
}

/**
 * Runs `body` in a DaemonScope: on failure, logs the last output and the status of every daemon it started; always runs the deferred
 * clean-ups, stops the daemons and removes the directory.
 */
export async function withDaemons<T>(prefix: string, log: (line: string) => void, body: (s: DaemonScope) => Promise<T>): Promise<T> {
  const tmp = tempDir(prefix);
  const started: Daemon[] = [];
  const deferred: Array<() => unknown> = [];
  try {
    return await body({ dir: tmp.path, started, defer: (f) => deferred.push(f) });
  } catch (e) {
    for (const d of started) {
      log(`--- ${d.host}\n${d.output().slice(-2000)}`);
      // Its counters (drops, retransmissions) say more than its log; a daemon that does not answer says that.
      const st = await d.call({ cmd: 'status' }, 3000).then((x) => JSON.stringify(x), (x: Error) => `no status: ${x.message}`);
      log(`--- ${d.host} status: ${st.slice(0, 4000)}`);
    }
    throw e;
  } finally {
    for (const f of deferred.reverse()) await f();
    await Promise.all(started.map((d) => d.stop()));
    tmp.remove();
  }
}

const SOCKETS: Record<string, string> = { dc: 'dc.sock', rs: 'rs.sock', up: 'terminal.sock', agent: 'agent.sock' };

/** Runs `ntm <role> ...args --data-dir <dataDir>` in the host and resolves on its ready line. */
export async function startNtm(
  tb: Testbed,
  host: string,
  role: 'dc' | 'rs' | 'up' | 'agent',
  args: string[],
  dataDir: string,
  timeoutMs = 20_000,
  env?: Record<string, string>,
): Promise<Daemon> {
  const proc = tb.spawn(host, [process.execPath, '--enable-source-maps', ...NODE_FLAGS[role], NTM, role, '--data-dir', dataDir, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(env ? { env: { ...process.env, ...env } } : {}),
  });
  let out = '';
  proc.stdout!.setEncoding('utf8');
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (d: string) => (out += d));
  proc.stdout!.on('data', (d: string) => (out += d));
  const ready = await firstJsonLine(proc, timeoutMs, `ntm ${role} on ${host}`, (j) => !!j.ready).catch((e: Error) => {
    throw new Error(`${e.message}\n${out.slice(-4000)}`);
  });
  const sock = join(dataDir, SOCKETS[role]!);
  return {
    host,
    proc,
    ready,
    dataDir,
    output: () => out,
    status: async () => (await request(sock, { cmd: 'status' })) as Record<string, unknown>,
    call: (req, t) => request(sock, req, t),
    stop: (signal: NodeJS.Signals = 'SIGTERM') =>
      new Promise<void>((r) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return r();
        proc.once('exit', () => r());
        proc.kill(signal);
        setTimeout(() => {
          proc.kill('SIGKILL');
          r();
        }, 5000).unref();
      }),
  };
}

/** libfaketime's preload library (its directory is named by the architecture). */
export function libfaketime(): string {
  for (const d of readdirSync('/usr/lib')) {
    const f = join('/usr/lib', d, 'faketime', 'libfaketime.so.1');
    if (existsSync(f)) return f;
  }
  throw new Error('libfaketime.so.1 not found: scripts/setup installs the faketime package');
}

/**
 * The environment that runs a program with its wall clock moved by `offset` (libfaketime, e.g. '+20y', '-10m'); the
 * monotonic clock is left alone, as a clock put right leaves it.
 */
export function fakedClock(offset: string): Record<string, string> {
  return { LD_PRELOAD: libfaketime(), FAKETIME: offset, FAKETIME_DONT_FAKE_MONOTONIC: '1' };
}

/** `ntm dc|rs --print-id` for a data dir (creates the key): what peers and terminals are configured with. */
export async function printId(tb: Testbed, host: string, role: 'dc' | 'rs', dataDir: string): Promise<{ id: string; publicKey: string }> {
  const r = await tb.exec(host, [process.execPath, NTM, role, '--data-dir', dataDir, '--print-id']);
  if (r.code !== 0) throw new Error(`print-id failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim()) as { id: string; publicKey: string };
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 10_000, everyMs = 50): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Traffic between virtual addresses: small self-contained programs run with `node -e` inside a host (no files to
// install in the namespace), plus an HTTP server, for the NTMobile netns tests.

/** Deterministic bytes of block i (16 KiB): sender and checker agree without sharing anything but the formula. */
const BLOCK_SRC = `const { createHash } = require('node:crypto');
function block(i) { const h = createHash('sha256').update('ntm block ' + i).digest(); const out = Buffer.alloc(16384); for (let o = 0; o < out.length; o += 32) h.copy(out, o); out.writeUInt32BE(i, 0); return out; }`;

/**
 * TCP source: `node -e TCP_SOURCE PORT TOTAL_BYTES RATE_BYTES_PER_S`: listens on PORT, prints {"listening":PORT},
 * sends TOTAL_BYTES of block() data at RATE to the first client, then exits.
 */
export const TCP_SOURCE = `${BLOCK_SRC}
const net = require('node:net');
const [port, total, rate] = process.argv.slice(1).map(Number);
const srv = net.createServer((s) => {
  srv.close();
  let i = 0, sent = 0; const t0 = Date.now();
  s.on('error', (e) => { console.error(e.message); process.exit(1); });
  const step = () => {
    while (sent < total && sent < ((Date.now() - t0) / 1000) * rate + 16384) {
      const b = block(i++).subarray(0, Math.min(16384, total - sent)); sent += b.length;
      if (!s.write(b)) { s.once('drain', step); return; }
    }
    if (sent >= total) { s.end(); return; }
    setTimeout(step, 5);
  };
  step();
});
srv.listen(port, '::', () => console.log(JSON.stringify({ listening: port })));`;

/**
 * TCP sink: `node -e TCP_SINK HOST PORT`: connects, reads to the end, prints one JSON line: bytes, sha256, the largest
 * gap between two arrivals (ms) and when it ended (epoch ms), every gap over 30 ms as [end epoch ms, ms], the total time.
 */
export const TCP_SINK = `const net = require('node:net');
const { createHash } = require('node:crypto');
const [host, port] = process.argv.slice(1);
const hash = createHash('sha256'); let got = 0, last = 0, maxGapMs = 0, gapEndAt = 0, firstAt = 0; const gaps = []; const t0 = Date.now();
const s = net.connect(Number(port), host);
s.on('data', (d) => { const now = Date.now(); if (!firstAt) firstAt = now; if (last && now - last > 30) gaps.push([now, now - last]); if (last && now - last > maxGapMs) { maxGapMs = now - last; gapEndAt = now; } last = now; got += d.length; hash.update(d); });
s.on('end', () => { console.log(JSON.stringify({ bytes: got, sha256: hash.digest('hex'), maxGapMs, gapEndAt, gaps, firstAt, ms: Date.now() - t0 })); });
s.on('error', (e) => { console.log(JSON.stringify({ error: e.message, bytes: got, maxGapMs })); process.exit(1); });`;

/** TCP_SINK's line (`error` and the bytes so far when the connection failed). */
export interface SinkReport {
  bytes: number;
  sha256: string;
  maxGapMs: number;
  gapEndAt: number;
  gaps: Array<[number, number]>;
  firstAt: number;
  ms: number;
  error?: string;
}

/** What TCP_SINK must report for TOTAL bytes of TCP_SOURCE. */
export function expectedTransfer(total: number): { bytes: number; sha256: string } {
  const hash = createHash('sha256');
  let left = total;
  for (let i = 0; left > 0; i++) {
    const h = createHash('sha256').update(`ntm block ${i}`).digest();
    const out = Buffer.alloc(16384);
    for (let o = 0; o < out.length; o += 32) h.copy(out, o);
    out.writeUInt32BE(i, 0);
    const b = out.subarray(0, Math.min(16384, left));
    hash.update(b);
    left -= b.length;
  }
  return { bytes: total, sha256: hash.digest('hex') };
}

/** Resolves with the first line of a child's stdout that parses as JSON and `accept`s (or rejects when it exits first). */
export function firstJsonLine<T = Record<string, unknown>>(child: ChildProcess, timeoutMs: number, what: string, accept: (j: T) => boolean = () => true): Promise<T> {
  return new Promise((resolveLine, reject) => {
    let buf = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`${what}: no such line after ${timeoutMs} ms ${err.slice(-2000)}`)), timeoutMs);
    child.stderr?.on('data', (d: Buffer | string) => (err += d.toString()));
    child.stdout?.on('data', (d: Buffer | string) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let j: T;
        try {
          j = JSON.parse(line) as T;
        } catch {
          continue; // not JSON: a log line
        }
        if (!accept(j)) continue;
        clearTimeout(timer);
        resolveLine(j);
        return;
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code}) before that line: ${err.slice(-2000)}`));
    });
  });
}

/** A Python HTTP server on [::]:port serving `dir` in `host`, ready when it accepts connections. */
export async function startHttp(tb: Testbed, host: string, dir: string, port = 8080): Promise<ChildProcess> {
  const child = tb.spawn(host, ['python3', '-m', 'http.server', '--bind', '::', '--directory', dir, String(port)], { stdio: 'ignore' });
  await waitFor(`http server on ${host}`, async () => (await tb.exec(host, ['python3', '-c', `import socket; socket.create_connection(("127.0.0.1", ${port}), 1)`])).code === 0, 15_000, 100);
  return child;
}

/** curl in `host`; returns the body (throws with curl's message on failure). */
export async function curl(tb: Testbed, host: string, url: string, maxTimeS = 20): Promise<string> {
  const r = await tb.exec(host, ['curl', '-sS', '--max-time', String(maxTimeS), url], { timeoutMs: (maxTimeS + 5) * 1000 });
  if (r.code !== 0) throw new Error(`curl ${url} in ${host} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

/** The tunnels a terminal daemon reports (`status().tunnels`). */
export interface TunnelStatus {
  tunnelId: string;
  peer: string;
  peerName: string;
  state: string;
  path: string;
  planned: string;
  endpoint: string | null;
  rttMs: number;
  createdAtMs: number;
  establishedAtMs: number | null;
  txPackets: number;
  rxPackets: number;
  txBytes: number;
  rxBytes: number;
  /** This end sends the TUNNEL_REQUESTs (and rekeys on time). */
  initiator: boolean;
  /** Handshakes this end did on the tunnel (as initiator: requests sent; as responder: requests answered). */
  handshakes: number;
  /** Lost paths this end repaired (a keep-alive that got no answer), and the last one's outage (ms). */
  repairs: number;
  lastOutageMs: number;
  /** The keep-alive interval of a live tunnel: a lost path is noticed within it. */
  keepaliveMs: number;
}

/** The up tunnel of daemon `d` to daemon `peer` (fails the test when there is none). */
export async function upTunnel(d: Daemon, peer: Daemon): Promise<TunnelStatus> {
  const t = await tunnelTo(d, String(peer.ready.id));
  if (!t) throw new Error(`${d.host} has no up tunnel to ${peer.host}`);
  return t;
}

/** The up tunnel of `d` to `peerId`, if any. */
export async function tunnelTo(d: Daemon, peerId: string): Promise<TunnelStatus | undefined> {
  const st = await d.status();
  return (st.tunnels as TunnelStatus[]).find((t) => t.peer === peerId && t.state === 'up');
}

// ---------------------------------------------------------------------------------------------------------------
// The natpair topology with standalone roles: a DC and an RS on the Internet, terminals "a" and "b" behind their NATs.

export interface NatpairRun {
  dc: Daemon;
  rs: Daemon;
  /** The second RS (host rs2 of the relaypair topology), with `rs2: true`. */
  rs2?: Daemon;
  a: Daemon;
  b: Daemon;
  /** Data directories by role ("dc", "rs", "a", "b"). */
  dirs: Record<'dc' | 'rs' | 'a' | 'b', string>;
  /** `ntm dc` arguments (after --data-dir), to start it again. */
  dcArgs: string[];
  dcId: { id: string; publicKey: string };
  /** B's DC with `secondDc`. */
  dc2?: Daemon;
}

/** Extras for the terminals of startNatpair. */
export interface NatpairOptions {
  /** Arguments for both `ntm up`s (e.g. `--set terminal.rekeyAfterMs=2000`). */
  readonly terminalArgs?: readonly string[];
  /** Environment additions for one terminal's process (e.g. libfaketime's). */
  readonly env?: Partial<Record<'a' | 'b', Record<string, string>>>;
  /** A terminal's DNS listener (`--dns`); none by default. */
  readonly dns?: Partial<Record<'a' | 'b', string>>;
  /** Runs once the DC and RS are up, before the terminals start (e.g. to let a metrics scraper see them idle). */
  readonly afterServers?: () => Promise<void>;
  /** How long a terminal may take to be ready (ms); default 60000: a loaded machine has taken over 20 s to bring up a terminal's data plane (readiness, not a speed: the figures that matter are asserted or benchmarked elsewhere). */
  readonly terminalReadyMs?: number;
  /**
   * B at a second DC (on the DC's host, UDP 7110, pool 198.18.2.0/24, operator port 9110), the two DCs each other's
   * --peer and the RS reporting to both: the two ends' signalling crosses DCs as in the paper's Fig. 1.
   */
  readonly secondDc?: boolean;
  /** A second RS in host rs2 (the relaypair topology), known to the DC(s) as the first is. */
  readonly rs2?: boolean;
}

/** Starts DC, RS and both terminals (each pushed onto `started` at once, so the caller can stop them on failure). */
export async function startNatpair(tb: Testbed, root: string, started: Daemon[], o: NatpairOptions = {}): Promise<NatpairRun> {
  const terminalArgs = o.terminalArgs ?? [];
  const dirs = Object.fromEntries(['dc', 'rs', 'a', 'b'].map((h) => [h, join(root, h)])) as NatpairRun['dirs'];
  const dcId = await printId(tb, 'dc', 'dc', dirs.dc);
  const rsId = await printId(tb, 'rs', 'rs', dirs.rs);
  const rs2Dir = join(root, 'rs2');
  const rs2Id = o.rs2 ? await printId(tb, 'rs2', 'rs', rs2Dir) : undefined;
  const relays = [
    '--relay',
    `${rsId.id}@192.0.2.66:7200`,
    '--relay',
    `${rsId.id}@[2001:db8:2::2]:7200`,
    ...(rs2Id ? ['--relay', `${rs2Id.id}@192.0.2.130:7200`, '--relay', `${rs2Id.id}@[2001:db8:4::2]:7200`] : []),
  ];
  const dc2Dir = join(root, 'dc2');
  const dc2Id = o.secondDc ? await printId(tb, 'dc', 'dc', dc2Dir) : undefined;
  const dcArgs = ['--advertise', '192.0.2.2:7100', ...relays, '--pool', '198.18.1.0/24', ...(dc2Id ? ['--peer', `${dc2Id.id}@192.0.2.2:7110`] : [])];
  const dc = await startNtm(tb, 'dc', 'dc', dcArgs, dirs.dc);
  started.push(dc);
  const dc2Args = ['--listen', '[::]:7110', '--advertise', '192.0.2.2:7110', ...relays, '--pool', '198.18.2.0/24', '--peer', `${dcId.id}@192.0.2.2:7100`];
  const dc2 = dc2Id ? await startNtm(tb, 'dc', 'dc', [...dc2Args, '--operator-listen', '127.0.0.1:9110'], dc2Dir) : undefined;
  if (dc2) started.push(dc2);
  const reportTo = ['--report-to', `${dcId.id}@192.0.2.2:7100`, ...(dc2Id ? ['--report-to', `${dc2Id.id}@192.0.2.2:7110`] : [])];
  const rs = await startNtm(tb, 'rs', 'rs', [...reportTo, '--advertise', '192.0.2.66:7200', '--advertise', '[2001:db8:2::2]:7200'], dirs.rs);
  started.push(rs);
  const rs2 = rs2Id ? await startNtm(tb, 'rs2', 'rs', [...reportTo, '--advertise', '192.0.2.130:7200', '--advertise', '[2001:db8:4::2]:7200'], rs2Dir) : undefined;
  if (rs2) started.push(rs2);
  for (const d of dc2 ? [dc, dc2] : [dc])
    await waitFor('the DC has the RS load report', async () => ((await d.status()).relays as Array<{ load: number | null }>).every((r) => r.load !== null), 15_000);
  await o.afterServers?.();
  const dcRef = `${dcId.publicKey}@192.0.2.2:7100`;
  const bDcRef = dc2Id ? `${dc2Id.publicKey}@192.0.2.2:7110` : dcRef;
  const [a, b] = await Promise.all([
    startNtm(tb, 'a', 'up', ['--dc', dcRef, '--name', 'a', '--dns', o.dns?.a ?? '', ...terminalArgs], dirs.a, o.terminalReadyMs ?? 60_000, o.env?.a).then((d) => (started.push(d), d)),
    startNtm(tb, 'b', 'up', ['--dc', bDcRef, '--name', 'b', '--dns', o.dns?.b ?? '', ...terminalArgs], dirs.b, o.terminalReadyMs ?? 60_000, o.env?.b).then((d) => (started.push(d), d)),
  ]);
  return { dc, rs, ...(rs2 ? { rs2 } : {}), a, b, dirs, dcArgs, dcId, ...(dc2 ? { dc2 } : {}) };
}

// ---------------------------------------------------------------------------------------------------------------
// The paper topology (Fig. 1): MN IPv6-only at DC_MN, CN IPv4-only behind a NAT at DC_CN, a dual-stack RS.

export interface PaperRun {
  dcmn: Daemon;
  dccn: Daemon;
  rs: Daemon;
  mn: Daemon;
  cn: Daemon;
  dirs: Record<string, string>;
  ids: Record<string, { id: string; publicKey: string }>;
}

/**
 * Starts the paper topology's DCs, RS and terminals (MN at DC_MN, CN at DC_CN) and waits until the DCs know each other
 * and the RS's load. The DCs are each other's --peer, unless `ledger` gives them the arguments of a shared ledger
 * (EVM: they then find each other in the contract); it is called with the servers' IDs before any DC starts.
 */
export async function startPaper(tb: Testbed, root: string, o: { ledger?: (ids: Record<'dcmn' | 'dccn' | 'rs', { id: string; publicKey: string }>) => Promise<string[]> } = {}): Promise<PaperRun> {
  const dirs = Object.fromEntries(['dcmn', 'dccn', 'rs', 'mn', 'cn'].map((h) => [h, join(root, h)]));
  const ids = {
    dcmn: await printId(tb, 'dcmn', 'dc', dirs.dcmn!),
    dccn: await printId(tb, 'dccn', 'dc', dirs.dccn!),
    rs: await printId(tb, 'rs', 'rs', dirs.rs!),
  };
  const relay = ['--relay', `${ids.rs.id}@192.0.2.66:7200`, '--relay', `${ids.rs.id}@[2001:db8:2::2]:7200`];
  const ledger = o.ledger ? await o.ledger(ids) : undefined;
  const [dcmn, dccn] = await Promise.all([
    startNtm(tb, 'dcmn', 'dc', ['--advertise', '192.0.2.2:7100', '--advertise', '[2001:db8:1::2]:7100', ...(ledger ?? ['--peer', `${ids.dccn.id}@198.51.100.2:7100`]), ...relay, '--pool', '198.18.1.0/24'], dirs.dcmn!, 60_000),
    startNtm(tb, 'dccn', 'dc', ['--advertise', '198.51.100.2:7100', '--advertise', '[2001:db8:3::2]:7100', ...(ledger ?? ['--peer', `${ids.dcmn.id}@192.0.2.2:7100`]), ...relay, '--pool', '198.18.2.0/24'], dirs.dccn!, 60_000),
  ]);
  const rs = await startNtm(
    tb,
    'rs',
    'rs',
    ['--report-to', `${ids.dcmn.id}@192.0.2.2:7100`, '--report-to', `${ids.dccn.id}@198.51.100.2:7100`, '--advertise', '192.0.2.66:7200', '--advertise', '[2001:db8:2::2]:7200'],
    dirs.rs!,
  );
  const [cn, mn] = await Promise.all([
    startNtm(tb, 'cn', 'up', ['--dc', `${ids.dccn.publicKey}@198.51.100.2:7100`, '--name', 'cn', '--dns', ''], dirs.cn!),
    startNtm(tb, 'mn', 'up', ['--dc', `${ids.dcmn.publicKey}@[2001:db8:1::2]:7100`, '--name', 'mn', '--dns', ''], dirs.mn!),
  ]);
  // Federation and load reports settle (HELLOs, the RS's first LOAD_REPORT).
  await waitFor('DCs know each other and the RS', async () => {
    const [a, b] = [await dcmn.status(), await dccn.status()];
    const ok = (s: Record<string, unknown>) =>
      (s.peers as Array<{ known: boolean }>).every((p) => p.known) && (s.relays as Array<{ load: number | null }>).every((r) => r.load !== null);
    return ok(a) && ok(b) && (a.peers as unknown[]).length > 0 && (b.peers as unknown[]).length > 0;
  }, o.ledger ? 30_000 : 15_000);
  return { dcmn, dccn, rs, mn, cn, dirs, ids };
}

/**
 * A UDP port free on loopback now with the next one (a DC's probe port) free too: for a DC whose workers must all be
 * given one fixed port (dc.workers, SO_REUSEPORT).
 */
export async function freePortPair(): Promise<number> {
  for (;;) {
    const a = dgram.createSocket('udp4');
    await new Promise<void>((r) => a.bind(0, '127.0.0.1', () => r()));
    const port = a.address().port;
    const b = dgram.createSocket('udp4');
    const ok = port < 65535 && (await new Promise<boolean>((r) => {
      b.once('error', () => r(false));
      b.bind(port + 1, '127.0.0.1', () => r(true));
    }));
    a.close();
    if (ok) b.close();
    if (ok) return port;
  }
}
