// withTestbed: run a test body against a fresh testbed and always tear it down (on failure, SIGINT, SIGTERM, exit).
import { readdirSync, readFileSync } from 'node:fs';
import { type Testbed, teardown, type UpOptions, up } from '../../scripts/netns/index.js';
import { listNetns } from '../../scripts/netns/sys.js';

const active = new Map<string, Testbed>();
let hooked = false;

/** Synchronous teardown of whatever is still up; exit and signal handlers cannot wait for promises. */
function teardownActive(): void {
  for (const prefix of active.keys()) {
    try {
      teardown(prefix);
    } catch (e) {
      console.error(`testbed ${prefix}: teardown failed: ${(e as Error).message}`);
    }
  }
  active.clear();
}

function hook(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', teardownActive);
  for (const [sig, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.on(sig, () => {
      teardownActive();
      process.exit(code);
    });
  }
}

/**
 * Brings `topology` up under a fresh unique prefix (unless opts.prefix), runs `body`, and tears down whatever
 * happens; returns what `body` returns.
 */
export async function withTestbed<T>(topology: string, opts: UpOptions, body: (tb: Testbed) => Promise<T>): Promise<T> {
  hook();
  const tb = await up(topology, opts);
  active.set(tb.prefix, tb);
  try {
    return await body(tb);
  } finally {
    active.delete(tb.prefix);
    await tb.down();
  }
}

/** What is left of a prefix: its namespaces, and processes whose command line names one of them or its state dir. */
export function leftovers(prefix: string): { namespaces: string[]; pids: number[] } {
  const namespaces = listNetns().filter((n) => n.startsWith(`${prefix}-`));
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ');
    } catch {
      continue;
    }
    if (cmdline.includes(`/ntm-testbed/${prefix}/`) || cmdline.includes(` ${prefix}-`)) pids.push(Number(entry));
  }
  return { namespaces, pids };
}
