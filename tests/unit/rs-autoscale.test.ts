// The vCPE's RS autoscaler (paper §3.1): its policy on the DC's relay figures, the supervisor's steps against a fake
// DC and launcher, and the systemd backend's command lines (systemd-run transient units).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSection } from '../../agent/src/config/schema.js';
import { Autoscaler, decide, type Instance, type RelayFigures, type ScaledDc } from '../../agent/src/rs/autoscale.js';
import { SystemdLauncher, type Exec, type RsLauncher, type RsProcess } from '../../agent/src/rs/launch.js';
import { silentLogger } from '../../agent/src/util/log.js';

const cfg = (o: Record<string, unknown> = {}) =>
  loadSection('rsscale', undefined, Object.fromEntries(Object.entries({ max: 3, min: 1, upAt: 0.5, downAt: 0.3, idleS: 10, drainMaxS: 60, ...o }).map(([k, v]) => [`rsscale.${k}`, v])));

const proc = (name: string): RsProcess & { stopped: boolean } => {
  const p = { name, stopped: false, running: () => !p.stopped, stop: async () => void (p.stopped = true) };
  return p;
};
const inst = (slot: number, id: string, startedAt: number, drainingSince?: number): Instance => ({ slot, id, proc: proc(id), startedAt, ...(drainingSince !== undefined ? { drainingSince } : {}) });
const fig = (id: string, tunnels: number | null, capacity: number | null, o: Partial<RelayFigures> = {}): RelayFigures => ({ id, tunnels, capacity, directedSinceReport: 0, draining: false, ...o });

test('policy: start below min, and at upAt while below max, one at a time', () => {
  assert.deepEqual(decide(cfg(), [], [], 0, {}), { kind: 'start' }, 'rsscale.min');
  const one = [inst(1, '0x1', 0)];
  assert.deepEqual(decide(cfg(), [fig('0x1', 4, 10)], one, 1000, {}), { kind: 'none' }, '40% < 50%');
  assert.deepEqual(decide(cfg(), [fig('0x1', 4, 10, { directedSinceReport: 1 })], one, 1000, {}), { kind: 'start' }, 'routes directed since the report count');
  const two = [...one, inst(2, '0x2', 500)];
  assert.deepEqual(decide(cfg(), [fig('0x1', 9, 10)], two, 1000, {}), { kind: 'none' }, 'the started one has not reported yet');
  assert.deepEqual(decide(cfg({ max: 2 }), [fig('0x1', 9, 10), fig('0x2', 9, 10)], two, 1000, {}), { kind: 'none' }, 'at max');
  assert.deepEqual(
    decide(cfg({ max: 2 }), [fig('0x1', 9, 10), fig('0x2', 1, 10, { draining: true })], [inst(1, '0x1', 0), inst(2, '0x2', 500, 900)], 1000, {}),
    { kind: 'none' },
    'at max with one instance draining: no third process',
  );
  assert.deepEqual(decide(cfg(), [fig('0x1', 9, 10), fig('0x2', 9, 10, { draining: true })], [inst(1, '0x1', 0), inst(2, '0x2', 500, 900)], 1000, {}), { kind: 'start' }, 'a draining RS is no capacity');
});

test('policy: drain the newest after idleS of low load, never below min; retire a drained one once quiet', () => {
  const two = [inst(1, '0x1', 0), inst(2, '0x2', 500)];
  const low = [fig('0x1', 1, 10), fig('0x2', 1, 10)];
  const mem = {};
  assert.deepEqual(decide(cfg(), low, two, 1000, mem), { kind: 'none' }, 'low since now');
  assert.deepEqual(decide(cfg(), [fig('0x1', 1, 10), fig('0x2', 3, 10)], two, 5000, mem), { kind: 'none' }, '4 > 0.3 × 10: not low');
  assert.deepEqual(decide(cfg(), low, two, 6000, mem), { kind: 'none' }, 'the idle time starts again');
  assert.deepEqual(decide(cfg(), low, two, 16_000, mem), { kind: 'drain', id: '0x2' }, 'the newest');
  const one = [inst(1, '0x1', 0)];
  const m2 = {};
  decide(cfg(), [fig('0x1', 0, 10)], one, 0, m2);
  assert.deepEqual(decide(cfg(), [fig('0x1', 0, 10)], one, 60_000, m2), { kind: 'none' }, 'never below min');
  const draining = [inst(1, '0x1', 0), inst(2, '0x2', 500, 20_000)];
  assert.deepEqual(decide(cfg(), [fig('0x1', 1, 10), fig('0x2', 1, 10, { draining: true })], draining, 30_000, {}), { kind: 'none' }, 'a tunnel still active');
  assert.deepEqual(decide(cfg(), [fig('0x1', 1, 10), fig('0x2', 0, 10, { draining: true, directedSinceReport: 1 })], draining, 30_000, {}), { kind: 'none' }, 'a route just directed there');
  assert.equal(decide(cfg(), [fig('0x1', 1, 10), fig('0x2', 0, 10, { draining: true })], draining, 30_000, {}).kind, 'retire');
  assert.equal(decide(cfg(), [fig('0x1', 1, 10), fig('0x2', 5, 10, { draining: true })], draining, 80_000, {}).kind, 'retire', 'drainMaxS');
});

