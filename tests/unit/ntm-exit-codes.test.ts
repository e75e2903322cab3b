// `ntm` as scripts and orchestrators call it: each kind of failure has its own exit code (sysexits, cmd/exit.ts), every
// --help says so, and commands that print state give one JSON document with --json.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Exit } from '../../agent/src/cmd/exit.js';

const NTM = resolve(import.meta.dirname, '..', '..', 'agent/src/cmd/ntm.js');

function ntm(args: string[]) {
  const r = spawnSync(process.execPath, [NTM, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('usage errors, unavailable daemons, refusals, bad data and bad config exit differently, with one line on stderr', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ntm-exit-'));
  try {
    const cases: Array<[string[], number, RegExp]> = [
      [['nonsense'], Exit.USAGE, /unknown command "nonsense"/],
      [['dc', '--no-such-flag', 'x'], Exit.USAGE, /unknown option --no-such-flag/],
      [['keys', 'frobnicate'], Exit.USAGE, /unknown keys command/],
      [['enroll'], Exit.USAGE, /^$/],
      [['status', '--socket', join(dir, 'absent.sock')], Exit.UNAVAILABLE, /cannot reach the daemon .* \(is it running\?\)/],
      [['agent', 'devices', '--data-dir', dir], Exit.UNAVAILABLE, /cannot reach the daemon/],
      [['enroll', 'ntm1:AAAA'], Exit.DATA, /not a valid enrollment token/],
      [['dc', '--data-dir', dir, '--keepalive', 'soon', '--print-id'], Exit.CONFIG, /config dc.keepaliveS: must be a number/],
      [['dc', '--data-dir', dir, '--admission', 'maybe', '--print-id'], Exit.CONFIG, /operator.admission: must be one of open, key/],
      [['keys', 'revoke', '--data-dir', dir, 'k0123456789ab'], Exit.NO_INPUT, /no enrollment key k0123456789ab/],
      [['keys', 'create', '--data-dir', dir], Exit.NO_INPUT, /dc.key/],
    ];
    for (const [args, code, stderr] of cases) {
      const r = ntm(args);
      assert.equal(r.code, code, `ntm ${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, stderr, `ntm ${args.join(' ')}`);
      // One line, no stack (an unknown command also gets the command list, to pick the right one).
      if (args[0] !== 'nonsense') assert.ok(r.stderr.split('\n').filter(Boolean).length <= 1, `one line, no stack: ${r.stderr}`);
    }
    // An expired enrollment token: refused (77), as the CLI of an ISP's key would be.
    const made = ntm(['dc', '--data-dir', dir, '--print-id']);
    assert.equal(made.code, 0, made.stderr);
    const key = ntm(['keys', 'create', '--data-dir', dir, '--advertise', '127.0.0.1:9', '--expires', '1s', '--json']);
    assert.equal(key.code, 0, key.stderr);
    const token = (JSON.parse(key.stdout) as { token: string }).token;
    spawnSync('sleep', ['1.2']);
    const late = ntm(['enroll', '--data-dir', join(dir, 'phone'), token]);
    assert.equal(late.code, Exit.REFUSED, late.stderr);
    assert.match(late.stderr, /expired at/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('every --help documents the exit codes; state-printing commands take --json', () => {
  for (const args of [['--help'], ['dc', '--help'], ['rs', '--help'], ['up', '--help'], ['agent', '--help'], ['enroll', '--help'], ['provision', '--help'], ['keys', '--help'], ['status', '--help'], ['connect', '--help'], ['config', '--help']]) {
    const r = ntm(args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stdout, /Exit status: 0 done; 64 usage error; 65 bad input data/, `ntm ${args.join(' ')}`);
    assert.match(r.stdout, /69 daemon or server unavailable/);
    assert.match(r.stdout, /77 refused/);
  }
  const cfg = ntm(['config', '--json']);
  assert.equal(cfg.code, 0);
  const schema = JSON.parse(cfg.stdout) as Record<string, Record<string, { default: unknown; doc: string }>>;
  assert.equal(schema.operator?.dcListen?.default, '127.0.0.1:9100', 'the operator side listens on loopback by default');
  assert.equal(schema.operator?.agentListen?.default, '127.0.0.1:9102');
  const dir = mkdtempSync(join(tmpdir(), 'ntm-exit-'));
  try {
    const list = ntm(['keys', 'list', '--data-dir', dir, '--json']);
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual(JSON.parse(list.stdout), []);
    // Commands whose output is always one JSON document still take --json (a flag, never eating the next word).
    writeFileSync(join(dir, 'subs.csv'), 'id,household\nS-1,Tanaka home\n');
    const prov = ntm(['provision', '--json', '--subscribers', join(dir, 'subs.csv'), '--out', join(dir, 'out')]);
    assert.equal(prov.code, 0, prov.stderr);
    assert.equal((JSON.parse(prov.stdout) as { subscribers: number }).subscribers, 1);
    const enroll = ntm(['enroll', '--data-dir', join(dir, 'phone'), '--json', 'ntm1:not-a-token']);
    assert.equal(enroll.code, 65, `the token after --json is read as the token: ${enroll.stderr}`);
    assert.match(enroll.stderr, /not a valid enrollment token/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
