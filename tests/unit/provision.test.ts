// `ntm provision`, run as a process the way an ISP would: per-subscriber configs the agent accepts, unique setup codes
// and identities kept across re-runs (a letter already printed stays valid), real-world CSV (quotes, commas and line
// breaks inside quotes, UTF-8, a byte order mark, columns in any order), bad rows reported by line while the rest goes on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadSection } from '../../agent/src/config/schema.js';
import { Identity } from '../../agent/src/protocol/identity.js';
import { parseCsv } from '../../agent/src/util/csv.js';

const NTM = resolve(import.meta.dirname, '..', '..', 'agent/src/cmd/ntm.js');

function provision(args: string[]) {
  return spawnSync(process.execPath, [NTM, 'provision', ...args], { encoding: 'utf8' });
}

function withDir(body: (dir: string) => Promise<void> | void) {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ntm-provision-'));
    try {
      await body(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

test(
  'provisioning writes a loadable config, an identity, a setup code and a letter per subscriber; re-runs keep them',
  withDir(async (dir) => {
    const csv = join(dir, 'subs.csv');
    writeFileSync(csv, 'id,household,wan_address\nS-001,Tanaka home,198.51.100.2\nS-002,Suzuki home,\nS-003,Kato home,2001:db8:a::2\n');
    const out = join(dir, 'out');
    const r = provision(['--subscribers', csv, '--out', out]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { subscribers: 3, failed: 0, newSetupCodes: 3, newIdentities: 3, out, errors: [] });
    assert.equal(r.stderr, '', 'no progress lines when stderr is not a terminal and --progress is not given');
    const codes = ['S-001', 'S-002', 'S-003'].map((id) => readFileSync(join(out, id, 'setup-code'), 'utf8').trim());
    assert.equal(new Set(codes).size, 3, 'every household gets its own code');
    for (const c of codes) assert.match(c, /^[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}$/);
    for (const f of ['setup-code', 'dc.key', 'agent.json', 'letter.txt']) assert.equal(statSync(join(out, 'S-001', f)).mode & 0o077, 0, `${f} is readable by root only`);
    const cfg = JSON.parse(readFileSync(join(out, 'S-001', 'agent.json'), 'utf8')) as Record<string, unknown>;
    const agent = loadSection('agent', cfg);
    assert.equal(agent.household, 'Tanaka home');
    assert.deepEqual(agent.advertise, ['198.51.100.2']);
    assert.match(readFileSync(join(out, 'S-002', 'letter.txt'), 'utf8'), new RegExp(codes[1]!));
    const identity = await Identity.load(join(out, 'S-001', 'dc.key'));
    const manifest = parseCsv(readFileSync(join(out, 'manifest.csv'), 'utf8'));
    assert.equal(manifest.length, 4);
    assert.deepEqual(manifest[1]!.ok && manifest[1]!.fields.slice(0, 4), ['S-001', 'Tanaka home', '', identity.idHex], 'the manifest names each agent\'s ID');
    const again = provision(['--subscribers', csv, '--out', out]);
    assert.equal(again.status, 0, again.stderr);
    assert.equal(JSON.parse(again.stdout).newSetupCodes, 0);
    assert.equal(JSON.parse(again.stdout).newIdentities, 0);
    assert.equal(readFileSync(join(out, 'S-001', 'setup-code'), 'utf8').trim(), codes[0], 'an already printed letter stays valid');
    assert.equal((await Identity.load(join(out, 'S-001', 'dc.key'))).idHex, identity.idHex, 'the agent keeps its identity');
  }),
);

test(
  'a tricky CSV: BOM, CRLF, quoted commas, doubled quotes, line breaks in quotes, UTF-8, columns in any order; bad rows by line',
  withDir((dir) => {
    const csv = join(dir, 'subs.csv');
    const rows = [
      'household,notes,id,plan', // line 1: columns in another order, one this command does not know
      '"Tanaka, home","ring twice",S-1,fiber-1g', // 2
      '"The ""Best"" home","two',
      'lines of notes",S-2,dsl', // 3-4: a line break inside quotes
      '山田さんの家,,S-3,fiber-1g', // 5: UTF-8
      'Bad id home,,S 4,dsl', // 6: bad id
      '"Unclosed home,,S-5,dsl', // 7: a quote that never closes
      'Good after bad,,S-6,dsl', // 8: still provisioned
      'Dup,,S-1,dsl', // 9: duplicate
      'Short,S-7', // 10: too few fields
      '', // a blank line is no row
      'Last home,,S-8,', // 12
    ];
    writeFileSync(csv, '\ufeff' + rows.join('\r\n') + '\r\n');
    const out = join(dir, 'out');
    const r = provision(['--subscribers', csv, '--out', out]);
    assert.equal(r.status, 65, `EX_DATAERR when some rows were refused: ${r.stderr}`);
    const summary = JSON.parse(r.stdout) as { subscribers: number; failed: number; errors: Array<{ line: number; message: string }> };
    assert.equal(summary.subscribers, 5);
    assert.deepEqual(
      summary.errors.map((e) => e.line),
      [6, 7, 9, 10],
    );
    assert.match(r.stderr, /line 6: bad subscriber id "S 4"/);
    assert.match(r.stderr, /line 7: a quoted field opened on line 7 never closes/);
    assert.match(r.stderr, /line 9: subscriber S-1 appears twice \(first on line 2\)/);
    assert.match(r.stderr, /line 10: 2 fields where the header has 4/);
    assert.match(r.stderr, /ignoring the columns notes/);
    const household = (id: string) => loadSection('agent', JSON.parse(readFileSync(join(out, id, 'agent.json'), 'utf8')) as Record<string, unknown>).household;
    assert.equal(household('S-1'), 'Tanaka, home');
    assert.equal(household('S-2'), 'The "Best" home');
    assert.equal(household('S-3'), '山田さんの家');
    assert.equal(household('S-6'), 'Good after bad');
    assert.equal(household('S-8'), 'Last home');
    const manifest = parseCsv(readFileSync(join(out, 'manifest.csv'), 'utf8'));
    const m = manifest.map((x) => (x.ok ? x.fields.slice(0, 3) : []));
    assert.deepEqual(m.slice(1, 3), [
      ['S-1', 'Tanaka, home', 'fiber-1g'],
      ['S-2', 'The "Best" home', 'dsl'],
    ]);
  }),
);

test(
  'a file that cannot be used at all, and a wrong command line, get their own exit codes',
  withDir((dir) => {
    const csv = join(dir, 'subs.csv');
    writeFileSync(csv, 'name,address\nS-1,Home\n');
    const noCols = provision(['--subscribers', csv, '--out', join(dir, 'out')]);
    assert.equal(noCols.status, 65);
    assert.match(noCols.stderr, /line 1: the header must name the columns "id" and "household"/);
    assert.equal(provision(['--subscribers', csv]).status, 64, 'no --out: a usage error');
    assert.equal(provision(['--subscribers', join(dir, 'absent.csv'), '--out', join(dir, 'out')]).status, 66, 'EX_NOINPUT');
    writeFileSync(csv, 'id,household\n' + Array.from({ length: 30 }, (_, i) => `S-${i},Home ${i}`).join('\n') + '\n');
    const progress = provision(['--subscribers', csv, '--out', join(dir, 'out'), '--progress']);
    assert.equal(progress.status, 0, progress.stderr);
    assert.match(progress.stderr, /provisioning 30\/30 \(100%\)/, 'progress on stderr with --progress');
  }),
);

test('RFC 4180 records keep their line numbers, quotes and line breaks', () => {
  const recs = parseCsv('\ufeffa,b\r\n"x,1","y\r\nz"\n\n"q""q",\n"bad"x,1\nlast');
  assert.deepEqual(recs, [
    { ok: true, line: 1, fields: ['a', 'b'] },
    { ok: true, line: 2, fields: ['x,1', 'y\r\nz'] },
    { ok: true, line: 5, fields: ['q"q', ''] },
    { ok: false, line: 6, message: 'text after a closing quote in field 1' },
    { ok: true, line: 7, fields: ['last'] },
  ]);
});
