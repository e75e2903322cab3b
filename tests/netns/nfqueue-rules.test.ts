// The overlay firewall rules on a gateway namespace with a realistic rule set of its own: install is idempotent,
// pairing rewrites one chain, remove and crash cleanup leave iptables-save / ip6tables-save exactly as before, and
// with nobody reading the queues overlay traffic is dropped while everything else keeps flowing. Root only.
//
//   A (LAN: 192.168.77.20 paired, .21 not; fd99::20, fd99::21) ── R (gateway, rules) ── B (WAN, also answers on the
//   virtual addresses 198.18.0.10 / fd12:3456:789a::10, so a packet that leaked would get a reply)
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import { Namespaces, netnsSkipReason } from '../../agent/src/dataplane/nfqueue/testing/netns.js';
import { OverlayFirewall } from '../../agent/src/dataplane/nfqueue/rules.js';
import type { OverlayRuleSpec } from '../../agent/src/dataplane/nfqueue/rules.js';

const PEER = join(resolve(import.meta.dirname, '..', '..'), 'agent/src/dataplane/nfqueue/testing/peer.js');
const PORT = 8080;
const TUNNEL_PORT = 7400;
const V4 = '198.18.0.10';
const V6 = 'fd12:3456:789a::10';

const SPEC: OverlayRuleSpec = {
  queueIn: 4721,
  queueOut: 4722,
  udpPort: TUNNEL_PORT,
  virtualRanges: ['198.18.0.0/15', 'fd12:3456:789a::/48'],
  forward: true,
  captureLocal: true,
  pairedSources: ['192.168.77.20', 'fd99::20'],
  innerMtu: 1380,
};

/** A gateway's own configuration, in every table we touch and one we do not. */
const GATEWAY_V4 = (lan: string, wan: string): string => `*raw
-A PREROUTING -i ${wan} -p udp --dport 9999 -j NOTRACK
COMMIT
*mangle
-A PREROUTING -i ${lan} -j MARK --set-mark 0x100
-A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu
COMMIT
*filter
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i ${lan} -j ACCEPT
-A FORWARD -i ${wan} -j ACCEPT
COMMIT
*nat
-A POSTROUTING -o ${wan} -j MASQUERADE
COMMIT
`;
const GATEWAY_V6 = (lan: string): string => `*filter
-A FORWARD -i ${lan} -j ACCEPT
COMMIT
*mangle
-A OUTPUT -p ipv6-icmp -j ACCEPT
COMMIT
`;

const skip = netnsSkipReason();

