// Issue 3, "Done when" #2 on the natpair topology: two terminals, each behind its own home NAT, one DC and one
// dual-stack RS. Behind endpoint-independent NATs they get a direct hole-punched path (the RS relays nothing);
// behind symmetric NATs — or one of each — the DC's NAT probe sees it and routes them through the RS; and when a
// path the DC expected to punch is blocked on the way, the terminals fall back to the RS by themselves. In each case
// both ends report the same path kind and TCP (HTTP) and UDP flow between the virtual addresses.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withTestbed } from '../lib/testbed.js';
import { curl, startHttp, startNatpair, tunnelTo, waitFor, type Daemon, type NatpairRun, type TunnelStatus, withDaemons } from '../lib/ntm.js';
import { probe, startEcho } from '../lib/probes.js';
import { scrapeIn } from '../lib/metrics.js';
import type { Testbed } from '../../scripts/netns/index.js';

type Kind = 'eim' | 'symmetric';

type Pair = NatpairRun;

const NAT_WAN = { a: '203.0.113.2', b: '203.0.113.66' };

/** Connects A → B `n` times (each a new Direction Request and a new tunnel); returns the setup times at A. */
async function connectTimes(p: Pair, n: number): Promise<{ ms: number[]; last: { tunnel: TunnelStatus } }> {
  const ms: number[] = [];
  let last: { ms: number; tunnel: TunnelStatus } | undefined;
  for (let i = 0; i < n; i++) {
    last = (await p.a.call({ cmd: 'connect', target: 'b.ntm' }, 30_000)) as { ms: number; tunnel: TunnelStatus };
    assert.equal(last.tunnel.state, 'up');
    ms.push(Math.round(last.ms * 10) / 10);
  }
  return { ms, last: last! };
}

/** Both ends agree on the tunnel and its path kind; returns A's and B's views of it. */
async function bothEnds(p: Pair, path: string): Promise<[TunnelStatus, TunnelStatus]> {
  const aId = String(p.a.ready.id);
  const bId = String(p.b.ready.id);
  return waitFor(
    `both ends report a ${path} tunnel`,
    async () => {
      const ta = await tunnelTo(p.a, bId);
      const tb = await tunnelTo(p.b, aId);
      return ta && tb && ta.tunnelId === tb.tunnelId && ta.path === path && tb.path === path ? ([ta, tb] as [TunnelStatus, TunnelStatus]) : undefined;
    },
    10_000,
  );
}

/** HTTP from A to B and UDP from B to A over the virtual addresses; B's echo sees A by its virtual address. */
async function dataFlows(tb: Testbed, p: Pair, root: string): Promise<void> {
  const www = join(root, 'www');
  mkdirSync(www, { recursive: true });
  const body = `${randomBytes(32 * 1024).toString('hex')}\n`;
  writeFileSync(join(www, 'f.txt'), body);
  const http = await startHttp(tb, 'b', www);
  const echo = await startEcho(tb, 'a');
  try {
    assert.equal(await curl(tb, 'a', `http://${String(p.b.ready.v4)}:8080/f.txt`), body, 'HTTP A → B over virtual IPv4');
    const r = await probe(tb, 'b', [`${String(p.a.ready.v4)}:7777`], { count: 10, intervalMs: 20 });
    const res = r.results[0]!;
    assert.ok(res.received >= 9, `UDP B → A: ${JSON.stringify(res)}`);
    assert.deepEqual(
      res.observed.map((o) => o.split(':')[0]),
      [String(p.b.ready.v4)],
      'A sees B by its virtual address',
    );
  } finally {
    http.kill();
    echo.kill();
  }
}

async function relayed(rs: Daemon): Promise<number> {
  return ((await rs.status()).counts as Record<string, number>).relayed ?? 0;
}

async function run(t: TestContext, kinds: { a: Kind; b: Kind }, body: (tb: Testbed, p: Pair, root: string) => Promise<void>): Promise<void> {
  await withTestbed('natpair', { nat: { nata: kinds.a, natb: kinds.b } }, (tb) =>
    withDaemons('ntm-test-', (line) => t.diagnostic(line), async ({ dir, started }) => {
      const p = await startNatpair(tb, dir, started);
      assert.equal(p.a.ready.behindNat, true);
      assert.equal(p.b.ready.behindNat, true);
      await body(tb, p, dir);
    }),
  );
}

