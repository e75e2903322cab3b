// Issue 13 #3, relayed tunnels that keep going (docs/protocol.md §3.5 "Failover", "Upgrade"), on real processes and
// real NAT rules, on the relaypair topology (two RSs) with symmetric NATs, one testbed for two phases. (1) The RS
// carrying a relayed tunnel is killed with -9 in the middle of a TCP transfer: the ends notice the dead relay within a
// keep-alive interval or two, report it unreachable, and the DC directs them through the other RS; every TCP byte
// arrives unchanged. (2) Both NATs then turn endpoint-independent (port-restricted) in the middle of another transfer:
// the relayed tunnel finds a direct path by re-probing through its DC, as Tailscale and ICE do, moves there with its
// keys, and the RS relays nothing after the move; every TCP byte arrives unchanged.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { withTestbed } from '../lib/testbed.js';
import { TCP_SINK, TCP_SOURCE, expectedTransfer, firstJsonLine, startNatpair, tunnelTo, waitFor, withDaemons, type Daemon, type NatpairRun, type SinkReport, type TunnelStatus } from '../lib/ntm.js';
import type { Testbed } from '../../scripts/netns/index.js';
import type { ChildProcess } from 'node:child_process';

const TCP_TOTAL = 6 * 1024 * 1024;
const TCP_RATE = 512 * 1024;
const RS = { rs: '192.0.2.66:7200', rs2: '192.0.2.130:7200' } as const;

async function relayedBytes(rs: Daemon): Promise<number> {
  return ((await rs.status()).counts as Record<string, number>)['relayed-bytes'] ?? 0;
}

/** Both ends' views of their one tunnel, once `ok` holds for both. */
async function bothEnds(p: NatpairRun, what: string, ok: (t: TunnelStatus) => boolean, timeoutMs = 15_000): Promise<[TunnelStatus, TunnelStatus]> {
  return waitFor(
    what,
    async () => {
      const ta = await tunnelTo(p.a, String(p.b.ready.id));
      const tb = await tunnelTo(p.b, String(p.a.ready.id));
      return ta && tb && ta.tunnelId === tb.tunnelId && ok(ta) && ok(tb) ? ([ta, tb] as [TunnelStatus, TunnelStatus]) : undefined;
    },
    timeoutMs,
  );
}

/** A TCP download to A from B's virtual address (B sends TCP_TOTAL at TCP_RATE); resolves with the sink's report. */
async function download(tb: Testbed, p: NatpairRun, port: number): Promise<{ report: Promise<SinkReport>; procs: ChildProcess[] }> {
  const source = tb.spawn('b', [process.execPath, '-e', TCP_SOURCE, String(port), String(TCP_TOTAL), String(TCP_RATE)]);
  await firstJsonLine(source, 10_000, 'tcp source');
  const sink = tb.spawn('a', [process.execPath, '-e', TCP_SINK, String(p.b.ready.v4), String(port)]);
  const report = firstJsonLine<SinkReport>(sink, 90_000, 'tcp sink');
  report.catch(() => undefined);
  return { report, procs: [source, sink] };
}

function intact(r: SinkReport): void {
  assert.equal(r.error, undefined, JSON.stringify(r));
  assert.deepEqual({ bytes: r.bytes, sha256: r.sha256 }, expectedTransfer(TCP_TOTAL), 'every TCP byte arrived, in order, unchanged');
}

