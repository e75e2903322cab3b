// The netns testbed itself, with real namespaces and real packets: topologies, NAT kinds, Table 1 delays, moving, teardown.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { loadTopology, parseTopology, type Testbed, TopologyError } from '../../scripts/netns/index.js';
import { DelayLine } from '../../scripts/netns/delay-line.js';
import { stateDir } from '../../scripts/netns/state.js';
import { isAlive } from '../../scripts/netns/sys.js';
import { ECHO_PORT, median, pingRtts, probe, startEcho } from '../lib/probes.js';
import { leftovers, withTestbed } from '../lib/testbed.js';

const ROOT = resolve(import.meta.dirname, '..', '..', '..');
const TOLERANCE_MS = 2;

function ep(tb: Testbed, host: string, family: 4 | 6): string {
  const a = tb.addr(host, family);
  return family === 6 ? `[${a}]:${ECHO_PORT}` : `${a}:${ECHO_PORT}`;
}

/** Table 1 of the paper: RTT (ms) today / with DC and RS on the vCPE, and the hosts and family each is measured with. */
const TABLE1: { link: string; from: string; to: string; family: 4 | 6; today: number; vcpe: number }[] = [
  { link: 'MN-DC_MN', from: 'mn', to: 'dcmn', family: 6, today: 21, vcpe: 15 },
  { link: 'MN-RS', from: 'mn', to: 'rs', family: 6, today: 22, vcpe: 15 },
  { link: 'DC_MN-DC_CN', from: 'dcmn', to: 'dccn', family: 4, today: 101, vcpe: 101 },
  { link: 'CN-DC_CN', from: 'cn', to: 'dccn', family: 4, today: 41, vcpe: 15 },
  { link: 'CN-RS', from: 'cn', to: 'rs', family: 4, today: 162, vcpe: 116 },
];

/**
 * Each Table 1 link measured with 20 ICMP echoes (kernel-answered: the path's own RTT), and with 20 UDP probes
 * between Node processes (what our daemons see: the path plus two event loops), printed side by side; the ICMP
 * median is held to Table 1.
 */
async function checkTable1(tb: Testbed, column: 'today' | 'vcpe'): Promise<void> {
  for (const h of ['dcmn', 'dccn', 'rs']) await startEcho(tb, h);
  const lines: string[] = [];
  for (const row of TABLE1) {
    const rtts = await pingRtts(tb, row.from, tb.addr(row.to, row.family), 20);
    assert.equal(rtts.length, 20, `${row.link}: lost echoes (${rtts.length} of 20 answered)`);
    const med = median(rtts) ?? NaN;
    const r = await probe(tb, row.from, [ep(tb, row.to, row.family)], { count: 20 });
    const udp = r.results[0];
    assert.ok(udp && udp.medianMs !== null && udp.received === 20, `${row.link}: UDP probes lost`);
    const want = row[column];
    lines.push(`${row.link} ${want} -> ${med.toFixed(2)} (min ${Math.min(...rtts)}, max ${Math.max(...rtts)}; UDP between Node ${udp.medianMs.toFixed(2)})`);
    assert.ok(Math.abs(med - want) <= TOLERANCE_MS, `${row.link} (${column}): median ${med} ms, want ${want} ± ${TOLERANCE_MS}`);
  }
  console.log(`# Table 1, column ${column}: ${lines.join('; ')}`);
}

/** From one socket in cn to two destinations: the public mappings they observed. */
async function cnMappings(tb: Testbed): Promise<{ local: number; seen: string[] }> {
  const r = await probe(tb, 'cn', [ep(tb, 'dccn', 4), ep(tb, 'rs', 4)], { count: 2, warmup: 0 });
  const seen = r.results.map((x) => {
    assert.equal(x.observed.length, 1, `${x.target} saw ${x.observed.join(', ')}`);
    return x.observed[0] ?? '';
  });
  return { local: r.local.port, seen };
}

