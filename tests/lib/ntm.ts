// Starting real `ntm` processes (dc, rs, up, agent) inside testbed hosts and talking to them: wait for the ready
// line, query the control socket, stop with a signal (or kill -9). Data directories live in one temp dir per test.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Testbed } from '../../scripts/netns/index.js';
import { request } from '../../agent/src/cmd/control-socket.js';

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

const SOCKETS: Record<string, string> = { dc: 'dc.sock', rs: 'rs.sock', up: 'terminal.sock', agent: 'agent.sock' };

/** Runs `ntm <role> ...args --data-dir <dataDir>` in the host and resolves on its ready line. */
export async function startNtm(tb: Testbed, host: string, role: 'dc' | 'rs' | 'up' | 'agent', args: string[], dataDir: string, timeoutMs = 20_000): Promise<Daemon> {
  const proc = tb.spawn(host, [process.execPath, '--enable-source-maps', NTM, role, '--data-dir', dataDir, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.setEncoding('utf8');
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (d: string) => (out += d));
  const ready = await new Promise<Record<string, unknown>>((resolveReady, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`ntm ${role} on ${host} not ready after ${timeoutMs} ms:\n${out.slice(-4000)}`)), timeoutMs);
    proc.stdout!.on('data', (d: string) => {
      out += d;
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const j = JSON.parse(line) as Record<string, unknown>;
          if (j.ready) {
            clearTimeout(timer);
            resolveReady(j);
          }
        } catch {
          // not the ready line
        }
      }
    });
    proc.on('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`ntm ${role} on ${host} exited (${code ?? sig}) before ready:\n${out.slice(-4000)}`));
    });
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
