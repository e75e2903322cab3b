// The overlay firewall's rule planning without root: what it asks iptables-nft-restore to do from a given
// iptables-save state (the real commands run in tests/netns/nfqueue-rules.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OverlayFirewall, parseSave, restoreScript } from '../../agent/src/dataplane/nfqueue/rules.js';
import type { CommandRunner, OverlayRuleSpec } from '../../agent/src/dataplane/nfqueue/rules.js';
import { RuleSpecError } from '../../agent/src/dataplane/nfqueue/errors.js';

const SPEC: OverlayRuleSpec = {
  queueIn: 7312,
  queueOut: 7311,
  udpPort: 7400,
  virtualRanges: ['198.18.0.0/15', 'fd12:3456:789a::/48'],
  forward: true,
  pairedSources: ['192.168.1.20'],
  innerMtu: 1380,
};

/** A fake iptables: `save` output per family, and every restore input recorded. */
function fakeTables(save4: string, save6 = ''): { run: CommandRunner; restored: string[]; commands: string[] } {
  const restored: string[] = [];
  const commands: string[] = [];
  const run: CommandRunner = (cmd, args, input) => {
    commands.push([cmd, ...args].join(' '));
    if (cmd.endsWith('-save')) return Promise.resolve({ code: 0, stdout: cmd.startsWith('ip6') ? save6 : save4, stderr: '' });
    if (cmd.endsWith('-restore')) restored.push(`${cmd}\n${input ?? ''}`);
    return Promise.resolve({ code: 0, stdout: '', stderr: '' });
  };
  return { run, restored, commands };
}

const INSTALLED_V4 = `*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:NTM-IN - [0:0]
-A PREROUTING -j NTM-IN
-A PREROUTING -j NTM-IN
-A PREROUTING -i eth0 -j NOTRACK
-A NTM-IN -p udp -m addrtype --dst-type LOCAL -m udp --dport 7400 -j NFQUEUE --queue-num 7312
COMMIT
*mangle
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:NTM-OUT - [0:0]
-A OUTPUT -j NTM-OUT
-A NTM-OUT -d 198.18.0.0/15 ! -o lo -j NFQUEUE --queue-num 7311
COMMIT
`;

void test('first install on a host without tables: our chains, their rules, one jump each, no --queue-bypass', async () => {
  const t = fakeTables('');
  await new OverlayFirewall(SPEC, { run: t.run }).install();
  assert.equal(t.restored.length, 2);
  const v4 = t.restored[0]!;
  assert.match(v4, /^iptables-nft-restore\n/);
  assert.deepEqual(v4.split('\n').slice(1, -1), [
    '*mangle',
    ':NTM-FWD - [0:0]',
    ':NTM-PAIRED - [0:0]',
    '-A NTM-FWD -d 198.18.0.0/15 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1340',
    '-A NTM-FWD -s 198.18.0.0/15 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1340',
    '-A NTM-FWD -d 198.18.0.0/15 -j NTM-PAIRED',
    '-A NTM-PAIRED -s 192.168.1.20 -j NFQUEUE --queue-num 7311',
    '-I FORWARD 1 -j NTM-FWD',
    'COMMIT',
    '*raw',
    ':NTM-IN - [0:0]',
    '-A NTM-IN -p udp -m addrtype --dst-type LOCAL -m udp --dport 7400 -j NFQUEUE --queue-num 7312',
    '-I PREROUTING 1 -j NTM-IN',
    'COMMIT',
  ]);
  // IPv6: the tunnel port and the IPv6 range (no IPv6 paired source yet: the chain exists, empty).
  assert.match(t.restored[1]!, /-A NTM-FWD -d fd12:3456:789a::\/48 -p tcp .* --set-mss 1320/);
  assert.match(t.restored[1]!, /:NTM-PAIRED - \[0:0\]/);
  assert.doesNotMatch(t.restored.join('\n'), /queue-bypass/);
  assert.ok(t.commands.every((c) => !c.includes('restore') || c.endsWith('-w --noflush')));
});

void test('re-install over existing rules: no second jump, duplicate and stale jumps and chains removed', () => {
  const saved = parseSave(INSTALLED_V4);
  const want = new Map([
    ['raw', { chains: new Map([['NTM-IN', ['-p udp -j NFQUEUE --queue-num 7312']]]), jumps: [{ from: 'PREROUTING', to: 'NTM-IN' }] }],
  ]);
  const script = restoreScript(saved, want, new Set(['NTM-IN', 'NTM-OUT', 'NTM-FWD', 'NTM-PAIRED']));
  assert.deepEqual(script.trim().split('\n'), [
    '*mangle',
    '-D OUTPUT -j NTM-OUT',
    '-F NTM-OUT',
    '-X NTM-OUT',
    'COMMIT',
    '*raw',
    ':NTM-IN - [0:0]',
    '-D PREROUTING -j NTM-IN',
    '-A NTM-IN -p udp -j NFQUEUE --queue-num 7312',
    'COMMIT',
  ]);
});

void test('removal script touches our chains and the jumps to them only', () => {
  const script = restoreScript(parseSave(INSTALLED_V4), new Map(), new Set(['NTM-IN', 'NTM-OUT', 'NTM-FWD', 'NTM-PAIRED']));
  assert.doesNotMatch(script, /NOTRACK/);
  assert.deepEqual(
    script.split('\n').filter((l) => /^-[DFX]/.test(l)),
    ['-D OUTPUT -j NTM-OUT', '-F NTM-OUT', '-X NTM-OUT', '-D PREROUTING -j NTM-IN', '-D PREROUTING -j NTM-IN', '-F NTM-IN', '-X NTM-IN'],
  );
  assert.equal(restoreScript(parseSave(INSTALLED_V4), new Map(), new Set(['OTHER-IN'])), '');
});