void describe('overlay firewall rules on a gateway namespace', { skip, concurrency: false }, () => {
  const nets = new Namespaces('fw');
  let a = '';
  let r = '';
  let b = '';
  let pristine = '';
  /** The manager of one agent run: installed in one test, used and removed by the next ones. */
  let fw: OverlayFirewall | undefined;

  async function snapshot(ns: string): Promise<string> {
    const strip = (t: string): string => t.replace(/^#.*\n/gm, '');
    return strip(await nets.must(ns, 'iptables-nft-save', [])) + '----\n' + strip(await nets.must(ns, 'ip6tables-nft-save', []));
  }

  async function peer(ns: string, ...args: string[]): Promise<Record<string, unknown>> {
    const res = await nets.run(ns, process.execPath, [PEER, ...args]);
    assert.equal(res.code, 0, res.stderr);
    return JSON.parse(res.stdout.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
  }

  const udp = (from: string, to: string): Promise<Record<string, unknown>> => peer(a, 'udp', to, String(PORT), 'hi', from);
  const answered = (from: string, to: string): Promise<void> =>
    udp(from, to).then((res) => assert.deepEqual(res, { from: to, reply: `${to === V4 || to === '10.88.0.2' ? '10.88.0.1' : from}|hi` }, `${from} → ${to}`));
  const dropped = (from: string, to: string): Promise<void> => udp(from, to).then((res) => assert.deepEqual(res, { timeout: true }, `${from} → ${to}`));

  before(async () => {
    a = await nets.add('a');
    r = await nets.add('r');
    b = await nets.add('b');
    const [a0, lan] = await nets.veth(a, 'a0', r, 'rl');
    const [wan, b0] = await nets.veth(r, 'rw', b, 'b0');
    const ip = (ns: string, ...args: string[]): Promise<string> => nets.must(ns, 'ip', args);
    for (const addr of ['192.168.77.20/24', '192.168.77.21/24']) await ip(a, 'addr', 'add', addr, 'dev', a0);
    for (const addr of ['fd99::20/64', 'fd99::21/64']) await ip(a, 'addr', 'add', addr, 'dev', a0, 'nodad');
    await ip(a, 'route', 'add', 'default', 'via', '192.168.77.1');
    await ip(a, '-6', 'route', 'add', 'default', 'via', 'fd99::1');
    await ip(r, 'addr', 'add', '192.168.77.1/24', 'dev', lan);
    await ip(r, 'addr', 'add', 'fd99::1/64', 'dev', lan, 'nodad');
    await ip(r, 'addr', 'add', '10.88.0.1/24', 'dev', wan);
    await ip(r, 'addr', 'add', 'fd88::1/64', 'dev', wan, 'nodad');
    await ip(r, 'route', 'add', '198.18.0.0/15', 'via', '10.88.0.2');
    await ip(r, '-6', 'route', 'add', 'fd12:3456:789a::/48', 'via', 'fd88::2');
    await nets.must(r, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    await ip(b, 'addr', 'add', '10.88.0.2/24', 'dev', b0);
    await ip(b, 'addr', 'add', 'fd88::2/64', 'dev', b0, 'nodad');
    await ip(b, 'addr', 'add', `${V4}/32`, 'dev', 'lo');
    await ip(b, 'addr', 'add', `${V6}/128`, 'dev', 'lo');
    await ip(b, '-6', 'route', 'add', 'fd99::/64', 'via', 'fd88::1');
    await nets.must(r, 'iptables-nft-restore', ['-w', '--noflush'], GATEWAY_V4(lan, wan));
    await nets.must(r, 'ip6tables-nft-restore', ['-w', '--noflush'], GATEWAY_V6(lan));
    await nets.start(b, process.execPath, [PEER, 'serve', String(PORT)]);
    pristine = await snapshot(r);
  });

  after(async () => {
    await nets.destroy();
    assert.deepEqual(await nets.leftovers(), []);
  });

  void test('before any rule of ours, the overlay addresses answer (B holds them)', async () => {
    await answered('192.168.77.20', V4);
    await answered('fd99::20', V6);
  });

  void test('install adds our chains; a second install changes nothing', async () => {
    fw = new OverlayFirewall(SPEC, { run: nets.runner(r) });
    await fw.install();
    const once = await snapshot(r);
    for (const chain of ['NTM-IN', 'NTM-OUT', 'NTM-FWD', 'NTM-PAIRED']) assert.match(once, new RegExp(`^:${chain} - `, 'm'));
    assert.match(once, /^-A PREROUTING -j NTM-IN$/m);
    assert.match(once, /^-A NTM-FWD -d 198\.18\.0\.0\/15 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1340$/m);
    assert.match(once, /^-A NTM-FWD -d fd12:3456:789a::\/48 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1320$/m);
    assert.doesNotMatch(once, /queue-bypass/);
    await fw.install();
    await new OverlayFirewall(SPEC, { run: nets.runner(r) }).install();
    assert.equal(await snapshot(r), once);
    // Everything of the gateway's own is still there, in its order.
    const own = (t: string): string[] => t.split('\n').filter((l) => l.startsWith('-A ') && !/NTM-/.test(l));
    assert.deepEqual(own(once), own(pristine));
  });

  void test('no process on the queues: overlay traffic is dropped, everything else flows', async () => {
    await dropped('192.168.77.20', V4);
    await dropped('fd99::20', V6);
    await answered('192.168.77.21', V4);
    await answered('fd99::21', V6);
    await answered('192.168.77.20', '10.88.0.2');
    await answered('fd99::20', 'fd88::2');
    const http = await peer(a, 'http', '10.88.0.2', String(PORT), '100000');
    assert.equal(http.echoOk, true);
    // Tunnel datagrams to the gateway's port vanish in the queue; another port still gets its ICMP answer.
    assert.deepEqual(await peer(b, 'udp-refused', '10.88.0.1', String(TUNNEL_PORT)), { refused: false, code: 'timeout' });
    assert.deepEqual(await peer(b, 'udp-refused', '10.88.0.1', String(TUNNEL_PORT + 1)), { refused: true, code: 'ECONNREFUSED' });
  });

  void test('pairing another appliance rewrites the paired chain only', async () => {
    assert.ok(fw);
    const before = await snapshot(r);
    await fw.setPairedSources(['192.168.77.21', 'fd99::21']);
    const after = await snapshot(r);
    const diff = (x: string, y: string): string[] => x.split('\n').filter((l) => !y.split('\n').includes(l));
    assert.deepEqual(diff(before, after), ['-A NTM-PAIRED -s 192.168.77.20/32 -j NFQUEUE --queue-num 4722', '-A NTM-PAIRED -s fd99::20/128 -j NFQUEUE --queue-num 4722']);
    assert.deepEqual(diff(after, before), ['-A NTM-PAIRED -s 192.168.77.21/32 -j NFQUEUE --queue-num 4722', '-A NTM-PAIRED -s fd99::21/128 -j NFQUEUE --queue-num 4722']);
    await dropped('192.168.77.21', V4);
    await answered('192.168.77.20', V4);
  });

  void test('remove leaves iptables-save and ip6tables-save exactly as before, and the overlay answers again', async () => {
    assert.ok(fw);
    await fw.install();
    await fw.remove();
    assert.equal(await snapshot(r), pristine);
    await answered('192.168.77.20', V4);
  });

  void test('cleanup after a crash finds our chains by name and restores the rules exactly', async () => {
    await new OverlayFirewall({ ...SPEC, captureLocal: false }, { run: nets.runner(r) }).install();
    await OverlayFirewall.cleanup('OTHER', { run: nets.runner(r) });
    assert.notEqual(await snapshot(r), pristine, 'another prefix touches nothing');
    await OverlayFirewall.cleanup('NTM', { run: nets.runner(r) });
    assert.equal(await snapshot(r), pristine);
  });

  void test('on a host without any table, install then remove (or cleanup) leaves nothing at all', async () => {
    const bare = await nets.add('n');
    assert.equal(await snapshot(bare), '----\n');
    const fresh = new OverlayFirewall(SPEC, { run: nets.runner(bare) });
    await fresh.install();
    assert.notEqual(await snapshot(bare), '----\n');
    await fresh.remove();
    assert.equal(await snapshot(bare), '----\n');
    await new OverlayFirewall(SPEC, { run: nets.runner(bare) }).install();
    await OverlayFirewall.cleanup('NTM', { run: nets.runner(bare) });
    assert.equal(await snapshot(bare), '----\n');
  });
});
