// Issue 13, part 1 (paper §3.2.2, last paragraph: two agents let two non-NTM devices talk), on the two-household
// testbed (scripts/netns/topologies/twohomes.json): home B shares its camera with home A by an invitation code; home A
// accepts it for its laptop only. The laptop — which knows nothing of NTMobile — reaches the camera by name and by
// virtual address, over HTTP and a UDP stream, end to end encrypted between the two agents (A's vCPE is IPv4-only
// behind a symmetric CGNAT, B's is public and dual-stack); A's speaker is refused by A's policy, a port B did not share
// is refused by B's; both agents restart (A cleanly, B by kill -9) and it works again; with the direct path blocked the
// tunnel goes through B's RS; B revokes the share and the
// laptop is cut within seconds. Real processes: two `ntm agent`s, an HTTP server and a UDP stream on the camera, curl,
// dig and node on the laptop and the speaker.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { up, type Testbed } from '../../scripts/netns/index.js';
import { ROOT, startNtm, tempDir, waitFor, type Daemon } from '../lib/ntm.js';

const HTTP = join(ROOT, 'dist/scripts/appliances/lamp.js');
const CAMERA = join(ROOT, 'dist/scripts/appliances/camera.js');
const NAME = 'camera.sato-home.ntm';

interface Ctx {
  tb: Testbed;
  tmp: { path: string; remove(): void };
  a: Daemon;
  b: Daemon;
  web: ChildProcess;
  webLog: () => string;
  stream: ChildProcess;
  share: { id: number; name: string; virtualV4: string; virtualV6: string; users: number[] };
  peerId: string;
}

function collect(p: ChildProcess): () => string {
  let out = '';
  p.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d));
  return () => out;
}

const agentA = (tb: Testbed, dir: string) => startNtm(tb, 'vcpea', 'agent', ['--no-web', '--set', 'agent.lanDns=lan:53', '--set', 'agent.household=Suzuki home'], dir, 30_000);
const agentB = (tb: Testbed, dir: string) => startNtm(tb, 'vcpeb', 'agent', ['--no-web', '--set', 'agent.household=Sato home'], dir, 30_000);

async function curl(tb: Testbed, host: string, url: string, timeoutS = 10) {
  return tb.exec(host, ['curl', '-sS', '-g', '--max-time', String(timeoutS), url], { timeoutMs: (timeoutS + 5) * 1000 });
}

/** Frames of the camera's UDP stream `host` receives in 4 s after subscribing at `addr`. */
async function frames(tb: Testbed, host: string, addr: string): Promise<number> {
  const script = `
    const s = require('dgram').createSocket('udp4'); let n = 0;
    s.on('message', () => n++);
    s.send('subscribe', 5004, '${addr}');
    setTimeout(() => { console.log(n); process.exit(0); }, 4000);`;
  const r = await tb.exec(host, [process.execPath, '-e', script], { timeoutMs: 10_000 });
  assert.equal(r.code, 0, r.stderr);
  return Number(r.stdout.trim());
}

function counters(st: Record<string, unknown>): Record<string, number> {
  return (st as { dataplane: { counters: Record<string, number> } }).dataplane.counters;
}

