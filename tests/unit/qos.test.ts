// QoS (issue 13, part 2; paper §3.2.1) without root: the household API's QoS operations through the fake agent over
// real HTTP (the page's session with its CSRF token, the ISP controller's bearer token, validation, storage across a
// restart), and the kernel backend's plan: which tc classes and nftables rules a set of rules becomes. The kernel
// itself is exercised in tests/netns/qos.test.ts.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FakeAgent } from '../../agent/src/agent/fake-agent.js';
import { HouseholdStore } from '../../agent/src/agent/household-store.js';
import { directionPlans, nftScript, tcScript } from '../../agent/src/qos/kernel.js';
import type { QosPlan } from '../../agent/src/types/qos.js';
import { silentLogger } from '../../agent/src/util/log.js';
import { createWebApp, type WebApp } from '../../web-ui/server/app.js';
import { WebClient } from '../../web-ui/server/testing/client.js';

const TOKEN = 'operator-token-for-the-tests-0123456789';
const PASSWORD = 'correct horse battery';

describe('the QoS API: the page with its session, the controller with the operator token', () => {
  let dir: string;
  let store: HouseholdStore;
  let app: WebApp;
  let base = '';
  let lampId = 0;

  const open = async (): Promise<void> => {
    store = HouseholdStore.open(join(dir, 'agent.db'));
    const fake = new FakeAgent({ store });
    app = createWebApp({ api: fake, store, setupCode: 'K7QM-2XPA-9RWD', operatorToken: TOKEN, log: silentLogger });
    base = `http://127.0.0.1:${(await app.listen('127.0.0.1:0')).port}`;
  };
  const close = async (): Promise<void> => {
    await app.close();
    store.close();
  };
  const controller = (token = TOKEN) => (method: string, path: string, body?: unknown) =>
    new WebClient(base).request(method, path, { headers: { authorization: `Bearer ${token}` }, ...(body === undefined ? {} : { json: body }) });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ntm-qos-'));
    await open();
    lampId = store.pair({ name: 'lamp', ipv4: '192.168.1.10' }, { privateKeyHex: '11'.repeat(32), ntmId: '0x' + 'ab'.repeat(20), virtualV4: '198.18.0.2', virtualV6: 'fd4e::2' }).id;
  });
  after(async () => {
    await close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the controller: a wrong or missing token is 401; with the token it sets the link and a device rule, no CSRF needed', async () => {
    assert.equal((await controller('not-the-token-at-all-000')('GET', '/api/qos')).status, 401);
    assert.equal((await new WebClient(base).get('/api/qos')).status, 401);
    let r = await controller()('PUT', '/api/qos/link', { uplinkKbit: 100_000, downlinkKbit: 1_000_000 });
    assert.equal(r.status, 200, r.text);
    r = await controller()('PUT', `/api/qos/devices/${lampId}`, { class: 'priority', uplinkKbit: 20_000 });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual((r.body as { devices: unknown[] }).devices, [{ deviceId: lampId, class: 'priority', uplinkKbit: 20_000, downlinkKbit: null }]);
    // The bearer opens the QoS operations only: the rest of the household API stays the owner's.
    assert.equal((await controller()('GET', '/api/devices')).status, 401);
  });

  test('bad rules are refused with the field named; an unpaired device or an unknown phone is 404', async () => {
    const bad = async (path: string, body: unknown, field: string) => {
      const r = await controller()('PUT', path, body);
      assert.equal(r.status, 400, r.text);
      assert.equal((r.body as { field?: string }).field, field, r.text);
    };
    await bad(`/api/qos/devices/${lampId}`, { class: 'urgent' }, 'class');
    await bad(`/api/qos/devices/${lampId}`, { class: 'normal', uplinkKbit: 0 }, 'uplinkKbit');
    await bad('/api/qos/link', { uplinkKbit: 1.5, downlinkKbit: 0 }, 'uplinkKbit');
    assert.equal((await controller()('PUT', '/api/qos/devices/999', { class: 'normal' })).status, 404);
    assert.equal((await controller()('PUT', `/api/qos/phones/0x${'ee'.repeat(20)}`, { class: 'normal' })).status, 404);
  });

  test('the page: signed in, "this device first" needs the CSRF token; the rules survive a restart', async () => {
    const page = new WebClient(base);
    assert.equal((await page.post('/api/setup', { setupCode: 'K7QM-2XPA-9RWD', password: PASSWORD })).status, 201);
    assert.equal((await page.request('DELETE', `/api/qos/devices/${lampId}`, { csrf: false })).status, 403);
    let r = await page.request('PUT', `/api/qos/devices/${lampId}`, { json: { class: 'priority' } });
    assert.equal(r.status, 200, r.text);
    await close();
    await open();
    r = await controller()('GET', '/api/qos');
    assert.deepEqual((r.body as { link: unknown }).link, { uplinkKbit: 100_000, downlinkKbit: 1_000_000 });
    assert.deepEqual((r.body as { devices: unknown[] }).devices, [{ deviceId: lampId, class: 'priority', uplinkKbit: null, downlinkKbit: null }]);
  });
});

