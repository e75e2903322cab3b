// Issue 11 #5 on the household testbed, with the agent as it ships: when the household DC's address pool is full,
// pairing through the web API is answered at once with 409 and "this home has reached N devices" (it waited 10 s for
// a registration the DC dropped and answered 504 "no answer" before); unpairing a device returns its address, and the
// next pairing gets it. The pool is made a /30 (one address) so one device fills it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { up, type Testbed } from '../../scripts/netns/index.js';
import { startNtm, tempDir, type Daemon } from '../lib/ntm.js';

const LAN4 = '192.168.1.1';
const BASE = `http://${LAN4}:8080`;

interface Ctx {
  tb: Testbed;
  tmp: { path: string; remove(): void };
  agent: Daemon;
}

/** curl on the laptop: HTTP status, body (JSON when it is), and the time it took. */
async function call(c: Ctx, method: string, path: string, o: { body?: unknown; cookie?: string; csrf?: string } = {}) {
  const args = ['curl', '-sS', '-g', '-i', '--max-time', '20', '-X', method];
  if (o.body !== undefined) args.push('-H', 'content-type: application/json', '--data-binary', JSON.stringify(o.body));
  if (o.cookie) args.push('-H', `cookie: ${o.cookie}`);
  if (o.csrf) args.push('-H', `x-csrf-token: ${o.csrf}`, '-H', `origin: ${BASE}`);
  const t0 = performance.now();
  const r = await c.tb.exec('laptop', [...args, BASE + path], { timeoutMs: 30_000 });
  const ms = performance.now() - t0;
  const status = Number(/^HTTP\/[\d.]+ (\d{3})/m.exec(r.stdout)?.[1] ?? 0);
  const [head = '', text = ''] = r.stdout.split(/\r\n\r\n/);
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON (an empty 204)
  }
  return { status, head, body, ms };
}

void describe('the household page when the home is full (issue 11 #5)', () => {
  const c = {} as Ctx;

  before(async () => {
    c.tb = await up('household', {});
    c.tmp = tempDir();
    const dir = join(c.tmp.path, 'agent');
    c.agent = await startNtm(c.tb, 'vcpe', 'agent', ['--no-dataplane', '--set', 'dc.poolV4=198.18.5.0/30'], dir, 30_000);
  });

  after(async () => {
    await c.agent?.stop();
    await c.tb?.down();
    c.tmp?.remove();
  });

  test('pairing into a full pool: 409 "this home has reached 1 device" at once; unpairing frees the address', async () => {
    const setupCode = readFileSync(join(c.agent.dataDir, 'setup-code'), 'utf8').trim();
    const setup = await call(c, 'POST', '/api/setup', { body: { setupCode, password: 'correct horse battery' } });
    assert.equal(setup.status, 201, JSON.stringify(setup.body));
    const cookie = /^set-cookie: ([^;]+)/im.exec(setup.head)?.[1];
    assert.ok(cookie, setup.head);
    const csrf = (setup.body as { csrfToken: string }).csrfToken;
    const auth = { cookie, csrf };

    const lamp = await call(c, 'POST', '/api/devices', { ...auth, body: { name: 'Lamp', kind: 'lamp', ipv4: '192.168.1.10' } });
    assert.equal(lamp.status, 201, JSON.stringify(lamp.body));
    assert.equal((lamp.body as { virtualV4: string }).virtualV4, '198.18.5.2');

    const camera = await call(c, 'POST', '/api/devices', { ...auth, body: { name: 'Camera', kind: 'camera', ipv4: '192.168.1.11' } });
    assert.equal(camera.status, 409, JSON.stringify(camera.body));
    assert.match((camera.body as { message: string }).message, /^this home has reached 1 device \(phones included\): unpair a device or remove a phone to pair another$/);
    // One round trip to the DC in the agent, not a registration deadline (10 s).
    assert.ok(camera.ms < 5000, `answered in ${Math.round(camera.ms)} ms`);
    const devices = await call(c, 'GET', '/api/devices', auth);
    assert.deepEqual((devices.body as Array<{ name: string; paired: boolean }>).filter((d) => d.paired).map((d) => d.name), ['Lamp'], 'the camera was not paired');

    // Unpairing the lamp returns its address: the camera is paired with it.
    const unpair = await call(c, 'DELETE', `/api/devices/${(lamp.body as { id: number }).id}/pairing`, auth);
    assert.equal(unpair.status, 204, JSON.stringify(unpair.body));
    const again = await call(c, 'POST', '/api/devices', { ...auth, body: { name: 'Camera', kind: 'camera', ipv4: '192.168.1.11' } });
    assert.equal(again.status, 201, JSON.stringify(again.body));
    assert.equal((again.body as { virtualV4: string }).virtualV4, '198.18.5.2');
    const st = (await c.agent.call({ cmd: 'status' })) as { dc: { drops: Record<string, number>; counts: Record<string, number> } };
    assert.equal(st.dc.counts['reg-refused-pool-full'], 1, JSON.stringify(st.dc));
  });
});