function assertClean(prefix: string, emulatorPids: readonly number[]): void {
  const left = leftovers(prefix);
  assert.deepEqual(left.namespaces, [], `namespaces left: ${left.namespaces.join(', ')}`);
  assert.deepEqual(left.pids, [], `processes left: ${left.pids.join(', ')}`);
  for (const pid of emulatorPids) assert.equal(isAlive(pid), false, `emulator ${pid} still alive`);
}

void describe('topology files', () => {
  void test('the shipped topologies load', () => {
    const paper = loadTopology('paper');
    assert.deepEqual(paper.columns, ['today', 'vcpe']);
    assert.equal(paper.emulation[0]?.pairs.length, 10);
    const household = loadTopology('household');
    assert.equal(household.hosts.get('phone')?.initialUplink, 'wifi');
  });

  void test('bad files are refused with the file and key named', () => {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the point is to break the file's shape freely
    const bad = (mutate: (t: any) => void): string => {
      const t = rawPaper();
      mutate(t);
      try {
        parseTopology(t, '/x/broken.json');
      } catch (e) {
        assert.ok(e instanceof TopologyError);
        return e.message;
      }
      assert.fail('accepted a broken topology');
    };
    assert.match(bad((t) => delete t.delays.inet.pairs['cn-rs']), /broken\.json: delays\.inet\.pairs: the matrix is incomplete; missing cn-rs/);
    assert.match(bad((t) => (t.hosts.dcmn.routes[0].via = '192.0.9.1')), /hosts\.dcmn\.routes\[0\]: gateway 192\.0\.9\.1 is not on any subnet/);
    assert.match(bad((t) => (t.hosts.cnnat.nat.kind = 'cone')), /hosts\.cnnat\.nat\.kind: "cone" is not one of eim, symmetric/);
    assert.match(bad((t) => (t.hosts.mn.colour = 'red')), /hosts\.mn: unknown key "colour"/);
    assert.match(bad((t) => t.links[0].a.addrs.push('192.0.2.200/24')), /mn is IPv4-free/);
    assert.match(bad((t) => (t.delays.inet.pairs['mn-rs'].rttMs = { today: 22 })), /pairs\.mn-rs\.rttMs: missing key "vcpe"/);
  });
});

void describe('delay line', () => {
  const collect = (line: (out: number[]) => DelayLine<number>, arrivals: number[]): number[] => {
    const out: number[] = [];
    const l = line(out);
    arrivals.forEach((t, i) => l.push(i, BigInt(t)));
    l.releaseDue(10n ** 12n);
    return out;
  };
  let seed = 1;
  const rand = (): number => ((seed = (seed * 16807) % 2147483647) / 2147483647);

  void test('holds each packet for its delay and releases in arrival order', () => {
    const out: number[] = [];
    const l = new DelayLine<number>(1000n, 0n, false, (i) => out.push(i));
    l.push(0, 0n);
    l.push(1, 10n);
    assert.equal(l.releaseDue(999n), 0);
    assert.equal(l.releaseDue(1000n), 1);
    assert.equal(l.nextDue(), 1010n);
    l.releaseDue(2000n);
    assert.deepEqual(out, [0, 1]);
  });

  void test('jitter keeps order unless reordering is allowed', () => {
    const arrivals = Array.from({ length: 200 }, (_, i) => i * 10);
    const fifo = collect((out) => new DelayLine<number>(1000n, 500n, false, (i) => out.push(i), rand), arrivals);
    assert.deepEqual(fifo, [...fifo].sort((a, b) => a - b));
    const shuffled = collect((out) => new DelayLine<number>(1000n, 500n, true, (i) => out.push(i), rand), arrivals);
    assert.notDeepEqual(shuffled, [...shuffled].sort((a, b) => a - b));
    assert.equal(shuffled.length, 200);
  });
});

function rawPaper(): unknown {
  return JSON.parse(readFileSync(loadTopology('paper').file, 'utf8'));
}

