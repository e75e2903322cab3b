// Issue 15: a terminal's own TCP reaches its data plane unsegmented (the GSO queue, NFQA_CFG_F_GSO: up to 64 KB per
// queue round trip) and is cut into segments in the addon before sealing, as a NIC's TSO would. Over natpair (its
// userspace link emulator keeps the rate low, so TCP's GSO packets are small there: 2 segments, tcp_min_tso_segs), a
// fast TCP transfer b → a over IPv4 and over IPv6 arrives byte for byte (SHA-256 of the stream), b's GSO queue really cut
// packets (more segments than packets), with the MSS a announced (learnt from a's SYN-ACK as b's data plane handed it
// over: no flow fell back to the default MSS), and no segment was too big for the tunnel.
// The receiving end (a) hands its decrypted TCP to the kernel through its receive TUN (IFF_VNET_HDR, agent/native/tun.c):
// consecutive segments of the flow coalesced into GSO packets (fewer writes than segments), the stream still intact;
// with `terminal.receiveTun` empty the raw socket carries every packet (the fallback), and the stream is intact too.
// b's socket cuts and seals the GSO packets whole (terminal.sealWholeGso, the default); the fallback run turns that off
// and the queue cuts them, each segment sealed on its own.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { withTestbed } from '../lib/testbed.js';
import { TCP_SINK, TCP_SOURCE, expectedTransfer, firstJsonLine, startNatpair, withDaemons, type Daemon } from '../lib/ntm.js';

const TOTAL = 8 * 1024 * 1024;
/** Bytes/s the source may write: more than the tunnel carries here, so TCP's window (and its GSO packets) fill. */
const RATE = 1 << 30;

interface QueueStatus {
  queue: number;
  native?: { gso: boolean; gsoPackets: number; gsoSegments: number; gsoDrops: number; mssLearnt: number; mssDefaulted: number };
}

async function gsoQueue(d: Daemon): Promise<NonNullable<QueueStatus['native']>> {
  const st = (await d.status()) as { dataplane?: { queues?: QueueStatus[] } };
  const q = st.dataplane?.queues?.find((x) => x.native?.gso === true);
  assert.ok(q?.native, `a GSO queue in ${JSON.stringify(st.dataplane?.queues)}`);
  return q.native;
}

interface ReceiveTun {
  device: string;
  queued: number;
  coalesced: number;
  writes: number;
  refused: number;
}

async function receiveTun(d: Daemon): Promise<ReceiveTun | null> {
  const st = (await d.status()) as { dataplane?: { receiveTun?: ReceiveTun | null } };
  return st.dataplane?.receiveTun ?? null;
}

async function transfer(t: TestContext, family: 4 | 6, tun = true): Promise<void> {
  await withTestbed('natpair', {}, (tb) =>
    withDaemons('ntm-gso-', (line) => t.diagnostic(line), async ({ dir, started }) => {
      // The fallback run also has the GSO queue cut its packets (each segment sealed on its own).
      const p = await startNatpair(tb, dir, started, tun ? {} : { terminalArgs: ['--set', 'terminal.receiveTun=', '--set', 'terminal.sealWholeGso=false'] });
      const target = String(family === 4 ? p.b.ready.v4 : p.b.ready.v6);
      await p.a.call({ cmd: 'connect', target: 'b.ntm' }, 30_000);
      const before = await gsoQueue(p.b);
      const rxBefore = await receiveTun(p.a);
      const source = tb.spawn('b', [process.execPath, '-e', TCP_SOURCE, '9000', String(TOTAL), String(RATE)]);
      try {
        await firstJsonLine(source, 10_000, 'tcp source');
        const sink = tb.spawn('a', [process.execPath, '-e', TCP_SINK, target, '9000']);
        const got = await firstJsonLine<{ bytes: number; sha256: string; ms: number; error?: string }>(sink, 90_000, 'tcp sink');
        const q = await gsoQueue(p.b);
        const st = (await p.b.status()) as { dataplane?: { counters?: Record<string, number> } };
        const rx = await receiveTun(p.a);
        t.diagnostic(JSON.stringify({ family, ms: got.ms, queue: q, counters: st.dataplane?.counters, receiveTun: rx }));
        assert.equal(got.error, undefined, `the transfer ended cleanly: ${got.error}`);
        assert.deepEqual({ bytes: got.bytes, sha256: got.sha256 }, expectedTransfer(TOTAL), 'identical bytes arrived');
        const packets = q.gsoPackets - before.gsoPackets;
        const segments = q.gsoSegments - before.gsoSegments;
        assert.ok(packets > 0 && segments > packets, `b's GSO queue cut packets into segments (${packets} → ${segments})`);
        assert.equal(q.gsoDrops, 0, 'no GSO packet was refused');
        assert.ok(q.mssLearnt > before.mssLearnt, "a's SYN-ACK taught b's data plane a's MSS");
        assert.equal(q.mssDefaulted, before.mssDefaulted, 'no segment fell back to the default MSS');
        assert.equal(st.dataplane?.counters?.['out-too-big'] ?? 0, 0, 'no segment was too big for the tunnel');
        const whole = st.dataplane?.counters?.['out-gso-whole'] ?? 0;
        if (tun) assert.ok(whole > 0 && whole <= packets, `b's socket cut and sealed GSO packets whole (${whole} of ${packets})`);
        else assert.equal(whole, 0, 'sealWholeGso=false: every segment sealed on its own');
        if (!tun) assert.equal(rx?.device, undefined, 'no receive TUN: the raw socket carried every packet');
        else {
          assert.ok(rx && rxBefore, `a has a receive TUN: ${JSON.stringify(rx)}`);
          const queued = rx.queued - rxBefore.queued;
          const writes = rx.writes - rxBefore.writes;
          assert.ok(queued > TOTAL / 1400, `the stream's segments went through a's receive TUN (${queued})`);
          assert.ok(rx.coalesced > rxBefore.coalesced && writes < queued, `segments were coalesced (${queued} segments → ${writes} writes)`);
          assert.equal(rx.refused, 0, 'the kernel took every packet written');
        }
      } finally {
        source.kill();
      }
    }),
  );
}

void describe('TCP handed over unsegmented (GSO) and cut by the data plane', () => {
  test('IPv4: a fast transfer arrives intact, cut at the MSS the peer announced', (t) => transfer(t, 4));
  test('IPv6: a fast transfer arrives intact, cut at the MSS the peer announced', (t) => transfer(t, 6));
  test('IPv4 without a receive TUN (raw socket fallback) nor whole GSO sealing: the transfer arrives intact', (t) => transfer(t, 4, false));
});
