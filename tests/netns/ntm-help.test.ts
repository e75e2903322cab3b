// Issue 3, "Done when" #7 (the CLI part): `ntm --help` and each role's `--help`, run as processes, say how to run the
// role alone, and every option a role's help names is one its parser accepts.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { NTM, tempDir } from '../lib/ntm.js';

function ntm(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [NTM, ...args], { encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The role's own --options in its help: all in the usage block (the first paragraph after the title) and the first
 * word of each line of the option list (examples further down name other commands' options). */
function optionsIn(help: string): string[] {
  const usage = help.split('\n\n')[1] ?? '';
  const list = help.split('\n').filter((l) => /^ {2}--[a-z]/.test(l)).map((l) => l.trim().split(/\s/)[0]!);
  return [...new Set([...`${usage} ${list.join(' ')}`.matchAll(/(?<![\w-])--([a-z][a-z0-9-]*)/g)].map((m) => m[1]!))];
}

void describe('ntm --help and the roles\' --help', () => {
  test('ntm --help lists the roles, each runnable alone', () => {
    for (const args of [['--help'], ['help'], []]) {
      const r = ntm(args);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /each runnable alone/);
      for (const role of ['dc', 'rs', 'up']) assert.match(r.stdout, new RegExp(`^  ntm ${role} `, 'm'));
      assert.match(r.stdout, /ntm <command> --help/);
    }
    const bad = ntm(['nonsense']);
    assert.equal(bad.code, 64, 'EX_USAGE');
    assert.match(bad.stderr, /unknown command "nonsense"/);
  });

  const roles = {
    dc: { title: /^ntm dc — run a Direction Coordinator alone$/m, must: [/--print-id/, /--advertise/, /--relay 0xRSID@/, /^Alone, /m, /refuses to start/] },
    rs: { title: /^ntm rs — run a Relay Server alone$/m, must: [/--print-id/, /--report-to 0xDCID@/, /--advertise/, /^Alone, /m] },
    up: { title: /^ntm up — run an NTM terminal/m, must: [/--dc <DC public key>@ADDR:PORT/, /^Alone, /m, /ntm status --data-dir/, /ntm connect --data-dir/] },
  } as const;

  for (const [role, want] of Object.entries(roles)) {
    test(`ntm ${role} --help says how to run it alone, and names only options it accepts`, () => {
      const r = ntm([role, '--help']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, '');
      assert.match(r.stdout, want.title);
      for (const m of want.must) assert.match(r.stdout, m, `${role} --help: ${String(m)}`);
      // Each option the help names, given to the role, is not refused as unknown (--print-id ends dc and rs at once;
      // a bad --dc ends up before it starts anything).
      const opts = optionsIn(r.stdout);
      assert.ok(opts.length >= 4, JSON.stringify(opts));
      const tmp = tempDir();
      try {
        for (const opt of opts) {
          if (opt === 'help' || opt === 'print-id' || opt === 'data-dir') continue;
          const boolean = ['no-dataplane'].includes(opt);
          const args = [role, '--data-dir', tmp.path, ...(boolean ? [`--${opt}`] : [`--${opt}=x`])];
          const run = role === 'up' ? ntm([...args, ...(opt === 'dc' ? [] : ['--dc=not-a-dc'])]) : ntm([...args, '--print-id']);
          assert.doesNotMatch(run.stderr, /unknown option/, `ntm ${role} --${opt}: ${run.stderr}`);
        }
      } finally {
        tmp.remove();
      }
    });
  }
});