test('supervisor: makes the key, tells the DC to accept it, starts, drains and retires through the launcher', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rsa-scale-'));
  try {
    const relays = new Map<string, RelayFigures>();
    const calls: string[] = [];
    const dc: ScaledDc = {
      relayStatus: () => [...relays.values()] as unknown as Array<Record<string, unknown>>,
      acceptRelay: (id) => void calls.push(`accept ${id}`),
      drainRelay: (id, d) => {
        calls.push(`drain ${id}`);
        const r = relays.get(id)!;
        relays.set(id, { ...r, draining: d !== false });
      },
      forgetRelay: (id) => {
        calls.push(`forget ${id}`);
        relays.delete(id);
      },
    };
    const started: Array<{ name: string; args: readonly string[]; p: ReturnType<typeof proc> }> = [];
    const launcher: RsLauncher = {
      kind: 'process',
      start: async (spec) => {
        const p = proc(spec.name);
        started.push({ name: spec.name, args: spec.args, p });
        return p;
      },
    };
    let now = 0;
    let n = 0;
    const s = new Autoscaler({
      config: cfg({ min: 1, max: 2, idleS: 5, basePort: 7300 }),
      dc,
      launcher,
      dcRef: '0xdc@192.0.2.2:7100',
      advertise: ['192.0.2.2', '2001:db8:1::2'],
      dataDir: dir,
      identityOf: async () => `0x${++n}`,
      log: silentLogger,
      clock: () => now,
    });
    assert.equal((await s.step()).kind, 'start');
    assert.deepEqual(calls, ['accept 0x1']);
    assert.equal(started[0]!.name, 'ntm-rs-scale-1');
    const args = started[0]!.args.join(' ');
    assert.match(args, /--listen \[::\]:7300 --report-to 0xdc@192\.0\.2\.2:7100 --advertise 192\.0\.2\.2:7300 --advertise \[2001:db8:1::2\]:7300/);
    relays.set('0x1', fig('0x1', 8, 10));
    now = 1000;
    assert.equal((await s.step()).kind, 'start', '80% load');
    assert.equal(started[1]!.name, 'ntm-rs-scale-2');
    relays.set('0x2', fig('0x2', 0, 10));
    relays.set('0x1', fig('0x1', 1, 10));
    now = 2000;
    assert.equal((await s.step()).kind, 'none');
    now = 8000;
    assert.deepEqual(await s.step(), { kind: 'drain', id: '0x2' });
    relays.set('0x2', { ...relays.get('0x2')!, tunnels: 0 });
    now = 9000;
    assert.equal((await s.step()).kind, 'retire');
    assert.equal(started[1]!.p.stopped, true, 'the instance is stopped');
    assert.deepEqual(calls.slice(-2), ['drain 0x2', 'forget 0x2']);
    assert.deepEqual((s.status().instances as Array<{ id: string }>).map((i) => i.id), ['0x1']);
    // An instance whose process ends by itself is dropped (and started again: below min).
    started[0]!.p.stopped = true;
    now = 10_000;
    assert.equal((await s.step()).kind, 'start');
    assert.ok(calls.includes('forget 0x1'));
    await s.stop();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('systemd backend: a transient unit per instance (systemd-run), stopped with systemctl', async () => {
  const ran: Array<[string, readonly string[]]> = [];
  const exec: Exec = async (file, args) => {
    ran.push([file, args]);
    return { code: 0, stdout: '', stderr: '' };
  };
  const l = new SystemdLauncher({ node: '/usr/bin/node', nodeFlags: [], ntm: '/opt/ntm/ntm.js' }, exec);
  const p = await l.start({ name: 'ntm-rs-scale-2', dataDir: '/var/lib/ntm/rs-scale/rs-2', args: ['--data-dir', '/var/lib/ntm/rs-scale/rs-2'] });
  assert.equal(ran[0]![0], 'systemd-run');
  const a = ran[0]![1];
  assert.deepEqual(a.slice(0, 2), ['--unit', 'ntm-rs-scale-2.service']);
  assert.ok(a.includes('--collect') && a.includes('--property=ReadWritePaths=/var/lib/ntm/rs-scale/rs-2'));
  assert.deepEqual(a.slice(a.indexOf('--') + 1), ['/usr/bin/node', '/opt/ntm/ntm.js', 'rs', '--data-dir', '/var/lib/ntm/rs-scale/rs-2']);
  assert.equal(p.running(), true);
  await p.stop();
  assert.deepEqual(ran[1], ['systemctl', ['stop', 'ntm-rs-scale-2.service']]);
  assert.equal(p.running(), false);
  const failing = new SystemdLauncher({ node: 'n', nodeFlags: [], ntm: 'x' }, async () => ({ code: 1, stdout: '', stderr: 'Failed to start transient service unit' }));
  await assert.rejects(failing.start({ name: 'u', dataDir: '/d', args: [] }), /systemd-run u\.service failed \(1\): Failed to start/);
});