void describe('paper topology', { concurrency: false }, () => {
  void test('column today: Table 1 RTTs, MN IPv6-only, CN behind an EIM NAT and unreachable unsolicited; clean down', async () => {
    let prefix = '';
    let pids: number[] = [];
    await withTestbed('paper', { column: 'today' }, async (tb) => {
      prefix = tb.prefix;
      const st = await tb.status();
      pids = st.emulators.map((e) => e.pid);
      assert.equal(st.emulators.length, 1);
      assert.equal(st.emulators[0]?.alive, true);
      for (const h of tb.hosts()) assert.ok(st.hosts.some((x) => x.ns === `${prefix}-${h}`));

      await checkTable1(tb, 'today');

      const routes = await tb.exec('mn', ['ip', '-4', 'route', 'show', 'table', 'all']);
      assert.equal(routes.stdout.split('\n').filter((l) => l && !l.startsWith('local 127.') && !l.includes('dev lo')).join('\n'), '');
      const v4 = await tb.exec('mn', ['ip', '-4', '-o', 'addr', 'show', 'scope', 'global']);
      assert.equal(v4.stdout.trim(), '', 'mn has an IPv4 address');
      const dial = await tb.exec('mn', ['ip', 'route', 'get', '192.0.2.2']);
      assert.notEqual(dial.code, 0, 'mn found an IPv4 route');

      const m = await cnMappings(tb);
      assert.equal(m.seen[0], m.seen[1], 'eim: one socket, one mapping');
      assert.equal(m.seen[0], `203.0.113.2:${m.local}`, 'eim: port-preserving');

      // Unsolicited: its private address is not routed, and its NAT's public address forwards nothing inward.
      await startEcho(tb, 'cn');
      for (const target of [`10.0.0.10:${ECHO_PORT}`, `203.0.113.2:${ECHO_PORT}`]) {
        const r = await probe(tb, 'dccn', [target], { count: 3, warmup: 0, timeoutMs: 300 });
        assert.equal(r.results[0]?.received, 0, `dccn reached cn at ${target}`);
      }
    });
    assertClean(prefix, pids);
  });

  void test('column vcpe: Table 1 RTTs; cnnat=symmetric maps each destination apart', async () => {
    let prefix = '';
    await withTestbed('paper', { column: 'vcpe', nat: { cnnat: 'symmetric' } }, async (tb) => {
      prefix = tb.prefix;
      assert.equal(tb.nat.cnnat, 'symmetric');
      await checkTable1(tb, 'vcpe');
      const m = await cnMappings(tb);
      const [a, b] = m.seen.map((s) => s.split(':'));
      assert.equal(a?.[0], '203.0.113.2');
      assert.equal(b?.[0], '203.0.113.2');
      assert.notEqual(a?.[1], b?.[1], `symmetric: both destinations saw port ${a?.[1]}`);
    });
    assertClean(prefix, []);
  });
});