void describe('a device shared between two households (issue 13, part 1)', () => {
  const c = {} as Ctx;

  before(async () => {
    c.tb = await up('twohomes', {});
    c.tmp = tempDir();
    [c.a, c.b] = await Promise.all([agentA(c.tb, join(c.tmp.path, 'a')), agentB(c.tb, join(c.tmp.path, 'b'))]);
    c.web = c.tb.spawn('camera', [process.execPath, HTTP, '--port', '80', '--name', 'Front Door Camera'], { stdio: ['ignore', 'pipe', 'ignore'] });
    c.webLog = collect(c.web);
    c.stream = c.tb.spawn('camera', [process.execPath, CAMERA, '--port', '5004', '--seconds', '3', '--rate', '50'], { stdio: 'ignore' });
    const cam = (await c.b.call({ cmd: 'pair', name: 'camera', kind: 'camera', ip: '192.168.2.11', ipv6: 'fd6e:746d:2::11' })) as { id: number };
    // B's owner shares the camera's web page and stream (not its other ports) with "Suzuki home".
    const invite = (await c.b.call({ cmd: 'share', deviceId: cam.id, household: 'Suzuki home', ports: '80,5004' })) as { code: string; link: string };
    assert.match(invite.code, /^ntm-share1:camera\/ntm1:/);
    // A's owner accepts it for the laptop only; the speaker is a device of A too, not chosen.
    const laptop = (await c.a.call({ cmd: 'pair', name: 'laptop', ip: '192.168.1.12' })) as { id: number };
    await c.a.call({ cmd: 'pair', name: 'speaker', ip: '192.168.1.13' });
    c.share = (await c.a.call({ cmd: 'accept', code: invite.link, devices: String(laptop.id) }, 30_000)) as Ctx['share'];
    assert.equal(c.share.name, NAME);
    assert.deepEqual(c.share.users, [laptop.id]);
    const shares = (await c.b.call({ cmd: 'shares' })) as Array<{ peerId: string; household: string; device: string; ports: number[] }>;
    assert.equal(shares.length, 1, JSON.stringify(shares));
    assert.deepEqual([shares[0]!.household, shares[0]!.device, shares[0]!.ports], ['Suzuki home', 'camera', [80, 5004]]);
    c.peerId = shares[0]!.peerId;
    c.tb.setResolver('laptop', '192.168.1.1');
    c.tb.setResolver('speaker', '192.168.1.1');
  });

  after(async () => {
    c.web?.kill();
    c.stream?.kill();
    await c.a?.stop();
    await c.b?.stop();
    await c.tb?.down();
    c.tmp?.remove();
  });

  test("A's laptop finds the camera by name on A's LAN DNS and fetches its page; the camera sees household A, not the laptop", async () => {
    const dig = await c.tb.exec('laptop', ['dig', '+short', '@192.168.1.1', NAME, 'A']);
    assert.equal(dig.stdout.trim(), c.share.virtualV4, dig.stdout + dig.stderr);
    const dig6 = await c.tb.exec('laptop', ['dig', '+short', '@192.168.1.1', NAME, 'AAAA']);
    assert.equal(dig6.stdout.trim(), c.share.virtualV6);
    const r = await curl(c.tb, 'laptop', `http://${NAME}/`, 20);
    assert.equal(r.code, 0, r.stderr + c.a.output().slice(-3000));
    assert.match(r.stdout, /Front Door Camera/);
    const reqs = c.webLog().trim().split('\n').map((l) => JSON.parse(l) as { event: string; from?: string });
    const from = reqs.filter((x) => x.event === 'request').map((x) => x.from);
    assert.ok(from.length > 0 && from.every((f) => f !== '192.168.1.12' && /^198\.1[89]\./.test(f ?? '')), `the camera saw ${from.join(', ')}`);
    // The tunnel is the two agents' own: A's identity for the share ↔ B's camera identity.
    const tb = (await c.b.call({ cmd: 'tunnels' })) as Array<{ device: string; peer: string; state: string; path: string }>;
    assert.ok(tb.some((t) => t.device === 'camera' && t.peer === c.peerId && t.state === 'up'), JSON.stringify(tb));
    console.log(JSON.stringify({ tunnel: tb.map((t) => ({ device: t.device, path: t.path })) }));
  });

  test("the camera's UDP stream reaches A's laptop through both agents", async () => {
    const n = await frames(c.tb, 'laptop', c.share.virtualV4);
    assert.ok(n >= 100, `the laptop received ${n} of 150 frames`);
  });

  test("A's speaker is refused by A's choice; a port B did not share is refused by B's grant", async () => {
    const before = counters(await c.a.status())['out-share-not-user'] ?? 0;
    const r = await curl(c.tb, 'speaker', `http://${c.share.virtualV4}/`, 3);
    assert.notEqual(r.code, 0, 'the speaker must not reach the camera');
    assert.ok((counters(await c.a.status())['out-share-not-user'] ?? 0) > before, 'refused in A\'s data path');
    const bBefore = counters(await c.b.status())['in-policy'] ?? 0;
    const other = await curl(c.tb, 'laptop', `http://${c.share.virtualV4}:8080/`, 3);
    assert.notEqual(other.code, 0);
    assert.ok((counters(await c.b.status())['in-policy'] ?? 0) > bBefore, 'port 8080 refused in B\'s data path');
  });

  test('both agents restart (A cleanly, B by kill -9) and the laptop reaches the camera again', async () => {
    await c.a.stop();
    c.a = await agentA(c.tb, join(c.tmp.path, 'a'));
    await waitFor('the camera again after A restarted', async () => (await curl(c.tb, 'laptop', `http://${NAME}/`, 5)).code === 0, 60_000, 500);
    await c.b.stop('SIGKILL');
    c.b = await agentB(c.tb, join(c.tmp.path, 'b'));
    await waitFor('the camera again after B was killed', async () => (await curl(c.tb, 'laptop', `http://${NAME}/`, 5)).code === 0, 60_000, 500);
    assert.ok((await frames(c.tb, 'laptop', c.share.virtualV4)) >= 100);
  });

  test("the direct path between the homes blocked: a new tunnel goes through B's RS", async () => {
    // The Internet drops A's datagrams to B's tunnel port (not to B's DC or RS): a fresh tunnel must fall back to the relay.
    const block = await c.tb.exec('isp', ['iptables', '-I', 'FORWARD', '-p', 'udp', '-s', '192.0.2.2', '-d', '198.51.100.2', '--dport', '7300', '-j', 'DROP']);
    assert.equal(block.code, 0, block.stderr);
    await c.a.stop();
    c.a = await agentA(c.tb, join(c.tmp.path, 'a'));
    await waitFor('the camera through the RS', async () => (await curl(c.tb, 'laptop', `http://${NAME}/`, 5)).code === 0, 60_000, 500);
    const tb = (await c.b.call({ cmd: 'tunnels' })) as Array<{ device: string; peer: string; state: string; path: string }>;
    assert.ok(tb.some((t) => t.peer === c.peerId && t.state === 'up' && /relay/.test(t.path)), JSON.stringify(tb));
    assert.ok((await frames(c.tb, 'laptop', c.share.virtualV4)) >= 100, 'the UDP stream through the RS');
  });

  test('B revokes the share: the laptop is cut within seconds', async () => {
    // A ping from the laptop every 200 ms through the share; B's owner revokes it 3 s in.
    const ping = c.tb.exec('laptop', ['ping', '-D', '-n', '-i', '0.2', '-w', '9', c.share.virtualV4], { timeoutMs: 15_000 });
    await new Promise((r) => setTimeout(r, 3000));
    const revokedAt = Date.now() / 1000;
    await c.b.call({ cmd: 'unshare', phoneId: c.peerId });
    const out = (await ping).stdout;
    const replies = [...out.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from/gm)].map((m) => Number(m[1]));
    const before = replies.filter((t) => t < revokedAt).length;
    const last = Math.max(...replies);
    assert.ok(before >= 5, `replies before the revocation: ${before}\n${out}`);
    assert.ok(last - revokedAt < 2, `a reply came ${(last - revokedAt).toFixed(2)} s after the revocation`);
    const r = await curl(c.tb, 'laptop', `http://${NAME}/`, 3);
    assert.notEqual(r.code, 0, 'revoked: no more requests get through');
    assert.deepEqual(await c.b.call({ cmd: 'shares' }), []);
    console.log(JSON.stringify({ lastReplyAfterRevokeS: Math.round((last - revokedAt) * 1000) / 1000, repliesBefore: before, repliesAfter: replies.length - before }));
  });
});
