// `ntm provision`, run as a process the way an ISP would: per-subscriber configs the agent accepts, unique setup codes
// kept across re-runs (a letter already printed stays valid), clear errors for a bad CSV.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadSection } from '../../agent/src/config/schema.js';

const NTM = resolve(import.meta.dirname, '..', '..', 'agent/src/cmd/ntm.js');

function provision(args: string[]) {
  return spawnSync(process.execPath, [NTM, 'provision', ...args], { encoding: 'utf8' });
}

test('provisioning writes a loadable config, a setup code and a letter per subscriber; re-runs keep the codes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ntm-provision-'));
  try {
    const csv = join(dir, 'subs.csv');
    writeFileSync(csv, 'id,household,wan_address\nS-001,Tanaka home,198.51.100.2\nS-002,Suzuki home,\nS-003,Kato home,2001:db8:a::2\n');
    const out = join(dir, 'out');
    const r = provision(['--subscribers', csv, '--out', out]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { subscribers: 3, newSetupCodes: 3, out });
    const codes = ['S-001', 'S-002', 'S-003'].map((id) => readFileSync(join(out, id, 'setup-code'), 'utf8').trim());
    assert.equal(new Set(codes).size, 3, 'every household gets its own code');
    for (const c of codes) assert.match(c, /^[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}$/);
    assert.equal(statSync(join(out, 'S-001', 'setup-code')).mode & 0o077, 0, 'the code is readable by root only');
    const cfg = JSON.parse(readFileSync(join(out, 'S-001', 'agent.json'), 'utf8')) as Record<string, unknown>;
    const agent = loadSection('agent', cfg);
    assert.equal(agent.household, 'Tanaka home');
    assert.deepEqual(agent.advertise, ['198.51.100.2']);
    assert.match(readFileSync(join(out, 'S-002', 'letter.txt'), 'utf8'), new RegExp(codes[1]!));
    assert.equal(readFileSync(join(out, 'manifest.csv'), 'utf8').trim().split('\n').length, 4);
    const again = provision(['--subscribers', csv, '--out', out]);
    assert.equal(again.status, 0, again.stderr);
    assert.equal(JSON.parse(again.stdout).newSetupCodes, 0);
    assert.equal(readFileSync(join(out, 'S-001', 'setup-code'), 'utf8').trim(), codes[0], 'an already printed letter stays valid');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a bad subscribers file is refused with the line that is wrong', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ntm-provision-'));
  try {
    const csv = join(dir, 'subs.csv');
    writeFileSync(csv, 'id,household\nS-1,Home\nS 2,Other\n');
    const r = provision(['--subscribers', csv, '--out', join(dir, 'out')]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /line 3: bad subscriber id "S 2"/);
    writeFileSync(csv, 'id,household\nS-1,Home\nS-1,Again\n');
    assert.match(provision(['--subscribers', csv, '--out', join(dir, 'out')]).stderr, /S-1 appears twice/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