/** Phase 1: the RS carrying the relayed tunnel is killed with -9 mid-transfer. Returns the RS left. */
async function failover(t: TestContext, tb: Testbed, p: NatpairRun): Promise<Daemon> {
  const first = (await p.a.call({ cmd: 'connect', target: 'b.ntm' }, 30_000)) as { tunnel: TunnelStatus };
  assert.equal(first.tunnel.path, 'relayed', 'symmetric NATs: relayed');
  const [before] = await bothEnds(p, 'both ends relay through one RS', (x) => x.path === 'relayed');
  assert.ok(before.endpoint === RS.rs || before.endpoint === RS.rs2, `the tunnel is on one of the RSs: ${before.endpoint}`);
  const carrying = before.endpoint === RS.rs ? p.rs : p.rs2!;
  const other = carrying === p.rs ? p.rs2! : p.rs;
  const otherEndpoint = carrying === p.rs ? RS.rs2 : RS.rs;

  const { report, procs } = await download(tb, p, 9000);
  await waitFor('the transfer runs through the RS', async () => (await relayedBytes(carrying)) > 512 * 1024, 20_000);
  const otherBefore = await relayedBytes(other);
  const killedAt = Date.now();
  carrying.proc.kill('SIGKILL');

  const [ta, tbv] = await bothEnds(p, `both ends relay through the other RS (${otherEndpoint})`, (x) => x.path === 'relayed' && x.endpoint === otherEndpoint, 30_000);
  const movedMs = Date.now() - killedAt;
  const r = await report;
  intact(r);
  assert.ok((await relayedBytes(other)) - otherBefore > 256 * 1024, 'the rest of the transfer went through the other RS');
  const count = async (d: Daemon) => ((await d.status()).counts as Record<string, number>)['relay-lost'] ?? 0;
  const figure = {
    case: 'rs-killed',
    onOtherRsAfterMs: movedMs,
    tcp: { bytes: r.bytes, maxGapMs: r.maxGapMs, ms: r.ms },
    tunnels: { before: before.tunnelId, after: ta.tunnelId },
    relayLost: { a: await count(p.a), b: await count(p.b) },
    dcRelays: (await p.dc.status()).relays,
    handshakes: { a: ta.handshakes, b: tbv.handshakes },
  };
  t.diagnostic(JSON.stringify(figure));
  console.log(JSON.stringify(figure));
  for (const c of procs) c.kill();
  return other;
}

/** Phase 2: both homes' NATs turn endpoint-independent mid-transfer (port-restricted filtering, mappings forgotten). */
async function upgrade(t: TestContext, tb: Testbed, p: NatpairRun, rs: Daemon): Promise<void> {
  const [before] = await bothEnds(p, 'both ends relay', (x) => x.path === 'relayed');
  const { report, procs } = await download(tb, p, 9001);
  const relayedStart = await relayedBytes(rs);
  await waitFor('the transfer runs through the RS', async () => (await relayedBytes(rs)) - relayedStart > 512 * 1024, 20_000);
  const changedAt = Date.now();
  await tb.changeNat('nata', 'port-restricted');
  await tb.changeNat('natb', 'port-restricted');

  const [ta, tbv] = await bothEnds(p, 'both ends on a direct path', (x) => x.path === 'hole-punched', 40_000);
  const directAfterMs = Date.now() - changedAt;
  assert.equal(ta.tunnelId, before.tunnelId, 'the same tunnel moved (its keys, no new direction)');
  assert.ok(ta.endpoint?.startsWith('203.0.113.66:') && tbv.endpoint?.startsWith('203.0.113.2:'), `each end talks to the other's NAT: ${ta.endpoint}, ${tbv.endpoint}`);
  // What was already in flight through the RS when both ends turned (a loaded RS reads its socket late: a clean-clone
  // run saw two ACKs, 192 bytes, counted after the move) is not the path: the count must be still for 0.5 s first.
  let relayedAtMove = await relayedBytes(rs);
  await waitFor('the RS has relayed what was in flight', async () => {
    await new Promise((res) => setTimeout(res, 500));
    const now = await relayedBytes(rs);
    const still = now === relayedAtMove;
    relayedAtMove = now;
    return still;
  }, 5000, 0);
  const r = await report;
  intact(r);
  assert.equal((await relayedBytes(rs)) - relayedAtMove, 0, 'the RS relayed nothing after the move');
  await bothEnds(p, 'both ends still direct', (x) => x.path === 'hole-punched' && x.tunnelId === before.tunnelId, 1000);
  const figure = { case: 'nat-to-eim', directAfterMs, tcp: { bytes: r.bytes, maxGapMs: r.maxGapMs, ms: r.ms }, relayedBytesBeforeMove: relayedAtMove - relayedStart };
  t.diagnostic(JSON.stringify(figure));
  console.log(JSON.stringify(figure));
  for (const c of procs) c.kill();
}

void describe('relayed tunnels (issue 13 #3)', () => {
  test('an RS killed with -9 mid-transfer: the tunnel moves to the other RS; then NATs that turn endpoint-independent mid-transfer: it moves to a direct path; every TCP byte arrives', async (t) => {
    await withTestbed('relaypair', { nat: { nata: 'symmetric', natb: 'symmetric' } }, (tb) =>
      withDaemons('ntm-test-', (line) => t.diagnostic(line), async ({ dir, started }) => {
        const p = await startNatpair(tb, dir, started, { rs2: true, terminalReadyMs: 60_000 });
        await waitFor('the DC has both RSs', async () => ((await p.dc.status()).relays as unknown[]).length === 2);
        const left = await failover(t, tb, p);
        await upgrade(t, tb, p, left);
      }),
    );
  });
});
