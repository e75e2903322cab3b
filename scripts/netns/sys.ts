// Running the system tools the testbed drives (ip, nft, iptables-restore) and finding and ending processes in namespaces.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { CommandError } from './errors.js';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface RunOptions {
  input?: string | Buffer;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Runs a command to completion; a non-zero exit is a value, not an exception. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolveRun, rejectRun) => {
    const child = spawn(cmd, args, { env: opts.env, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer =
      opts.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
          }, opts.timeoutMs);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => {
      if (timer) clearTimeout(timer);
      rejectRun(e);
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolveRun({ code, signal, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), timedOut });
    });
    // A child that exits before reading its input must not crash us with EPIPE.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs a command that must succeed; returns its stdout. */
export async function runOk(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new CommandError([cmd, ...args].join(' ').slice(0, 200), r.code, r.timedOut ? 'timed out' : r.stderr);
  return r.stdout;
}

export function runSync(cmd: string, args: readonly string[], input?: string): RunResult {
  const r = spawnSync(cmd, args, { input: input ?? '', encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, signal: r.signal, stdout: r.stdout ?? '', stderr: r.stderr ?? '', timedOut: r.error !== undefined };
}

export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Names of all network namespaces `ip netns` knows. */
export function listNetns(): string[] {
  const r = runSync('ip', ['netns', 'list']);
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter(Boolean);
}

export function netnsPids(ns: string): number[] {
  const r = runSync('ip', ['netns', 'pids', ns]);
  return r.stdout
    .split(/\s+/)
    .filter(Boolean)
    .map(Number)
    .filter((n) => Number.isInteger(n) && n > 0);
}

/** Alive and not a zombie (a zombie has already left its namespaces; it only waits for its parent). */
export function isAlive(pid: number): boolean {
  // Never pid <= 0: kill(0) and kill(-1) address whole process groups.
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** SIGTERM, then SIGKILL whatever is left after `graceMs`. Synchronous so it also works from exit handlers. */
export function killAndWait(pids: readonly number[], graceMs = 1000): void {
  const signal = (sig: NodeJS.Signals, pid: number): void => {
    if (!Number.isInteger(pid) || pid <= 0) return;
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  };
  for (const pid of pids) signal('SIGTERM', pid);
  const deadline = Date.now() + graceMs;
  let left = pids.filter(isAlive);
  while (left.length > 0 && Date.now() < deadline) {
    sleepSync(20);
    left = left.filter(isAlive);
  }
  for (const pid of left) signal('SIGKILL', pid);
  const hard = Date.now() + 2000;
  while (left.some(isAlive) && Date.now() < hard) sleepSync(10);
}
