// A burst of first-time registrations at a DC in a testbed, from the DC's own host (the kill -9 tests of the SQLite
// and the EVM ledgers).
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './ntm.js';
import type { Testbed } from '../../scripts/netns/index.js';

const LOAD_JS = join(ROOT, 'dist/tests/bench/dc-load.js');

/** 1,000 first-time registrations from the DC's own host (loopback), 32 in flight; the IDs answered OK go to `out`. */
export function startBurst(tb: Testbed, dcId: { id: string; publicKey: string }, out: string): { proc: ChildProcess; done: Promise<{ answered: number; lost: number }> } {
  const proc = tb.spawn(
    'dc',
    [process.execPath, LOAD_JS, '--dc-public-key', dcId.publicKey, '--dc-id', dcId.id, '--port', '7100', '--count', '1000', '--reregister', '0', '--window', '32', '--threads', '1', '--seconds', '300', '--answered', out],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let text = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (text += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (text += d));
  const done = new Promise<{ answered: number; lost: number }>((resolve, reject) =>
    proc.once('exit', (code) => {
      const line = text.split('\n').find((l) => l.includes('"phase":"first"'));
      if (code !== 0 || !line) return reject(new Error(`load generator failed (${code}): ${text.slice(-2000)}`));
      resolve(JSON.parse(line) as { answered: number; lost: number });
    }),
  );
  return { proc, done };
}