void describe('household topology', { concurrency: false }, () => {
  void test('phone moves wifi -> lte -> wifi; LAN is masqueraded; delays per pair; a dead emulator drops', async () => {
    let prefix = '';
    let pids: number[] = [];
    await withTestbed('household', {}, async (tb) => {
      prefix = tb.prefix;
      pids = (await tb.status()).emulators.map((e) => e.pid);
      await startEcho(tb, 'web');
      await startEcho(tb, 'vcpe');
      const web = ep(tb, 'web', 4);

      const seenFrom = async (host: string): Promise<{ observed: string; median: number }> => {
        const r = await probe(tb, host, [web], { count: 10 });
        const res = r.results[0];
        assert.ok(res?.medianMs != null && res.observed.length === 1, `${host}: ${JSON.stringify(res)}`);
        return { observed: (res.observed[0] ?? '').split(':')[0] ?? '', median: res.medianMs };
      };

      assert.equal(tb.uplink('phone'), 'wifi');
      let s = await seenFrom('phone');
      assert.equal(s.observed, '192.0.2.2', 'on Wi-Fi the phone appears as the hotspot');
      assert.ok(Math.abs(s.median - 20) <= TOLERANCE_MS, `phone-web via wifi ${s.median} ms`);

      await tb.move('phone', 'lte');
      assert.equal(tb.uplink('phone'), 'lte');
      assert.equal(tb.addr('phone', 4), '100.64.0.10');
      s = await seenFrom('phone');
      assert.equal(s.observed, '192.0.2.66', 'on LTE the phone appears as the CGNAT');
      assert.ok(Math.abs(s.median - 40) <= TOLERANCE_MS, `phone-web via lte ${s.median} ms`);

      await tb.move('phone', 'wifi');
      assert.equal((await seenFrom('phone')).observed, '192.0.2.2');

      const lamp = await seenFrom('lamp');
      assert.equal(lamp.observed, '198.51.100.2', 'the vCPE masquerades its LAN');
      assert.ok(Math.abs(lamp.median - 10) <= TOLERANCE_MS, `lamp-web ${lamp.median} ms`);
      const onLan = await probe(tb, 'lamp', [`[fd6e:746d:1::1]:${ECHO_PORT}`], { count: 3 });
      assert.ok((onLan.results[0]?.medianMs ?? 99) < 2, 'LAN links carry no delay');

      // No --queue-bypass: with the emulator gone, delayed pairs drop instead of silently losing their delay.
      const emulator = pids[0] ?? 0;
      assert.ok(emulator > 0, 'no emulator pid');
      process.kill(emulator, 'SIGKILL');
      const dead = await probe(tb, 'phone', [web], { count: 2, warmup: 0, timeoutMs: 300 });
      assert.equal(dead.results[0]?.received, 0);
    });
    assertClean(prefix, pids);
  });

  void test('impairments: loss and duplication per pair, counted by the emulator', async () => {
    await withTestbed('household', { impair: { 'vcpe-web': { rttMs: 0, loss: 0.5 }, 'web-wifi': { rttMs: 2, duplicate: 1 } } }, async (tb) => {
      await startEcho(tb, 'web');
      const lossy = await probe(tb, 'lamp', [ep(tb, 'web', 4)], { count: 40, warmup: 0, timeoutMs: 100 });
      const got = lossy.results[0]?.received ?? -1;
      // Each probe survives two 50% drops: expect ~10 of 40.
      assert.ok(got > 0 && got < 24, `received ${got} of 40 through 50% loss each way`);
      const stats = (await tb.emulatorStatus())[0]?.stats?.pairs ?? [];
      assert.ok((stats.find((p) => p.pair === 'vcpe>web')?.lost ?? 0) > 0, 'emulator counted no losses');

      // A fresh echo server, so its datagram count is the phone's alone; each probe reaches it twice.
      await startEcho(tb, 'web', ECHO_PORT + 1);
      const dup = await probe(tb, 'phone', [`${tb.addr('web', 4)}:${ECHO_PORT + 1}`], { count: 10, warmup: 0 });
      const seen = dup.results[0]?.echoReceived ?? 0;
      assert.ok(seen >= 19, `web saw ${seen} datagrams for 10 duplicated probes`);
    });
  });

  void test('--no-delay: no emulator, no NFQUEUE rule, RTT under 2 ms; down works without the state file', async () => {
    const cli = join(ROOT, 'scripts', 'testbed');
    let prefix = '';
    await withTestbed('household', { delays: false }, async (tb) => {
      prefix = tb.prefix;
      assert.equal((await tb.status()).emulators.length, 0);
      const rules = await tb.exec('isp', ['iptables-save', '-t', 'mangle']);
      assert.doesNotMatch(rules.stdout, /NFQUEUE/);
      await startEcho(tb, 'web');
      const r = await probe(tb, 'phone', [ep(tb, 'web', 4)], { count: 10 });
      assert.ok((r.results[0]?.medianMs ?? 99) < 2, `phone-web ${r.results[0]?.medianMs} ms without delays`);

      // A crashed run leaves namespaces but maybe no state: down by prefix alone still cleans up.
      rmSync(stateDir(tb.prefix), { recursive: true, force: true });
      const down = spawnSync(cli, ['down', '--name', tb.prefix], { encoding: 'utf8' });
      assert.equal(down.status, 0, down.stderr);
      assert.match(down.stdout, new RegExp(`${tb.hosts().length} namespaces deleted`));
      assert.deepEqual(leftovers(tb.prefix).namespaces, []);
    });
    assertClean(prefix, []);
  });
});
