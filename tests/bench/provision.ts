// Provisioning benchmark (issue 14): `ntm provision` over N subscribers (10,000 outside quick mode), as an ISP runs it:
// one process, a CSV with quoted UTF-8 household names, every bundle written (config, identity, setup code, letter),
// then the same file again (the idempotent re-run that rewrites nothing). Wall-clock of the whole process.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NTM, tempDir } from '../lib/ntm.js';

export interface ProvisioningFigures {
  readonly subscribers: number;
  /** First run: every bundle created (identity generated, files written, one syncfs). */
  readonly first_run_s: number;
  readonly subscribers_per_s: number;
  /** Second run over the same file: everything kept, nothing rewritten. */
  readonly rerun_s: number;
  /** Peak RSS of the `ntm provision` process (first run). */
  readonly rss_peak_mib: number;
}

function timed(args: string[]): { seconds: number; rssMib: number; stdout: string } {
  // GNU time reports the child's peak RSS; the process is timed from outside, start-up included, as an operator sees it.
  const t0 = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', '%M', process.execPath, NTM, 'provision', ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const seconds = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`ntm provision failed (${r.status}): ${r.stderr.slice(-2000)}`);
  const kib = Number(r.stderr.trim().split('\n').pop());
  return { seconds, rssMib: kib / 1024, stdout: r.stdout };
}

export function benchProvision(o: { readonly subscribers: number; readonly log: (l: string) => void }): Promise<ProvisioningFigures> {
  const tmp = tempDir('ntm-bench-provision-');
  try {
    const rows = ['id,household,wan_address,plan'];
    for (let i = 0; i < o.subscribers; i++) rows.push(`S-${String(i).padStart(6, '0')},"Home ${i}, 東京 ""${i % 7}""",198.51.${(i >> 8) & 255}.${i & 255},${i % 3 ? 'fiber-1g' : 'dsl'}`);
    const csv = join(tmp.path, 'subscribers.csv');
    writeFileSync(csv, rows.join('\r\n') + '\r\n');
    const out = join(tmp.path, 'bundles');
    const first = timed(['--subscribers', csv, '--out', out]);
    const summary = JSON.parse(first.stdout) as { subscribers: number; newIdentities: number };
    if (summary.subscribers !== o.subscribers || summary.newIdentities !== o.subscribers) throw new Error(`provisioned ${summary.subscribers} of ${o.subscribers}`);
    o.log(`provisioning: ${o.subscribers} subscribers in ${first.seconds.toFixed(1)} s`);
    const again = timed(['--subscribers', csv, '--out', out]);
    const r = (x: number) => Math.round(x * 100) / 100;
    return Promise.resolve({
      subscribers: o.subscribers,
      first_run_s: r(first.seconds),
      subscribers_per_s: Math.round(o.subscribers / first.seconds),
      rerun_s: r(again.seconds),
      rss_peak_mib: r(first.rssMib),
    });
  } finally {
    tmp.remove();
  }
}
