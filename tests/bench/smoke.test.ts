// Bench tier: every benchmark once in its quick (smoke) mode, so none of them rots. Asserts only that each produces
// well-formed figures (finite numbers with their units in the keys, or null with a reason), never how fast.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT, tempDir } from '../lib/ntm.js';
import { BENCH_NAMES, readResults, type ProcedureFigures } from './results.js';

const dist = (f: string) => join(ROOT, 'dist/tests/bench', f);

function node(args: string[], timeoutMs: number): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const finite = (x: unknown, what: string) => assert.ok(typeof x === 'number' && Number.isFinite(x), `${what} = ${String(x)}`);

function procedure(p: ProcedureFigures | undefined, what: string): void {
  assert.ok(p, `${what} missing`);
  for (const k of ['median_ms', 'p95_ms', 'paper_ms', 'bound_ms'] as const) finite(p[k], `${what}.${k}`);
  assert.ok(p.runs >= 1, `${what}.runs`);
  assert.ok(p.median_ms > 0 && p.p95_ms >= p.median_ms, `${what}: median ${p.median_ms}, p95 ${p.p95_ms}`);
}

void describe('benchmarks (smoke)', () => {
  test('npm run bench -- --quick writes every figure of issue 6 (or null with a reason); bench:report reads it', () => {
    const tmp = tempDir('ntm-bench-smoke-');
    try {
      const out = join(tmp.path, 'bench-results.json');
      const r = node([dist('run.js'), '--quick', '--out', out], 15 * 60_000);
      assert.equal(r.code, 0, `bench run failed:\n${r.stderr.slice(-4000)}`);
      const f = readResults(out);
      assert.ok(f, 'results file written');
      assert.match(f.date, /^\d{4}-\d\d-\d\dT/);
      assert.ok(f.commit.length > 0);
      finite(f.machine.cpus, 'machine.cpus');
      assert.deepEqual(Object.keys(f.results).sort(), [...BENCH_NAMES].sort());
      for (const name of ['registration', 'communication_start'] as const) {
        procedure(f.results[name]?.today, `${name}.today`);
        procedure(f.results[name]?.vcpe, `${name}.vcpe`);
      }
      const dc = f.results.dc_capacity;
      assert.ok(dc, `dc_capacity: ${f.notes?.dc_capacity}`);
      for (const k of ['registrations_per_s', 'rss_mib_100k', 'reregistrations_per_s', 'rss_peak_mib'] as const) {
        finite(dc[k], `dc_capacity.${k}`);
        assert.ok(dc[k] > 0, `dc_capacity.${k} > 0`);
      }
      assert.ok(dc.terminals >= 1000, `the DC holds the generated terminals (${dc.terminals})`);
      assert.ok(dc.verified_answers > 0, 'some answers were decrypted and checked');
      // Issue 15: the DC's rate per second of its own CPU, and the second run with the EC work on a worker thread.
      for (const k of ['registrations_per_dc_cpu_s', 'ec_floor_per_cpu_s', 'registrations_per_main_thread_cpu_s'] as const) finite(dc[k], `dc_capacity.${k}`);
      assert.ok(dc.ec_workers_1 && dc.ec_workers_1.registrations_per_s > 0 && dc.ec_workers_1.terminals >= 1000, `dc_capacity.ec_workers_1 ${JSON.stringify(dc.ec_workers_1)}`);
      finite(dc.ec_workers_1.registrations_per_main_thread_cpu_s, 'dc_capacity.ec_workers_1.registrations_per_main_thread_cpu_s');
      // Issue 15: one DC process and two workers (dc.workers = 2), side by side.
      for (const w of [dc.workers_1, dc.workers_2]) assert.ok(w && w.registrations_per_s > 0 && w.terminals >= 1000, `dc_capacity.workers_N ${JSON.stringify(w)}`);
      // The household benchmarks run for real in quick mode too: each produces its figures, not a null.
      for (const name of ['agent_memory', 'handover', 'throughput'] as const) {
        const v = f.results[name];
        assert.ok(v, `${name}: ${f.notes?.[name]}`);
        for (const [k, x] of Object.entries(v)) if (typeof x === 'number') finite(x, `${name}.${k}`);
      }
      const l = f.results.ledger;
      assert.ok(l, `ledger: ${f.notes?.ledger}`);
      assert.ok(l.committed > 0 && l.node_transactions_committed_per_s > 0 && l.gas_per_nt_first > 0, JSON.stringify(l));
      // The EVM ledger beside SQLite: every procedure on both backends, the chain took what the DCs answered.
      const lp = f.results.ledger_paper;
      assert.ok(lp, `ledger_paper: ${f.notes?.ledger_paper}`);
      for (const col of ['today', 'vcpe'] as const) {
        const c = lp[col];
        for (const [what, p] of [
          ['registration.sqlite', c.registration.sqlite],
          ['registration.evm', c.registration.evm],
          ['first_registration.sqlite', c.first_registration.sqlite],
          ['first_registration.evm', c.first_registration.evm],
          ['communication_start.sqlite', c.communication_start.sqlite],
          ['communication_start.evm_warm', c.communication_start.evm_warm],
          ['communication_start.evm_cold', c.communication_start.evm_cold],
        ] as const)
          procedure(p, `ledger_paper.${col}.${what}`);
        for (const k of ['warm_over_sqlite', 'cold_over_sqlite'] as const) finite(c.communication_start[k], `ledger_paper.${col}.${k}`);
        finite(c.registration.evm_over_sqlite, `ledger_paper.${col}.registration.evm_over_sqlite`);
        // Every first-time registration (MN's, the fresh MN's at DC_MN, CN's at DC_CN) reached the contract.
        assert.ok(c.chain.committed >= 3 && c.chain.pending === 0 && c.chain.refused === 0, `ledger_paper.${col}.chain ${JSON.stringify(c.chain)}`);
        finite(c.load_1m.before, 'load_1m.before');
      }
      const ld = f.results.ledger_dc_capacity;
      assert.ok(ld, `ledger_dc_capacity: ${f.notes?.ledger_dc_capacity}`);
      for (const b of ['sqlite', 'evm'] as const) assert.ok(ld[b].rss_mib_100k > 0 && ld[b].registrations_per_s > 0 && ld[b].terminals >= 1000, `ledger_dc_capacity.${b}`);
      assert.equal(ld.evm.outbox.refused, 0, 'the contract refused nothing the DC answered');
      assert.ok(ld.evm.outbox.committed > 0, 'Node Transactions reached the chain');
      finite(ld.rss_evm_over_sqlite, 'ledger_dc_capacity.rss_evm_over_sqlite');
      const m = f.results.agent_memory!;
      assert.ok(m.rss_mb_idle > 0 && m.rss_mb_load > 0, `agent RSS ${m.rss_mb_idle} / ${m.rss_mb_load}`);
      assert.equal(m.tunnels, 5, 'five live tunnels while measuring');
      const h = f.results.handover!;
      assert.ok(h.median_ms > 0 && h.rtt_ms > 0, `handover ${h.median_ms} ms, RTT ${h.rtt_ms} ms`);
      const t = f.results.throughput!;
      for (const p of ['agent', 'wireguard_go', 'plain'] as const) {
        assert.ok(t.tcp_mbps[p] > 0, `TCP through ${p} carried data`);
        assert.ok(t.udp_mbps[p] > 0, `UDP through ${p} carried data`);
      }
      finite(t.tcp_ratio_vs_wireguard_go, 'throughput.tcp_ratio_vs_wireguard_go');
      finite(t.tcp_ratio_vs_wireguard_go_per_round, 'throughput.tcp_ratio_vs_wireguard_go_per_round');
      const pv = f.results.provisioning;
      assert.ok(pv, `provisioning: ${f.notes?.provisioning}`);
      assert.equal(pv.subscribers, 200);
      for (const k of ['first_run_s', 'subscribers_per_s', 'rerun_s', 'rss_peak_mib'] as const) assert.ok(pv[k] > 0, `provisioning.${k} = ${pv[k]}`);
      const fl = f.results.flood;
      assert.ok(fl, `flood: ${f.notes?.flood}`);
      for (const k of ['flood_pps', 'dc_read_pps', 'registration_median_ms', 'direction_median_ms', 'first_registration_ms'] as const) assert.ok(fl[k] > 0, `flood.${k} = ${fl[k]}`);
      // The human table on stdout after the JSON.
      assert.match(r.stdout, /procedure \(ms\)\s+median\s+p95/);

      const rep = node([dist('report.js'), '--file', out], 30_000);
      assert.equal(rep.code, 0, rep.stderr);
      assert.match(rep.stdout, /registration, today/);
      assert.match(rep.stdout, /DC registrations\/s/);

      // --only merges into the existing file and leaves the other figures alone.
      const before = readResults(out)!;
      const again = node([dist('run.js'), '--quick', '--only', 'agent_memory', '--out', out], 60_000);
      assert.equal(again.code, 0, again.stderr);
      assert.deepEqual(readResults(out)!.results.registration, before.results.registration);
    } finally {
      tmp.remove();
    }
  });

  test('the crypto and packet micro-benchmarks still run and print JSON', () => {
    const c = node([dist('crypto-bench.js'), '--ms', '5'], 120_000);
    assert.equal(c.code, 0, c.stderr);
    const cj = JSON.parse(c.stdout) as { results: Array<{ name: string; opsPerSec: number }> };
    assert.ok(cj.results.length > 5);
    for (const x of cj.results) finite(x.opsPerSec, x.name);
    const p = node([dist('packet-bench.js'), '2000'], 120_000);
    assert.equal(p.code, 0, p.stderr);
    const pj = JSON.parse(p.stdout) as { results: Array<{ name: string; packetsPerSecond: number }> };
    assert.ok(pj.results.length > 0);
    for (const x of pj.results) finite(x.packetsPerSecond, x.name);
  });
});
