// The rewrite path on real kernels: host A talks UDP, TCP (HTTP over node:net), ping and ping6 to virtual
// addresses; a router namespace takes each packet from NFQUEUE in raw PREROUTING, rewrites it with the packet
// layer (destination virtual → B, replies' source B → virtual, MSS clamped, ICMP errors translated) and ACCEPTs
// the new bytes, which the kernel routes onward. A and B verify every checksum themselves. Root only.
//
//   A (10.77.1.2, fd77:1::2) ── veth ── R (NFQUEUE, rewrite-router) ── veth ── B (10.77.2.2, fd77:2::2)
//   virtual: 198.18.0.10 ↔ B, fd12:3456:789a::10 ↔ B
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Namespaces, netnsSkipReason } from '../../agent/src/dataplane/nfqueue/testing/netns.js';

const DIST = resolve(import.meta.dirname, '..', '..');
const TESTING = join(DIST, 'agent/src/dataplane/nfqueue/testing');
const ROUTER = join(TESTING, 'rewrite-router.js');
const PEER = join(TESTING, 'peer.js');
const QUEUE = 4712;
const MSS = 1000;
const PORT = 8080;
const V4 = '198.18.0.10';
const V6 = 'fd12:3456:789a::10';
const A4 = '10.77.1.2';
const A6 = 'fd77:1::2';
const B4 = '10.77.2.2';
const B6 = 'fd77:2::2';

const skip = netnsSkipReason();

/** What rewrite-router prints for "stats". */
interface RouterStats {
  readonly toReal: number;
  readonly toVirtual: number;
  readonly v4: number;
  readonly v6: number;
  readonly clamped: number;
  readonly maxTcpPayloadFromReal: number;
  readonly icmpErrors: number;
  readonly failed: number;
  readonly malformed: number;
  readonly counters: { readonly errors: number; readonly dropped: number; readonly replaced: number };
}