void describe('NTMobile across two home NATs (natpair)', () => {
  test('endpoint-independent NATs on both sides: a direct hole-punched path, nothing through the RS', async (t) => {
    await run(t, { a: 'eim', b: 'eim' }, async (tb, p, root) => {
      const { ms, last } = await connectTimes(p, 5);
      assert.equal(last.tunnel.path, 'hole-punched');
      const [ta, tbv] = await bothEnds(p, 'hole-punched');
      assert.equal(ta.planned, 'holepunch');
      // Each end talks to the other's NAT mapping, not to the RS.
      assert.match(ta.endpoint ?? '', new RegExp(`^${NAT_WAN.b.replace(/\./g, '\\.')}:`));
      assert.match(tbv.endpoint ?? '', new RegExp(`^${NAT_WAN.a.replace(/\./g, '\\.')}:`));
      await dataFlows(tb, p, root);
      assert.equal(await relayed(p.rs), 0, 'the RS relayed nothing');
      const sorted = [...ms].sort((x, y) => x - y);
      const figure = { case: 'eim+eim', path: 'hole-punched', setupMs: ms, medianMs: sorted[2] };
      t.diagnostic(JSON.stringify(figure));
      console.log(JSON.stringify(figure));
    });
  });

  test('symmetric NATs on both sides: the DC sees it and the tunnel goes through the RS', async (t) => {
    await run(t, { a: 'symmetric', b: 'symmetric' }, async (tb, p, root) => {
      const { ms, last } = await connectTimes(p, 3);
      assert.equal(last.tunnel.path, 'relayed');
      const [ta] = await bothEnds(p, 'relayed');
      assert.equal(ta.planned, 'relay', 'the DC routed through the RS (its NAT probe saw per-destination mappings)');
      assert.equal(ta.endpoint, '192.0.2.66:7200');
      const rsBefore = await scrapeIn(tb, 'rs', 9101);
      await dataFlows(tb, p, root);
      assert.ok((await relayed(p.rs)) > 20, 'the RS carried the traffic');
      // What an operator's Prometheus sees of it, on the RS's and the DC's loopback (their default metrics address).
      const rsAfter = await scrapeIn(tb, 'rs', 9101);
      const moved = (k: string) => (rsAfter.get(k) ?? 0) - (rsBefore.get(k) ?? 0);
      assert.ok(moved('ntm_rs_relayed_bytes_total') > 64 * 1024, `the 64 KiB HTTP body went through the RS: ${moved('ntm_rs_relayed_bytes_total')} B`);
      assert.ok(moved('ntm_rs_relayed_packets_total') > 20);
      assert.ok((rsAfter.get('ntm_rs_tunnels') ?? 0) >= 1);
      const dcm = await scrapeIn(tb, 'dc', 9100);
      assert.ok((dcm.get('ntm_dc_directions_total') ?? 0) >= 3, 'three Direction Requests answered');
      assert.equal(dcm.get('ntm_dc_registrations_total{kind="first"}'), 2, 'A and B registered');
      assert.equal(dcm.get('ntm_dc_terminals'), 2);
      const figure = { case: 'symmetric+symmetric', path: 'relayed', setupMs: ms };
      t.diagnostic(JSON.stringify(figure));
      console.log(JSON.stringify(figure));
    });
  });

  test('one endpoint-independent and one symmetric NAT: relayed', async (t) => {
    await run(t, { a: 'eim', b: 'symmetric' }, async (tb, p, root) => {
      const { ms, last } = await connectTimes(p, 1);
      assert.equal(last.tunnel.path, 'relayed');
      const [ta] = await bothEnds(p, 'relayed');
      assert.equal(ta.planned, 'relay');
      await dataFlows(tb, p, root);
      assert.ok((await relayed(p.rs)) > 20);
      console.log(JSON.stringify({ case: 'eim+symmetric', path: 'relayed', setupMs: ms }));
    });
  });

  test('hole punching planned but blocked on the way: the terminals fall back to the RS by themselves', async (t) => {
    await run(t, { a: 'eim', b: 'eim' }, async (tb, p, root) => {
      // The Internet core drops everything between the two NATs (a filtering middlebox the probe cannot see).
      for (const [s, d] of [
        ['203.0.113.0/26', '203.0.113.64/26'],
        ['203.0.113.64/26', '203.0.113.0/26'],
      ] as const) {
        const r = await tb.exec('inet', ['iptables', '-I', 'FORWARD', '-s', s, '-d', d, '-j', 'DROP']);
        assert.equal(r.code, 0, r.stderr);
      }
      const { ms, last } = await connectTimes(p, 1);
      assert.equal(last.tunnel.path, 'relayed');
      const [ta, tbv] = await bothEnds(p, 'relayed');
      assert.equal(ta.planned, 'holepunch', 'the DC expected punching to work');
      assert.equal(tbv.planned, 'holepunch');
      await dataFlows(tb, p, root);
      assert.ok((await relayed(p.rs)) > 20);
      console.log(JSON.stringify({ case: 'eim+eim, direct path blocked', path: 'relayed (fallback)', setupMs: ms }));
    });
  });
});
