// The agent's Node.js flags (agent/src/cmd/node-flags.ts) are the ones the systemd unit starts it with, and the agent
// notices when it was started without them.
import { test } from 'node:test';
import { execFileSync } from 'node:child_process';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../lib/ntm.js';
import { NODE_FLAGS, missingNodeFlags } from '../../agent/src/cmd/node-flags.js';

test('the systemd unit starts the agent with exactly the flags of node-flags.ts', () => {
  const unit = readFileSync(join(ROOT, 'firmware/ntm-agent.service'), 'utf8');
  const exec = unit.split('\n').find((l) => l.startsWith('ExecStart='));
  assert.ok(exec, 'the unit has an ExecStart line');
  const words = exec.slice('ExecStart='.length).split(/\s+/);
  assert.equal(words[0], '/usr/bin/node');
  const script = words.findIndex((w) => w.endsWith('/ntm.js'));
  assert.deepEqual(words.slice(1, script), [...NODE_FLAGS.agent]);
  assert.equal(words[script + 1], 'agent');
});

test('missingNodeFlags: a flag counts from the command line or NODE_OPTIONS; roles without flags miss none', () => {
  assert.deepEqual(missingNodeFlags('agent', [], ''), [...NODE_FLAGS.agent]);
  assert.deepEqual(missingNodeFlags('agent', ['--enable-source-maps', ...NODE_FLAGS.agent], ''), []);
  assert.deepEqual(missingNodeFlags('agent', [], ` ${NODE_FLAGS.agent.join(' ')}  --trace-warnings`), []);
  assert.deepEqual(missingNodeFlags('agent', ['--max-semi-space-size=16'], ''), [...NODE_FLAGS.agent], 'another size is not ours');
  assert.deepEqual(missingNodeFlags('up', [], ''), []);
});

test('setDaemonV8Flags: functions first called afterwards run as V8 baseline (Sparkplug) code, not in the interpreter', () => {
  const flags = join(ROOT, 'dist/agent/src/cmd/node-flags.js');
  const probe = (set: boolean) =>
    execFileSync(
      process.execPath,
      [
        '--allow-natives-syntax',
        '--input-type=module',
        '-e',
        `import { setDaemonV8Flags } from ${JSON.stringify(flags)};
         ${set ? 'setDaemonV8Flags();' : ''}
         function handler(n) { let s = 0; for (let i = 0; i < n; i++) s += i; return s; }
         handler(3);
         process.stdout.write(String((%GetOptimizationStatus(handler) & (1 << 15)) !== 0));`,
      ],
      { encoding: 'utf8' },
    );
  assert.equal(probe(false), 'false');
  assert.equal(probe(true), 'true');
});