void describe('NFQUEUE rewrite path through a router namespace', { skip, concurrency: false }, () => {
  const nets = new Namespaces('rw');
  let a = '';
  let r = '';
  let router: ChildProcess | undefined;
  const routerLines: string[] = [];

  async function peer(...args: string[]): Promise<Record<string, unknown>> {
    const res = await nets.run(a, process.execPath, [PEER, ...args]);
    assert.equal(res.code, 0, res.stderr);
    return JSON.parse(res.stdout.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
  }

  before(async () => {
    a = await nets.add('a');
    r = await nets.add('r');
    const b = await nets.add('b');
    const [a0, ra] = await nets.veth(a, 'a0', r, 'ra');
    const [rb, b0] = await nets.veth(r, 'rb', b, 'b0');
    const ip = (ns: string, ...args: string[]): Promise<string> => nets.must(ns, 'ip', args);
    await ip(a, 'addr', 'add', `${A4}/24`, 'dev', a0);
    await ip(a, 'addr', 'add', `${A6}/64`, 'dev', a0, 'nodad');
    await ip(a, 'route', 'add', '198.18.0.0/15', 'via', '10.77.1.1');
    await ip(a, '-6', 'route', 'add', 'fd12:3456:789a::/48', 'via', 'fd77:1::1');
    await ip(r, 'addr', 'add', '10.77.1.1/24', 'dev', ra);
    await ip(r, 'addr', 'add', 'fd77:1::1/64', 'dev', ra, 'nodad');
    await ip(r, 'addr', 'add', '10.77.2.1/24', 'dev', rb);
    await ip(r, 'addr', 'add', 'fd77:2::1/64', 'dev', rb, 'nodad');
    await nets.must(r, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    await ip(b, 'addr', 'add', `${B4}/24`, 'dev', b0);
    await ip(b, 'addr', 'add', `${B6}/64`, 'dev', b0, 'nodad');
    await ip(b, 'route', 'add', 'default', 'via', '10.77.2.1');
    await ip(b, '-6', 'route', 'add', 'default', 'via', 'fd77:2::1');
    const q = `-j NFQUEUE --queue-num ${QUEUE}`;
    await nets.must(r, 'iptables-nft-restore', ['-w', '--noflush'], `*raw\n-A PREROUTING -i ${ra} -d ${V4}/32 ${q}\n-A PREROUTING -i ${rb} -s ${B4}/32 -d 10.77.1.0/24 ${q}\nCOMMIT\n`);
    await nets.must(r, 'ip6tables-nft-restore', ['-w', '--noflush'], `*raw\n-A PREROUTING -i ${ra} -d ${V6}/128 ${q}\n-A PREROUTING -i ${rb} -s ${B6}/128 -d fd77:1::/64 ${q}\nCOMMIT\n`);
    const config = { queue: QUEUE, mss: MSS, map: [{ virtual: V4, real: B4 }, { virtual: V6, real: B6 }] };
    router = await nets.start(r, process.execPath, ['--enable-source-maps', ROUTER, JSON.stringify(config)], 'ready', (l) => routerLines.push(l));
    await nets.start(b, process.execPath, [PEER, 'serve', String(PORT)]);
  });

  after(async () => {
    await nets.destroy();
    assert.deepEqual(await nets.leftovers(), []);
  });

  for (const [family, virtual, self] of [
    ['IPv4', V4, A4],
    ['IPv6', V6, A6],
  ] as const) {
    void test(`UDP over ${family}: the reply comes from the virtual address, B saw A's own address`, async () => {
      assert.deepEqual(await peer('udp', virtual, String(PORT), 'hello'), { from: virtual, reply: `${self}|hello` });
    });

    void test(`TCP over ${family}: an HTTP POST of 200 kB is echoed intact`, async () => {
      const res = await peer('http', virtual, String(PORT), String(200_000));
      assert.deepEqual(res, { remote: virtual, status: '200', client: self, shaOk: true, echoOk: true, bytes: 200_000 });
    });

    void test(`ICMP port unreachable over ${family} reaches the sending socket (quoted packet translated)`, async () => {
      assert.deepEqual(await peer('udp-refused', virtual, '9'), { refused: true, code: 'ECONNREFUSED' });
    });

    void test(`ping over ${family} to the virtual address`, async () => {
      const res = await nets.run(a, 'busybox', [family === 'IPv4' ? 'ping' : 'ping6', '-c', '3', '-W', '5', virtual]);
      assert.equal(res.code, 0, res.stdout + res.stderr);
      assert.match(res.stdout, new RegExp(`bytes from ${virtual.replace(/\./g, '\\.')}`));
      assert.match(res.stdout, / 0% packet loss/);
    });
  }

  void test('the router rewrote both ways, clamped every SYN and SYN-ACK, and B kept to the clamped MSS', async () => {
    routerLines.length = 0;
    router?.stdin?.write('stats\n');
    const end = Date.now() + 3000;
    while (routerLines.length === 0 && Date.now() < end) await new Promise((res) => setTimeout(res, 10));
    const s = JSON.parse(routerLines[0] ?? '{}') as RouterStats;
    assert.ok(s.toReal > 0 && s.toVirtual > 0, JSON.stringify(s));
    assert.ok(s.v4 > 0 && s.v6 > 0);
    assert.equal(s.clamped, 4, 'two connections: SYN and SYN-ACK each');
    assert.ok(s.maxTcpPayloadFromReal > 500 && s.maxTcpPayloadFromReal <= MSS, `largest segment from B: ${s.maxTcpPayloadFromReal}`);
    assert.ok(s.icmpErrors >= 2);
    assert.equal(s.failed, 0);
    assert.equal(s.malformed, 0);
    assert.equal(s.counters.errors, 0);
    assert.equal(s.counters.dropped, 0);
    assert.equal(s.counters.replaced, s.toReal + s.toVirtual);
  });
});