describe('the kernel backend\'s plan (tc HTB classes and nftables rules)', () => {
  const plan: QosPlan = {
    link: { uplinkKbit: 8000, downlinkKbit: 0 },
    wanInterface: 'wan0',
    lanInterface: 'br0',
    tunnelPort: 7300,
    targets: [
      { key: 'device:1', rule: { class: 'priority', uplinkKbit: null, downlinkKbit: null }, lanAddresses: ['192.168.1.10', 'fd6e:746d:1::10'], tunnelEndpoints: [] },
      { key: 'phone:0xab', rule: { class: 'normal', uplinkKbit: 3000, downlinkKbit: 500 }, lanAddresses: [], tunnelEndpoints: [{ family: 4, address: '192.0.2.2', port: 40000 }] },
    ],
  };

  test('an unshaped direction gets nothing; the shaped one three classes and one per limited target', () => {
    const dirs = directionPlans(plan);
    assert.deepEqual(dirs.map((d) => d.dev), ['wan0'], 'the downlink is not shaped (rate 0): no tree on br0, and the phone\'s down limit is moot');
    const up = dirs[0]!;
    assert.deepEqual([...up.classes.entries()], [
      [0x10, [5600, 8000, 0]],
      [0x20, [2000, 8000, 1]],
      [0x30, [400, 8000, 2]],
      [0x100, [3000, 3000, 1]],
    ]);
    assert.deepEqual(up.rules, [
      'oifname "wan0" ip saddr 192.168.1.10 meta priority set 1:10',
      'oifname "wan0" ip6 saddr fd6e:746d:1::10 meta priority set 1:10',
      'oifname "wan0" udp sport 7300 ip daddr 192.0.2.2 udp dport 40000 meta priority set 1:100',
    ]);
  });

  test('one nft transaction replaces the table; tc builds the root only when it is not there, and swaps a leaf of another kind', () => {
    const dirs = directionPlans(plan);
    const nft = nftScript(dirs);
    assert.match(nft, /^table inet ntm_qos \{\}\ndelete table inet ntm_qos\ntable inet ntm_qos \{/);
    assert.match(nft, /type filter hook postrouting priority -150; policy accept;/);
    assert.equal(nftScript([]), 'table inet ntm_qos {}\ndelete table inet ntm_qos\n', 'nothing shaped: the table goes');
    const fresh = tcScript(dirs[0]!, 'fq_codel', false);
    assert.match(fresh, /^qdisc replace dev wan0 root handle 1: htb default 20/);
    assert.match(fresh, /qdisc replace dev wan0 parent 1:100 handle 100: fq_codel/);
    const again = tcScript(dirs[0]!, 'pfifo', true, new Map([['1:10', 'fq_codel'], ['1:20', 'pfifo']]));
    assert.doesNotMatch(again, /root/);
    assert.match(again, /qdisc del dev wan0 parent 1:10\nqdisc replace dev wan0 parent 1:10 handle 10: pfifo limit 100/);
    assert.doesNotMatch(again, /qdisc del dev wan0 parent 1:20/);
  });
});