void test('pairing rewrites the paired chain alone', async () => {
  const save4 = `*mangle\n:FORWARD ACCEPT [0:0]\n:NTM-FWD - [0:0]\n:NTM-PAIRED - [0:0]\n-A FORWARD -j NTM-FWD\nCOMMIT\n`;
  const t = fakeTables(save4, save4);
  await new OverlayFirewall(SPEC, { run: t.run }).setPairedSources(['192.168.1.21', '192.168.1.0/28', 'fd99::21']);
  assert.deepEqual(t.restored, [
    'iptables-nft-restore\n*mangle\n:NTM-PAIRED - [0:0]\n-A NTM-PAIRED -s 192.168.1.21 -j NFQUEUE --queue-num 7311\n-A NTM-PAIRED -s 192.168.1.0/28 -j NFQUEUE --queue-num 7311\nCOMMIT\n',
    'ip6tables-nft-restore\n*mangle\n:NTM-PAIRED - [0:0]\n-A NTM-PAIRED -s fd99::21 -j NFQUEUE --queue-num 7311\nCOMMIT\n',
  ]);
});

void test('terminal mode queues this host’s own packets to virtual ranges, loopback excluded', () => {
  const fw = new OverlayFirewall({ ...SPEC, captureLocal: true, forward: false, pairedSources: [] });
  const v4 = fw.describe(4);
  assert.match(v4, /^-A NTM-OUT ! -o lo -d 198\.18\.0\.0\/15 -j NFQUEUE --queue-num 7311$/m);
  assert.match(v4, /^-I OUTPUT 1 -j NTM-OUT$/m);
  assert.doesNotMatch(v4, /NTM-FWD/);
});

void test('with queueTcp, TCP goes to its own (GSO) queue ahead of the rest, for the host and for paired sources, and pairing keeps it', async () => {
  const term = new OverlayFirewall({ ...SPEC, queueTcp: 7313, captureLocal: true, forward: false, pairedSources: [] }).describe(4);
  assert.match(term, /^-A NTM-OUT ! -o lo -d 198\.18\.0\.0\/15 -p tcp -j NFQUEUE --queue-num 7313\n-A NTM-OUT ! -o lo -d 198\.18\.0\.0\/15 -j NFQUEUE --queue-num 7311$/m);
  const save4 = `*mangle\n:FORWARD ACCEPT [0:0]\n:NTM-FWD - [0:0]\n:NTM-PAIRED - [0:0]\n-A FORWARD -j NTM-FWD\nCOMMIT\n`;
  const t = fakeTables(save4, save4);
  await new OverlayFirewall({ ...SPEC, queueTcp: 7313 }, { run: t.run }).setPairedSources(['192.168.1.21']);
  assert.equal(
    t.restored[0],
    'iptables-nft-restore\n*mangle\n:NTM-PAIRED - [0:0]\n-A NTM-PAIRED -s 192.168.1.21 -p tcp -j NFQUEUE --queue-num 7313\n-A NTM-PAIRED -s 192.168.1.21 -j NFQUEUE --queue-num 7311\nCOMMIT\n',
  );
  assert.throws(() => new OverlayFirewall({ ...SPEC, queueTcp: 70000 }), (e: Error) => e instanceof RuleSpecError && /queueTcp/.test(e.message));
});

void test('without a UDP port there is no tunnel-packet queue in raw PREROUTING (the socket receives them)', () => {
  const { udpPort: _drop, ...rest } = SPEC;
  for (const spec of [{ ...rest }, { ...rest, udpPort: 0 }]) {
    const rules = new OverlayFirewall(spec).describe(4);
    assert.ok(!rules.includes('-IN'), rules);
    assert.ok(!rules.includes('*raw'), rules);
  }
});

void test('bad specifications are refused with the field named', () => {
  const bad: [Partial<OverlayRuleSpec>, string][] = [
    [{ virtualRanges: ['198.18.0.0/33'] }, 'virtualRanges'],
    [{ virtualRanges: ['not-an-address'] }, 'virtualRanges'],
    [{ pairedSources: ['192.168.1.20; rm -rf /'] }, 'pairedSources'],
    [{ udpPort: 70000 }, 'udpPort'],
    [{ udpPort: 1.5 }, 'udpPort'],
    [{ queueIn: 70000 }, 'queueIn'],
    [{ chainPrefix: 'NTM-X' }, 'chainPrefix'],
    [{ innerMtu: 100 }, 'innerMtu'],
  ];
  for (const [patch, field] of bad) {
    assert.throws(
      () => new OverlayFirewall({ ...SPEC, ...patch }),
      (e: unknown) => e instanceof RuleSpecError && e.field === field && e.name === 'RuleSpecError',
      field,
    );
  }
});

void test('a failing command surfaces as FirewallCommandError with its stderr', async () => {
  const run: CommandRunner = (cmd) => Promise.resolve(cmd.endsWith('-save') ? { code: 0, stdout: '', stderr: '' } : { code: 2, stdout: '', stderr: 'iptables-restore: line 3 failed' });
  await assert.rejects(new OverlayFirewall(SPEC, { run }).install(), (e: Error) => e.name === 'FirewallCommandError' && e.message.includes('line 3 failed'));
});
